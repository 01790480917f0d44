"""Owners, teams and access (issue 13, part 6): operators run only in workspaces they own
or share through a team, viewers see only those, and what is refused answers 404 (as if
it did not exist) and is audited."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import socketio

from tests.portal import Portal


def _refusals(p: Portal) -> list[tuple[str, str, str]]:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return db.execute(
            "select action, actor, target from audit_events "
            "where action in ('workspace_refused', 'batch_refused', 'schedule_refused') "
            "order by id"
        ).fetchall()


def _submit(p: Portal, token: str, workspace: str, script: str = "echo hi") -> dict[str, Any]:
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": script, "workspace": workspace}, token=token
    )
    assert status == 201, batch
    return batch


def test_operator_cannot_see_run_in_or_read_another_operators_workspace(portal: Portal) -> None:
    p = portal
    alice, bob = p.token("alice", "operator"), p.token("bob", "operator")
    mine = _submit(p, alice, "alice-ws", "echo private")
    done = p.wait_batch(mine["id"], alice)
    cid = done["commands"][0]["id"]
    status, ws = p.request("GET", "/api/v1/workspaces/alice-ws", token=alice)
    assert status == 200 and ws["owner"] == {"user": "alice"} and ws["may_change"] is True
    b = mine["id"]
    refused = [
        ("GET", "/api/v1/workspaces/alice-ws", None),
        ("PUT", "/api/v1/workspaces/alice-ws", {"network": "egress"}),
        ("POST", "/api/v1/batches", {"script": "ls", "workspace": "alice-ws"}),
        ("GET", f"/api/v1/batches/{b}", None),
        ("GET", f"/api/v1/batches/{b}/commands/{cid}/output", None),
        ("GET", f"/api/v1/batches/{b}/commands/{cid}/log", None),
        ("POST", f"/api/v1/batches/{b}/cancel", None),
        ("POST", f"/api/v1/batches/{b}/commands/{cid}/cancel", None),
        ("POST", f"/api/v1/batches/{b}/rerun", {"only": "all"}),
        (
            "POST",
            "/api/v1/schedules",
            {"name": "s", "script": "ls", "workspace": "alice-ws", "interval_s": 60},
        ),
    ]
    for method, path, body in refused:
        status, answer = p.request(method, path, body, token=bob)
        assert status == 404 and answer["error"] == "not_found", (method, path, answer)
        assert "private" not in json.dumps(answer)
    # a name that does not exist answers the same way
    status, missing = p.request("GET", "/api/v1/workspaces/nothing-here", token=bob)
    assert status == 404 and missing["message"] == "no workspace 'nothing-here'"
    status, page = p.request("GET", "/api/v1/batches", token=bob)
    assert status == 200 and page["total"] == 0
    status, listed = p.request("GET", "/api/v1/workspaces", token=bob)
    assert "alice-ws" not in [w["name"] for w in listed["items"]]
    # alice's schedule in her workspace is invisible to bob
    status, sched = p.request(
        "POST",
        "/api/v1/schedules",
        {"name": "nightly", "script": "ls", "workspace": "alice-ws", "interval_s": 3600},
        token=alice,
    )
    assert status == 201, sched
    status, _ = p.request("GET", f"/api/v1/schedules/{sched['id']}", token=bob)
    assert status == 404
    status, scheds = p.request("GET", "/api/v1/schedules", token=bob)
    assert scheds["items"] == []
    # live output: subscribing to alice's batch answers as for a missing batch
    sio = socketio.Client(reconnection=False)
    sio.connect(p.url, auth={"token": bob}, transports=["websocket"], wait_timeout=10)
    try:
        ack = sio.call("subscribe", {"batch_id": b}, timeout=10)
    finally:
        sio.disconnect()
    assert ack["error"] == "not_found", ack
    refusals = _refusals(p)
    assert len(refusals) >= len(refused) + 1, refusals
    assert {actor for _a, actor, _t in refusals} == {"bob"}
    assert ("batch_refused", "bob", b) in refusals
    assert ("workspace_refused", "bob", "alice-ws") in refusals
    # bob's own work goes on; the shared `default` is everyone's
    _submit(p, bob, "default")
    status, shared = p.request("GET", "/api/v1/workspaces/default", token=alice)
    assert status == 200 and shared["owner"] is None and shared["may_change"] is False


def test_teams_share_workspaces_and_viewers_see_only_theirs(portal: Portal) -> None:
    p = portal
    admin = p.token("root", "admin")
    alice, carol, bob = (p.token(n, "operator") for n in ("alice", "carol", "bob"))
    vic, vera = p.token("vic", "viewer"), p.token("vera", "viewer")
    # `default` is everyone's: an operator cannot take it or change it, even by making it
    for body in ({"network": "egress"}, {"owner": {"user": "alice"}}):
        status, answer = p.request("PUT", "/api/v1/workspaces/default", body, token=alice)
        assert status == 403, answer
    status, shared = p.request("GET", "/api/v1/workspaces/default", token=alice)
    assert shared["owner"] is None and shared["network"] == "none"
    status, team = p.request("POST", "/api/v1/teams", {"name": "core"}, token=admin)
    assert status == 201 and team["members"] == []
    assert p.request("POST", "/api/v1/teams", {"name": "x"}, token=alice)[0] == 403
    assert p.request("POST", "/api/v1/teams", {"name": "../x"}, token=admin)[0] == 400
    assert p.request("POST", "/api/v1/teams", {"name": "core"}, token=admin)[0] == 409
    for user in ("alice", "carol", "vic"):
        status, team = p.request("PUT", f"/api/v1/teams/core/members/{user}", token=admin)
        assert status == 200
    assert team["members"] == ["alice", "carol", "vic"]
    assert p.request("PUT", "/api/v1/teams/core/members/ghost", token=admin)[0] == 404
    first = _submit(p, alice, "shared-ws")
    p.wait_batch(first["id"], alice)
    # alice gives her workspace to the team; an operator may not give it to a stranger
    status, answer = p.request(
        "PUT", "/api/v1/workspaces/shared-ws", {"owner": {"user": "bob"}}, token=alice
    )
    assert status == 403, answer
    status, ws = p.request(
        "PUT", "/api/v1/workspaces/shared-ws", {"owner": {"team": "core"}}, token=alice
    )
    assert status == 200 and ws["owner"] == {"team": "core"}
    again = _submit(p, carol, "shared-ws")  # carol runs there through the team
    assert p.wait_batch(again["id"], carol)["status"] == "succeeded"
    assert p.request("GET", f"/api/v1/batches/{first['id']}", token=carol)[0] == 200
    assert p.request("GET", f"/api/v1/batches/{first['id']}", token=vic)[0] == 200
    status, page = p.request("GET", "/api/v1/batches", token=vic)
    assert page["total"] == 2
    # viewers read, never run; one outside the team sees nothing of it
    assert (
        p.request("POST", "/api/v1/batches", {"script": "ls", "workspace": "shared-ws"}, token=vic)[
            0
        ]
        == 403
    )
    assert p.request("GET", f"/api/v1/batches/{first['id']}", token=vera)[0] == 404
    assert p.request("GET", "/api/v1/batches", token=vera)[1]["total"] == 0
    assert p.request("GET", "/api/v1/workspaces/shared-ws", token=bob)[0] == 404
    status, teams = p.request("GET", "/api/v1/teams", token=bob)
    assert teams["items"] == []  # not a member of any
    # leaving the team ends the access
    status, _ = p.request("DELETE", "/api/v1/teams/core/members/carol", token=admin)
    assert status == 200
    assert p.request("GET", "/api/v1/workspaces/shared-ws", token=carol)[0] == 404
    # a team that owns workspaces stays until they have another owner (never "everyone's")
    status, answer = p.request("DELETE", "/api/v1/teams/core", token=admin)
    assert status == 409 and "owns 1 workspace" in answer["message"]
    p.request("PUT", "/api/v1/workspaces/shared-ws", {"owner": {"user": "alice"}}, token=admin)
    assert p.request("DELETE", "/api/v1/teams/core", token=admin)[0] == 200
    assert p.request("GET", "/api/v1/workspaces/shared-ws", token=bob)[0] == 404


def test_team_quota_of_concurrent_commands(portal: Portal) -> None:
    p = portal
    admin, alice = p.token("root", "admin"), p.token("alice", "operator")
    status, _ = p.request(
        "POST", "/api/v1/teams", {"name": "small", "max_commands": 2}, token=admin
    )
    assert status == 201
    p.request("PUT", "/api/v1/teams/small/members/alice", token=admin)
    p.request("PUT", "/api/v1/workspaces/q", {"owner": {"team": "small"}}, token=admin)
    busy = _submit(p, alice, "q", "sleep 30\nsleep 30")
    status, answer = p.request(
        "POST", "/api/v1/batches", {"script": "ls", "workspace": "q"}, token=alice
    )
    assert status == 429 and answer["error"] == "quota_exceeded", answer
    assert "team small" in answer["message"]
    p.request("POST", f"/api/v1/batches/{busy['id']}/cancel", token=alice)
    p.wait_batch(busy["id"], alice)
    _submit(p, alice, "q", "ls")  # room again
    status, team = p.request(
        "PUT", "/api/v1/teams/small", {"max_commands": 0, "max_bytes": 1 << 30}, token=admin
    )
    assert status == 200 and team["max_commands"] is None and team["max_bytes"] == 1 << 30
