"""CircuitBreaker with a fake clock: no sleeping, no engine."""

from __future__ import annotations

import threading

import pytest

from sandbox.breaker import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, cooldown_s=15, clock=clock)


def test_starts_closed_and_allows(breaker: CircuitBreaker) -> None:
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    breaker.record_failure("refused")
    breaker.record_failure("refused")
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure("connection refused")
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.reason == "connection refused" and breaker.retry_at == 1015.0


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        breaker.record_failure("x")
    breaker.record_success()
    breaker.record_failure("x")
    breaker.record_failure("x")
    assert breaker.state is BreakerState.CLOSED and breaker.reason == "x"


def test_half_open_after_cooldown_lets_one_trial_through(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("down")
    clock.now += 14.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time


def test_trial_success_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        breaker.record_failure("down")
    clock.now += 15
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.reason == ""


def test_trial_failure_reopens_for_a_new_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("down")
    clock.now += 15
    assert breaker.allow()
    breaker.record_failure("still down")
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_at == clock.now + 15 and breaker.reason == "still down"


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


def test_concurrent_half_open_gives_exactly_one_trial(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        breaker.record_failure("down")
    clock.now += 15
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        results.append(breaker.allow())

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_remaining_time_counts_down_on_the_injected_clock(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    assert breaker.remaining_s == 0
    for _ in range(3):
        breaker.record_failure("down")
    clock.now += 5
    assert breaker.remaining_s == 10
    clock.now += 10
    assert breaker.remaining_s == 0
