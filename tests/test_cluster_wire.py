"""The broker path's fast lane (issue 18): the control plane's outbox coalesces the bodies
released together into one message per node; a node verifies each body of a list on its
own, spends their nonces in one Redis round trip, and runs the good ones while it refuses
(and reports) a forged, misaddressed or replayed one."""

from __future__ import annotations

import queue
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sandbox.cluster import wire
from sandbox.cluster.signing import node_key, sign
from sandbox.cluster.worker import NodeWorker
from tests.cluster_fixtures import CLUSTER_KEY, RedisServer, WorkerNode, cluster, redis_server
from tests.portal import Portal, free_port

__all__ = ["cluster", "redis_server"]  # fixtures

KEY = node_key(CLUSTER_KEY.encode(), "n1")  # what node n1 accepts


# --- the outbox (no broker: it publishes through the function it is given) ---------------


class Recorder:
    """A send function that holds its first message until released."""

    def __init__(self, fail_first: bool = False) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.first = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def __call__(self, node: str, bodies: list[dict[str, Any]]) -> None:
        if not self.first.is_set():
            self.first.set()
            assert self.release.wait(10)
            if self.fail_first:
                raise ConnectionError("broker away")
        self.sent.append((node, [b["n"] for b in bodies]))


def test_what_piles_up_while_a_message_is_on_its_way_leaves_in_one_per_node() -> None:
    send = Recorder()
    box = wire.Outbox(send)
    box.put("a", {"n": 0})
    assert send.first.wait(5)  # the first message is on its way: the next ones wait
    for n in range(1, 10):
        box.put("a", {"n": n})
    for n in range(100, 103):
        box.put("b", {"n": n})
    send.release.set()
    assert box.flush(5)
    assert send.sent == [("a", [0]), ("a", list(range(1, 10))), ("b", [100, 101, 102])]
    assert (box.messages, box.bodies) == (3, 13)


def test_nothing_leaves_while_held_then_everything_put_meanwhile_leaves_together() -> None:
    send = Recorder()
    send.first.set()  # no message is held back inside send
    box = wire.Outbox(send)
    with box.hold():
        for n in range(5):
            box.put("a", {"n": n})
            time.sleep(0.01)  # the outbox's thread has every chance to run
        assert send.sent == []
    assert box.flush(5)
    assert send.sent == [("a", [0, 1, 2, 3, 4])]


def test_a_message_holds_at_most_max_bodies_in_order() -> None:
    send = Recorder()
    box = wire.Outbox(send, max_bodies=4)
    box.put("a", {"n": -1})
    assert send.first.wait(5)
    for n in range(10):
        box.put("a", {"n": n})
    send.release.set()
    assert box.flush(5)
    assert send.sent == [("a", [-1]), ("a", [0, 1, 2, 3]), ("a", [4, 5, 6, 7]), ("a", [8, 9])]


def test_a_message_that_cannot_be_published_fails_each_of_its_bodies_only() -> None:
    send = Recorder(fail_first=True)
    box = wire.Outbox(send)
    failed: list[tuple[int, str]] = []
    box.put("a", {"n": 0}, lambda e: failed.append((0, str(e))))
    assert send.first.wait(5)
    box.put("a", {"n": 1}, lambda e: failed.append((1, str(e))))
    send.release.set()
    assert box.flush(5)
    assert failed == [(0, "broker away")]
    assert send.sent == [("a", [1])]  # the next message goes
    assert (box.messages, box.bodies) == (1, 1)


def test_a_closed_outbox_sends_what_it_has_and_refuses_more() -> None:
    send = Recorder()
    box = wire.Outbox(send)
    box.put("a", {"n": 0})
    assert send.first.wait(5)
    box.put("a", {"n": 1})
    box.close()
    with pytest.raises(wire.BrokerUnavailable, match="shutting down"):
        box.put("a", {"n": 2})
    send.release.set()
    assert box.flush(5)
    assert send.sent == [("a", [0]), ("a", [1])]


# --- a node's batched verification (a real Redis for the nonces) -------------------------


def _node(tmp_path: Path, broker: str, monkeypatch: pytest.MonkeyPatch) -> tuple[NodeWorker, list]:
    monkeypatch.setenv("BASHFLEET_CLUSTER_KEY", CLUSTER_KEY)
    node = NodeWorker("n1", broker, tmp_path / "n1", isolation="local")
    node.journal.mkdir(parents=True)
    dispatched: list[tuple[str, list[str]]] = []

    def record(body: dict[str, Any]) -> None:  # what would run, and what was journalled then
        dispatched.append((body["id"], sorted(p.name for p in node.journal.iterdir())))

    monkeypatch.setattr(node, "_dispatch", record)
    return node, dispatched


def _reports(node: NodeWorker) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            entry = node._out.get_nowait()
        except queue.Empty:
            return out
        assert entry is not None
        out.append(entry)


def _run(job_id: str, node: str = "n1") -> dict[str, Any]:
    return {"kind": "run", "node": node, "id": job_id, "command": f"echo {job_id}"}


def test_a_forged_body_in_a_list_is_refused_while_the_others_run(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, dispatched = _node(tmp_path, redis_server.url, monkeypatch)
    good1, good2 = sign(KEY, _run("good1")), sign(KEY, _run("good2"))
    node.handle(
        [
            good1,
            {**sign(KEY, _run("forged")), "command": "rm -rf ~"},  # changed after signing
            sign(b"an attacker's guess at the key!!", _run("guess")),
            sign(KEY, _run("elsewhere", node="n2")),  # meant for another node
            "not a message",
            good2,
            good1,  # the same body twice in one list
        ]
    )
    # both good jobs were journalled before the first of them started
    assert dispatched == [("good1", ["good1", "good2"]), ("good2", ["good1", "good2"])]
    refused = [(r["job"], r["reason"]) for r in _reports(node)]
    assert refused == [
        ("forged", "bad signature"),
        ("guess", "bad signature"),
        ("elsewhere", "meant for node 'n2', not 'n1'"),
        ("", "not a signed message"),
        ("good1", "replayed message (its nonce was used before)"),
    ]
    node.handle([good2])  # a replay in a later message, in a list or alone
    node.handle(good1)
    assert len(dispatched) == 2
    assert [r["reason"] for r in _reports(node)] == [
        "replayed message (its nonce was used before)"
    ] * 2
    node.handle(sign(KEY, _run("single")))  # one envelope alone still works
    assert [d[0] for d in dispatched] == ["good1", "good2", "single"]


def test_a_list_too_long_or_empty_is_refused_whole(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, dispatched = _node(tmp_path, redis_server.url, monkeypatch)
    node.handle([sign(KEY, _run(f"j{i}")) for i in range(wire.MAX_BODIES + 1)])
    node.handle([])
    assert dispatched == []
    assert [r["reason"] for r in _reports(node)] == [
        f"{wire.MAX_BODIES + 1} bodies in one message",
        "0 bodies in one message",
    ]


def test_without_redis_no_body_of_a_list_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node, dispatched = _node(tmp_path, f"redis://127.0.0.1:{free_port()}/0", monkeypatch)
    node.handle([sign(KEY, _run("a")), sign(KEY, _run("b"))])
    assert dispatched == []
    reports = _reports(node)
    assert [r["job"] for r in reports] == ["a", "b"]
    assert all(r["reason"].startswith("cannot check the nonce") for r in reports)
    assert list(node.journal.iterdir()) == []


# --- end to end: a portal, two nodes, a real Redis ----------------------------------------


def _metric(p: Portal, name: str) -> float:
    with urllib.request.urlopen(p.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert found, text[-2000:]
    return float(found.group(1))


@pytest.mark.slow
def test_a_burst_travels_coalesced_and_a_forged_body_in_a_list_is_audited(
    cluster: tuple[Portal, list[WorkerNode]], redis_server: RedisServer
) -> None:
    p, nodes = cluster
    admin = p.token("boss", "admin")
    deadline = time.monotonic() + 30
    while not any(
        n["status"] == "live" for n in p.request("GET", "/api/v1/nodes", token=admin)[1]["nodes"]
    ):
        assert time.monotonic() < deadline, nodes[0].log()
        time.sleep(0.1)

    # 150 commands released 16 at a time: fewer broker messages than jobs, output once
    before = {
        what: _metric(p, f"bashfleet_cluster_published_{what}_total")
        for what in ("messages", "bodies")
    }
    script = "".join(f"echo line{i}\n" for i in range(150))
    status, batch = p.request(
        "POST", "/api/v1/batches", {"script": script, "workspace": "ws-b"}, token=admin
    )
    assert status == 201, batch
    done = p.wait_batch(batch["id"], admin, timeout=120)
    assert done["status"] == "succeeded", done.get("counts")
    for c in done["commands"]:
        _s, out = p.request(
            "GET", f"/api/v1/batches/{batch['id']}/commands/{c['id']}/output", token=admin
        )
        assert out["stdout"] == f"line{c['index']}\n"
    bodies = _metric(p, "bashfleet_cluster_published_bodies_total") - before["bodies"]
    messages = _metric(p, "bashfleet_cluster_published_messages_total") - before["messages"]
    # the 150 jobs, and the batch's close_batch once it has left the outbox
    assert bodies in (150, 151) and messages < bodies, (bodies, messages)

    # a list pushed by a client with Redis access: the signed bodies run, the forged one
    # is refused and audited
    app = wire.celery_app(redis_server.url)
    body = {
        "kind": "run",
        "node": "n1",
        "cls": "sequential",
        "workspace": "ws-l",
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
    app.send_task(
        wire.TASK_RUN,
        args=[
            [
                sign(KEY, {**body, "id": "l1", "command": "echo one >> ok.txt"}),
                {**sign(KEY, {**body, "id": "l2", "command": "true"}), "command": "echo x > bad"},
                sign(KEY, {**body, "id": "l3", "command": "echo three >> ok.txt"}),
            ]
        ],
        queue=wire.queue_of("n1"),
    )
    folder = nodes[0].data / "workspaces" / "ws-l"
    deadline = time.monotonic() + 20
    while not ((folder / "ok.txt").exists() and len((folder / "ok.txt").read_text()) >= 10):
        assert time.monotonic() < deadline, nodes[0].log()
        time.sleep(0.1)
    assert sorted((folder / "ok.txt").read_text().split()) == ["one", "three"]
    assert not (folder / "bad").exists()
    deadline = time.monotonic() + 10
    while True:
        _s, page = p.request(
            "GET", "/api/v1/audit?action=cluster_message_refused&limit=10", token=admin
        )
        if page["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(i["target"], i["detail"]["reason"]) for i in page["items"]] == [
        ("l2", "bad signature")
    ]
