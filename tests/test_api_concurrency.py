"""50 simultaneous submissions while 10 batches stream output, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from tests.portal import Portal

STREAMER = "for i in $(seq 150); do echo line $i; sleep 0.01; done"


def test_fifty_submissions_while_ten_batches_stream(any_portal: Portal) -> None:
    p = any_portal
    tokens = [p.token(f"user{i}", "operator") for i in range(5)]
    streaming = []
    for i in range(10):
        status, batch = p.request(
            "POST", "/api/v1/batches", {"script": STREAMER}, token=tokens[i % 5]
        )
        assert status == 201, batch
        streaming.append(batch["id"])
    results: list[tuple[int, object]] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def submit(i: int) -> None:
        start.wait()
        got = p.request(
            "POST",
            "/api/v1/batches",
            {"commands": [f"echo {i}", "echo again"]},
            token=tokens[i % 5],
        )
        with lock:
            results.append(got)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(s for s, _ in results) == [201] * 50, [b for s, b in results if s != 201][:3]
    ids = {b["id"] for _, b in results}  # type: ignore[index]
    assert len(ids) == 50
    status, page = p.request("GET", "/api/v1/batches?limit=200", token=tokens[0])
    assert page["total"] == 60
    for batch_id in [*streaming, *ids]:
        done = p.wait_batch(batch_id, tokens[0], timeout=120)
        assert done["status"] == "succeeded", done
    for batch_id in streaming:
        done = p.wait_batch(batch_id, tokens[0])
        cid = done["commands"][0]["id"]
        _s, out = p.request(
            "GET", f"/api/v1/batches/{batch_id}/commands/{cid}/output", token=tokens[0]
        )
        assert out["stdout"].count("\n") == 150
    assert "database is locked" not in p.log()
