"""Learned durations survive a restart: the portal's in its store, the CLI's in a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.model import CommandClass
from sandbox.priority import DEFAULT_ESTIMATE_S, DurationModel, fingerprint
from sandbox.service import Service, ServiceConfig

SAFE = CommandClass.SAFE
LOCAL = ("--isolation", "local")


def _config(data: Path) -> ServiceConfig:
    return ServiceConfig(data_dir=data, isolation="local", autoscale=False, schedules=False)


def test_durations_survive_a_portal_restart(tmp_path: Path) -> None:
    svc = Service.open(_config(tmp_path))
    try:
        batch = svc.submit(None, script="sleep 0.4\necho one\necho two")
        assert svc.wait(batch.id, 60)
        ws = svc.store.workspaces.find("default")
        assert ws is not None
        scope = str(ws.path)
        learned = svc.durations.estimate(fingerprint("sleep 0.4"), SAFE, scope)
        assert 0.35 < learned < 3, learned
        # stored by this call, or (part of it) by the background save that runs every few
        # seconds and may come first on a loaded machine
        svc.save_durations()
        rows = [r for r in svc.store.durations.load() if r[0] == ws.id]
        assert len(rows) == 3, rows
        assert svc.save_durations() == 0  # nothing new since
    finally:
        svc.close()
    again = Service.open(_config(tmp_path))
    try:
        # the first batch after the restart is scheduled with it (not the class default)
        estimate = again.scheduler.durations.estimate(fingerprint("sleep 0.4"), SAFE, scope)
        assert estimate == pytest.approx(learned)
        assert estimate != DEFAULT_ESTIMATE_S[SAFE]
        # another workspace has not learned it
        other = again.scheduler.durations.estimate(fingerprint("sleep 0.4"), SAFE, "/elsewhere")
        assert other == DEFAULT_ESTIMATE_S[SAFE]
    finally:
        again.close()


def test_the_cli_keeps_its_durations_in_the_data_folder(tmp_path: Path) -> None:
    data, ws = tmp_path / "data", tmp_path / "ws"
    ws.mkdir()
    script = tmp_path / "s.sh"
    script.write_text("sleep 0.3\n")
    bashfleet = str(Path(sys.executable).parent / "bashfleet")
    for _ in range(2):
        done = subprocess.run(
            [bashfleet, "--data", str(data), "run", str(script), "-w", str(ws), *LOCAL],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    saved = json.loads((data / "durations.json").read_text())
    [(scope, _key, seconds)] = [e for e in saved if e[1] == "sleep 0.3"]
    assert scope == str(ws.resolve()) and 0.25 < seconds < 3
    model = DurationModel()
    model.load(data / "durations.json")
    assert model.estimate("sleep 0.3", SAFE, scope) == seconds


def test_a_real_portal_writes_them_and_keeps_them_over_a_restart(tmp_path: Path) -> None:
    import sqlite3

    from tests.portal import running_portal

    def rows(data: Path) -> dict[str, float]:
        with sqlite3.connect(data / "bashfleet.db") as db:
            found = db.execute("select fingerprint, estimate_s from durations").fetchall()
        return {str(f): float(e) for f, e in found}

    with running_portal(tmp_path, extra=list(LOCAL)) as portal:
        token = portal.token("alice", "operator")
        status, batch = portal.request(
            "POST", "/api/v1/batches", {"script": "sleep 0.3\necho hi"}, token=token
        )
        assert status == 201, batch
        assert portal.wait_batch(batch["id"], token)["status"] == "succeeded"
    first = rows(portal.data)  # written at the latest when the portal stopped (SIGTERM)
    assert set(first) == {"sleep 0.3", "echo hi"} and 0.25 < first["sleep 0.3"] < 3
    with running_portal(tmp_path, data=portal.data, extra=list(LOCAL)) as again:
        assert rows(again.data) == first
