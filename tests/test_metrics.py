"""Metrics: Prometheus text that prometheus-client's own parser reads, and JSON percentiles."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from sandbox.events import CommandStatusChanged, PoolResized
from sandbox.metrics import Metrics, percentiles
from sandbox.model import Status
from tests.portal import Portal


def test_percentiles() -> None:
    assert percentiles([]) == {"p50": None, "p90": None, "p95": None, "p99": None}
    values = [float(i) for i in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def test_events_become_series() -> None:
    m = Metrics(lambda: {"safe": {"limit": 8, "running": 1, "queued": 2}})
    now = time.time()

    def ev(status: Status, at: float, **kw: object) -> CommandStatusChanged:
        return CommandStatusChanged(
            batch_id="b",
            command_id="c1",
            index=0,
            status=status,
            cls="safe",
            at=at,
            **kw,  # type: ignore[arg-type]
        )

    m(ev(Status.QUEUED, now))
    m(ev(Status.RUNNING, now + 0.5, executor="local"))
    m(ev(Status.SUCCEEDED, now + 1.5, executor="local", duration_s=1.0))
    m(PoolResized(pool="conditional", before=4, after=6, reason="queue 12"))
    families = {f.name: f for f in text_string_to_metric_families(m.prometheus().decode())}
    done = [s for s in families["bashfleet_commands"].samples if s.name.endswith("_total")]
    assert done[0].labels == {"cls": "safe", "executor": "local", "status": "succeeded"}
    assert done[0].value == 1
    assert any(s.value == 8 for s in families["bashfleet_pool_limit"].samples)
    summary = m.summary({})
    assert summary["queue_wait_s"]["p50"] == 0.5 and summary["duration_s"]["p99"] == 1.0


def test_metrics_endpoints_on_a_live_server(portal: Portal) -> None:
    token = portal.token("mia", "operator")
    status, batch = portal.request(
        "POST", "/api/v1/batches", {"script": "echo a\nfalse\n"}, token=token
    )
    assert status == 201
    portal.wait_batch(batch["id"], token)
    time.sleep(0.2)
    with urllib.request.urlopen(portal.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "bashfleet_commands",
        "bashfleet_command_duration_seconds",
        "bashfleet_queue_wait_seconds",
        "bashfleet_pool_limit",
    } <= set(families)
    statuses = {
        s.labels["status"] for s in families["bashfleet_commands"].samples if "status" in s.labels
    }
    assert {"succeeded", "failed"} <= statuses
    status, summary = portal.request("GET", "/api/v1/metrics", token=token)
    assert status == 200
    assert set(summary["duration_s"]) == {"p50", "p90", "p95", "p99"}
    assert summary["commands_by_status"]["succeeded"] >= 1
