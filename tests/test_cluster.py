"""Scale-out (issue 18): a portal with `--broker`, worker nodes as real processes, a real
Redis with a password. The signing rules are tested on their own, without Redis."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import psutil
import pytest

from sandbox.cluster import wire
from sandbox.cluster.signing import (
    ForgedMessage,
    entry_mac,
    field_bytes,
    node_key,
    sign,
    verify,
)
from sandbox.executors.docker_profiles import LABEL_BATCH, LABEL_INSTANCE
from sandbox.executors.proctree import MARKER_VAR
from sandbox.model import CommandClass, Job, Outcome, Status
from sandbox.scheduler import MAX_LIMITS, default_limits
from tests.cluster_fixtures import (
    CLUSTER_KEY,
    TIMEOUT_S,
    RedisServer,
    WorkerNode,
    cluster,
    live_nodes,
    redis_server,
    wait_until,
)
from tests.portal import BASHFLEET, Portal, running_portal

__all__ = ["cluster", "redis_server"]  # fixtures

KEY = b"0123456789abcdef0123456789abcdef"


# --- signing and wire shapes (no I/O) ------------------------------------------------------


def test_a_signed_message_verifies_and_any_change_breaks_it() -> None:
    env = sign(KEY, {"kind": "run", "node": "n1", "command": "ls"})
    assert verify(KEY, env)["command"] == "ls"
    for field, value in (("command", "rm -rf /"), ("node", "n2"), ("ts", 1.0), ("nonce", "0")):
        with pytest.raises(ForgedMessage):
            verify(KEY, {**env, field: value})
    with pytest.raises(ForgedMessage, match="bad signature"):
        verify(b"another key, also 32 bytes long!", env)
    with pytest.raises(ForgedMessage, match="unsigned"):
        verify(KEY, {k: v for k, v in env.items() if k != "sig"})
    with pytest.raises(ForgedMessage, match="not a signed"):
        verify(KEY, ["run", "ls"])


def test_an_old_message_is_refused_even_when_well_signed() -> None:
    env = sign(KEY, {"kind": "run"}, now=time.time() - 3600)
    with pytest.raises(ForgedMessage, match="stale"):
        verify(KEY, env)


def test_a_job_and_an_outcome_survive_the_wire(tmp_path: Path) -> None:
    job = Job(
        id="c1",
        command="make",
        cls=CommandClass.CONDITIONAL,
        workspace=Path("/control/data/workspaces/ws1"),
        batch_id="b1",
        index=3,
        timeout_s=9.5,
        env=(("A", "1"),),
        network=True,
    )
    body = json.loads(json.dumps(wire.job_body(job, "n1", "docker")))
    back = wire.job_from(body, tmp_path / "workspaces")
    assert back == Job(**{**_fields(job), "workspace": tmp_path / "workspaces" / "ws1"})
    out = Outcome(status=Status.FAILED, exit_code=2, started_at=1.0, ended_at=2.5, error="x")
    assert wire.outcome_from(json.loads(json.dumps(wire.outcome_body(out)))) == out
    with pytest.raises(Exception, match="invalid workspace name"):
        wire.job_from({**body, "workspace": ".."}, tmp_path)


def test_serve_with_a_broker_and_no_key_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
    for cmd in (["serve", "--port", "1"], ["worker", "--name", "n1"]):
        done = subprocess.run(
            [BASHFLEET, "--data", str(tmp_path), *cmd, "--broker", "redis://127.0.0.1:1/0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "needs a shared key of at least 32 characters in $BASHFLEET_CLUSTER_KEY" in (
            done.stderr
        )


def test_each_node_has_its_own_key_and_print_key_gives_it(tmp_path: Path) -> None:
    n1, n2 = node_key(KEY, "n1"), node_key(KEY, "n2")
    assert len({n1, n2, KEY}) == 3 and len(n1) == 64
    with pytest.raises(ForgedMessage, match="bad signature"):  # n2 cannot sign for n1
        verify(n1, sign(n2, {"kind": "run", "node": "n1"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASHFLEET_")}
    env["BASHFLEET_CLUSTER_KEY"] = KEY.decode()
    done = subprocess.run(
        [BASHFLEET, "--data", str(tmp_path), "worker", "--name", "n1", "--print-key"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == n1.decode() + "\n"
    env = {**env, "BASHFLEET_NODE_KEY": "short"}
    del env["BASHFLEET_CLUSTER_KEY"]
    done = subprocess.run(
        [BASHFLEET, "--data", str(tmp_path), "worker", "--name", "n1",
         "--broker", "redis://127.0.0.1:1/0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "$BASHFLEET_NODE_KEY is too short" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reported_entry_is_signed_field_by_field() -> None:
    fields = {
        k: field_bytes(v) for k, v in {"t": "out", "o": 3, "d": b"\x00ab", "node": "n1"}.items()
    }
    mac = entry_mac(KEY, fields)
    assert entry_mac(KEY, {**fields, "m": mac}) == mac  # the MAC travels beside what it covers
    for name, value in (("o", b"4"), ("d", b"\x00ac"), ("node", b"n2"), ("extra", b"")):
        assert entry_mac(KEY, {**fields, name: value}) != mac
    assert entry_mac(node_key(KEY, "n2"), fields) != mac
    # moving bytes between a name and its value changes the MAC (lengths are in it)
    assert entry_mac(KEY, {"ab": b"c"}) != entry_mac(KEY, {"a": b"bc"})
    with pytest.raises(TypeError):
        field_bytes(True)


@pytest.mark.parametrize(
    ("expected", "offset", "data", "new"),
    [
        (0, 0, b"abc", b"abc"),  # the next chunk
        (3, 0, b"abc", b""),  # sent again: delivered already
        (3, 2, b"cde", b"de"),  # overlaps: only its tail is new
        (3, 5, b"xy", b"xy"),  # a gap cannot be filled: delivered as it is
        (3, 3, b"", b""),
    ],
)
def test_output_sent_again_is_delivered_once(
    expected: int, offset: int, data: bytes, new: bytes
) -> None:
    assert wire.fresh_part(expected, offset, data) == new


def _fields(job: Job) -> dict[str, Any]:
    return {f: getattr(job, f) for f in Job.__slots__}


# --- the cluster: portal, two workers, Redis -----------------------------------------------


def _safe_limit(p: Portal, token: str) -> int:
    _s, m = p.request("GET", "/api/v1/metrics", token=token)
    return int(m["pools"]["safe"]["limit"])


def _submit(p: Portal, token: str, script: str, workspace: str) -> dict[str, Any]:
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": script, "workspace": workspace}, token=token
    )
    assert status == 201, batch
    return batch  # type: ignore[no-any-return]


def _newer(client: Any, node: str, than: bytes | None) -> bytes | None:
    beat = client.get(wire.NODE_KEY + node)
    return beat if beat is not None and beat != than else None


def _marked(job_ids: set[str]) -> list[int]:
    """Processes that carry the job marker of one of these commands."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        marker = env.get(MARKER_VAR, "")
        if marker.split(".")[0] in job_ids:
            found.append(proc.pid)
    return found


def _containers_of(node: WorkerNode) -> list[Any]:
    client = docker.from_env()
    return [
        c
        for c in client.containers.list(
            ignore_removed=True, all=True, filters={"label": LABEL_INSTANCE}
        )
        if c.labels[LABEL_INSTANCE].startswith(f"node.{node.name}.")
    ]


@pytest.mark.slow
@pytest.mark.docker
def test_two_nodes_a_lost_one_and_its_return(cluster: tuple[Portal, list[WorkerNode]]) -> None:
    p, nodes = cluster
    token = p.token("op", "operator")
    wait_until(lambda: sorted(live_nodes(p, token)) == ["n1", "n2"], 30, "both nodes live")
    # the safe pool has the two nodes' slots (within DESIGN.md's maximum)
    want = min(MAX_LIMITS[CommandClass.SAFE], 2 * default_limits()[CommandClass.SAFE])
    wait_until(lambda: _safe_limit(p, token) == want, 10, f"a safe limit of {want}")

    # two workspaces land on different nodes; each command records its node
    doomed = _submit(p, token, "sleep 60\ntouch started && sleep 60\n", "ws-a")
    kept = _submit(p, token, "sleep 4 && echo kept\necho out > f && cat f\n", "ws-b")
    home_a = {c["node"] for c in doomed["commands"]}
    home_b = {c["node"] for c in kept["commands"]}
    assert len(home_a) == len(home_b) == 1 and home_a != home_b, (home_a, home_b)
    victim = next(n for n in nodes if n.name in home_a)
    assert {c["executor"] for c in doomed["commands"]} == {"local", "docker"}
    assert p.wait_running(doomed["id"], token, 2, timeout=30), p.log()
    ids = {c["id"] for c in doomed["commands"]}
    wait_until(lambda: _marked(ids), 10, "the local command's process on the node")
    wait_until(lambda: _containers_of(victim), 10, "the node's container")

    # kill -9 the node: its commands end interrupted within the heartbeat timeout
    victim.kill9()
    killed_at = time.monotonic()
    batch = p.wait_batch(doomed["id"], token, timeout=TIMEOUT_S + 10)
    assert time.monotonic() - killed_at < TIMEOUT_S + 5
    assert batch["status"] == "interrupted", batch
    for c in batch["commands"]:
        assert c["status"] == "interrupted", c
        assert f"node {victim.name} lost" in c["reason"], c
    # ... while the other node's batch succeeds
    other = p.wait_batch(kept["id"], token, timeout=30)
    assert other["status"] == "succeeded", other
    _s, out = p.request(
        "GET", f"/api/v1/batches/{kept['id']}/commands/{other['commands'][0]['id']}/output",
        token=token,
    )  # fmt: skip
    assert out["stdout"] == "kept\n"
    # the node removes the finished batch's container now, not when it stops
    keeper = next(n for n in nodes if n.name in home_b)
    assert {c["executor"] for c in other["commands"]} == {"local", "docker"}
    wait_until(
        lambda: not [c for c in _containers_of(keeper) if c.labels.get(LABEL_BATCH) == kept["id"]],
        15,
        "the finished batch's container removed",
    )
    _s, body = p.request("GET", "/api/v1/nodes", token=token)
    assert {n["name"]: n["status"] for n in body["nodes"]}[victim.name] == "lost"

    # restarting the node leaves no orphan processes or containers, and it works again
    victim.start()
    wait_until(lambda: victim.name in live_nodes(p, token), 30, "the node back")
    wait_until(lambda: not _marked(ids), 15, "no leftover processes")
    wait_until(lambda: not _containers_of(victim), 15, "no leftover containers")
    again = _submit(p, token, "echo back\n", "ws-a")
    assert {c["node"] for c in again["commands"]} == home_a
    assert p.wait_batch(again["id"], token, timeout=30)["status"] == "succeeded"


@pytest.mark.slow
def test_a_frozen_node_is_lost_and_told_to_kill_on_its_return(
    cluster: tuple[Portal, list[WorkerNode]], redis_server: RedisServer
) -> None:
    """SIGSTOP: the node's commands keep running, but it stops heartbeating (its last
    heartbeat, put back in Redis, does not keep it alive). Its commands end interrupted;
    on SIGCONT the control plane tells it to kill them."""
    p, nodes = cluster
    token = p.token("op", "operator")
    wait_until(lambda: len(live_nodes(p, token)) == 2, 30, "both nodes live")
    batch = _submit(p, token, "sleep 60\n", "ws-frozen")
    node = next(n for n in nodes if n.name == batch["commands"][0]["node"])
    assert p.wait_running(batch["id"], token, 1, timeout=20)
    ids = {batch["commands"][0]["id"]}
    wait_until(lambda: _marked(ids), 10, "the command's process")
    assert node.proc is not None
    client = wire.redis_client(redis_server.url)
    beats = [client.get(wire.NODE_KEY + node.name)]  # two of its older heartbeats
    beats.append(wait_until(lambda: _newer(client, node.name, beats[0]), 10, "a newer beat"))
    os.kill(node.proc.pid, signal.SIGSTOP)
    stop = threading.Event()

    def replay() -> None:  # well-signed, but old: put back in turn, again and again
        turn = 0
        while not stop.wait(0.2):
            client.set(wire.NODE_KEY + node.name, beats[turn % 2], ex=60)
            turn += 1

    replayer = threading.Thread(target=replay, daemon=True)
    replayer.start()
    try:
        done = p.wait_batch(batch["id"], token, timeout=TIMEOUT_S + 10)
        assert done["commands"][0]["status"] == "interrupted", done
        assert _marked(ids)  # still running on the frozen node
        assert node.name not in live_nodes(p, token)
    finally:
        stop.set()
        replayer.join(5)
        os.kill(node.proc.pid, signal.SIGCONT)
    wait_until(lambda: not _marked(ids), 15, "the node to kill the ended command")
    assert p.wait_batch(batch["id"], token)["commands"][0]["status"] == "interrupted"


def test_a_jobs_secrets_and_its_output_cross_the_broker_sealed(
    cluster: tuple[Portal, list[WorkerNode]], redis_server: RedisServer
) -> None:
    """Redis keeps jobs and output in memory and in its dump on disk: a workspace secret
    and what a command prints travel sealed under the node's key, and still arrive."""
    p, _nodes = cluster
    admin = p.token("boss", "admin")
    wait_until(lambda: len(live_nodes(p, admin)) == 2, 30, "both nodes live")
    secret = "s3cr3t-" + secrets.token_hex(8)
    status, _ws = p.request(
        "PUT", "/api/v1/workspaces/ws-s", {"secrets": {"API_TOKEN": secret}}, token=admin
    )
    assert status == 200, _ws
    seen: list[str] = []
    listening, stop = threading.Event(), threading.Event()

    def watch() -> None:  # every command Redis is given while the batch runs
        with wire.redis_client(redis_server.url).monitor() as m:
            listening.set()
            while not stop.is_set():  # the nodes' heartbeats keep this loop turning
                seen.append(m.next_command()["command"])

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert listening.wait(10)
    note = ("a note with " + secret[::-1][:12]).encode()  # a file, up and back down
    try:
        batch = _submit(p, admin, 'printf "%s\\n" "$API_TOKEN" | rev\nprintenv API_TOKEN\n', "ws-s")
        done = p.wait_batch(batch["id"], admin, timeout=30)
        status, put = p.request(
            "PUT", "/api/v1/workspaces/ws-s/files?name=note.txt&format=file", raw=note, token=admin
        )
        assert status == 201, put
        req = urllib.request.Request(
            p.url + "/api/v1/workspaces/ws-s/files?path=note.txt",
            headers={"Authorization": f"Bearer {admin}"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.read() == note
    finally:
        stop.set()
        watcher.join(10)
    assert [c["status"] for c in done["commands"]] == ["succeeded"] * 2, done
    _s, out = p.request(
        "GET",
        f"/api/v1/batches/{batch['id']}/commands/{batch['commands'][0]['id']}/output",
        token=admin,
    )
    assert secret[::-1] in json.dumps(out)  # the secret reached the command
    everything = "\n".join(seen)
    bodies = [
        base64.b64decode(b).decode() for b in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', everything)
    ]
    jobs = [b for b in bodies if f'"{batch["commands"][0]["id"]}"' in b]
    assert jobs and all("env_sealed" in b for b in jobs), bodies[:3]
    assert sum("XADD bashfleet:results" in c for c in seen) >= 4  # output and outcomes went by
    assert sum("bashfleet:xfer:" in c for c in seen) >= 2  # the file went through the broker
    for plain in (secret, secret[::-1], note.decode()[-12:]):
        assert plain not in everything and all(plain not in b for b in bodies)


@pytest.mark.slow
@pytest.mark.cluster_on_postgresql
def test_forged_and_replayed_messages_are_refused_and_audited(
    cluster: tuple[Portal, list[WorkerNode]], redis_server: RedisServer
) -> None:
    p, nodes = cluster
    admin = p.token("boss", "admin")
    wait_until(lambda: "n1" in live_nodes(p, admin), 30, "node n1 live")
    app = wire.celery_app(redis_server.url)

    def push(envelope: Any) -> None:  # what a client with access to Redis alone can do
        app.send_task(wire.TASK_RUN, args=[envelope], queue=wire.queue_of("n1"))

    body = {
        "kind": "run",
        "node": "n1",
        "id": "forged1",
        "command": "echo pwned >> forged.txt",
        "cls": "sequential",
        "workspace": "ws-f",
        "batch_id": "b",
        "index": 0,
        "timeout_s": 10,
        "limits": {},
        "env": [],
        "read_only": False,
        "network": False,
        "output_cap": 1000,
        "executor": "local",
    }
    n1_key = node_key(CLUSTER_KEY.encode(), "n1")
    n2_key = node_key(CLUSTER_KEY.encode(), "n2")
    push({**body, "ts": time.time(), "nonce": "n" * 32, "sig": "0" * 64})  # no key
    push(sign(b"an attacker's guess at the key!!", body))  # the wrong key
    push({**sign(n1_key, body), "command": "echo changed >> forged.txt"})
    push(sign(n2_key, body))  # node n2 (its own key only) signing for n1
    push(sign(CLUSTER_KEY.encode(), body))  # a node takes jobs signed with its own key only
    push(sign(n1_key, {**body, "node": "n2"}))  # meant for another node
    good = sign(n1_key, {**body, "id": "signed1", "command": "echo once >> ok.txt"})
    push(good)
    push(good)  # a replay of a well-signed message

    def refusals(actor: str, least: int) -> list[dict[str, Any]]:
        _s, page = p.request(
            "GET", "/api/v1/audit?action=cluster_message_refused&limit=50", token=admin
        )
        items = [i for i in page["items"] if i["actor"] == actor]
        return items if len(items) >= least else []

    items = wait_until(lambda: refusals("node:n1", 7), 20, "seven audited refusals")
    reasons = sorted(i["detail"]["reason"] for i in items)
    assert sum("bad signature" in r for r in reasons) == 5, reasons
    assert sum("meant for node 'n2'" in r for r in reasons) == 1, reasons
    assert sum("replayed" in r for r in reasons) == 1, reasons
    # the node holds its own key only, and not where a process can read it
    environ = Path(f"/proc/{nodes[0].proc.pid}/environ").read_bytes()  # type: ignore[union-attr]
    assert b"BASHFLEET_NODE_KEY=" in environ and n1_key not in environ
    # a report pushed into the results stream in a node's name, without its key, is dropped
    client = wire.redis_client(redis_server.url)
    client.xadd(wire.RESULTS, {"t": "refused", "node": "n1", "job": "fake1", "reason": "made up"})
    (forged,) = wait_until(lambda: refusals("broker", 1), 20, "the forged report audited")
    assert forged["target"] == "fake1"
    assert forged["detail"]["reason"] == "a result entry its node did not sign"
    assert not [i for i in refusals("node:n1", 1) if i["detail"]["reason"] == "made up"]
    # and a phantom node's heartbeat (to draw workspaces, and their secrets, to it) is silence
    phantom = {"name": "evil", "slots": 64, "running": 0, "free_memory": 2**40, "at": time.time()}
    client.sadd(wire.NODES, "evil")
    client.set(
        wire.NODE_KEY + "evil", json.dumps(sign(b"an attacker's guess at the key!!", phantom))
    )
    time.sleep(12)  # the audit of forged entries is held back 10 s during a flood
    assert "evil" not in live_nodes(p, admin)
    items = wait_until(lambda: refusals("broker", 2), 20, "the phantom heartbeat audited")
    assert "a heartbeat its node did not sign (bad signature)" in items[0]["detail"]["reason"]
    assert items[0]["detail"]["dropped_so_far"]["result"] == 1
    folder = nodes[0].data / "workspaces" / "ws-f"
    ok = wait_until(
        lambda: (folder / "ok.txt").exists() and folder / "ok.txt", 10, "the signed job"
    )
    time.sleep(0.5)
    assert ok.read_text() == "once\n"  # the signed job ran once: the replay did not
    assert not (folder / "forged.txt").exists()

    # a command on a node can be cancelled; the nodes have Prometheus gauges
    token = p.token("op", "operator")
    batch = _submit(p, token, "sleep 60\n", "ws-c")
    assert p.wait_running(batch["id"], token, 1, timeout=20)
    status, _ = p.request("POST", f"/api/v1/batches/{batch['id']}/cancel", token=token)
    assert status == 200
    assert p.wait_batch(batch["id"], token, timeout=15)["commands"][0]["status"] == "cancelled"
    with urllib.request.urlopen(p.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    assert 'bashfleet_node_up{node="n1"} 1.0' in text, text[-2000:]
    assert 'bashfleet_cluster_forged_total{kind="result"} 1.0' in text
    assert 'bashfleet_cluster_forged_total{kind="heartbeat"}' in text
    assert 'bashfleet_node_slots{node="n2"}' in text


@pytest.mark.slow
def test_without_redis_a_submission_answers_503_and_stores_nothing(
    cluster: tuple[Portal, list[WorkerNode]], redis_server: RedisServer
) -> None:
    p, _nodes = cluster
    token = p.token("op", "operator")
    wait_until(lambda: len(live_nodes(p, token)) == 2, 30, "both nodes live")
    first = _submit(p, token, "for i in 1 2 3 4 5 6; do echo line$i; sleep 0.5; done\n", "ws-r")
    assert p.wait_running(first["id"], token, 1, timeout=20)
    time.sleep(0.8)
    assert "live nodes: n1 (" in _doctor_broker(p, redis_server)
    redis_server.stop()  # mid-batch
    assert _doctor_broker(p, redis_server).startswith("MISSING  broker: redis://***@127.0.0.1")
    status, body = p.request(
        "POST", "/api/v1/batches", {"script": "echo hi", "workspace": "ws-r"}, token=token
    )
    assert status == 503, body
    assert body["error"] == "broker_unavailable" and "nothing was stored" in body["message"]
    _s, page = p.request("GET", "/api/v1/batches", token=token)
    assert [b["id"] for b in page["items"]] == [first["id"]]
    time.sleep(1.0)
    redis_server.start()  # the same port and password, empty (no persistence)
    batch = p.wait_batch(first["id"], token, timeout=30)
    assert batch["status"] == "succeeded", batch
    cid = batch["commands"][0]["id"]
    _s, out = p.request("GET", f"/api/v1/batches/{first['id']}/commands/{cid}/output", token=token)
    assert out["stdout"] == "".join(f"line{i}\n" for i in range(1, 7))  # nothing lost, no dups
    again = _submit(p, token, "echo again\n", "ws-r")
    assert p.wait_batch(again["id"], token, timeout=30)["status"] == "succeeded"


def _doctor_broker(p: Portal, redis_server: RedisServer) -> str:
    """The broker line of `bashfleet doctor` on the portal's machine."""
    done = subprocess.run(
        [BASHFLEET, "--data", str(p.data), "doctor"],
        env={**p.env, "BASHFLEET_BROKER": redis_server.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return next((line for line in done.stdout.splitlines() if " broker: " in line), done.stdout)


def test_the_embedded_mode_has_no_nodes(portal: Portal) -> None:
    token = portal.token("viewer1", "viewer")
    status, body = portal.request("GET", "/api/v1/nodes", token=token)
    assert (status, body) == (200, {"mode": "embedded", "nodes": []})


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(tmp_path, extra=["--isolation", "local"]) as p:
        yield p
