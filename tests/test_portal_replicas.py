"""Several portal processes behind a load balancer: a control plane (`serve --broker`) and a
web replica (`serve --broker --replica`) on one database and data folder, a real Redis and
a real worker node. Live streams on the replica are exactly-once, metrics come once a
second, cuts cross processes, and without a control plane state changes answer 503."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import socketio

from sandbox.cluster.events import (
    ADVERT,
    STREAM,
    Advertiser,
    EventRelay,
    RelayReader,
    SignedJson,
    SocketsCut,
    control_url,
    encode,
)
from sandbox.cluster.signing import sign
from sandbox.events import BatchFinished, CommandStatusChanged, Event, OutputReceived
from sandbox.model import Status
from tests.cluster_fixtures import (
    CLUSTER_KEY,
    RedisServer,
    WorkerNode,
    cluster_env,
    wait_until,
)
from tests.mcp_helpers import ok, run_async
from tests.portal import ADMIN_PASSWORD, Portal, free_port
from tests.test_mcp_http import http_session
from webapp.cli import _one_control_plane

SCRIPT = '{ for i in $(seq 1 60); do echo "line $i"; sleep 0.02; done; echo done >&2; }\n'
WANT = "".join(f"line {i}\n" for i in range(1, 61))


class Patient(Portal):
    """A portal process that may take up to 90 s to start (the shared machine is busy),
    logging to its own file in the shared data folder."""

    start_timeout_s = 90.0


class Replica(Patient):
    log_name = "replica.log"


class Watcher:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sio = socketio.Client(reconnection=False)
        self.output: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.batches: list[dict[str, Any]] = []
        self.metrics: list[float] = []
        self.cut: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.sio.on("command_output", self.output.append)
        self.sio.on("command_status", self.statuses.append)
        self.sio.on("batch_status", self.batches.append)
        self.sio.on("metrics", lambda _m: self.metrics.append(time.monotonic()))
        self.sio.on("cut", self.cut.append)
        self.sio.on("disconnect", lambda *a: self.disconnected.set())

    def connect(self, *, token: str | None = None, cookie: str | None = None) -> None:
        self.sio.connect(
            self.url,
            headers={"Cookie": cookie} if cookie else {},
            auth={"token": token} if token else None,
            transports=["websocket"],
            wait_timeout=10,
        )

    def subscribe(self, batch_id: str) -> dict[str, Any]:
        ack: dict[str, Any] = self.sio.call("subscribe", {"batch_id": batch_id}, timeout=10)
        return ack

    def text(self, command_id: str, stream: str = "stdout") -> str:
        """Reassembled by offset; fails on any gap or repeat."""
        parts = sorted(
            (m for m in self.output if m["command_id"] == command_id and m["stream"] == stream),
            key=lambda m: m["offset"],
        )
        at, out = 0, []
        for m in parts:
            assert m["offset"] == at, f"gap or repeat at byte {at}: got offset {m['offset']}"
            out.append(m["data"])
            at += m["nbytes"]
        return "".join(out)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Portal, Replica]]:
    """A control plane, a replica on its data folder and database, one worker node."""
    root = tmp_path_factory.mktemp("replicas")
    server = RedisServer(root / "redis")
    server.start()
    env = cluster_env(BASHFLEET_SUBMIT_RATE="1000", BASHFLEET_ADMIN_PASSWORD=ADMIN_PASSWORD)
    node = WorkerNode("n1", root / "n1", server.url, env)
    data = root / "data"
    data.mkdir()
    control = Patient(data=data, port=free_port(), env=env, extra=["--broker", server.url])
    replica = Replica(
        data=data, port=free_port(), env=env, extra=["--broker", server.url, "--replica"]
    )
    try:
        node.start()
        control.start()
        replica.start()
        yield control, replica
    finally:
        replica.stop()
        control.stop()
        node.stop()
        server.stop()


def test_a_batch_submitted_through_the_replica_streams_exactly_once(
    pair: tuple[Portal, Replica],
) -> None:
    control, replica = pair
    token = control.token("ops", "operator")
    early, late, there = Watcher(replica.url), Watcher(replica.url), Watcher(control.url)
    try:
        early.connect(token=token)
        there.connect(token=token)  # the same batch followed on the control plane too
        status, batch = replica.request("POST", "/api/v1/batches", {"script": SCRIPT}, token=token)
        assert status == 201, (batch, replica.log(), control.log())  # forwarded, answered as is
        assert early.subscribe(batch["id"])["ok"] and there.subscribe(batch["id"])["ok"]
        (command,) = batch["commands"]
        for w in (early, there):  # each process serves its own sockets, each byte once
            wait_until(lambda w=w: w.batches, 60, "batch_status: " + control.log())
            assert [b["status"] for b in w.batches] == ["succeeded"], w.batches
            assert w.text(command["id"]) == WANT
            assert w.text(command["id"], "stderr") == "done\n"
            finals = [s for s in w.statuses if s["final"]]
            assert [s["status"] for s in finals] == ["succeeded"], w.statuses

        # a late subscriber on the replica gets the backlog, once
        late.connect(token=token)
        ack = late.subscribe(batch["id"])
        assert ack["ok"] and ack["status"] == "succeeded", ack
        wait_until(lambda: late.text(command["id"]) == WANT, 10, "the backlog")
        time.sleep(0.3)
        assert late.text(command["id"]) == WANT and late.text(command["id"], "stderr") == "done\n"
        # the replica's reads come from the shared database and output files
        status, out = replica.request(
            "GET", f"/api/v1/batches/{batch['id']}/commands/{command['id']}/output", token=token
        )
        assert status == 200 and out["stdout"] == WANT, out
    finally:
        for w in (early, late, there):
            w.close()


def test_metrics_arrive_once_a_second_on_both_processes(pair: tuple[Portal, Replica]) -> None:
    control, replica = pair
    token = control.token("ops", "operator")
    on_replica, on_control = Watcher(replica.url), Watcher(control.url)
    try:
        on_replica.connect(token=token)  # alone: the control plane has no socket of its own
        time.sleep(4.2)
        # once a second (not twice: only the control plane sends them, to every process)
        assert 3 <= len(on_replica.metrics) <= 5, len(on_replica.metrics)
        on_control.connect(token=token)
        time.sleep(2.2)
        assert 1 <= len(on_control.metrics) <= 3, len(on_control.metrics)
        assert 5 <= len(on_replica.metrics) <= 8, len(on_replica.metrics)
        status, summary = replica.request("GET", "/api/v1/metrics", token=token)
        assert status == 200 and "live" in summary  # a read that needs the engine: forwarded
    finally:
        on_replica.close()
        on_control.close()


def test_only_signed_broadcasts_reach_the_browsers(pair: tuple[Portal, Replica]) -> None:
    """Socket.IO's Redis queue carries messages signed with the cluster key: one pushed
    into Redis by a client with Redis access alone reaches no browser."""
    control, replica = pair
    token = control.token("ops", "operator")
    watcher = Watcher(replica.url)
    broker = redis.Redis.from_url(replica.extra[1])

    def emit(reason: str) -> dict[str, Any]:
        return {
            "method": "emit",
            "event": "cut",
            "data": [{"reason": reason}],
            "namespace": "/",
            "room": None,
            "skip_sid": None,
            "callback": None,
            "host_id": "intruder",
        }

    try:
        watcher.connect(token=token)
        broker.publish("bashfleet-socketio", json.dumps(emit("plain")))
        bad = json.loads(SignedJson(b"x" * 32).dumps(emit("wrong key")))
        broker.publish("bashfleet-socketio", json.dumps(bad))
        broker.publish("bashfleet-socketio", SignedJson(CLUSTER_KEY.encode()).dumps(emit("good")))
        wait_until(lambda: watcher.cut, 5, "the signed broadcast")
        time.sleep(0.3)
        assert [c["reason"] for c in watcher.cut] == ["good"], watcher.cut
    finally:
        watcher.close()


def test_the_replica_reads_as_the_control_plane_does(pair: tuple[Portal, Replica]) -> None:
    control, replica = pair
    admin = control.token("boss", "admin")
    for path in (
        "/api/v1/batches?limit=5",
        "/api/v1/workspaces",
        "/api/v1/schedules",
        "/api/v1/templates",
        "/api/v1/webhooks",
        "/api/v1/approvals",
        "/api/v1/users",
        "/api/v1/teams",
        "/api/v1/images",
        "/api/v1/session/notify",
        "/api/v1/nodes",  # needs the engine: forwarded
    ):
        here, there = (
            control.request("GET", path, token=admin),
            replica.request("GET", path, token=admin),
        )
        if path == "/api/v1/nodes":  # a heartbeat may land between the two reads
            for answer in (here, there):
                for n in answer[1].get("nodes", []):
                    for moving in ("free_memory", "last_seen", "running"):
                        n.pop(moving, None)
        assert here[0] == 200 and there == here, (path, here, there)
    tab = _login(replica, "admin", ADMIN_PASSWORD)
    for page in ("/", "/history", "/schedules", "/workspaces", "/admin"):
        answer = tab.get(replica.url + page, allow_redirects=False)
        assert answer.status_code == 200 and "text/html" in answer.headers["Content-Type"], page


def test_an_upload_and_a_download_stream_through_the_replica(
    pair: tuple[Portal, Replica],
) -> None:
    """Bodies larger than the portal's 2 MB request cap go through as streams, both ways."""
    control, replica = pair
    auth = {"Authorization": f"Bearer {control.token('ops', 'operator')}"}
    blob = bytes(range(256)) * (12 << 10)  # 3 MiB
    made = requests.put(replica.url + "/api/v1/workspaces/up-ws", json={}, headers=auth)
    assert made.status_code in (200, 201), made.text
    url = replica.url + "/api/v1/workspaces/up-ws/files"
    sent = requests.put(url + "?name=big.bin", data=blob, headers=auth, timeout=30)
    assert sent.status_code == 201, sent.text
    got = requests.get(url + "?path=big.bin", headers=auth, timeout=30, stream=True)
    assert got.status_code == 200 and got.headers["Content-Length"] == str(len(blob))
    assert got.raw.read() == blob


def _login(portal: Portal, name: str, password: str) -> requests.Session:
    tab = requests.Session()
    answer = tab.post(portal.url + "/api/v1/session", json={"name": name, "password": password})
    assert answer.status_code == 200, answer.text
    tab.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return tab


def test_a_password_change_on_one_process_cuts_sockets_on_the_other(
    pair: tuple[Portal, Replica],
) -> None:
    control, replica = pair
    added = control.cli(
        "user", "add", "pat", "--role", "operator", "--password-stdin", input="first-pass-1\n"
    )
    assert added.returncode == 0, added.stderr
    on_replica = _login(replica, "pat", "first-pass-1")  # login forwarded: its cookie works
    cookie = "; ".join(f"{k}={v}" for k, v in on_replica.cookies.items())
    # a browser's change through the replica: its cookie and CSRF token go through unchanged
    made = on_replica.post(replica.url + "/api/v1/batches", json={"script": "true"})
    assert made.status_code == 201 and made.json()["user"] == "pat", made.text
    # the replica keeps no caller's cookie: a forwarded call without credentials has none
    bare = requests.get(replica.url + "/api/v1/metrics", timeout=10)
    assert bare.status_code == 401, bare.text
    watcher = Watcher(replica.url)
    try:
        watcher.connect(cookie=cookie)
        assert watcher.sio.connected
        here = _login(control, "pat", "first-pass-1")
        changed = here.post(
            control.url + "/api/v1/session/password",
            json={"old_password": "first-pass-1", "new_password": "second-pass-2"},
        )
        assert changed.status_code == 200, changed.text
        assert watcher.disconnected.wait(3), "the replica's socket was not cut"
        assert watcher.cut and "password" in watcher.cut[0]["reason"], watcher.cut
        assert on_replica.get(replica.url + "/api/v1/session").status_code == 401
    finally:
        watcher.close()


def test_mcp_runs_through_the_replica(pair: tuple[Portal, Replica]) -> None:
    """/mcp is forwarded whole: the session, the tool call and its streamed progress."""
    control, replica = pair
    token = control.token("ops", "operator")
    progress: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        progress.append(done)

    async def main() -> dict[str, Any]:
        async with http_session(replica, token) as s:
            script = "echo via-mcp\nsleep 1 && echo later\n"
            return ok(
                await s.call_tool("run_batch", {"script": script}, progress_callback=on_progress)
            )

    run = run_async(main)
    assert [c["stdout"] for c in run["commands"]] == ["via-mcp\n", "later\n"], run
    assert progress, "no progress came back through the replica"


def test_a_second_control_plane_is_refused(pair: tuple[Portal, Replica]) -> None:
    control, _replica = pair
    broker = control.extra[1]
    done = control.cli("serve", "--broker", broker, "--port", str(free_port()))
    assert done.returncode != 0, done.stderr
    assert f"another control plane is advertised at {control.url}" in done.stderr, done.stderr


def test_without_a_control_plane_changes_answer_503_and_reads_go_on(
    pair: tuple[Portal, Replica],
) -> None:
    control, replica = pair
    token = control.token("ops", "operator")
    # a non-API post is never forwarded (no open proxy)
    assert requests.post(replica.url + "/login", timeout=10).status_code == 405
    control.stop()
    status, body = replica.request("POST", "/api/v1/batches", {"script": "ls"}, token=token)
    assert status == 503, body
    assert body["error"] == "unavailable" and "control plane" in body["message"], body
    status, listed = replica.request("GET", "/api/v1/batches", token=token)
    assert status == 200 and listed["items"], listed
    page = requests.get(replica.url + "/login", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    # an advertisement not signed with the cluster key is ignored: still 503, not forwarded
    broker = redis.Redis.from_url(replica.extra[1])
    forged = {"url": f"http://127.0.0.1:{free_port()}", "ts": time.time(), "nonce": "n", "sig": "0"}
    broker.set(ADVERT, json.dumps(forged), ex=30)
    time.sleep(1.1)
    status, body = replica.request("POST", "/api/v1/batches", {"script": "ls"}, token=token)
    assert status == 503 and "no control plane" in body["message"], body


def test_a_replica_needs_a_broker(tmp_path: Path) -> None:
    p = Portal(data=tmp_path, port=free_port(), env=cluster_env(), extra=["--replica"])
    done = p.cli("serve", "--replica")
    assert done.returncode != 0 and "--broker" in done.stderr, done.stderr


def test_relayed_events_arrive_in_order_and_forged_ones_are_dropped(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    key = CLUSTER_KEY.encode()
    reader, relay = RelayReader(server.url, key), EventRelay(server.url, key)
    advertiser = None
    try:
        got: list[Event] = []
        reader.subscribe(got.append)
        reader.start()
        assert reader.ready.wait(5)
        sent: list[Event] = [
            OutputReceived(
                batch_id="b",
                command_id="c",
                index=0,
                stream="stdout",
                data=bytes([i, 255]),
                offset=2 * i,
            )
            for i in range(100)
        ]
        sent += [
            CommandStatusChanged(
                batch_id="b",
                command_id="c",
                index=0,
                status=Status.SUCCEEDED,
                previous=Status.RUNNING,
                exit_code=0,
            ),
            BatchFinished(batch_id="b", status=Status.SUCCEEDED, counts={"x": 1}, makespan_s=1.0),
            SocketsCut(kind="password", user_id=3, keep="k", nonce="n", epoch="e"),
        ]
        for i, event in enumerate(sent):
            relay(event)
            if i == 50:  # pushed into Redis by someone without the key: dropped
                raw = encode(sent[0])
                relay.drain()
                redis.Redis.from_url(server.url).xadd(STREAM, {"e": raw, "s": "0" * 64})
        wait_until(lambda: len(got) >= len(sent), 10, "the relayed events")
        time.sleep(0.2)
        assert got == sent and reader.forged == 1
        # the advertisement: signed, and gone when its control plane stops
        client = redis.Redis.from_url(server.url)
        assert control_url(client, key) is None
        advertiser = Advertiser(server.url, key, "http://cp:8080")
        wait_until(lambda: control_url(client, key) == "http://cp:8080", 5, "the advertisement")
        assert control_url(client, b"another key of 32 characters....") is None
        with pytest.raises(SystemExit, match="another control plane is advertised at http://cp"):
            _one_control_plane(server.url, "http://me:8080", key)  # cp refreshes: it is alive
        advertiser.close()
        assert control_url(client, key) is None
        # one that died leaves its advertisement until it ends: wait for that, then start
        client.set(ADVERT, json.dumps(sign(key, {"url": "http://dead:8080"})), ex=2)
        started = time.monotonic()
        _one_control_plane(server.url, "http://me:8080", key)
        assert 1.0 < time.monotonic() - started < 4
    finally:
        reader.close()
        relay.close()
        server.stop()
