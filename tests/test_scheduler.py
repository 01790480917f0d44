"""Scheduler unit tests with the scripted fake executor (no processes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sandbox.errors import InputError
from sandbox.events import CommandStatusChanged, Event, EventBus, PoolResized
from sandbox.executors.fake import FakeExecutor, FakeResult
from sandbox.model import CommandClass, Job, Status
from sandbox.priority import DurationModel, fingerprint, score, time_score
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler

S, C, Q, D = (
    CommandClass.SAFE,
    CommandClass.CONDITIONAL,
    CommandClass.SEQUENTIAL,
    CommandClass.DANGEROUS,
)


def make(fake: FakeExecutor, **kw: object) -> tuple[Scheduler, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    lock = threading.Lock()

    def record(e: Event) -> None:
        with lock:
            events.append(e)

    bus.subscribe(record)
    sched = Scheduler({"fake": fake}, lambda cls: ("fake", None), bus=bus, **kw)  # type: ignore[arg-type]
    return sched, events


def spec(*cmds: CommandSpec, **kw: object) -> BatchSpec:
    return BatchSpec(commands=cmds, workspace=Path("/ws"), **kw)  # type: ignore[arg-type]


def cmd(i: int, text: str, cls: CommandClass = S, **kw: object) -> CommandSpec:
    return CommandSpec(index=i, command=text, cls=cls, **kw)  # type: ignore[arg-type]


def statuses(sched: Scheduler, batch_id: str) -> list[Status]:
    return [st for _spec, st, *_ in sched.result(batch_id)]


def test_independent_commands_run_in_parallel() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.3))
    sched, _ = make(fake, limits={S: 8, C: 8, Q: 1, D: 1})
    t0 = time.monotonic()
    bid = sched.submit(spec(*(cmd(i, f"sleep {i}") for i in range(8))))
    assert sched.wait(bid, 5)
    assert time.monotonic() - t0 < 1.0
    assert fake.max_running == 8
    assert sched.batch_status(bid) is Status.SUCCEEDED


def test_class_limits_hold() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.05))
    sched, _ = make(fake, limits={S: 3, C: 2, Q: 1, D: 1})
    bid = sched.submit(spec(*(cmd(i, f"x{i}") for i in range(12))))
    assert sched.wait(bid, 5)
    assert fake.max_running == 3


def test_dependencies_order_and_failure_skips_dependents_only() -> None:
    fake = FakeExecutor(script={"bad": FakeResult(exit_code=2)})
    sched, events = make(fake)
    bid = sched.submit(
        spec(
            cmd(0, "bad"),
            cmd(1, "after-bad", needs=(0,)),
            cmd(2, "after-after", needs=(1,)),
            cmd(3, "independent"),
        )
    )
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.FAILED, Status.SKIPPED, Status.SKIPPED, Status.SUCCEEDED]
    assert "after-bad" not in fake.started
    skipped = [
        e for e in events if isinstance(e, CommandStatusChanged) and e.status is Status.SKIPPED
    ]
    assert [e.reason for e in skipped] == [
        "needs #1, which failed",
        "needs #2, which was skipped because #1 failed",
    ]
    assert sched.batch_status(bid) is Status.FAILED


def test_pending_reason_names_the_dependency() -> None:
    fake = FakeExecutor()
    sched, events = make(fake)
    bid = sched.submit(
        spec(cmd(0, "a", Q), cmd(1, "b", needs=(0,), needs_reasons=("#1 writes out/a.txt",)))
    )
    assert sched.wait(bid, 5)
    pending = [
        e for e in events if isinstance(e, CommandStatusChanged) and e.status is Status.PENDING
    ]
    assert pending[0].reason == "waits for #1 (#1 writes out/a.txt)"


def test_write_locks_serialise_across_batches() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.15))
    sched, _ = make(fake)
    a = sched.submit(spec(cmd(0, "w1", C, writes=("out",))))
    b = sched.submit(spec(cmd(0, "w2", C, writes=("out/x",))))
    c = sched.submit(spec(cmd(0, "r", S, reads=("src",))))
    for bid in (a, b, c):
        assert sched.wait(bid, 5)
    assert fake.max_running == 2  # w1 and r together, w2 waits for w1


def test_sequential_one_at_a_time_and_dangerous_exclusive() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.1))
    sched, _ = make(fake)
    batches = [sched.submit(spec(cmd(0, f"s{i}", Q))) for i in range(3)]
    for bid in batches:
        assert sched.wait(bid, 5)
    assert fake.max_running == 1
    fake2 = FakeExecutor(
        script={"boom": FakeResult(duration_s=0.3)}, default=FakeResult(duration_s=0.05)
    )
    sched2, _events = make(fake2)
    d = sched2.submit(spec(cmd(0, "boom", D)))
    time.sleep(0.05)
    s = sched2.submit(spec(cmd(0, "ls", S)))
    assert sched2.wait(d, 5) and sched2.wait(s, 5)
    assert fake2.max_running == 1


def test_timeout_and_cancel() -> None:
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=5)})
    sched, _ = make(fake)
    bid = sched.submit(spec(cmd(0, "slow"), timeout_s=0.1))
    assert sched.wait(bid, 3)
    assert statuses(sched, bid) == [Status.TIMED_OUT]

    bid = sched.submit(spec(cmd(0, "slow"), cmd(1, "later", needs=(0,)), cmd(2, "slow")))
    time.sleep(0.1)
    sched.cancel_batch(bid)
    assert sched.wait(bid, 3)
    assert statuses(sched, bid) == [Status.CANCELLED, Status.CANCELLED, Status.CANCELLED]
    assert sched.batch_status(bid) is Status.CANCELLED


def test_cancel_one_command_skips_its_dependents() -> None:
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=5)})
    sched, _ = make(fake)
    bid = sched.submit(spec(cmd(0, "slow"), cmd(1, "after", needs=(0,)), cmd(2, "free")))
    time.sleep(0.1)
    sched.cancel_command(f"{bid}-0")
    assert sched.wait(bid, 3)
    assert statuses(sched, bid) == [Status.CANCELLED, Status.SKIPPED, Status.SUCCEEDED]


def test_retries_apply_only_to_idempotent_classes() -> None:
    calls: dict[str, int] = {}

    def flaky(job):  # type: ignore[no-untyped-def]
        calls[job.command] = calls.get(job.command, 0) + 1
        return FakeResult(exit_code=0 if calls[job.command] >= 3 else 1)

    fake = FakeExecutor(script={"flaky-safe": flaky, "flaky-seq": flaky})
    sched, _ = make(fake)
    bid = sched.submit(spec(cmd(0, "flaky-safe", S), cmd(1, "flaky-seq", Q), retries=3))
    assert sched.wait(bid, 10)
    assert statuses(sched, bid) == [Status.SUCCEEDED, Status.FAILED]
    assert calls == {"flaky-safe": 3, "flaky-seq": 1}


def test_infrastructure_errors_requeue_then_fail_after_deadline() -> None:
    fake = FakeExecutor(script={"docker-cmd": FakeResult(infra_error="engine down")})
    sched, events = make(fake, infra_deadline_s=0.5)
    bid = sched.submit(spec(cmd(0, "docker-cmd", C), cmd(1, "fine", S)))
    assert sched.wait(bid, 10)
    assert statuses(sched, bid) == [Status.FAILED, Status.SUCCEEDED]
    queued = [
        e
        for e in events
        if isinstance(e, CommandStatusChanged) and e.status is Status.QUEUED and e.index == 0
    ]
    assert any("engine down" in e.reason for e in queued)
    final = [e for e in events if isinstance(e, CommandStatusChanged) and e.status is Status.FAILED]
    assert "gave up after" in final[0].reason


def test_an_engine_failure_mid_run_never_runs_a_sequential_command_twice() -> None:
    died = FakeResult(infra_error="engine went away", infra_started=True)
    calls: dict[str, int] = {}

    def once_then_fine(job: Job) -> FakeResult:
        calls[job.command] = calls.get(job.command, 0) + 1
        return died if calls[job.command] == 1 else FakeResult()

    fake = FakeExecutor(script={"mv a b": once_then_fine, "make": once_then_fine})
    sched, events = make(fake)
    bid = sched.submit(spec(cmd(0, "mv a b", Q), cmd(1, "make", C), cmd(2, "cat b", needs=(0,))))
    assert sched.wait(bid, 10)
    assert statuses(sched, bid) == [Status.INTERRUPTED, Status.SUCCEEDED, Status.SKIPPED]
    assert calls == {"mv a b": 1, "make": 2}  # the idempotent one is simply run again
    final = [
        e for e in events if isinstance(e, CommandStatusChanged) and e.status is Status.INTERRUPTED
    ]
    assert "not run again" in final[0].reason


def test_refused_when_no_route() -> None:
    fake = FakeExecutor()
    sched = Scheduler(
        {"fake": fake},
        lambda cls: ("fake", None) if cls is S else (None, "needs Docker; use --isolation local"),
    )
    bid = sched.submit(spec(cmd(0, "ls"), cmd(1, "rm -rf x", D), cmd(2, "cat x", needs=(1,))))
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.SUCCEEDED, Status.REFUSED, Status.SKIPPED]


def test_priority_short_safe_first_and_aging() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.02))
    durations = DurationModel()
    durations.observe(fingerprint("long-job"), 300.0)
    durations.observe(fingerprint("quick"), 0.01)
    sched, _ = make(fake, limits={S: 1, C: 1, Q: 1, D: 1}, max_running=1, durations=durations)
    gate = sched.submit(spec(cmd(0, "gate", S)))  # occupies the only slot first
    bid = sched.submit(spec(cmd(0, "long-job", S), cmd(1, "quick", S)))
    assert sched.wait(gate, 5) and sched.wait(bid, 5)
    assert fake.started.index("quick") < fake.started.index("long-job")
    assert score(S, 0.01, 5) > score(S, 300.0, 5) > score(D, 300.0, 5)
    assert time_score(0.01) == 10 and time_score(10_000) == 1


def test_fingerprint_normalises() -> None:
    assert fingerprint("pytest tests/a.py -k x") == fingerprint("pytest tests/b.py -k y")
    assert fingerprint("sleep 1") != fingerprint("sleep 100")
    assert fingerprint("git status") != fingerprint("git log")


def test_set_limit_publishes_pool_resized() -> None:
    sched, events = make(FakeExecutor())
    sched.set_limit(C, 1, "conditional 2 -> 1: CPU 97%")
    resized = [e for e in events if isinstance(e, PoolResized)]
    assert resized and resized[0].after == 1 and "CPU" in resized[0].reason


def test_bad_specs_are_rejected() -> None:
    sched, _ = make(FakeExecutor())
    with pytest.raises(InputError, match="only wait for earlier"):
        sched.submit(spec(cmd(0, "a", needs=(1,)), cmd(1, "b")))
    with pytest.raises(InputError):
        sched.submit(spec(cmd(1, "a")))


def test_empty_batch_finishes() -> None:
    sched, _ = make(FakeExecutor())
    bid = sched.submit(spec())
    assert sched.wait(bid, 1)
    assert sched.batch_status(bid) is Status.SUCCEEDED


def test_many_commands_scale() -> None:
    fake = FakeExecutor()
    sched, _ = make(fake, limits={S: 16, C: 8, Q: 1, D: 1})
    n = 5000
    cmds = [cmd(i, f"echo {i}", needs=(i - 1,) if i % 10 else ()) for i in range(n)]
    t0 = time.monotonic()
    bid = sched.submit(spec(*cmds))
    assert sched.wait(bid, 60)
    assert len(fake.started) == n
    assert time.monotonic() - t0 < 30


def test_a_cancelled_waiting_dangerous_command_does_not_wedge_its_workspace() -> None:
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=0.5)})
    sched, _ = make(fake)
    slow = sched.submit(spec(cmd(0, "slow", S)))
    time.sleep(0.05)
    danger = sched.submit(spec(cmd(0, "rm -rf x", D)))
    time.sleep(0.05)
    assert sched.status_of(f"{danger}-0") is Status.QUEUED  # waits for its exclusive lock
    sched.cancel_batch(danger)
    quick = sched.submit(spec(cmd(0, "quick", S)))
    assert sched.wait(quick, 0.3)  # runs beside `slow`, not after it
    assert sched.wait(slow, 2) and sched.wait(danger, 2)
    assert "rm -rf x" not in fake.started


def test_a_server_keeps_only_the_newest_finished_batches() -> None:
    sched, _ = make(FakeExecutor(), retain_finished=2)
    ids = [sched.submit(spec(cmd(0, f"b{i}"))) for i in range(4)]
    for bid in ids[2:]:  # the first two are forgotten once these finish
        assert sched.wait(bid, 5)
    with pytest.raises(KeyError):
        sched.batch_status(ids[0])
    assert sched.batch_status(ids[3]) is Status.SUCCEEDED


def test_critical_path_first_within_a_time_step() -> None:
    """Same class, same priority, estimates of the same order: the longest chain goes first."""
    fake = FakeExecutor(default=FakeResult(duration_s=0.02))
    durations = DurationModel()
    durations.observe(fingerprint("short-leaf"), 0.1)
    durations.observe(fingerprint("chain-head"), 0.6)
    durations.observe(fingerprint("chain-tail"), 0.6)
    sched, _ = make(fake, limits={S: 1, C: 1, Q: 1, D: 1}, max_running=1, durations=durations)
    gate = sched.submit(spec(cmd(0, "gate", S)))  # occupies the only slot first
    bid = sched.submit(
        spec(cmd(0, "short-leaf", S), cmd(1, "chain-head", S), cmd(2, "chain-tail", S, needs=(1,)))
    )
    assert sched.wait(gate, 5) and sched.wait(bid, 5)
    assert fake.started.index("chain-head") < fake.started.index("short-leaf")
    assert time_score(0.1) == time_score(0.6) > time_score(5.0) > time_score(120.0)


def test_shell_state_is_not_a_lock_between_commands() -> None:
    """`x=1` in one command and `export y=2` in another share nothing: each runs in its own bash."""
    from sandbox.pipeline import batch_spec, judge

    spec_ = batch_spec(judge("x=1; sleep 0\nexport Y=2; sleep 0"), Path("/ws"))
    assert all("session" not in c.resources for c in spec_.commands)


def test_waiting_raises_priority_so_nothing_starves() -> None:
    """A low-priority command that has waited long enough goes before a fresh better one."""
    gate_open = threading.Event()

    def gate(_job: Job) -> FakeResult:
        gate_open.wait(10)
        return FakeResult()

    fake = FakeExecutor(script={"gate": gate}, default=FakeResult(duration_s=0.01))
    durations = DurationModel()
    durations.observe(fingerprint("long-job"), 300.0)  # scores 2.25 points lower
    now = [1000.0]
    sched, _ = make(
        fake,
        limits={S: 1, C: 1, Q: 1, D: 1},
        max_running=1,
        durations=durations,
        clock=lambda: now[0],
    )
    first = sched.submit(spec(cmd(0, "gate", S)))  # holds the only slot
    old = sched.submit(spec(cmd(0, "long-job", S)))
    now[0] += 60  # 12 steps of 5 s: +3 points
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the timer thread promotes it (it wakes within 1 s)
        with sched._lock:
            if any(c.aged >= 12 for *_k, c in sched._heaps[S]):
                break
        time.sleep(0.05)
    fresh = sched.submit(spec(cmd(0, "quick", S)))
    gate_open.set()
    assert sched.wait(first, 5) and sched.wait(old, 5) and sched.wait(fresh, 5)
    assert fake.started == ["gate", "long-job", "quick"]


def test_a_held_workspace_starts_nothing_new_until_released() -> None:
    """A workspace being moved between nodes (sandbox/cluster/move.py): its running
    command ends, its ready ones stay queued with the reason, another workspace runs."""
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=0.4)})
    sched, events = make(fake)
    first = sched.submit(spec(cmd(0, "slow")))
    deadline = time.monotonic() + 5
    while sched.running_in("/ws") != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    sched.hold("/ws", "workspace moving from n1 to n2")
    held = sched.submit(spec(cmd(0, "cat a")))
    other = sched.submit(BatchSpec(commands=(cmd(0, "cat b"),), workspace=Path("/other")))
    assert sched.wait(first, 5) and sched.wait(other, 5)
    assert sched.running_in("/ws") == 0
    time.sleep(0.2)
    assert statuses(sched, held) == [Status.QUEUED]
    reasons = [
        e.reason for e in events if isinstance(e, CommandStatusChanged) and e.batch_id == held
    ]
    assert reasons[-1] == "workspace moving from n1 to n2"
    sched.unhold("/ws")
    assert sched.wait(held, 5)
    assert statuses(sched, held) == [Status.SUCCEEDED]
    sched.shutdown()
