"""Escape attempts: children that try to outlive their command, in both pools."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.hardening.conftest import HPortal, processes_with, wait_gone


def escapees(tag: str, then: str) -> str:
    """setsid, double fork, nohup, a grandchild holding stdout, and a zombie under a
    process that never reaps it; all tagged with ``tag`` in their command line."""
    return (
        "touch spawned && { "
        f"setsid sleep {tag}1 & "
        f"( (sleep {tag}2 &) & ); "
        f"nohup sleep {tag}3 >/dev/null 2>&1 & "
        f"bash -c 'sleep {tag}4 &'; "  # the grandchild keeps the command's stdout open
        f"bash -c 'sleep 0.1 & exec sleep {tag}5' & "  # sleep 0.1 stays a zombie
        "echo spawned; "
        f"{then}; }}"
    )


def _attack(p: HPortal, token: str, tag: str, pool: str) -> dict[str, Any]:
    """One batch whose command ends at once, one that is cancelled while it sleeps."""
    ends = p.submit(token, escapees(tag + "0", "true"), timeout_s=20)
    done = p.wait_batch(ends["id"], token, timeout=30)
    c = done["commands"][0]
    assert c["executor"] == pool, c
    # the grandchild holding stdout must not keep the command alive until its timeout
    # (20 s; the escapees sleep 41 s): 10 s leaves room for a busy machine's container
    assert c["status"] == "succeeded" and c["duration_s"] < 10, c
    left_end = wait_gone(tag + "0", timeout=5)
    assert left_end == [], left_end

    cancelled = p.submit(token, escapees(tag + "9", "sleep 60"), timeout_s=60)
    assert p.wait_running(cancelled["id"], token, 1, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(processes_with(tag + "9")) < 5:
        time.sleep(0.1)  # every escapee has started
    t0 = time.monotonic()
    status, _ = p.request("POST", f"/api/v1/batches/{cancelled['id']}/cancel", token=token)
    assert status == 200
    done = p.wait_batch(cancelled["id"], token, timeout=15)
    left_cancel = wait_gone(tag + "9", timeout=5)
    gone_after = time.monotonic() - t0
    assert done["commands"][0]["status"] == "cancelled", done["commands"][0]
    assert left_cancel == [], left_cancel
    assert gone_after < 5, gone_after
    return {
        "ended_command_s": round(c["duration_s"], 2),
        "cancel_to_nothing_left_s": round(gone_after, 2),
        "survivors": 0,
    }


# attack: a command that leaves children behind (setsid, double fork, nohup, zombies) in a container
@pytest.mark.docker
def test_nothing_escapes_a_container(docker_portal: HPortal, figures: dict[str, Any]) -> None:
    """In a container: after the command's end, and after a cancel, none of the setsid,
    double-forked, nohup'd, stdout-holding or zombie children is left (within 5 s)."""
    p = docker_portal
    figures["escape_container"] = _attack(p, p.token("esc", "operator"), "41.7", "docker")


# attack: children left behind (setsid, double fork, nohup, zombies) in the local pool
def test_nothing_escapes_the_local_pool(local_portal: HPortal, figures: dict[str, Any]) -> None:
    """In the local pool (`--isolation local`, no bubblewrap): the same escapees are all
    gone after the command's end and after a cancel (within 5 s)."""
    p = local_portal
    figures["escape_local"] = _attack(p, p.token("esc", "operator"), "42.7", "local")
