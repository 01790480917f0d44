"""Workspace settings over the REST API (issue 13, part 1): validation, secrets that go in
and never come out, encryption at rest, the audit log, and allowed images."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from tests.portal import Portal, alive

SECRET = "s3cr3t-Value-42"


@pytest.fixture
def portal(module_portal: Portal) -> Portal:
    """One portal for the module: each test has a workspace of its own."""
    return alive(module_portal)


def _audit(p: Portal, action: str, target: str | None = None) -> list[dict[str, Any]]:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        rows = db.execute(
            "select target, detail from audit_events where action = ? order by id", (action,)
        ).fetchall()
    return [{"target": t, "detail": json.loads(d)} for t, d in rows if target in (None, t)]


def test_settings_round_trip_secrets_never_come_back(portal: Portal) -> None:
    p = portal
    admin = p.token("root", "admin")
    status, ws = p.request(
        "PUT",
        "/api/v1/workspaces/proj",
        {
            "network": "egress",
            "env": {"CI": "1", "GREETING": "hello world"},
            "secrets": {"API_TOKEN": SECRET, "OTHER": "abcd1234"},
            "limits": {"conditional": {"cpus": 1, "memory_bytes": 512 << 20, "timeout_s": 120}},
            "owner": {"user": "root"},
        },
        token=admin,
    )
    assert status == 200, ws
    assert ws["network"] == "egress" and ws["env"] == {"CI": "1", "GREETING": "hello world"}
    assert ws["secrets"] == ["API_TOKEN", "OTHER"]
    assert ws["limits"]["conditional"]["cpus"] == 1
    assert ws["owner"] == {"user": "root"} and ws["image"] is None
    status, got = p.request("GET", "/api/v1/workspaces/proj", token=admin)
    assert status == 200 and got["secrets"] == ["API_TOKEN", "OTHER"]
    # null deletes one secret, the rest stay
    status, ws = p.request(
        "PUT", "/api/v1/workspaces/proj", {"secrets": {"OTHER": None}}, token=admin
    )
    assert status == 200 and ws["secrets"] == ["API_TOKEN"] and ws["network"] == "egress"
    status, listed = p.request("GET", "/api/v1/workspaces", token=admin)
    assert status == 200 and "proj" in [w["name"] for w in listed["items"]]
    everything = json.dumps([got, ws, listed])
    assert SECRET not in everything and "abcd1234" not in everything
    # at rest: sealed, not the value, not in any row of the database file
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        (sealed,) = db.execute("select value from workspace_secrets").fetchone()
        network = db.execute("select network from workspaces where name='proj'").fetchone()[0]
    assert SECRET not in sealed and sealed.startswith("gAAAA")  # a Fernet token
    assert network == "egress"
    raw = (p.data / "bashfleet.db").read_bytes()
    assert SECRET.encode() not in raw and b"abcd1234" not in raw
    key = p.data / "workspace-secrets.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # audited by name, never by value
    changes = _audit(p, "workspace_changed", "proj")
    assert [c["detail"]["secrets_set"] for c in changes] == [["API_TOKEN", "OTHER"], []]
    assert changes[1]["detail"]["secrets_deleted"] == ["OTHER"]
    assert SECRET not in json.dumps(changes) and "hello world" not in json.dumps(changes)
    status, log = p.request("GET", "/api/v1/audit?limit=500", token=admin)
    assert status == 200 and SECRET not in json.dumps(log)


def test_every_field_is_checked_and_a_refused_put_changes_nothing(portal: Portal) -> None:
    p = portal
    admin = p.token("root", "admin")
    status, before = p.request(
        "PUT", "/api/v1/workspaces/w", {"env": {"A": "1"}, "secrets": {"S": "abcdef"}}, token=admin
    )
    assert status == 200
    bad: list[tuple[dict[str, Any], str]] = [
        ({"image": "no-such-image:never"}, "image"),
        ({"image": "-rf"}, "image"),
        ({"image": 5}, "image"),
        ({"network": "host"}, "network"),
        ({"env": ["A=1"]}, "env"),
        ({"env": {"PATH": "/tmp"}}, "env.PATH"),
        ({"env": {"LD_PRELOAD": "x.so"}}, "env.LD_PRELOAD"),
        ({"env": {"BASHFLEET_JOB": "x"}}, "env.BASHFLEET_JOB"),
        ({"env": {"1A": "x"}}, "env.1A"),
        ({"env": {"A B": "x"}}, "env.A B"),
        ({"env": {"A": 1}}, "env.A"),
        ({"env": {"A": "x" * 5000}}, "env.A"),
        ({"env": {f"V{i}": "x" for i in range(65)}}, "env"),
        ({"secrets": {"HOME": "abcdef"}}, "secrets.HOME"),
        ({"secrets": {"T": "ab"}}, "secrets.T"),
        ({"secrets": {"T": 12345}}, "secrets.T"),
        ({"secrets": {"A": "abcdef"}}, "secrets.A"),  # A is in env
        ({"secrets": "x"}, "secrets"),
        ({"limits": {"fast": {}}}, "limits.fast"),
        ({"limits": {"safe": {"cpus": 0}}}, "limits.safe.cpus"),
        ({"limits": {"safe": {"cpus": 10_000}}}, "limits.safe.cpus"),
        ({"limits": {"safe": {"memory_bytes": 1.5}}}, "limits.safe.memory_bytes"),
        ({"limits": {"safe": {"pids": 10**9}}}, "limits.safe.pids"),
        ({"limits": {"safe": {"disk_bytes": True}}}, "limits.safe.disk_bytes"),
        ({"limits": {"safe": {"timeout_s": -1}}}, "limits.safe.timeout_s"),
        ({"limits": {"safe": {"nice": 1}}}, "limits.safe.nice"),
        ({"limits": {"safe": 3}}, "limits.safe"),
        ({"owner": {"user": "nobody-here"}}, "owner.user"),
        ({"owner": {"team": "no-team"}}, "owner.team"),
        ({"owner": {"group": "x"}}, "owner"),
        ({"owner": "root"}, "owner"),
        ({"colour": "red"}, "colour"),
    ]
    for body, field in bad:
        # a good change alongside the bad one: it must not be stored either
        status, answer = p.request(
            "PUT",
            "/api/v1/workspaces/w",
            {"network": "egress", "secrets": {"NEW": "abcdef"}, **body},
            token=admin,
        )
        assert status == 400, (body, answer)
        assert answer["error"] == "invalid_input" and field in answer["message"], (body, answer)
    status, after = p.request("GET", "/api/v1/workspaces/w", token=admin)
    assert status == 200 and after == before
    assert len(_audit(p, "workspace_changed", "w")) == 1
    for name in ("../x", "a%2Fb"):
        status, answer = p.request("PUT", f"/api/v1/workspaces/{name}", {}, token=admin)
        assert 400 <= status < 500, (name, answer)


def test_images_allowed_listed_and_chosen(portal: Portal) -> None:
    p = portal
    admin, op = p.token("root", "admin"), p.token("olga", "operator")
    status, images = p.request("GET", "/api/v1/images", token=op)
    assert status == 200
    default = next(i for i in images["items"] if i["image"] == "bashfleet-sandbox:latest")
    assert default["present"] is True and default["size_bytes"] > 0
    assert default["profile"] == "base"
    status, body = p.request("POST", "/api/v1/images", {"image": "busybox:1"}, token=op)
    assert status == 403
    status, body = p.request("POST", "/api/v1/images", {"image": "not-here-at-all:1"}, token=admin)
    assert status == 400 and "not in the local Docker engine" in body["message"]
    status, body = p.request(
        "POST", "/api/v1/images", {"image": "bashfleet-sandbox:latest"}, token=admin
    )
    assert status == 201 and body["added"] is True
    assert _audit(p, "image_allowed")[0]["target"] == "bashfleet-sandbox:latest"
    status, ws = p.request(
        "PUT", "/api/v1/workspaces/mine", {"image": "bashfleet-sandbox:latest"}, token=op
    )
    assert status == 200 and ws["image"] == "bashfleet-sandbox:latest"
    assert ws["owner"] == {"user": "olga"}  # made by this PUT: its maker owns it
    status, ws = p.request("PUT", "/api/v1/workspaces/mine", {"image": ""}, token=op)
    assert status == 200 and ws["image"] is None


def test_secret_values_are_on_no_command_line(portal: Portal) -> None:
    """While a batch of a workspace with a secret runs, no process on the machine (the
    server, its sandboxes, the commands) carries the value in its arguments."""
    import time

    import psutil

    p = portal
    op = p.token("olga", "operator")
    value = "argv-canary-7c1e55"
    status, _ = p.request("PUT", "/api/v1/workspaces/argv", {"secrets": {"TOKEN": value}}, token=op)
    assert status == 200
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": "sleep 2", "workspace": "argv"}, token=op
    )
    assert status == 201, batch
    assert p.wait_running(batch["id"], op, 1, timeout=30)
    seen = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            seen += 1
            assert value not in " ".join(proc.info["cmdline"] or []), proc
        time.sleep(0.2)
    assert seen > 0
    p.wait_batch(batch["id"], op)


def test_approval_settings_go_through_the_general_endpoint(portal: Portal) -> None:
    """`approve` and `two_person` are settings like the others (admins only): checked with
    the rest, all or nothing."""
    p = portal
    admin = p.token("root", "admin")
    op = p.token("olga", "operator")
    status, ws = p.request("PUT", "/api/v1/workspaces/gated", {"env": {"A": "1"}}, token=op)
    assert status == 200 and ws["approve"] == "none" and ws["two_person"] is False
    # the owner may change the rest, not the approvals
    status, err = p.request(
        "PUT", "/api/v1/workspaces/gated", {"env": {"A": "2"}, "approve": "dangerous"}, token=op
    )
    assert status == 403 and "approve" in err["message"]
    # a bad value names its field and changes nothing, the valid fields beside it included
    status, err = p.request(
        "PUT", "/api/v1/workspaces/gated", {"env": {"A": "3"}, "approve": "always"}, token=admin
    )
    assert status == 400 and "`approve`" in err["message"]
    status, ws = p.request(
        "PUT", "/api/v1/workspaces/gated", {"approve": "dangerous", "two_person": True}, token=admin
    )
    assert status == 200 and ws["approve"] == "dangerous" and ws["two_person"] is True
    status, got = p.request("GET", "/api/v1/workspaces/gated", token=op)
    assert got["env"] == {"A": "1"} and got["approve"] == "dangerous"
    status, approval = p.request("GET", "/api/v1/workspaces/gated/approval", token=admin)
    assert status == 200 and approval["approve"] == "dangerous" and approval["two_person"]
