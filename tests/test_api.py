"""End-to-end tests of the REST API against a real `bashfleet serve` process."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from tests.portal import Portal, alive, running_portal
from webapp.judging import JudgePool, TooComplex


@pytest.fixture
def portal(module_portal: Portal) -> Portal:
    """One portal for the module (tests that stop or kill theirs take ``fresh_portal``)."""
    return alive(module_portal)


def batch_count(p: Portal) -> int:
    with sqlite3.connect(p.data / "bashfleet.db") as db:
        return int(db.execute("select count(*) from batches").fetchone()[0])


def test_submit_run_statuses_and_output(any_portal: Portal) -> None:
    portal = any_portal
    token = portal.token("alice", "operator")
    status, batch = portal.request(
        "POST",
        "/api/v1/batches",
        {"script": "echo hi\nfalse\necho x > f.txt\ncat f.txt\n", "timeout_s": 30},
        token=token,
    )
    assert status == 201, batch
    assert batch["source"] == "api" and batch["schedule_id"] is None
    assert [c["class"] for c in batch["commands"]] == ["safe", "safe", "sequential", "safe"]
    assert batch["commands"][3]["needs"] == [2]
    done = portal.wait_batch(batch["id"], token)
    assert done["status"] == "failed"
    assert [c["status"] for c in done["commands"]] == [
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]
    assert done["commands"][1]["exit_code"] == 1
    cid = done["commands"][3]["id"]
    status, out = portal.request(
        "GET", f"/api/v1/batches/{batch['id']}/commands/{cid}/output", token=token
    )
    assert status == 200 and out["stdout"] == "x\n" and out["stderr"] == ""
    assert out["truncated"] is False
    status, page = portal.request("GET", "/api/v1/batches?limit=5", token=token)
    assert status == 200 and page["total"] == 1 and page["items"][0]["id"] == batch["id"]
    # digits that are not ASCII ("²" is a digit to str.isdigit, not to int) are bad input
    for query in ("limit=%C2%B2", "offset=%D9%A3", "schedule_id=%C2%B2"):
        status, body = portal.request("GET", f"/api/v1/batches?{query}", token=token)
        assert status == 400 and body["error"] == "invalid_input", (query, body)


def test_commands_list_and_classify(portal: Portal) -> None:
    token = portal.token("bob", "viewer")
    status, plan = portal.request(
        "POST", "/api/v1/classify", {"script": "echo a > x\ncat x\nrm -rf /"}, token=token
    )
    assert status == 200
    assert [s["class"] for s in plan["statements"]] == ["sequential", "safe", "dangerous"]
    assert plan["edges"][0]["before"] == 0 and plan["edges"][0]["after"] == 1
    op = portal.token("carol", "operator")
    status, batch = portal.request("POST", "/api/v1/batches", {"commands": ["ls", "pwd"]}, token=op)
    assert status == 201 and len(batch["commands"]) == 2


def test_auth_roles_and_audit(portal: Portal) -> None:
    viewer = portal.token("vera", "viewer")
    operator = portal.token("otto", "operator")
    assert portal.request("GET", "/api/v1/batches")[0] == 401
    assert portal.request("GET", "/api/v1/batches", token="bf_not-a-real-token")[0] == 401
    status, body = portal.request("POST", "/api/v1/batches", {"script": "ls"}, token=viewer)
    assert status == 403 and body["error"] == "forbidden"
    status, batch = portal.request(
        "POST", "/api/v1/batches", {"script": "sleep 30"}, token=operator
    )
    assert status == 201
    other = portal.token("olga", "operator")
    assert portal.request("POST", f"/api/v1/batches/{batch['id']}/cancel", token=other)[0] == 403
    status, _ = portal.request("POST", f"/api/v1/batches/{batch['id']}/cancel", token=operator)
    assert status == 200
    done = portal.wait_batch(batch["id"], operator)
    assert done["status"] == "cancelled"
    with sqlite3.connect(portal.data / "bashfleet.db") as db:
        actions = [r[0] for r in db.execute("select action from audit_events order by id")]
    assert {"batch_submitted", "batch_cancelled", "forbidden", "auth_failed"} <= set(actions)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "malformed_json"),
        (b'"a string"', "invalid_input"),
        (b'{"script": ""}', "invalid_input"),
        (b'{"script": "   \\n# only a comment\\n"}', "invalid_input"),
        (b'{"script": "ls\\u0000x"}', "invalid_input"),
        (b'{"script": "ls", "priority": 11}', "invalid_input"),
        (b'{"script": "ls", "surprise": 1}', "invalid_input"),
        (b'{"commands": []}', "invalid_input"),
        (b'{"script": "ls", "commands": ["ls"]}', "invalid_input"),
        (b'{"script": "ls", "workspace": "../escape"}', "invalid_input"),
        (b'{"script": "echo \'unterminated"}', None),  # stored, judged dangerous
        (b'{"script": "' + b"x" * (1 << 20) + b'"}', "invalid_input"),
    ],
)
def test_bad_input_is_a_json_error_and_stores_nothing(
    portal: Portal,
    raw: bytes,
    code: str | None,
) -> None:
    token = portal.token("alice", "operator")
    before = batch_count(portal)
    status, body = portal.request("POST", "/api/v1/batches", raw=raw, token=token)
    if code is None:
        assert status == 201 and body["commands"][0]["class"] == "dangerous"
        return
    assert status in (400, 413), body
    assert isinstance(body, dict) and body["error"] in (code, "request_entity_too_large")
    assert "Traceback" not in body["message"]
    assert batch_count(portal) == before


def test_openapi_and_health(portal: Portal) -> None:
    status, doc = portal.request("GET", "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/batches" in doc["paths"]
    status, health = portal.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    status, body = portal.request("GET", "/api/v1/nowhere")
    assert status == 404 and body["error"] == "not_found"


def test_kill_9_then_restart_marks_interrupted_and_leaves_no_process(
    fresh_portal: Portal,
) -> None:
    portal = fresh_portal
    token = portal.token("alice", "operator")
    status, batch = portal.request(
        "POST",
        "/api/v1/batches",
        {"script": "sleep 300.301\nsleep 300.302\nsetsid sleep 300.303 & sleep 300.304\n"},
        token=token,
    )
    assert status == 201
    portal.wait_running(batch["id"], token, 3, timeout=20)
    portal.crash()  # the process that runs the scheduler dies without warning
    portal.start()
    done = portal.wait_batch(batch["id"], token, timeout=10)
    assert done["status"] == "interrupted"
    assert {c["status"] for c in done["commands"]} <= {"interrupted", "succeeded"}
    time.sleep(0.3)
    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if any(a.startswith("300.30") for a in (p.info["cmdline"] or []))
    ]
    assert left == []


def test_sigterm_drains_and_interrupts_what_remains(fresh_portal: Portal) -> None:
    portal = fresh_portal
    token = portal.token("alice", "operator")
    status, batch = portal.request(
        "POST", "/api/v1/batches", {"script": "sleep 400.401\necho quick\n"}, token=token
    )
    assert status == 201
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _s, b = portal.request("GET", f"/api/v1/batches/{batch['id']}", token=token)
        if b["commands"][0]["status"] == "running" and b["commands"][1]["status"] == "succeeded":
            break
        time.sleep(0.1)
    started = time.monotonic()
    portal.stop(signal.SIGTERM)
    assert time.monotonic() - started < 25  # 10 s of grace, then the rest is interrupted
    portal.start()
    done = portal.wait_batch(batch["id"], token, timeout=5)
    assert [c["status"] for c in done["commands"]] == ["interrupted", "succeeded"]
    assert done["status"] == "interrupted"
    assert not [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if "400.401" in (p.info["cmdline"] or [])
    ]


def test_on_failure_deadline_and_rerun(portal: Portal) -> None:
    token = portal.token("alice", "operator")
    # the example: `git status` outside a repository (a failing read of the whole
    # folder) only has to be waited for; `false > b.txt` fails to write what `cat` reads
    script = (
        "ls . | grep -qx .git\nmkdir out && echo hi > out/a.txt\ncat out/a.txt\n"
        "false > b.txt\ncat b.txt\n"
    )
    status, batch = portal.request("POST", "/api/v1/batches", {"script": script}, token=token)
    assert status == 201, batch
    assert (batch["on_failure"], batch["deadline_s"], batch["rerun_of"]) == (
        "skip_dependents",
        None,
        None,
    )
    done = portal.wait_batch(batch["id"], token)
    statuses = [c["status"] for c in done["commands"]]
    assert statuses == ["failed", "succeeded", "succeeded", "failed", "skipped"]
    assert done["commands"][4]["reason"] == "reads b.txt, which #4 failed to write"

    status, again = portal.request(
        "POST", f"/api/v1/batches/{batch['id']}/rerun", {"only": "failed"}, token=token
    )
    assert status == 201, again
    assert again["rerun_of"] == batch["id"] and again["workspace"] == batch["workspace"]
    assert [c["command"] for c in again["commands"]] == [
        "ls . | grep -qx .git",
        "false > b.txt",
        "cat b.txt",
    ]
    status, whole = portal.request("POST", f"/api/v1/batches/{batch['id']}/rerun", token=token)
    assert status == 201 and whole["command_count"] == 5 and whole["rerun_of"] == batch["id"]

    status, halted = portal.request(
        "POST", "/api/v1/batches", {"script": "set -eu\nfalse\ncat missing"}, token=token
    )
    assert status == 201 and halted["on_failure"] == "halt"
    status, told = portal.request(
        "POST", "/api/v1/batches", {"script": "set -e\nls", "on_failure": "continue"}, token=token
    )
    assert status == 201 and told["on_failure"] == "continue"

    status, late = portal.request(
        "POST", "/api/v1/batches", {"script": "sleep 30\nsleep 31", "deadline_s": 1}, token=token
    )
    assert status == 201 and late["deadline_s"] == 1
    status, body = portal.request("POST", f"/api/v1/batches/{late['id']}/rerun", token=token)
    assert status == 409 and "still" in body["message"]
    ended = portal.wait_batch(late["id"], token, timeout=20)
    assert ended["status"] == "timed_out"
    assert {c["status"] for c in ended["commands"]} == {"timed_out"}
    assert all("deadline (1 s) passed" in c["reason"] for c in ended["commands"])

    bad = [
        ({"script": "ls", "on_failure": "stop"}, "on_failure"),
        ({"script": "ls", "on_failure": 1}, "on_failure"),
        ({"script": "ls", "deadline_s": 0}, "deadline_s"),
        ({"script": "ls", "deadline_s": "5"}, "deadline_s"),
    ]
    for body_in, field_name in bad:
        status, body = portal.request("POST", "/api/v1/batches", body_in, token=token)
        assert status == 400 and field_name in body["message"], (body_in, body)
    rerun = f"/api/v1/batches/{batch['id']}/rerun"
    status, body = portal.request("POST", rerun, {"only": "some"}, token=token)
    assert status == 400 and "only" in body["message"]
    status, body = portal.request("POST", rerun, {"only": "failed", "x": 1}, token=token)
    assert status == 400 and "x" in body["message"]
    status, body = portal.request("POST", "/api/v1/batches/nope/rerun", token=token)
    assert status == 404, body
    viewer = portal.token("vic", "viewer")
    assert portal.request("POST", rerun, token=viewer)[0] == 403


def test_slow_and_excess_connections_hold_no_thread(tmp_path: Path) -> None:
    """Half-sent requests wait in the event loop (408 after the header deadline) while
    /healthz is answered; past the per-address cap, 503; a body over the limit, 413."""
    env = {"BASHFLEET_HEADER_TIMEOUT_S": "2", "BASHFLEET_CONNECTIONS_PER_ADDRESS": "40"}
    with running_portal(tmp_path, env=env, extra=["--isolation", "local", "--threads", "8"]) as p:
        slow = []
        for _ in range(30):  # more than the 8 threads
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        t0 = time.monotonic()
        for _ in range(5):
            assert p.request("GET", "/healthz")[0] == 200
        assert time.monotonic() - t0 < 2
        extra = [socket.create_connection(("127.0.0.1", p.port), timeout=10) for _ in range(12)]
        assert extra[-1].recv(100).startswith(b"HTTP/1.1 503")
        for s in extra:
            s.close()
        time.sleep(0.2)  # the server sees them go
        big = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        big.sendall(
            b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"
        )
        assert big.recv(100).startswith(b"HTTP/1.1 413")
        assert slow[0].recv(100).startswith(b"HTTP/1.1 408")
        piped = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        piped.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)  # pipelined
        answers, deadline = b"", time.monotonic() + 4
        while answers.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            answers += piped.recv(65536)
        assert answers.count(b"HTTP/1.1 200") == 2
        piped.close()
        for s in (*slow, big):
            s.close()


def test_a_judge_past_its_deadline_is_replaced() -> None:
    """Judging runs in other processes; one that passes its deadline is killed, the
    caller gets TooComplex, and the next script is judged by a fresh judge."""
    pool = JudgePool(size=1)
    try:
        heavy = "\n".join(f"cat f{i} > g{i} && grep x g{i} | sort -o h{i}" for i in range(5000))
        t0 = time.monotonic()
        with pytest.raises(TooComplex, match=r"within 0\.05 s"):
            pool.judge(heavy, deadline_s=0.05)
        assert time.monotonic() - t0 < 3
        judged = pool.judge("ls\nmake", deadline_s=30)
        assert [j.verdict.cls.value for j in judged.judged] == ["safe", "conditional"]
    finally:
        pool.close()
