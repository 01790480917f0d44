"""Socket.IO live streams against a real `bashfleet serve` (gunicorn, one worker, threads):
authentication on connect, same-origin only, exactly-once output with backlog and
resume, statuses, logout cutting the stream, metrics for everyone."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import socketio
import websocket

from tests.portal import Portal, alive


@pytest.fixture
def portal(module_portal: Portal) -> Portal:
    """One portal for the module: every test uses users of its own (none is changed by
    another test), so sharing it costs no independence, and saves a start per test."""
    return alive(module_portal)


LINES = 'for i in $(seq 1 40); do echo "line $i"; sleep 0.1; done'


class Watcher:
    """A python-socketio client that records what it receives."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.sio = socketio.Client(reconnection=False)
        self.output: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.sio.on("command_output", self.output.append)
        self.sio.on("command_status", self.statuses.append)
        self.sio.on("batch_status", self.batches.append)
        self.sio.on("metrics", self.metrics.append)
        self.sio.on("disconnect", lambda *a: self.disconnected.set())

    def connect(
        self,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        transport: str = "websocket",
    ) -> None:
        # over WebSocket the client sends this origin itself, as a browser on the page would
        self.sio.connect(
            self.portal.url,
            headers=headers or {},
            auth={"token": token} if token else None,
            transports=[transport],
            wait_timeout=10,
        )

    def subscribe(self, batch_id: str, offsets: dict[str, Any] | None = None) -> dict[str, Any]:
        ack: dict[str, Any] = self.sio.call(
            "subscribe", {"batch_id": batch_id, "offsets": offsets or {}}, timeout=10
        )
        return ack

    def text(self, command_id: str, stream: str = "stdout") -> str:
        """The stream reassembled by offset; fails on any gap or overlap."""
        parts = sorted(
            (m for m in self.output if m["command_id"] == command_id and m["stream"] == stream),
            key=lambda m: m["offset"],
        )
        at, out = (parts[0]["offset"] if parts else 0), []
        for m in parts:
            assert m["offset"] == at, f"gap or repeat at byte {at}: got offset {m['offset']}"
            out.append(_raw(m))
            at += m["nbytes"]
        return b"".join(out).decode("utf-8", "replace")

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


def _raw(m: dict[str, Any]) -> bytes:
    """A message's bytes: text, or base64 for what is not valid UTF-8 (never both)."""
    assert ("data" in m) != ("data_b64" in m), m
    raw = base64.b64decode(m["data_b64"]) if "data_b64" in m else m["data"].encode()
    assert len(raw) == m["nbytes"]
    return raw


@pytest.fixture
def watchers(portal: Portal) -> Iterator[list[Watcher]]:
    made: list[Watcher] = []
    yield made
    for w in made:
        w.close()


def _watcher(portal: Portal, made: list[Watcher]) -> Watcher:
    w = Watcher(portal)
    made.append(w)
    return w


def _submit(portal: Portal, token: str, script: str) -> dict[str, Any]:
    status, batch = portal.request("POST", "/api/v1/batches", {"script": script}, token=token)
    assert status == 201, batch
    return batch


def _wait(predicate: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_socket_without_credentials_is_refused(portal: Portal, watchers: list[Watcher]) -> None:
    w = _watcher(portal, watchers)
    with pytest.raises(socketio.exceptions.ConnectionError):
        w.connect()
    w2 = _watcher(portal, watchers)
    with pytest.raises(socketio.exceptions.ConnectionError):
        w2.connect(token="bf_not-a-real-token")


def test_a_foreign_origin_is_refused(portal: Portal, watchers: list[Watcher]) -> None:
    token = portal.token("olga", "operator")
    w = _watcher(portal, watchers)
    with pytest.raises(socketio.exceptions.ConnectionError):
        w.connect(token=token, headers={"Origin": "http://evil.example"}, transport="polling")
    ok = _watcher(portal, watchers)  # the same token from the portal's own origin is fine
    ok.connect(token=token, headers={"Origin": portal.url}, transport="polling")
    assert ok.sio.connected


def test_output_streams_live_exactly_once_with_statuses(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("olga", "operator")
    w = _watcher(portal, watchers)
    w.connect(token=token)
    batch = _submit(portal, token, LINES + "\necho other >&2")
    ack = w.subscribe(batch["id"])
    assert ack["ok"] and ack["commands"] == 2
    first, second = batch["commands"]
    # lines arrive while the command still runs
    assert _wait(lambda: "line 5\n" in w.text(first["id"]))
    done = portal.request("GET", f"/api/v1/batches/{batch['id']}", token=token)[1]
    assert done["commands"][0]["status"] == "running"
    assert _wait(lambda: any(b["batch_id"] == batch["id"] for b in w.batches))
    assert w.text(first["id"]) == "".join(f"line {i}\n" for i in range(1, 41))
    assert w.text(second["id"], "stderr") == "other\n"
    finals = {s["command_id"]: s for s in w.statuses if s["final"]}
    assert {finals[c["id"]]["status"] for c in batch["commands"]} == {"succeeded"}
    assert w.batches[-1]["status"] == "succeeded"


def test_a_late_subscriber_gets_the_backlog_then_live_lines(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("olga", "operator")
    batch = _submit(portal, token, LINES)
    command = batch["commands"][0]["id"]
    assert portal.wait_running(batch["id"], token, 1)
    time.sleep(0.6)  # some lines are printed before anyone watches
    w = _watcher(portal, watchers)
    w.connect(token=token)
    ack = w.subscribe(batch["id"])
    # the answer carries the engine's statuses, which can be newer than the database's
    assert {s["command_id"] for s in ack["statuses"]} == {command}
    assert ack["statuses"][0]["status"] in ("running", "succeeded")
    assert _wait(lambda: any(b["batch_id"] == batch["id"] for b in w.batches))
    assert w.text(command) == "".join(f"line {i}\n" for i in range(1, 41))


def test_a_reconnecting_client_resumes_from_its_offsets(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("olga", "operator")
    batch = _submit(portal, token, LINES)
    command = batch["commands"][0]["id"]
    w = _watcher(portal, watchers)
    w.connect(token=token)
    w.subscribe(batch["id"])
    assert _wait(lambda: "line 8\n" in w.text(command))
    w.close()
    have = w.text(command)
    time.sleep(0.5)  # lines printed while disconnected must not be lost
    again = _watcher(portal, watchers)
    again.connect(token=token)
    again.subscribe(batch["id"], {command: {"stdout": len(have.encode())}})
    assert _wait(lambda: any(b["batch_id"] == batch["id"] for b in again.batches))
    rest = again.text(command)
    assert again.output[0]["offset"] == len(have.encode())  # nothing repeated
    assert have + rest == "".join(f"line {i}\n" for i in range(1, 41))  # nothing lost


def test_subscribing_to_a_missing_batch_is_an_error(
    portal: Portal, watchers: list[Watcher]
) -> None:
    w = _watcher(portal, watchers)
    w.connect(token=portal.token("vic", "viewer"))
    assert w.subscribe("b_does_not_exist")["error"] == "not_found"
    assert w.sio.call("subscribe", "not an object", timeout=5)["error"] == "invalid_input"


def test_everyone_connected_receives_metrics(portal: Portal, watchers: list[Watcher]) -> None:
    w = _watcher(portal, watchers)
    w.connect(token=portal.token("vic", "viewer"))
    assert _wait(lambda: len(w.metrics) >= 2, timeout=5)
    m = w.metrics[-1]
    assert set(m["pools"]) == {"safe", "conditional", "sequential", "dangerous"}
    assert 0 <= m["host"]["cpu_percent"] <= 100
    assert "p95" in m["duration_s"] and isinstance(m["scaling"], list)


def _login(portal: Portal, name: str, password: str) -> tuple[str, str]:
    req = urllib.request.Request(
        portal.url + "/api/v1/session",
        data=json.dumps({"name": name, "password": password}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
        return cookie, json.loads(r.read())["csrf_token"]


def _session_request(portal: Portal, method: str, path: str, cookie: str, csrf: str) -> int:
    req = urllib.request.Request(
        portal.url + path, method=method, headers={"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_logout_cuts_the_stream_and_the_old_cookie_stays_dead(
    portal: Portal, watchers: list[Watcher]
) -> None:
    cookie, csrf = _login(portal, "admin", "first-run-password")
    w = _watcher(portal, watchers)
    w.connect(headers={"Cookie": cookie})
    token = portal.token("olga", "operator")
    batch = _submit(portal, token, "for i in $(seq 1 100); do echo $i; sleep 0.05; done")
    assert w.subscribe(batch["id"])["ok"]
    assert _wait(lambda: len(w.output) > 2)
    assert _session_request(portal, "DELETE", "/api/v1/session", cookie, csrf) == 200
    assert w.disconnected.wait(5), "the stream went on after logout"
    seen = len(w.output)
    time.sleep(0.5)
    assert len(w.output) == seen
    # a copy of the cookie is refused: over HTTP and for a new socket
    assert _session_request(portal, "GET", "/api/v1/session", cookie, csrf) == 401
    again = _watcher(portal, watchers)
    with pytest.raises(socketio.exceptions.ConnectionError):
        again.connect(headers={"Cookie": cookie})


def test_a_flood_is_thinned_for_the_browser_but_ends_on_the_last_line(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("olga", "operator")
    w = _watcher(portal, watchers)
    w.connect(token=token)
    script = "sleep 0.5 && seq 1 3000000"  # about 21 MB as fast as the machine can print
    batch = _submit(portal, token, script)
    command = batch["commands"][0]["id"]
    w.subscribe(batch["id"])
    assert _wait(lambda: any(b["batch_id"] == batch["id"] for b in w.batches), timeout=60)
    mine = [m for m in w.output if m["command_id"] == command]
    received = sum(m["nbytes"] for m in mine)
    stored_batch = portal.wait_batch(batch["id"], token)  # the database lags the stream a little
    total = stored_batch["commands"][0]["stdout_bytes"]
    assert total > 10_000_000
    assert received < total / 4, f"{received} of {total} bytes went to the client"
    ends = [m["offset"] + m["nbytes"] for m in mine]
    starts = [m["offset"] for m in mine]
    assert all(s >= e for s, e in zip(starts[1:], ends, strict=False))  # never repeated
    assert ends[-1] == total  # the client sees the end of the output
    last = mine[-1]
    path = f"/api/v1/batches/{batch['id']}/commands/{command}/output"
    stored = portal.request(
        "GET", f"{path}?offset={last['offset']}&limit={last['nbytes']}", token=token
    )[1]
    assert stored["stdout"] == last["data"]  # what the client shows last is the stored tail
    assert all(m["nbytes"] <= 64 * 1024 + 4096 for m in mine)


def test_a_revoked_token_cannot_subscribe_and_is_cut(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("rita", "operator")
    w = _watcher(portal, watchers)
    w.connect(token=token)
    batch = _submit(portal, token, "echo hi")
    assert w.subscribe(batch["id"])["ok"]
    status, tokens = portal.request("GET", "/api/v1/tokens", token=token)
    assert status == 200
    mine = tokens["items"] if isinstance(tokens, dict) else tokens
    for t in mine:
        assert portal.request("DELETE", f"/api/v1/tokens/{t['id']}", token=token)[0] == 200
        break
    # cut at once, without the client doing anything (not only at its next subscribe)
    assert w.disconnected.wait(3)


def test_a_disabled_user_is_cut_at_once(portal: Portal, watchers: list[Watcher]) -> None:
    token = portal.token("dora", "operator")
    admin = portal.token("boss", "admin")
    w = _watcher(portal, watchers)
    w.connect(token=token)
    users = portal.request("GET", "/api/v1/users", token=admin)[1]["items"]
    dora = next(u for u in users if u["name"] == "dora")
    status, _ = portal.request(
        "PATCH", f"/api/v1/users/{dora['id']}", {"disabled": True}, token=admin
    )
    assert status == 200
    assert w.disconnected.wait(3)


def test_a_socket_that_never_authenticates_is_closed_after_the_deadline(portal: Portal) -> None:
    # attack: bare engine.io transports that never send the Socket.IO CONNECT, each holding
    # a server thread; the auth deadline (5 s by default) closes them
    ws = websocket.create_connection(
        portal.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
        origin=portal.url,
        timeout=15,
    )
    opened = time.monotonic()
    assert ws.recv().startswith("0{")  # the engine.io handshake
    with contextlib.suppress(websocket.WebSocketException, OSError):
        while True:  # a ping (after 10 s) would come later than the deadline
            if ws.recv() in ("", None):
                break
    closed_after = time.monotonic() - opened
    assert 4.5 <= closed_after <= 9, closed_after  # 5 s, up to half as long again


def test_caps_per_user_and_per_socket(portal: Portal, watchers: list[Watcher]) -> None:
    token = portal.token("cappy", "operator")
    for _ in range(8):
        _watcher(portal, watchers).connect(token=token)
    extra = _watcher(portal, watchers)
    refusals: list[Any] = []
    extra.sio.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        extra.connect(token=token)
    assert "too many live connections" in str(refusals), refusals
    watchers.pop().close()
    watchers.pop().close()
    w = _watcher(portal, watchers)
    w.connect(token=token)  # room again once one is closed
    batches = [_submit(portal, token, f"echo {i}")["id"] for i in range(17)]
    for b in batches[:16]:
        assert w.subscribe(b)["ok"]
    assert w.subscribe(batches[16])["error"] == "too_many"
    w.sio.call("unsubscribe", {"batch_id": batches[0]}, timeout=10)
    assert w.subscribe(batches[16])["ok"]


def test_output_that_is_not_utf8_is_sent_once_as_base64(
    portal: Portal, watchers: list[Watcher]
) -> None:
    token = portal.token("bina", "operator")
    w = _watcher(portal, watchers)
    w.connect(token=token)
    batch = _submit(portal, token, "sleep 1 && printf 'ok \\377\\376\\001 end'")
    assert w.subscribe(batch["id"])["ok"]
    cid = batch["commands"][0]["id"]
    assert _wait(lambda: sum(m["nbytes"] for m in w.output) >= 10)
    raw = b"".join(_raw(m) for m in w.output if m["command_id"] == cid)
    assert raw == b"ok \xff\xfe\x01 end"
    assert all("data" not in m for m in w.output)  # one base64 copy, no U+FFFD escapes


def test_a_password_change_cuts_the_other_sessions_sockets_but_not_this_ones(
    portal: Portal, watchers: list[Watcher]
) -> None:
    # attack: a stolen session keeps watching after its victim changed the password
    admin = portal.token("boss", "admin")
    token = portal.token("pam", "viewer")
    users = portal.request("GET", "/api/v1/users", token=admin)[1]["items"]
    pam = next(u for u in users if u["name"] == "pam")
    set_to = {"password": "pams-first-pass"}
    assert portal.request("POST", f"/api/v1/users/{pam['id']}/password", set_to, token=admin)[0]
    mine, csrf = _login(portal, "pam", "pams-first-pass")
    stolen, _ = _login(portal, "pam", "pams-first-pass")
    here, thief, program = (_watcher(portal, watchers) for _ in range(3))
    here.connect(headers={"Cookie": mine})
    thief.connect(headers={"Cookie": stolen})
    program.connect(token=token)
    batch = _submit(portal, portal.token("olga", "operator"), LINES)
    for w in (here, thief, program):
        assert w.subscribe(batch["id"])["ok"]
    change = urllib.request.Request(
        portal.url + "/api/v1/session/password",
        data=json.dumps(
            {"old_password": "pams-first-pass", "new_password": "pams-new-pass"}
        ).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Cookie": mine, "X-CSRF-Token": csrf},
    )
    with urllib.request.urlopen(change, timeout=10) as r:
        renewed = r.headers["Set-Cookie"].split(";")[0]
        new_csrf = json.loads(r.read())["csrf_token"]
    assert thief.disconnected.wait(3), "the other session's socket outlived the change"
    seen = len(here.output)
    assert _wait(lambda: len(here.output) > seen + 3, timeout=5)  # this session streams on
    assert here.sio.connected and program.sio.connected  # tokens do not hang on the password
    # the kept socket belongs to the renewed session now: its logout cuts it
    assert _session_request(portal, "DELETE", "/api/v1/session", renewed, new_csrf) == 200
    assert here.disconnected.wait(3)
    # an admin's reset cuts every socket of the user, token ones included
    assert portal.request("POST", f"/api/v1/users/{pam['id']}/password", {}, token=admin)[0] == 200
    assert program.disconnected.wait(3)
