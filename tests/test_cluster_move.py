"""Workspace files on the nodes, and moving a workspace between nodes (sandbox/cluster/
transfer.py, files.py, move.py): a real redis-server, a portal with --broker and two real
worker nodes, shared by the tests of this module (they run in order)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.cluster import node_files, transfer, wire
from sandbox.cluster.signing import node_key, seal, sign
from tests.cluster_fixtures import (
    CLUSTER_KEY,
    TIMEOUT_S,
    RedisServer,
    WorkerNode,
    cluster_env,
    live_nodes,
    running_cluster,
    wait_until,
)
from tests.portal import BASHFLEET, Portal, running_portal

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WS = "mv"
BIG = os.urandom(20 << 20)  # 20 MiB that do not compress: what a move carries
HELLO = b"hello from the files API\n"
MANY = 200  # small files: a tar of many pieces
SMALL_BYTES = sum(len(b"%d\n" % i) for i in range(MANY))

Cluster = tuple[Portal, list[WorkerNode], RedisServer]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = cluster_env(
        BASHFLEET_NODE_TIMEOUT_S=str(TIMEOUT_S),
        BASHFLEET_SUBMIT_RATE="1000",
        BASHFLEET_DOWNLOAD_MAX_BYTES=str(30 << 20),  # a workspace over it cannot move
    )
    with running_cluster(tmp_path_factory.mktemp("move"), env) as c:
        p, _nodes, _redis = c
        admin = p.token("boss", "admin")
        wait_until(lambda: len(live_nodes(p, admin)) == 2, 30, "two live nodes")
        yield c


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        small = [(f"data/many/{i:03d}.txt", b"%d\n" % i) for i in range(MANY)]
        for name, data in (("data/hello.txt", HELLO), ("data/big.bin", BIG), *small):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _get(p: Portal, path: str, token: str) -> bytes:
    req = urllib.request.Request(p.url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return bytes(r.read())


def _run(p: Portal, token: str, script: str) -> dict[str, Any]:
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": script, "workspace": WS}, token=token
    )
    assert status == 201, batch
    return batch  # type: ignore[no-any-return]


def _stdout(p: Portal, token: str, batch: dict[str, Any], index: int = 0) -> str:
    cid = batch["commands"][index]["id"]
    _s, out = p.request("GET", f"/api/v1/batches/{batch['id']}/commands/{cid}/output", token=token)
    return str(out["stdout"])


def _home(p: Portal, token: str) -> str:
    _s, ws = p.request("GET", f"/api/v1/workspaces/{WS}", token=token)
    return str(ws["node"])


def _audit(p: Portal, token: str, action: str) -> list[dict[str, Any]]:
    _s, page = p.request("GET", f"/api/v1/audit?action={action}&limit=50", token=token)
    return list(page["items"])


def _node(nodes: list[WorkerNode], name: str) -> WorkerNode:
    return next(n for n in nodes if n.name == name)


def test_the_files_api_writes_and_reads_the_workspaces_node(cluster: Cluster) -> None:
    p, nodes, _redis = cluster
    admin, op = p.token("boss", "admin"), p.token("op", "operator")
    status, body = p.request("PUT", f"/api/v1/workspaces/{WS}", {}, token=op)
    assert status == 200, body
    status, done = p.request(
        "PUT", f"/api/v1/workspaces/{WS}/files?format=tgz", raw=_tarball(), token=op
    )
    assert status == 201, done
    assert (done["files"], done["bytes"]) == (2 + MANY, len(BIG) + len(HELLO) + SMALL_BYTES)
    home = _node(nodes, _home(p, admin))
    folder = home.data / "workspaces" / WS
    assert (folder / "data" / "hello.txt").read_bytes() == HELLO  # on the node...
    assert not (p.data / "workspaces" / WS / "data").exists()  # ...not the control plane
    other = next(n for n in nodes if n is not home)
    assert not (other.data / "workspaces" / WS / "data").exists()

    batch = p.wait_batch(_run(p, op, "cat data/hello.txt\n")["id"], op, timeout=60)
    assert batch["commands"][0]["status"] == "succeeded", batch
    assert batch["commands"][0]["node"] == home.name
    assert _stdout(p, op, batch) == HELLO.decode()

    status, listing = p.request("GET", f"/api/v1/workspaces/{WS}/tree?path=data", token=op)
    assert status == 200, listing
    assert sorted(e["name"] for e in listing["entries"]) == ["big.bin", "hello.txt", "many"]
    _s, usage = p.request("GET", f"/api/v1/workspaces/{WS}/usage", token=op)
    assert usage["workspace_bytes"] == len(BIG) + len(HELLO) + SMALL_BYTES, usage
    assert _get(p, f"/api/v1/workspaces/{WS}/files?path=data/hello.txt", op) == HELLO
    # the same answers as embedded for what is refused
    status, err = p.request("GET", f"/api/v1/workspaces/{WS}/files?path=nope", token=op)
    assert (status, err["error"]) == (404, "not_found"), err
    status, err = p.request("GET", f"/api/v1/workspaces/{WS}/tree?path=../x", token=op)
    assert status == 400 and err["error"] == "unsafe_path", err
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        link = tarfile.TarInfo("data/out")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    status, err = p.request(
        "PUT", f"/api/v1/workspaces/{WS}/files?format=tgz", raw=evil.getvalue(), token=op
    )
    assert status == 400, err
    assert not (folder / "data" / "out").exists()


def test_a_move_drains_archives_restores_and_runs_the_queued_commands_there(
    cluster: Cluster,
) -> None:
    p, nodes, _redis = cluster
    admin, op = p.token("boss", "admin"), p.token("op", "operator")
    source = _home(p, admin)
    target = next(n.name for n in nodes if n.name != source)

    # refused: a viewer or operator, an unknown node, a missing field, an unknown workspace
    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": target}, token=op)
    assert status == 403, err
    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": "n9"}, token=admin)
    assert (status, err["error"]) == (422, "unknown_node") and "`node`" in err["message"], err
    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {}, token=admin)
    assert status == 400 and "`node`" in err["message"], err
    status, err = p.request("POST", "/api/v1/workspaces/nope/move", {"node": target}, token=admin)
    assert status == 404, err

    running = _run(p, op, "sleep 3\n")
    assert p.wait_running(running["id"], op, 1, timeout=30)
    status, move = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": target}, token=admin)
    assert status == 202, move
    assert (move["source"], move["target"], move["state"]) == (source, target, "draining")
    queued = _run(p, op, "cat data/hello.txt && wc -c < data/big.bin && ls data/many | wc -l\n")

    def held() -> dict[str, Any] | None:
        _s, b = p.request("GET", f"/api/v1/batches/{queued['id']}", token=op)
        cmd = b["commands"][0]
        return cmd if cmd["status"] == "queued" and "moving" in (cmd["reason"] or "") else None

    cmd = wait_until(held, 10, "the new command held while the workspace moves")
    assert cmd["reason"] == f"workspace moving from {source} to {target}"
    _s, ws = p.request("GET", f"/api/v1/workspaces/{WS}", token=op)
    assert ws["move"]["state"] == "draining", ws
    _s, listed = p.request("GET", "/api/v1/nodes", token=op)
    moving = {n["name"]: n["moving"] for n in listed["nodes"]}
    assert moving[source] == [
        {"workspace": WS, "source": source, "target": target, "state": "draining"}
    ]
    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": target}, token=admin)
    assert (status, err["error"]) == (409, "moving"), err
    status, err = p.request(
        "PUT", f"/api/v1/workspaces/{WS}/files?name=x&format=file", raw=b"x", token=op
    )
    assert (status, err["error"]) == (409, "moving"), err

    first = p.wait_batch(running["id"], op, timeout=30)
    assert first["commands"][0]["status"] == "succeeded" and first["commands"][0]["node"] == source
    after = p.wait_batch(queued["id"], op, timeout=60)
    assert after["commands"][0]["status"] == "succeeded", after
    assert after["commands"][0]["node"] == target
    assert _stdout(p, op, after) == f"{HELLO.decode()}{len(BIG)}\n{MANY}\n"

    _s, done = p.request("GET", f"/api/v1/workspaces/{WS}/move", token=op)
    assert done["state"] == "done" and not done["error"], done
    assert _home(p, admin) == target
    print(f"\nmove of a {len(BIG) >> 20} MiB workspace: {done['seconds']} s "
          f"(drain included), {done['transfer_s']} s to pack, carry and restore "
          f"{done['bytes']} bytes")  # fmt: skip
    audited = _audit(p, admin, "workspace_moved")[0]
    assert audited["target"] == WS and audited["actor"] == "boss"
    detail = audited["detail"]
    assert (detail["from"], detail["to"]) == (source, target)
    assert detail["bytes"] == done["bytes"] > len(BIG) and len(detail["sha256"]) == 64

    # the files are on the target, byte for byte, and gone from the source
    got = _get(p, f"/api/v1/workspaces/{WS}/files?path=data/big.bin", op)
    assert hashlib.sha256(got).digest() == hashlib.sha256(BIG).digest()
    packed = _get(p, f"/api/v1/workspaces/{WS}/files?path=data", op)
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
        member = tar.extractfile("hello.txt")  # relative to the folder
        assert member is not None and member.read() == HELLO
    assert (_node(nodes, target).data / "workspaces" / WS / "data" / "big.bin").exists()
    wait_until(
        lambda: not (_node(nodes, source).data / "workspaces" / WS).exists(),
        10,
        "the source's copy removed",
    )


def test_a_failed_move_leaves_the_workspace_where_it_was(cluster: Cluster) -> None:
    p, nodes, _redis = cluster
    admin, op = p.token("boss", "admin"), p.token("op", "operator")
    home = _home(p, admin)
    other = next(n.name for n in nodes if n.name != home)
    status, done = p.request(
        "PUT",
        f"/api/v1/workspaces/{WS}/files?path=data&name=big2.bin&format=file",
        raw=BIG,
        token=op,
    )
    assert status == 201, done
    status, move = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": other}, token=admin)
    assert status == 202, move
    failed = wait_until(lambda: _move_ended(p, op), 30, "the move to end")
    assert failed["state"] == "failed", failed
    assert f"over {30 << 20} bytes" in failed["error"], failed  # the limit
    assert _home(p, admin) == home
    audited = _audit(p, admin, "workspace_move_failed")[0]
    assert audited["detail"]["error"] == failed["error"]
    batch = p.wait_batch(_run(p, op, "wc -c < data/big2.bin\n")["id"], op, timeout=60)
    assert batch["commands"][0]["node"] == home
    assert _stdout(p, op, batch) == f"{len(BIG)}\n"  # its files are intact, where they were
    assert not (_node(nodes, other).data / "workspaces" / WS).exists()


def _move_ended(p: Portal, token: str) -> dict[str, Any] | None:
    _s, m = p.request("GET", f"/api/v1/workspaces/{WS}/move", token=token)
    return m if m["state"] in ("done", "failed") else None  # type: ignore[no-any-return]


def test_a_forged_transfer_message_is_refused_and_audited(cluster: Cluster) -> None:
    p, nodes, redis_server = cluster
    admin = p.token("boss", "admin")
    home = _home(p, admin)
    before = len(_audit(p, admin, "cluster_message_refused"))
    app = wire.celery_app(redis_server.url)
    body = {"kind": "files", "node": home, "op": "drop", "workspace": WS, "xfer": "a" * 32}
    # a client with Redis alone: no key, then a guessed one
    forged = {**body, "ts": time.time(), "nonce": "f" * 32, "sig": "0" * 64}
    app.send_task(wire.TASK_RUN, args=[forged], queue=wire.queue_of(home))
    guessed = sign(b"an attacker's guess at the key!!", body)
    app.send_task(wire.TASK_RUN, args=[guessed], queue=wire.queue_of(home))

    def refused() -> list[dict[str, Any]] | None:
        got = _audit(p, admin, "cluster_message_refused")
        return got[: len(got) - before] if len(got) - before >= 2 else None

    items = wait_until(refused, 20, "two audited refusals")
    assert all("bad signature" in i["detail"]["reason"] for i in items), items
    assert all(i["actor"] == f"node:{home}" for i in items)
    time.sleep(0.5)
    folder = _node(nodes, home).data / "workspaces" / WS
    assert (folder / "data" / "big.bin").stat().st_size == len(BIG)  # not dropped
    assert sign(CLUSTER_KEY.encode(), body)["sig"] != guessed["sig"]


def test_a_move_from_a_lost_node_needs_force_and_starts_empty(cluster: Cluster) -> None:
    p, nodes, _redis = cluster
    admin, op = p.token("boss", "admin"), p.token("op", "operator")
    home = _home(p, admin)
    other = next(n.name for n in nodes if n.name != home)
    _node(nodes, home).kill9()
    wait_until(lambda: home not in live_nodes(p, admin), 20, f"node {home} lost")

    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": other}, token=admin)
    assert (status, err["error"]) == (409, "source_lost"), err
    assert '"force": true' in err["message"] and "cannot be brought" in err["message"]
    assert _home(p, admin) == home  # a refused move changes nothing
    status, err = p.request("POST", f"/api/v1/workspaces/{WS}/move", {"node": home}, token=admin)
    assert (status, err["error"]) == (422, "node_lost"), err

    # the CLI asks the portal: refused without --force, done with it
    cli = [BASHFLEET, "workspace", "move", WS, "--to", other, "--url", p.url]
    env = {**p.env, "BASHFLEET_TOKEN": admin}
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "source_lost" in refused.stderr, refused
    forced = subprocess.run([*cli, "--force"], env=env, capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0, forced
    assert "starts empty" in forced.stderr
    done = json.loads(forced.stdout)
    assert done["state"] == "done" and done["files_lost"], done
    assert _home(p, admin) == other
    audited = _audit(p, admin, "workspace_moved")[0]["detail"]
    assert audited["files_lost"] and (audited["from"], audited["to"]) == (home, other)
    batch = p.wait_batch(_run(p, op, "ls -A\n")["id"], op, timeout=60)
    assert batch["commands"][0]["status"] == "succeeded" and batch["commands"][0]["node"] == other
    assert _stdout(p, op, batch) == ""  # it starts empty


def test_embedded_a_move_is_refused_and_files_stay_local(tmp_path: Path) -> None:
    with running_portal(tmp_path, extra=["--isolation", "local"]) as p:
        admin = p.token("boss", "admin")
        status, _ = p.request("PUT", "/api/v1/workspaces/solo", {}, token=admin)
        assert status == 200
        status, err = p.request("POST", "/api/v1/workspaces/solo/move", {"node": "n2"}, token=admin)
        assert (status, err["error"]) == (409, "not_a_cluster"), err
        status, _ = p.request(
            "PUT", "/api/v1/workspaces/solo/files?name=a.txt&format=file", raw=HELLO, token=admin
        )
        assert status == 201
        assert (p.data / "workspaces" / "solo" / "a.txt").read_bytes() == HELLO
        _s, ws = p.request("GET", "/api/v1/workspaces/solo", token=admin)
        assert "node" not in ws and "move" not in ws


class _StubPlane:
    """The control plane as FileChannel sees it; ``_publish`` answers as a node (or an
    attacker with Redis access) would, straight into the transfer's list."""

    def __init__(self, url: str, answer: Any) -> None:
        import redis

        self.broker, self.key = url, CLUSTER_KEY.encode()
        self.audit = self
        self.audited: list[tuple[str, dict[str, Any]]] = []
        self.answer = answer
        self.client = redis.Redis.from_url(url)

    def is_live(self, node: str) -> bool:
        return True

    def node_key(self, node: str) -> bytes:
        return node_key(self.key, node)

    def _publish(self, node: str, body: dict[str, Any], on_error: Any = None) -> None:
        self.answer(self.client, transfer.xfer_key(body["xfer"], "out"), body)

    @property
    def outbox(self) -> Any:
        return self  # sent at once: nothing to wait for

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def append(self, action: str, **kw: Any) -> None:
        self.audited.append((action, kw))


def _signed(key: bytes, body: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps(sign(key, {"xfer": body["xfer"], "node": body["node"], **fields})).encode()


def test_the_control_plane_checks_a_nodes_answer(cluster: Cluster) -> None:
    _p, _nodes, redis_server = cluster
    key = node_key(CLUSTER_KEY.encode(), "n1")

    def forged(client: Any, out: str, body: dict[str, Any]) -> None:
        client.rpush(out, _signed(b"an attacker's guess at the key!!", body, t="h", ok=True))

    def other_node(client: Any, out: str, body: dict[str, Any]) -> None:  # n2 as n1
        n2_key = node_key(CLUSTER_KEY.encode(), "n2")
        client.rpush(out, _signed(n2_key, body, t="h", ok=True))

    for answer in (forged, other_node):
        plane = _StubPlane(redis_server.url, answer)
        with pytest.raises(transfer.TransferFailed, match="refused: bad signature"):
            transfer.FileChannel(plane).call("n1", "tree", WS)
        assert plane.audited[0][0] == "cluster_message_refused"

    def sealed(body: dict[str, Any], data: bytes, seq: int = 0) -> bytes:
        return b"c" + seal(key, data, transfer.chunk_context(body["xfer"], "out", seq))

    def tampered(client: Any, out: str, body: dict[str, Any]) -> None:
        client.rpush(out, _signed(key, body, t="h", ok=True, stream=True, kind="file", size=3))
        client.rpush(out, sealed(body, b"abc"))
        sha = hashlib.sha256(b"xyz").hexdigest()
        client.rpush(out, _signed(key, body, t="e", bytes=3, sha256=sha))

    _head, chunks = transfer.FileChannel(_StubPlane(redis_server.url, tampered)).call(
        "n1", "get", WS
    )
    with pytest.raises(transfer.TransferFailed, match="do not match its checksum"):
        list(chunks)

    # a chunk in clear (pushed by whoever reaches Redis), or one sealed for another place
    for chunk in (lambda body: b"cabc", lambda body: sealed(body, b"abc", seq=1)):

        def swapped(client: Any, out: str, body: dict[str, Any], chunk: Any = chunk) -> None:
            client.rpush(out, _signed(key, body, t="h", ok=True, stream=True, kind="file"))
            client.rpush(out, chunk(body))

        plane = _StubPlane(redis_server.url, swapped)
        _head, chunks = transfer.FileChannel(plane).call("n1", "get", WS)
        with pytest.raises(transfer.TransferFailed, match="chunk from node n1 was refused"):
            list(chunks)
        assert "chunk 0" in plane.audited[0][1]["detail"]["reason"]

    def honest(client: Any, out: str, body: dict[str, Any]) -> None:
        client.rpush(out, _signed(key, body, t="h", ok=True, stream=True, kind="file", size=3))
        client.rpush(out, sealed(body, b"abc"))
        sha = hashlib.sha256(b"abc").hexdigest()
        client.rpush(out, _signed(key, body, t="e", bytes=3, sha256=sha))

    _head, chunks = transfer.FileChannel(_StubPlane(redis_server.url, honest)).call("n1", "get", WS)
    assert b"".join(chunks) == b"abc"


def test_a_starting_node_sweeps_what_a_cut_transfer_left(tmp_path: Path) -> None:
    root, data = tmp_path / "workspaces", tmp_path
    for left in (root / ".restore-ab", root / ".old-cd", root / "ws" / "keep"):
        left.mkdir(parents=True)
    (data / "tmp" / "xfer").mkdir(parents=True)
    (data / "tmp" / "xfer" / "ef.upload").write_bytes(b"x")
    node_files.sweep(root, data)
    assert sorted(p.name for p in root.iterdir()) == ["ws"]
    assert (root / "ws" / "keep").is_dir()
    assert not any((data / "tmp" / "xfer").iterdir())
