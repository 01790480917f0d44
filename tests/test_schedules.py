"""Schedules: triggers (pure) and a live server that fires, restarts and catches up once."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sandbox.errors import InputError
from sandbox.schedules import next_fire, trigger_for
from sandbox.service import Service, ServiceConfig
from sandbox.store import Role, ScheduleRecord, Source
from sandbox.store.schedules import ScheduleRepository
from tests.portal import Portal, alive, running_portal

# Schedules may run every second here (the default minimum is 60 s); a user may have 3
# schedules and submit 5 batches a minute.
ENV = {
    "BASHFLEET_SCHEDULE_MIN_INTERVAL_S": "1",
    "BASHFLEET_SCHEDULES_PER_USER": "3",
    "BASHFLEET_SUBMIT_RATE": "5",
}


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    """A portal of the test's own: its schedules run (and restart) while it tests."""
    with running_portal(tmp_path, env=ENV, extra=["--isolation", "local"]) as p:
        yield p


@pytest.fixture(scope="module")
def checking_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """One portal for the tests that only check what is refused (nothing is scheduled)."""
    with running_portal(
        tmp_path_factory.mktemp("checks"), env=ENV, extra=["--isolation", "local"]
    ) as p:
        yield p


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("0 0 1 * *", datetime(2027, 1, 31, 12, 0, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
        (
            "30 23 31 * *",
            datetime(2027, 1, 31, 23, 45, tzinfo=UTC),
            datetime(2027, 3, 31, 23, 30, tzinfo=UTC),
        ),
        ("0 12 29 2 *", datetime(2027, 3, 1, tzinfo=UTC), datetime(2028, 2, 29, 12, tzinfo=UTC)),
        (
            "*/15 * * * *",
            datetime(2027, 12, 31, 23, 50, tzinfo=UTC),
            datetime(2028, 1, 1, 0, 0, tzinfo=UTC),
        ),
        ("0 9 * * mon", datetime(2027, 4, 30, 10, tzinfo=UTC), datetime(2027, 5, 3, 9, tzinfo=UTC)),
    ],
)
def test_cron_next_run_across_boundaries(cron: str, after: datetime, expected: datetime) -> None:
    assert next_fire(cron, None, after) == expected


@pytest.mark.parametrize(
    ("cron", "interval", "message"),
    [
        (None, None, "exactly one"),
        ("* * * * *", 60, "exactly one"),
        ("* * * *", None, "five fields"),
        ("61 * * * *", None, "not valid"),
        (None, 0, "from 60"),
        (None, 59, "from 60"),
    ],
)
def test_bad_triggers_say_what_is_wrong(
    cron: str | None, interval: int | None, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        trigger_for(cron, interval)


def schedule_batches(p: Portal, token: str) -> list[datetime]:
    _s, page = p.request("GET", "/api/v1/batches?source=schedule&limit=200", token=token)
    return sorted(datetime.fromisoformat(b["created_at"]) for b in page["items"])


def test_interval_schedule_fires_survives_restarts_and_catches_up_once(portal: Portal) -> None:
    token = portal.token("sched", "operator")
    status, s = portal.request(
        "POST",
        "/api/v1/schedules",
        {"name": "tick", "script": "echo tick", "interval_s": 2},
        token=token,
    )
    assert status == 201, s
    assert s["next_run_at"] is not None
    runs = wait_for_runs(portal, token, 2, timeout=15)
    time.sleep(0.3)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]
    assert all(g > 1.5 for g in gaps), gaps  # one run per tick
    portal.stop()  # SIGTERM
    time.sleep(9)  # four ticks are missed while the server is down
    before = len(schedule_batches_offline(portal))
    portal.start()
    caught_up = wait_for_runs(portal, token, before + 1, timeout=10)
    time.sleep(1.0)
    burst = len(schedule_batches(portal, token)) - before
    # one catch-up (plus at most the next regular tick, which may fall right after it),
    # not one run per missed tick
    assert 1 <= burst <= 2, (burst, caught_up)
    later = wait_for_runs(portal, token, before + burst + 1, timeout=10)  # it keeps firing
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(later[before + burst - 1 :])]
    assert all(g > 0.9 for g in gaps), gaps
    status, listed = portal.request("GET", "/api/v1/schedules", token=token)
    assert len(listed["items"]) == 1  # the restart did not duplicate it
    status, paused = portal.request("POST", f"/api/v1/schedules/{s['id']}/pause", token=token)
    assert status == 200 and paused["paused"] and paused["next_run_at"] is None


def wait_for_runs(p: Portal, token: str, count: int, timeout: float) -> list[datetime]:
    deadline = time.monotonic() + timeout
    while True:
        runs = schedule_batches(p, token)
        if len(runs) >= count or time.monotonic() > deadline:
            assert len(runs) >= count, (len(runs), count)
            return runs
        time.sleep(0.2)


def schedule_batches_offline(p: Portal) -> list[int]:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return [r[0] for r in db.execute("select 1 from batches where source = 'schedule'")]


def test_schedule_validation_over_the_api(checking_portal: Portal) -> None:
    portal = alive(checking_portal)
    token = portal.token("sched", "operator")
    for body in (
        {"name": "x", "script": "ls", "cron": "bad cron"},
        {"name": "x", "script": "", "interval_s": 5},
        {"name": "x", "script": "ls"},
        {"name": "", "script": "ls", "interval_s": 5},
    ):
        status, err = portal.request("POST", "/api/v1/schedules", body, token=token)
        assert status == 400, (body, err)
    viewer = portal.token("watcher", "viewer")
    status, _ = portal.request(
        "POST", "/api/v1/schedules", {"name": "v", "script": "ls", "interval_s": 60}, token=viewer
    )
    assert status == 403


# --- the catch-up claim at start, deterministically -------------------------------------------


def _open_service(data: Path) -> Service:
    return Service.open(ServiceConfig(data_dir=data, isolation="local", autoscale=False))


def test_restart_over_a_missed_tick_runs_exactly_one_catch_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The catch-up fired at start claims the missed tick, even when it reads the tick
    before start has copied the job store's times into the schedules table: here the copy
    waits (up to 1 s) until the catch-up has read the tick, and the catch-up waits 0.3 s
    between reading and claiming, the interleaving that skipped it as "already run"."""
    svc = _open_service(tmp_path)
    try:
        user = svc.store.accounts.create_user("op", "pw-12345678", Role.OPERATOR)
        s = svc.create_schedule(user, name="hourly", script="echo tick", interval_s=3600)
        missed = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
        svc.store.schedules.update(s.id, next_run_at=missed)
    finally:
        svc.close()

    read_the_tick = threading.Event()
    get, update = ScheduleRepository.get, ScheduleRepository.update

    def slow_get(self: ScheduleRepository, schedule_id: int) -> ScheduleRecord:
        record = get(self, schedule_id)
        if threading.current_thread() is not threading.main_thread():  # the job's thread
            read_the_tick.set()
            time.sleep(0.3)
        return record

    def late_update(self: ScheduleRepository, schedule_id: int, **changes: Any) -> ScheduleRecord:
        if "next_run_at" in changes and threading.current_thread() is threading.main_thread():
            read_the_tick.wait(1.0)
        return update(self, schedule_id, **changes)

    monkeypatch.setattr(ScheduleRepository, "get", slow_get)
    monkeypatch.setattr(ScheduleRepository, "update", late_update)
    caplog.set_level(logging.INFO, logger="sandbox.schedules")
    svc = _open_service(tmp_path)
    try:
        deadline = time.monotonic() + 5
        while not svc.store.batches.list(source=Source.SCHEDULE).items:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        time.sleep(0.5)  # a second run would come now, if any
        runs = svc.store.batches.list(source=Source.SCHEDULE).items
        assert len(runs) == 1, runs
        assert "already run" not in caplog.text
        after = svc.store.schedules.get(s.id)
        job = svc.schedules.scheduler.get_job(f"schedule-{s.id}") if svc.schedules else None
        assert job is not None and after.next_run_at == job.next_run_time
        assert after.next_run_at is not None and after.next_run_at > datetime.now(UTC)
        assert after.last_run_at is not None
    finally:
        svc.close()


def test_a_tick_is_claimed_once(tmp_path: Path) -> None:
    """Two runs of one tick (two servers on one database): the second one's claim fails,
    whether it read the tick before the first claimed it or after (then it reads the next,
    future tick, which it may not claim)."""
    svc = Service.open(
        ServiceConfig(data_dir=tmp_path, isolation="local", autoscale=False, schedules=False)
    )
    try:
        repo = svc.store.schedules
        user = svc.store.accounts.create_user("op", "pw-12345678", Role.OPERATOR)
        ws = svc.store.workspaces.get_or_create("default")
        now = datetime.now(UTC)
        tick, following = now - timedelta(seconds=1), now + timedelta(seconds=59)
        s = repo.create(name="x", user_id=user.id, workspace_id=ws.id, script="ls", interval_s=60)
        repo.update(s.id, next_run_at=tick)
        claim = {"ran_at": now, "next_run_at": following, "due_by": now}
        assert repo.mark_run(s.id, expected_next_run_at=tick, **claim)
        assert not repo.mark_run(s.id, expected_next_run_at=tick, **claim)
        assert not repo.mark_run(s.id, expected_next_run_at=following, **claim)
        assert repo.get(s.id).next_run_at == following
    finally:
        svc.close()


def test_scheduled_runs_count_against_the_submission_rate(portal: Portal) -> None:
    # attack: walking around the 60/minute submission limit with 1 s schedules
    token = portal.token("eager", "operator")
    for i in range(3):
        status, _ = portal.request(
            "POST",
            "/api/v1/schedules",
            {"name": f"s{i}", "script": "true", "interval_s": 1},
            token=token,
        )
        assert status == 201
    status, err = portal.request(
        "POST", "/api/v1/schedules", {"name": "s4", "script": "true", "interval_s": 1}, token=token
    )
    assert status == 409 and err["error"] == "too_many", err
    time.sleep(5)  # 3 schedules x 1/s would make ~15 batches
    assert len(schedule_batches(portal, token)) == 5  # the owner's rate: 5 a minute
    status, err = portal.request("POST", "/api/v1/batches", {"script": "true"}, token=token)
    assert status == 429, err  # and the owner's own submissions share the budget
    admin = portal.token("boss", "admin")
    status, audit = portal.request(
        "GET", "/api/v1/audit?action=schedule_rate_limited&limit=500", token=admin
    )
    assert status == 200 and audit["total"] >= 3, audit


def test_a_disabled_users_schedules_pause_and_say_why(portal: Portal) -> None:
    token = portal.token("leaver", "operator")
    admin = portal.token("boss", "admin")
    status, s = portal.request(
        "POST",
        "/api/v1/schedules",
        {"name": "tick", "script": "true", "interval_s": 1},
        token=token,
    )
    assert status == 201, s
    users = portal.request("GET", "/api/v1/users", token=admin)[1]["items"]
    leaver = next(u for u in users if u["name"] == "leaver")
    status, _ = portal.request(
        "PATCH", f"/api/v1/users/{leaver['id']}", {"disabled": True}, token=admin
    )
    assert status == 200
    _s, after = portal.request("GET", f"/api/v1/schedules/{s['id']}", token=admin)
    assert after["paused"] and after["paused_reason"] == "its owner leaver is disabled", after
    runs = len(schedule_batches(portal, admin))
    time.sleep(2.5)
    assert len(schedule_batches(portal, admin)) == runs  # no run after the pause


def test_the_minimum_interval_and_finite_timeouts(checking_portal: Portal) -> None:
    portal = alive(checking_portal)
    token = portal.token("sloppy", "operator")
    for body in (
        {"name": "n", "script": "ls", "interval_s": 1, "timeout_s": 1e999},
        {"name": "n", "script": "ls", "interval_s": 1, "timeout_s": 10**30},
        {"name": "n", "script": "ls", "interval_s": 10**30},
    ):
        status, err = portal.request("POST", "/api/v1/schedules", body, token=token)
        assert status == 400, (body, err)
    raw = b'{"name": "n", "script": "ls", "interval_s": 1, "timeout_s": NaN}'
    status, err = portal.request("POST", "/api/v1/schedules", raw=raw, token=token)
    assert status == 400, err


def test_the_job_store_holds_no_pickles(tmp_path: Path) -> None:
    # attack: a row written into the job store table is unpickled (code execution) at start
    svc = _open_service(tmp_path)
    try:
        user = svc.store.accounts.create_user("op", "pw-12345678", Role.OPERATOR)
        s = svc.create_schedule(user, name="hourly", script="echo tick", interval_s=3600)
    finally:
        svc.close()
    with sqlite3.connect(tmp_path / "bashfleet.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        assert "apscheduler_jobs" not in tables  # nothing pickled is written
        # the table as older versions left it, with a planted pickle that runs a command
        db.execute(
            "create table apscheduler_jobs (id varchar(191) primary key, "
            "next_run_time float, job_state blob not null)"
        )
        db.execute(
            "insert into apscheduler_jobs (id, next_run_time, job_state) values (?, ?, ?)",
            ("planted", 0.0, b"cos\nsystem\n(S'touch planted'\ntR."),
        )
    svc = _open_service(tmp_path)
    try:
        job = svc.schedules.scheduler.get_job(f"schedule-{s.id}") if svc.schedules else None
        assert job is not None and job.next_run_time == svc.store.schedules.get(s.id).next_run_at
        assert not (tmp_path / "planted").exists() and not Path("planted").exists()
    finally:
        svc.close()


def test_run_now(tmp_path: Path) -> None:
    """POST /schedules/ID/run: a batch now (source schedule), the next run untouched; the
    owner or an admin only; it counts against the caller's submission rate."""
    env = {"BASHFLEET_SUBMIT_RATE": "3"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as portal:
        owner, other = portal.token("olive", "operator"), portal.token("oscar", "operator")
        viewer, admin = portal.token("vic", "viewer"), portal.token("ada", "admin")
        status, s = portal.request(
            "POST",
            "/api/v1/schedules",
            {"name": "daily", "script": "echo now", "cron": "0 3 * * *", "paused": True},
            token=owner,
        )
        assert status == 201, s
        status, batch = portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=owner)
        assert status == 201, batch
        assert batch["source"] == "schedule" and batch["schedule_id"] == s["id"]
        assert batch["user"] == "olive"
        done = portal.wait_batch(batch["id"], owner)
        assert done["status"] == "succeeded"
        _s, after = portal.request("GET", f"/api/v1/schedules/{s['id']}", token=owner)
        assert after["next_run_at"] == s["next_run_at"] and after["paused"] is True
        status, err = portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=other)
        assert status == 403 and err["error"] == "forbidden"
        assert portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=viewer)[0] == 403
        status, err = portal.request("POST", "/api/v1/schedules/999999/run", token=owner)
        assert status == 404 and err["error"] == "not_found"
        status, batch = portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=admin)
        assert status == 201 and batch["user"] == "olive"  # a run of olive's schedule
        assert portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=owner)[0] == 201
        status, err = portal.request("POST", f"/api/v1/schedules/{s['id']}/run", token=owner)
        assert status == 429 and err["error"] == "rate_limited"  # the 4th in a minute
