"""Abuse of the output path: floods, one huge line, invalid UTF-8, terminal escapes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from sandbox.executors.base import truncation_marker
from sandbox.model import DEFAULT_OUTPUT_CAP
from tests.hardening.conftest import (
    FLOOD_S,
    SENTINEL_GAP_MS,
    HealthProbe,
    HPortal,
    sentinel,
    sentinel_gaps_ms,
)

MARKER = truncation_marker(DEFAULT_OUTPUT_CAP)
ESCAPES = r"printf 'bad:\xff\xfe\xc3\x28 ansi:\e[31mred\e[0m\e[2J osc:\e]0;pwned\a\e]52;c;aGk=\a\n'"


# attack: output floods, a 50 MB line, invalid UTF-8 and terminal escapes
@pytest.mark.docker
@pytest.mark.slow
def test_floods_huge_lines_and_escapes_are_capped_while_everything_else_flows(
    docker_portal: HPortal, figures: dict[str, Any]
) -> None:
    """`yes` for FLOOD_S seconds (local pool and container), a 50 MB single line, invalid
    UTF-8 and ANSI/OSC sequences: every stream is stored capped at 10 MiB with one marker,
    raw bytes are kept as they came, the API answers valid JSON; meanwhile a sentinel in
    another container is never 500 ms late, stderr of a flooding command still arrives, and
    the server's RSS grows by less than 50 MB."""
    p = docker_portal
    token = p.token("flood", "operator")
    ticks = int(FLOOD_S * 10) + 10
    guard = p.submit(token, sentinel(ticks), workspace="sentinel", timeout_s=FLOOD_S + 30)
    assert p.wait_status(guard["id"], token, 0, {"running"})["status"] == "running"
    time.sleep(0.5)
    rss_before = p.rss()
    peak = rss_before
    script = "\n".join(
        [
            f"timeout {FLOOD_S:g} yes",  # safe: the local pool (bubblewrap)
            "head -c 50000000 /dev/zero | tr '\\0' a",  # one 50 MB line, no newline
            ESCAPES,
            "{ head -c 30000000 /dev/zero | tr '\\0' y; echo stderr-after-the-cap >&2; }",
            # sequential, in the batch's container; last, as nothing may depend on it
            f"touch f && timeout {FLOOD_S:g} yes",
        ]
    )
    with HealthProbe(p.url, every_s=0.2) as probe:
        batch = p.submit(token, script, timeout_s=FLOOD_S + 30)
        deadline = time.monotonic() + FLOOD_S + 60
        while time.monotonic() < deadline:
            peak = max(peak, p.rss())
            if p.batch(batch["id"], token)["status"] not in ("pending", "queued", "running"):
                break
            time.sleep(0.2)
    done = p.wait_batch(batch["id"], token, timeout=5)
    guard_done = p.wait_batch(guard["id"], token, timeout=30)
    grew = peak - rss_before
    cmds = done["commands"]
    assert [c["executor"] for c in cmds] == ["local", "local", "local", "local", "docker"]

    # every flood is stored capped, with the marker last
    for c in (cmds[0], cmds[1], cmds[3], cmds[4]):
        stored = p.output_file(done["id"], c["id"], "stdout")
        size = stored.stat().st_size
        assert size == DEFAULT_OUTPUT_CAP + len(MARKER), (c["command"], size)
        with stored.open("rb") as f:
            f.seek(-len(MARKER), 2)
            assert f.read() == MARKER
        assert c["truncated"] is True, c
        out = p.output(done["id"], c["id"], token, offset=size - 200, limit=200)
        assert out["truncated"] is True and "output truncated at" in out["stdout"]
    assert cmds[0]["status"] == "failed" and cmds[0]["exit_code"] == 124  # timeout's own code
    assert cmds[0]["duration_s"] >= FLOOD_S - 0.5  # it really flooded that long
    # stderr still flows after stdout hit its cap
    assert p.output(done["id"], cmds[3]["id"], token)["stderr"] == "stderr-after-the-cap\n"

    # invalid UTF-8 and escapes: raw on disk; the API returns valid JSON with U+FFFD
    raw = p.output_file(done["id"], cmds[2]["id"], "stdout").read_bytes()
    assert b"\xff\xfe\xc3\x28" in raw and b"\x1b[31m" in raw and b"\x1b]52;c;" in raw
    out = p.output(done["id"], cmds[2]["id"], token)
    assert "\ufffd" in out["stdout"] and "\x1b]0;pwned\x07" in out["stdout"]
    json.dumps(out)  # serialisable back to JSON: nothing broke the encoder

    g = guard_done["commands"][0]
    gaps = sentinel_gaps_ms(p.output(guard["id"], g["id"], token)["stdout"])
    assert g["status"] == "succeeded" and len(gaps) >= ticks - 5, g
    assert max(gaps) < SENTINEL_GAP_MS, max(gaps)
    assert grew < 50 << 20, grew
    assert probe.failures == 0, probe.summary()
    figures["output_abuse"] = {
        "flood_s": FLOOD_S,
        "cap_bytes_per_stream": DEFAULT_OUTPUT_CAP,
        "stored_bytes_per_flood": DEFAULT_OUTPUT_CAP + len(MARKER),
        "floods": 4,
        "server_rss_growth_mb": round(grew / (1 << 20), 1),
        "sentinel_max_gap_ms": round(max(gaps), 1),
        **probe.summary(),
    }
