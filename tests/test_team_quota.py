"""A team's ``max_bytes`` and ``max_commands`` over the real API (issue 13): an upload
past the bytes is refused with nothing written, a team already over them submits nothing,
GET /teams shows what it uses, and simultaneous submissions cannot both pass the
command quota."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.portal import Portal, running_portal


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    env = {"BASHFLEET_SUBMIT_RATE": "1000"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as p:
        yield p


def _team(p: Portal, admin: str, name: str, workspace: str, **quotas: int) -> None:
    status, answer = p.request("POST", "/api/v1/teams", {"name": name, **quotas}, token=admin)
    assert status == 201, answer
    assert p.request("PUT", f"/api/v1/teams/{name}/members/alice", token=admin)[0] == 200
    status, answer = p.request(
        "PUT", f"/api/v1/workspaces/{workspace}", {"owner": {"team": name}}, token=admin
    )
    assert status == 200, answer


def _upload(p: Portal, token: str, workspace: str, name: str, data: bytes) -> tuple[int, Any]:
    return p.request(
        "PUT",
        f"/api/v1/workspaces/{workspace}/files?format=file&name={name}",
        raw=data,
        token=token,
    )


def _batches(p: Portal) -> int:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return int(db.execute("select count(*) from batches").fetchone()[0])


def _used(p: Portal, token: str, team: str) -> dict[str, Any]:
    status, teams = p.request("GET", "/api/v1/teams", token=token)
    assert status == 200, teams
    return next(t for t in teams["items"] if t["name"] == team)


def test_team_bytes_refuse_uploads_and_then_batches(portal: Portal) -> None:
    p = portal
    admin, alice = p.token("root", "admin"), p.token("alice", "operator")
    _team(p, admin, "tiny", "qb", max_bytes=1000)
    status, done = _upload(p, alice, "qb", "a.bin", b"a" * 600)
    assert status == 201, done
    team = _used(p, alice, "tiny")
    assert team["used_bytes"] == 600 and team["max_bytes"] == 1000, team
    # 600 + 600 > 1000: refused, nothing written
    status, answer = _upload(p, alice, "qb", "b.bin", b"b" * 600)
    assert status == 413 and answer["error"] == "quota_exceeded", answer
    for part in ("team tiny", "1000", "600"):
        assert part in answer["message"], answer
    assert not (p.data / "workspaces" / "qb" / "b.bin").exists()
    assert p.request("GET", "/api/v1/workspaces/qb/files?path=b.bin", token=alice)[0] == 404
    assert _used(p, alice, "tiny")["used_bytes"] == 600
    # within the quota a batch runs; it takes the team past it
    batch = p.request(
        "POST",
        "/api/v1/batches",
        {"script": "head -c 3000 /dev/zero > big.bin", "workspace": "qb"},
        token=alice,
    )[1]
    assert p.wait_batch(batch["id"], alice)["status"] == "succeeded"
    # over it: batches are refused (once the few-second measurement is renewed)
    before = _batches(p)
    deadline = time.monotonic() + 15
    while True:
        status, answer = p.request(
            "POST", "/api/v1/batches", {"script": "ls", "workspace": "qb"}, token=alice
        )
        if status == 429 or time.monotonic() > deadline:
            break
        p.wait_batch(answer["id"], alice)
        before = _batches(p)
        time.sleep(0.5)
    assert status == 429 and answer["error"] == "quota_exceeded", answer
    assert "team tiny" in answer["message"] and "1000" in answer["message"], answer
    assert _batches(p) == before  # nothing stored
    assert _used(p, alice, "tiny")["used_bytes"] >= 3600
    assert _upload(p, alice, "qb", "c.bin", b"c")[0] == 413
    # another workspace (no team) is not affected
    mine = p.request("POST", "/api/v1/batches", {"script": "ls", "workspace": "mine"}, token=alice)
    p.wait_batch(mine[1]["id"], alice)
    assert _upload(p, alice, "mine", "c.bin", b"c" * 2000)[0] == 201
    # raising the quota lets the team submit again
    assert p.request("PUT", "/api/v1/teams/tiny", {"max_bytes": 1 << 20}, token=admin)[0] == 200
    status, answer = p.request(
        "POST", "/api/v1/batches", {"script": "ls", "workspace": "qb"}, token=alice
    )
    assert status == 201, answer


def test_simultaneous_submissions_cannot_both_pass_the_command_quota(portal: Portal) -> None:
    p = portal
    admin, alice = p.token("root", "admin"), p.token("alice", "operator")
    _team(p, admin, "pair", "qc", max_commands=3)
    answers: list[tuple[int, Any]] = []
    start = threading.Barrier(8)

    def submit() -> None:
        start.wait()
        answers.append(
            p.request(
                "POST", "/api/v1/batches", {"script": "sleep 20", "workspace": "qc"}, token=alice
            )
        )

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [a for s, a in answers if s == 201]
    refused = [a for s, a in answers if s == 429]
    assert len(accepted) == 3 and len(refused) == 5, answers
    assert all(a["error"] == "quota_exceeded" for a in refused)
    for a in accepted:
        p.request("POST", f"/api/v1/batches/{a['id']}/cancel", token=alice)
    for a in accepted:
        p.wait_batch(a["id"], alice)


def test_retention_deletes_an_over_quota_teams_oldest_batches_first(portal: Portal) -> None:
    p = portal
    admin, alice = p.token("root", "admin"), p.token("alice", "operator")
    _team(p, admin, "heavy", "qr", max_bytes=5000)
    loud = "head -c 3000 /dev/zero | tr '\\0' x"  # 3000 bytes of stored output
    # a batch of a workspace without a team, older than the team's: not the team's to lose
    status, solo = p.request(
        "POST", "/api/v1/batches", {"script": loud, "workspace": "solo"}, token=alice
    )
    assert status == 201 and p.wait_batch(solo["id"], alice)["status"] == "succeeded"
    ids = []
    for _ in range(2):
        status, batch = p.request(
            "POST", "/api/v1/batches", {"script": loud, "workspace": "qr"}, token=alice
        )
        assert status == 201, batch
        assert p.wait_batch(batch["id"], alice)["status"] == "succeeded"
        ids.append(batch["id"])
    deadline = time.monotonic() + 15  # GET /teams measures at most every few seconds
    while _used(p, alice, "heavy")["used_bytes"] != 6000 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _used(p, alice, "heavy")["used_bytes"] == 6000
    status, done = p.request("POST", "/api/v1/retention", token=admin)
    assert status == 200 and done["by_team_quota"] == 1, done
    assert p.request("GET", f"/api/v1/batches/{ids[0]}", token=alice)[0] == 404  # the oldest
    assert p.request("GET", f"/api/v1/batches/{ids[1]}", token=alice)[0] == 200
    assert p.request("GET", f"/api/v1/batches/{solo['id']}", token=alice)[0] == 200
    assert p.request("POST", "/api/v1/retention", token=admin)[1]["by_team_quota"] == 0
