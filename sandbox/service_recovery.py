"""Service's recovery from a dead predecessor: unfinished commands end interrupted, their
leftover processes and containers go, and batches held for an approval resume."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from sandbox.errors import BashfleetError
from sandbox.executors.base import Executor
from sandbox.executors.proctree import kill_jobs
from sandbox.model import Limits, Status
from sandbox.pipeline import batch_spec, judge
from sandbox.routing import instance_alive
from sandbox.scheduler import Scheduler
from sandbox.service_approvals import _gate
from sandbox.store import Store
from sandbox.store.records import utcnow
from sandbox.workspace_settings import Maxima, SecretBox, environment_for

if TYPE_CHECKING:
    from sandbox.cluster.control import ControlPlane
    from sandbox.service import ServiceConfig

log = logging.getLogger(__name__)


class RecoveryOps:
    """Mixin of ``Service`` (sandbox/service.py): the attributes below are its."""

    config: ServiceConfig
    store: Store
    scheduler: Scheduler
    executors: dict[str, Executor]
    cluster: ControlPlane | None
    _workspace_ids: dict[str, int]

    if TYPE_CHECKING:

        @property
        def secret_box(self) -> SecretBox: ...

    def recover(self) -> list[str]:
        """Mark what a dead process left unfinished as interrupted; kill its leftovers."""
        lost = self.store.batches.interrupt_unfinished()
        ids = {c.id for c in lost}
        if ids:
            kill_jobs(ids)
            if self.cluster is not None:  # they may still run on the nodes
                self.cluster.kill_everywhere(ids)
        docker = self.executors.get("docker")
        if docker is not None:
            self._recover_containers(docker)
        held = set(self.store.batches.held())
        for batch_id in {c.batch_id for c in lost} - held:
            self.store.batches.update_batch(
                batch_id, status=Status.INTERRUPTED, finished_at=utcnow()
            )
        if lost:
            log.warning("recovered %d interrupted commands", len(lost))
        for batch_id in sorted(held):
            try:
                self._resume(batch_id)
            except Exception:  # one odd batch must not stop the server from starting
                log.exception("cannot resume batch %s: it ends interrupted", batch_id)
                self._give_up(batch_id)
        return sorted(ids)

    def _resume(self, batch_id: str) -> None:
        """A batch held for an approval when the last server stopped: plan it again (the
        same script gives the same plan; explicit needs are the stored ones beyond it)
        and hand it to the scheduler with what already ended, so what awaits approval
        waits on and what never started runs when its needs are met."""
        b = self.store.batches.get(batch_id)
        plain = judge(b.script, max_statements=None)
        if len(plain.plan.nodes) != len(b.commands):
            raise BashfleetError("the script no longer gives the same commands")
        extra = {
            c.index: sorted(set(c.needs) - set(plain.plan.nodes[c.index].needs)) for c in b.commands
        }
        extra = {i: n for i, n in extra.items() if n}
        judgement = judge(b.script, needs=extra, max_statements=None) if extra else plain
        ws = self.store.workspaces.get(b.workspace_id)
        age = (utcnow() - b.created_at).total_seconds()
        deadline = None if b.deadline_s is None else max(0.001, b.deadline_s - age)
        spec = batch_spec(
            judgement,
            ws.path,
            batch_id=b.id,
            priority=b.priority,
            timeout_s=b.timeout_s or self.config.default_timeout_s,
            retries=b.retries,
            limits=Limits(disk_bytes=self.config.disk_bytes),
            command_ids=[c.id for c in b.commands],
            on_failure=b.on_failure,
            deadline_s=deadline,
            # the workspace's image, variables, secrets and limits as they are now
            environment=environment_for(
                self.store,
                ws,
                self.secret_box,
                base=Limits(disk_bytes=self.config.disk_bytes),
                maxima=Maxima.from_env(),
            ),
        )
        gated = {c.index for c in b.commands if c.status is Status.AWAITING_APPROVAL}
        spec = _gate(spec, gated, max(0.001, self.config.approval_ttl_s - age))
        if b.params:
            spec = replace(spec, env=tuple(sorted(b.params.items())))
        ended = {c.index: c.status for c in b.commands if c.status.final}
        self._workspace_ids[str(ws.path)] = ws.id
        self.scheduler.submit(spec, ended=ended)
        log.warning("resumed batch %s: %d command(s) await approval", batch_id, len(gated))

    def _give_up(self, batch_id: str) -> None:
        self.store.batches.set_commands_status(
            batch_id,
            only_from=[Status.PENDING, Status.QUEUED, Status.AWAITING_APPROVAL],
            status=Status.INTERRUPTED,
            finished_at=utcnow(),
        )
        self.store.batches.update_batch(batch_id, status=Status.INTERRUPTED, finished_at=utcnow())

    def _recover_containers(self, docker: Executor) -> None:
        try:
            # every labelled container, except those of bashfleet processes still alive
            docker.recover_orphans(  # type: ignore[attr-defined]
                all_instances=True, alive=instance_alive
            )
        except BashfleetError as e:
            log.warning("could not remove leftover containers: %s", e)
