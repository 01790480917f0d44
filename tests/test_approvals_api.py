"""Approvals end to end against a real portal: settings, approve, reject, the two-person
rule, the pending list, expiry, the audit log, and a crash while a command waits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.portal import Portal, alive, running_portal


@pytest.fixture
def portal(module_portal: Portal) -> Portal:
    """One portal for the module: each test gates a workspace of its own (the expiry and
    the crash tests start portals of their own)."""
    return alive(module_portal)


def gate(portal: Portal, admin: str, ws: str, **settings: Any) -> None:
    status, body = portal.request("PUT", f"/api/v1/workspaces/{ws}/approval", settings, token=admin)
    assert status == 200, body


def until(portal: Portal, batch_id: str, token: str, check: Any, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _s, batch = portal.request("GET", f"/api/v1/batches/{batch_id}", token=token)
        if check(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def statuses(batch: dict) -> list[str]:
    return [c["status"] for c in batch["commands"]]


def audit_rows(portal: Portal, action: str) -> list[tuple[str, str]]:
    with sqlite3.connect(portal.data / "bashfleet.db") as db:
        q = "select actor, target from audit_events where action = ? order by id"
        return [(r[0], r[1]) for r in db.execute(q, (action,))]


def test_two_person_approval_flow(portal: Portal) -> None:
    admin = portal.token("root", "admin")
    alice, bob = portal.token("alice", "operator"), portal.token("bob", "operator")
    viewer = portal.token("vera", "viewer")
    gate(portal, admin, "ops", approve="dangerous", two_person=True)
    status, got = portal.request("GET", "/api/v1/workspaces/ops/approval", token=viewer)
    assert got == {"workspace": "ops", "approve": "dangerous", "two_person": True}
    script = "rm -rf out\nmkdir -p out/new\necho free\n"
    status, batch = portal.request(
        "POST", "/api/v1/batches", {"script": script, "workspace": "ops"}, token=alice
    )
    assert status == 201, batch
    assert batch["commands"][0]["status"] == "awaiting_approval"
    assert batch["commands"][0]["approval"] == "required"
    assert batch["commands"][1]["approval"] is None
    bid, cid = batch["id"], batch["commands"][0]["id"]
    batch = until(portal, bid, alice, lambda b: b["commands"][2]["status"] == "succeeded")
    assert statuses(batch)[:2] == ["awaiting_approval", "pending"]
    assert "awaits approval" in batch["commands"][0]["reason"]

    _s, pending = portal.request("GET", "/api/v1/approvals", token=alice)
    assert [(i["command_id"], i["may_decide"]) for i in pending["items"]] == [(cid, False)]
    assert pending["items"][0]["user"] == "alice" and pending["items"][0]["workspace"] == "ops"
    _s, pending = portal.request("GET", "/api/v1/approvals", token=bob)
    assert pending["items"][0]["may_decide"] is True

    url = f"/api/v1/batches/{bid}/commands/{cid}"
    status, body = portal.request("POST", url + "/approve", token=alice)
    assert status == 403 and "two-person" in body["message"]
    assert portal.request("POST", url + "/approve", token=viewer)[0] == 403
    status, command = portal.request("POST", url + "/approve", token=bob)
    assert status == 200, command
    assert command["approval"] == "approved" and command["approval_by"] == "bob"
    assert command["approval_at"]
    done = portal.wait_batch(bid, alice)
    assert done["status"] == "succeeded", done
    assert statuses(done) == ["succeeded"] * 3
    status, body = portal.request("POST", url + "/approve", token=bob)
    assert status == 409 and "not awaiting approval" in body["message"]
    assert portal.request("GET", "/api/v1/approvals", token=bob)[1]["items"] == []
    assert audit_rows(portal, "command_approved") == [("bob", f"{bid}/{cid}")]


def test_reject_skips_what_uses_the_result(portal: Portal) -> None:
    admin, alice = portal.token("root", "admin"), portal.token("alice", "operator")
    gate(portal, admin, "rejecting", approve="sequential+dangerous")
    status, batch = portal.request(
        "POST",
        "/api/v1/batches",
        {"script": "rm -rf out\nls out\necho free\n", "workspace": "rejecting"},
        token=alice,
    )
    assert status == 201
    bid, cid = batch["id"], batch["commands"][0]["id"]
    url = f"/api/v1/batches/{bid}/commands/{cid}/reject"
    status, body = portal.request("POST", url, {"reason": "x" * 501}, token=alice)
    assert status == 400 and "`reason`" in body["message"]
    status, body = portal.request("POST", url, {"why": "no"}, token=alice)
    assert status == 400 and "why" in body["message"]
    # without the two-person rule the submitter decides too; rejecting is always theirs
    status, command = portal.request("POST", url, {"reason": "not today"}, token=alice)
    assert status == 200, command
    assert command["status"] == "rejected" and command["approval"] == "rejected"
    done = portal.wait_batch(bid, alice)
    assert statuses(done) == ["rejected", "skipped", "succeeded"]
    assert done["commands"][0]["reason"] == "rejected by alice: not today"
    assert (
        done["commands"][1]["reason"] == "reads out, which #1 did not write (#1 was not approved)"
    )
    assert done["status"] == "failed"
    assert audit_rows(portal, "command_rejected") == [("alice", f"{bid}/{cid}")]


def test_errors_are_clear_and_change_nothing(portal: Portal) -> None:
    admin, alice = portal.token("root", "admin"), portal.token("alice", "operator")
    url = "/api/v1/workspaces/default/approval"
    status, body = portal.request("PUT", url, {"approve": "dangerous"}, token=alice)
    assert status == 403
    for bad, field in (
        ({"approve": "everything"}, "`approve`"),
        ({"two_person": "yes"}, "`two_person`"),
        ({"approve": "dangerous", "colour": 1}, "colour"),
    ):
        status, body = portal.request("PUT", url, bad, token=admin)
        assert status == 400 and field in body["message"], body
    status, body = portal.request("PUT", "/api/v1/workspaces/../x/approval", {}, token=admin)
    assert status in (400, 404)
    status, batch = portal.request("POST", "/api/v1/batches", {"script": "echo hi"}, token=alice)
    assert portal.request("GET", url, token=alice)[1]["approve"] == "none"
    assert batch["commands"][0]["status"] != "awaiting_approval"
    cid = batch["commands"][0]["id"]
    portal.wait_batch(batch["id"], alice)
    status, body = portal.request(
        "POST", f"/api/v1/batches/{batch['id']}/commands/{cid}/approve", token=alice
    )
    assert status == 409 and body["error"] == "not_possible"
    status, body = portal.request(
        "POST", f"/api/v1/batches/{batch['id']}/commands/nope/approve", token=alice
    )
    assert status == 404 and body["error"] == "not_found"
    status, body = portal.request("POST", "/api/v1/batches/nope/commands/x/reject", token=alice)
    assert status == 404


def test_an_approval_expires(tmp_path: Path) -> None:
    env = {"BASHFLEET_APPROVAL_TTL_S": "1"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local"]) as portal:
        admin, alice = portal.token("root", "admin"), portal.token("alice", "operator")
        gate(portal, admin, "default", approve="dangerous")
        _status, batch = portal.request(
            "POST", "/api/v1/batches", {"script": "rm -rf out"}, token=alice
        )
        done = portal.wait_batch(batch["id"], alice, timeout=15)
        command = done["commands"][0]
        assert command["status"] == "rejected" and command["reason"] == "approval expired"
        assert command["approval"] == "expired"
        assert audit_rows(portal, "approval_expired") == [
            ("system", f"{batch['id']}/{command['id']}")
        ]


def test_a_crash_keeps_a_waiting_command_waiting(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_portal(tmp_path, data=data, extra=["--isolation", "local"]) as portal:
        admin, alice = portal.token("root", "admin"), portal.token("alice", "operator")
        bob = portal.token("bob", "operator")
        gate(portal, admin, "default", approve="dangerous")
        status, batch = portal.request(
            "POST",
            "/api/v1/batches",
            {"script": "echo before\nrm -rf out\nmkdir -p out/a\n"},
            token=alice,
        )
        bid = batch["id"]
        until(portal, bid, alice, lambda b: b["commands"][0]["status"] == "succeeded")
        portal.crash()
    with running_portal(tmp_path, data=data, extra=["--isolation", "local"]) as portal:
        portal.tokens.update({"alice": alice, "bob": bob})
        _s, batch = portal.request("GET", f"/api/v1/batches/{bid}", token=alice)
        assert statuses(batch) == ["succeeded", "awaiting_approval", "pending"]
        assert batch["status"] in ("pending", "running")
        cid = batch["commands"][1]["id"]
        status, _ = portal.request(
            "POST", f"/api/v1/batches/{bid}/commands/{cid}/approve", token=bob
        )
        assert status == 200
        done = portal.wait_batch(bid, alice)
        assert statuses(done) == ["succeeded"] * 3 and done["status"] == "succeeded"
