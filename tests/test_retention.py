"""Retention with faked clocks: batches are made "3 days ago" (the store's clock is
replaced while they are submitted), retention runs with an injected clock; old
batches, their output files and artifacts go, current and unfinished ones stay, and
the data folder shrinks by what went."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import sandbox.store.batches as batches_module
from sandbox.executors.rootfs import ROOTFS_ENV
from sandbox.model import Status
from sandbox.service import Service, ServiceConfig
from sandbox.store import NotFound
from sandbox.store.records import utcnow
from sandbox.workspace_files import folder_bytes
from tests.portal import SHARED_ROOTFS

NOW = utcnow()
# about 300 KB of output and a 100 KB artifact per batch
SCRIPT = "head -c 300000 /dev/zero | tr '\\0' x\nhead -c 100000 /dev/zero | tr '\\0' y > art.bin"


@pytest.fixture
def svc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv(ROOTFS_ENV, str(SHARED_ROOTFS))
    service = Service.open(
        ServiceConfig(
            data_dir=tmp_path / "data",
            isolation="local",
            autoscale=False,
            schedules=False,
            retention_days=1,
            workspace_budget_bytes=0,
            retention_every_s=0,
        )
    )
    service.retention.clock = lambda: NOW  # the injected clock
    yield service
    service.close()


def submit_at(
    svc: Service, monkeypatch: pytest.MonkeyPatch, ago: timedelta, workspace: str = "default"
) -> str:
    monkeypatch.setattr(batches_module, "utcnow", lambda: NOW - ago)
    try:
        batch = svc.submit(None, script=SCRIPT, workspace=workspace, artifacts=["art.bin"])
    finally:
        monkeypatch.setattr(batches_module, "utcnow", utcnow)
    assert svc.wait(batch.id, 60)
    done = svc.get_batch(batch.id)
    assert done.status is Status.SUCCEEDED, [(c.command, c.error) for c in done.commands]
    assert [a.path for a in svc.store.artifacts.list(batch.id)] == ["art.bin"]
    return batch.id


def stored(svc: Service) -> int:
    data = svc.config.data_dir
    return folder_bytes(data / "output")[0] + folder_bytes(data / "artifacts")[0]


def test_old_batches_their_output_and_artifacts_go(
    svc: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = svc.config.data_dir
    old = [submit_at(svc, monkeypatch, timedelta(days=3)) for _ in range(2)]
    current = submit_at(svc, monkeypatch, timedelta(hours=2))
    # an old batch that is still running is never touched
    monkeypatch.setattr(batches_module, "utcnow", lambda: NOW - timedelta(days=5))
    running = svc.submit(None, script="sleep 30", workspace="other").id
    monkeypatch.setattr(batches_module, "utcnow", utcnow)
    before = stored(svc)
    assert before >= 3 * 400_000
    done = svc.run_retention()
    assert done["deleted"] == 2 and done["by_age"] == 2
    assert done["bytes"] >= 2 * 400_000
    for batch_id in old:
        with pytest.raises(NotFound):
            svc.get_batch(batch_id)
        assert not (data / "output" / batch_id).exists()
        assert not (data / "artifacts" / batch_id).exists()
        assert svc.store.artifacts.list(batch_id) == []
    assert svc.get_batch(current).status is Status.SUCCEEDED
    assert (data / "artifacts" / current / "art.bin").stat().st_size == 100_000
    assert svc.read_output(current, svc.get_batch(current).commands[0].id, "stdout")[2] == 300_000
    assert svc.get_batch(running).status in (Status.PENDING, Status.QUEUED, Status.RUNNING)
    after = stored(svc)
    assert before - after == pytest.approx(done["bytes"], abs=1000), (before, after, done)
    assert svc.store.audit.list(action="retention_ran").total == 1
    assert svc.run_retention()["deleted"] == 0  # nothing more is old
    svc.cancel_batch(None, running)


def test_the_budget_deletes_oldest_first(svc: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.retention.max_age_days = 0  # age alone deletes nothing
    ids = [submit_at(svc, monkeypatch, timedelta(minutes=30 - i), "budget") for i in range(3)]
    other = submit_at(svc, monkeypatch, timedelta(minutes=40), "elsewhere")
    per_batch = svc.store.artifacts.stored_bytes()[ids[0]]
    svc.retention.budget_bytes = int(per_batch * 1.5)  # room for one batch
    done = svc.run_retention()
    assert done["by_budget"] == 2, done
    for gone in ids[:2]:
        with pytest.raises(NotFound):
            svc.get_batch(gone)
    assert svc.get_batch(ids[2]).status is Status.SUCCEEDED  # the newest stays
    assert svc.get_batch(other).status is Status.SUCCEEDED  # another workspace's budget
    usage = svc.files.usage(svc.store.workspaces.get_or_create("budget"))
    assert usage["artifact_bytes"] == 100_000 and usage["output_bytes"] == per_batch - 100_000
