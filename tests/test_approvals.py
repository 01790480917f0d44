"""Approvals in the scheduler (fake executor), the settings' validation, and the store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sandbox.approvals import ApprovalPolicy, approval_ttl_s, check_approval_settings
from sandbox.errors import InputError
from sandbox.events import CommandStatusChanged, Event, EventBus
from sandbox.executors.fake import FakeExecutor, FakeResult
from sandbox.model import CommandClass, FailurePolicy, Status
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler

S, Q, D = CommandClass.SAFE, CommandClass.SEQUENTIAL, CommandClass.DANGEROUS


def make(fake: FakeExecutor) -> tuple[Scheduler, list[Event]]:
    bus = EventBus()
    events: list[Event] = []
    lock = threading.Lock()

    def record(e: Event) -> None:
        with lock:
            events.append(e)

    bus.subscribe(record)
    return Scheduler({"fake": fake}, lambda cls: ("fake", None), bus=bus), events


def cmd(i: int, text: str, cls: CommandClass = S, **kw: object) -> CommandSpec:
    return CommandSpec(index=i, command=text, cls=cls, id=f"c{i}", **kw)  # type: ignore[arg-type]


def spec(*cmds: CommandSpec, **kw: object) -> BatchSpec:
    return BatchSpec(commands=cmds, workspace=Path("/ws"), **kw)  # type: ignore[arg-type]


def statuses(sched: Scheduler, batch_id: str) -> list[Status]:
    return [st for _spec, st, *_ in sched.result(batch_id)]


def until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_gated_command_waits_its_dependent_waits_the_rest_runs() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.01))
    sched, events = make(fake)
    bid = sched.submit(
        spec(
            cmd(0, "rm -rf build", D, approval=True),
            cmd(1, "ls build", needs=(0,)),
            cmd(2, "echo free"),
        )
    )
    until(lambda: statuses(sched, bid)[2] is Status.SUCCEEDED)
    time.sleep(0.1)
    assert statuses(sched, bid)[:2] == [Status.AWAITING_APPROVAL, Status.PENDING]
    assert fake.started == ["echo free"]
    gate = [e for e in events if isinstance(e, CommandStatusChanged) and e.index == 0]
    assert gate[0].status is Status.AWAITING_APPROVAL and "approval" in gate[0].reason
    sched.approve("c0", "alice")
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.SUCCEEDED] * 3
    assert fake.started[1:] == ["rm -rf build", "ls build"]
    with pytest.raises(InputError, match="not awaiting approval"):
        sched.approve("c0", "alice")


def test_rejected_skips_what_uses_its_result_and_fails_the_batch() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.01))
    sched, events = make(fake)
    bid = sched.submit(
        spec(
            cmd(0, "rm -rf build", D, approval=True),
            cmd(1, "ls build", needs=(0,)),
            cmd(2, "echo free"),
        )
    )
    until(lambda: statuses(sched, bid)[0] is Status.AWAITING_APPROVAL)
    sched.reject("c0", "rejected by bob: not today")
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.REJECTED, Status.SKIPPED, Status.SUCCEEDED]
    assert sched.batch_status(bid) is Status.FAILED
    reasons = {
        e.index: e.reason
        for e in events
        if isinstance(e, CommandStatusChanged) and e.status.final and e.index < 2
    }
    assert reasons[0] == "rejected by bob: not today"
    assert reasons[1] == "needs #1, which was not approved"
    assert "rm -rf build" not in fake.started


def test_halt_stops_at_a_rejection() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.01))
    sched, _ = make(fake)
    bid = sched.submit(
        spec(
            cmd(0, "dd if=x of=y", D, approval=True),
            cmd(1, "later", needs=(0,)),
            on_failure=FailurePolicy.HALT,
        )
    )
    until(lambda: statuses(sched, bid)[0] is Status.AWAITING_APPROVAL)
    sched.reject("c0", "rejected by bob")
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.REJECTED, Status.SKIPPED]


def test_an_approval_expires() -> None:
    fake = FakeExecutor(default=FakeResult(duration_s=0.01))
    sched, events = make(fake)
    bid = sched.submit(spec(cmd(0, "mv a b", Q, approval=True), approval_ttl_s=0.2))
    t0 = time.monotonic()
    assert sched.wait(bid, 5)
    assert 0.15 < time.monotonic() - t0 < 2.0
    assert statuses(sched, bid) == [Status.REJECTED]
    last = [e for e in events if isinstance(e, CommandStatusChanged)][-1]
    assert last.reason == "approval expired"
    assert fake.started == []


def test_cancel_ends_a_waiting_command() -> None:
    sched, _ = make(FakeExecutor())
    bid = sched.submit(spec(cmd(0, "rm -rf /w/x", D, approval=True)))
    until(lambda: statuses(sched, bid)[0] is Status.AWAITING_APPROVAL)
    sched.cancel_batch(bid)
    assert sched.wait(bid, 5)
    assert statuses(sched, bid) == [Status.CANCELLED]


def test_approved_before_its_needs_end_it_still_waits_for_them() -> None:
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=0.3)})
    sched, _ = make(fake)
    bid = sched.submit(spec(cmd(0, "slow"), cmd(1, "rm -rf out", D, approval=True, needs=(0,))))
    until(lambda: statuses(sched, bid)[1] is Status.AWAITING_APPROVAL)
    sched.approve("c1", "alice")
    assert statuses(sched, bid)[1] is Status.PENDING
    assert sched.wait(bid, 5)
    assert fake.started == ["slow", "rm -rf out"]


def test_resume_settles_what_ended_and_keeps_the_gate() -> None:
    """A restart hands the batch back with what already ended: a failed command skips
    its dependent; the gated one waits; the rest runs."""
    fake = FakeExecutor(default=FakeResult(duration_s=0.01))
    sched, _ = make(fake)
    bid = sched.submit(
        spec(
            cmd(0, "make"),
            cmd(1, "cat out", needs=(0,)),
            cmd(2, "rm -rf x", D, approval=True),
            cmd(3, "echo later"),
        ),
        ended={0: Status.INTERRUPTED},
    )
    until(lambda: statuses(sched, bid)[3] is Status.SUCCEEDED)
    assert statuses(sched, bid) == [
        Status.INTERRUPTED,
        Status.SKIPPED,
        Status.AWAITING_APPROVAL,
        Status.SUCCEEDED,
    ]
    sched.approve("c2", "carol")
    assert sched.wait(bid, 5)
    assert fake.started == ["echo later", "rm -rf x"]


def test_shutdown_leaves_a_held_batch_waiting() -> None:
    sched, events = make(FakeExecutor())
    bid = sched.submit(spec(cmd(0, "rm -rf x", D, approval=True), cmd(1, "ls", needs=(0,))))
    until(lambda: statuses(sched, bid)[1] is Status.PENDING)
    sched.shutdown()
    assert statuses(sched, bid) == [Status.AWAITING_APPROVAL, Status.PENDING]
    assert not any(
        isinstance(e, CommandStatusChanged) and e.status is Status.INTERRUPTED for e in events
    )


@pytest.mark.parametrize(
    ("policy", "wanted"),
    [
        ("none", set()),
        ("dangerous", {D}),
        ("sequential+dangerous", {Q, D}),
    ],
)
def test_policy_names_the_classes_that_wait(policy: str, wanted: set[CommandClass]) -> None:
    assert {c for c in CommandClass if ApprovalPolicy(policy).wants(c)} == wanted


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"approve": "all"}, "`approve` must be one of none, dangerous, sequential+dangerous"),
        ({"approve": 1}, "`approve` must be one of"),
        ({"two_person": "yes"}, "`two_person` is true or false"),
        ({"two_person": 1}, "`two_person` is true or false"),
    ],
)
def test_settings_are_checked(body: dict[str, object], error: str) -> None:
    with pytest.raises(InputError, match=error.replace("+", r"\+")):
        check_approval_settings(body)


def test_settings_pass_and_ignore_other_fields() -> None:
    body = {"approve": "sequential+dangerous", "two_person": True, "image": "x"}
    assert check_approval_settings(body) == {
        "approve": ApprovalPolicy.SEQUENTIAL_DANGEROUS,
        "two_person": True,
    }
    with pytest.raises(InputError, match="`approve` is required"):
        check_approval_settings({}, partial=False)


def test_ttl_from_the_environment() -> None:
    assert approval_ttl_s({}) == 86400
    assert approval_ttl_s({"BASHFLEET_APPROVAL_TTL_S": "2.5"}) == 2.5
    assert approval_ttl_s({"BASHFLEET_APPROVAL_TTL_S": "-1"}) == 86400
    assert approval_ttl_s({"BASHFLEET_APPROVAL_TTL_S": "soon"}) == 86400


def test_upgrading_sqlite_keeps_every_command(tmp_path: Path) -> None:
    """Batch ALTERs copy and drop tables; with foreign keys on, the DROP used to delete
    every command (ON DELETE CASCADE) of an existing database. Now nothing is lost, and
    the new statuses fit."""
    from sqlalchemy import text

    from sandbox.store.db import default_url, make_engine, migrate

    engine = make_engine(default_url(tmp_path))
    migrate(engine, "0002")
    with engine.begin() as c:
        c.execute(text("insert into workspaces values (1, 'w', 'w', 0, NULL, '2026-01-01')"))
        c.execute(
            text(
                "insert into batches (id, status, source, workspace_id, priority, retries, "
                "script, command_count, created_at) "
                "values ('b', 'succeeded', 'api', 1, 5, 0, 'ls', 1, '2026-01-01')"
            )
        )
        c.execute(
            text(
                'insert into commands (id, batch_id, "index", command, cls, reasons, executor, '
                "needs, reads, writes, status, stdout_tail, stderr_tail, stdout_bytes, "
                "stderr_bytes, truncated, attempts) values ('c', 'b', 0, 'ls', 'safe', '[]', "
                "'local', '[]', '[]', '[]', 'succeeded', '', '', 0, 0, 0, 1)"
            )
        )
    migrate(engine)
    with engine.begin() as c:
        assert c.execute(text("select count(*) from commands")).scalar() == 1
        c.execute(text("update commands set status = 'awaiting_approval' where id = 'c'"))
        assert c.execute(text("select approve from workspaces")).scalar() == "none"
    engine.dispose()
