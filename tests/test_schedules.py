"""Schedules: triggers (pure) and a live server that fires, restarts and catches up once."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import pytest

from sandbox.errors import InputError
from sandbox.schedules import next_fire, trigger_for
from tests.portal import Portal


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
        (None, 0, "from 1"),
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
    import sqlite3

    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return [r[0] for r in db.execute("select 1 from batches where source = 'schedule'")]


def test_schedule_validation_over_the_api(portal: Portal) -> None:
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
