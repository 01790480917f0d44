"""The facade the web app, the CLI and schedules use. Nothing else talks to executors.

    svc = Service.open(ServiceConfig(data_dir=Path("data")))
    batch = svc.submit(user, script="ls\\nmake test", workspace="default")
    svc.get_batch(batch.id); svc.cancel_batch(user, batch.id); svc.close()

At start it recovers from a dead predecessor: commands left ``running`` (or
waiting) become ``interrupted``, their leftover processes (found by the job
marker in their environment, not by pid) are killed, and every labelled
container is removed.

Its sections live in mixins, one module each: service_retention.py, service_schedules.py,
service_durations.py, service_recovery.py and service_approvals.py.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.approvals import approval_ttl_s
from sandbox.artifacts import ArtifactCollector, ArtifactLimits, check_patterns
from sandbox.autoscale import Autoscaler
from sandbox.errors import BashfleetError, InputError, PolicyError
from sandbox.errors import Forbidden as Forbidden  # kept importable from here
from sandbox.errors import QuotaExceeded as QuotaExceeded
from sandbox.events import Event, EventBus
from sandbox.executors import egress
from sandbox.executors.base import Executor
from sandbox.executors.local import LocalExecutor
from sandbox.executors.rootfs import ROOTFS_ENV, ImageTrees, trees_dir
from sandbox.image import SANDBOX_UID, default_image
from sandbox.metrics import Metrics, host_usage
from sandbox.model import FailurePolicy, Limits, Status
from sandbox.notify_email import EmailNotifier, smtp_settings
from sandbox.persist import StoreWriter
from sandbox.pipeline import (
    Judgement,
    batch_spec,
    check_script,
    failure_policy,
    judge,
    script_text,
)
from sandbox.priority import DurationModel
from sandbox.retention import Retention
from sandbox.routing import make_router, new_instance_id, open_docker
from sandbox.scheduler import Scheduler, default_limits
from sandbox.schedules import ScheduleRunner
from sandbox.service_approvals import ApprovalOps, _gate
from sandbox.service_durations import DURATIONS_EVERY_S as DURATIONS_EVERY_S
from sandbox.service_durations import DurationOps
from sandbox.service_recovery import RecoveryOps
from sandbox.service_retention import RetentionOps
from sandbox.service_schedules import ScheduleOps
from sandbox.store import (
    BatchRecord,
    NewCommand,
    NotFound,
    Page,
    Role,
    Source,
    Store,
    UserRecord,
    WorkspaceRecord,
    default_url,
    make_engine,
    migrate,
)
from sandbox.store.ids import new_id
from sandbox.store.records import ExecutorKind, utcnow
from sandbox.uploads import UploadLimits
from sandbox.webhooks import WebhookNotifier
from sandbox.workspace_env import WorkspaceEnvironment
from sandbox.workspace_io import DownloadLimits, WorkspaceIO
from sandbox.workspace_settings import Maxima, SecretBox, class_timeouts, environment_for

if TYPE_CHECKING:
    from sandbox.cluster.control import ControlPlane
    from sandbox.cluster.move import WorkspaceMover

log = logging.getLogger(__name__)

# What "re-run only what failed" takes again (in the original order).
RERUN_FAILED = (Status.FAILED, Status.TIMED_OUT, Status.INTERRUPTED, Status.SKIPPED)


@dataclass
class ServiceConfig:
    data_dir: Path
    database_url: str | None = None
    isolation: str = "auto"  # auto | docker | local
    jobs: int | None = None
    max_script_bytes: int = 1 << 20
    max_statements: int = 5000
    default_timeout_s: float | None = 3600.0
    instance_id: str = field(default_factory=lambda: new_instance_id("server"))
    autoscale: bool = True
    schedules: bool = True
    disk_bytes: int | None = 10 << 30  # what one container command may take of the disk
    docker_probe_s: float = 5.0  # how often to look for an engine that did not answer at start
    image: str | None = None  # the workspaces' image (default: BASHFLEET_IMAGE or the sandbox)
    uploads: UploadLimits = field(default_factory=UploadLimits)
    downloads: DownloadLimits = field(default_factory=DownloadLimits)
    artifacts: ArtifactLimits = field(default_factory=ArtifactLimits)
    retention_days: float = 30.0  # finished batches older than this are deleted; 0: never
    workspace_budget_bytes: int = 10 << 30  # stored output + artifacts per workspace; 0: none
    retention_every_s: float = 3600.0  # how often retention runs; 0: only when called
    # how long a command waits for an approval before it ends rejected (BASHFLEET_APPROVAL_TTL_S)
    approval_ttl_s: float = field(default_factory=approval_ttl_s)
    broker: str | None = None  # scale-out: redis://... ; jobs run on worker nodes (cluster/)


class Service(RetentionOps, ScheduleOps, DurationOps, RecoveryOps, ApprovalOps):
    def __init__(self, config: ServiceConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.bus = EventBus()
        self.writer = StoreWriter(store)
        self._unrecord = self.bus.subscribe(self.writer)
        # after the writer: a finished batch's files are copied on the collector's thread
        self.artifacts = ArtifactCollector(store, config.data_dir, config.artifacts)
        self._unartifacts = self.bus.subscribe(self.artifacts)
        self.files = WorkspaceIO(store, config.data_dir, config.uploads, config.downloads)
        # how scripts are judged; the portal replaces it with a process pool with a deadline
        self.judge: Callable[..., Judgement] = judge
        # One workspace, one environment: every local job runs on the image's unpacked tree
        # (never the host: no data folder, wherever it is), as the workspace's owner; see
        # executors/bwrap.py.
        self.local = LocalExecutor(
            trees=ImageTrees(trees_dir(config.data_dir)),
            image=default_image(config.image),
            fallback_uid=SANDBOX_UID,
        )
        self.executors: dict[str, Executor] = {"local": self.local}
        self.docker_why = ""
        # scale-out: with a broker, every job goes to a worker node (sandbox/cluster/)
        self.cluster: ControlPlane | None = None
        if config.broker:
            from sandbox.cluster.control import ControlPlane
            from sandbox.cluster.files import ClusterFiles

            self.cluster = ControlPlane(config.broker, store)
            self.executors = self.cluster.executors()
            # the files API reads and writes the workspace's node, not this host
            self.files = ClusterFiles(
                store, config.data_dir, config.uploads, config.downloads, plane=self.cluster
            )
        elif config.isolation != "local":
            docker, self.docker_why = open_docker(config.instance_id)
            if docker is not None:
                self.executors["docker"] = docker
            elif config.isolation == "docker":
                raise BashfleetError(f"isolation is docker, but {self.docker_why}")
        self.durations = DurationModel()
        self._workspace_ids: dict[str, int] = {}  # workspace path -> id (durations' scope)
        self.scheduler = Scheduler(
            self.executors,
            make_router(
                config.isolation,
                lambda: "docker" in self.executors,
                lambda: self.docker_why,
                local_ready=None if self.cluster else lambda: self.local.usable,
                local_why=lambda: self.local.problem,
            ),
            bus=self.bus,
            limits=default_limits(config.jobs),
            max_running=config.jobs,
            retain_finished=200,
            durations=self.durations,
        )
        # webhooks: the bus only queues; deliveries run on the notifier's own threads
        self.hooks = WebhookNotifier(store)
        self.bus.subscribe(self.hooks)
        # e-mail: the same events, for users who gave an address (BASHFLEET_SMTP_URL)
        smtp = smtp_settings()
        self.mail = EmailNotifier(store, smtp) if smtp is not None else None
        if self.mail is not None:
            self.bus.subscribe(self.mail)
        self.metrics = Metrics(self.scheduler.snapshot, self._gauges)
        self.bus.subscribe(self.metrics)
        if self.cluster is not None:  # scale-out: per-node gauges
            self.metrics.registry.register(self.cluster)
        self.schedules: ScheduleRunner | None = None
        self.autoscaler: Autoscaler | None = None
        self.mover: WorkspaceMover | None = None
        if self.cluster is not None:  # slots follow the nodes, not this host's CPU
            self.cluster.attach(self.scheduler)
            self.mover = self._mover(config)
        elif config.autoscale:
            self.autoscaler = Autoscaler(self.scheduler)
            self.autoscaler.start()
        self._lock = threading.Lock()
        self._team_locks: dict[int, threading.Lock] = {}
        self._secret_box: SecretBox | None = None
        self._closed = threading.Event()
        self.retention = Retention(
            store,
            max_age_days=config.retention_days,
            budget_bytes=config.workspace_budget_bytes,
            live=self._live,
            remove_files=self.remove_batch_files,
            team_bytes=lambda team_id: self.files.team_bytes(team_id, fresh=True),
        )
        # unpack the image and self-test the sandbox now, not on the first command
        if self.cluster is None:  # a control plane runs nothing itself: its nodes do
            threading.Thread(
                target=self._prepare_local, name="bashfleet-prepare", daemon=True
            ).start()
            # the egress network and its iptables rules now, not on an egress batch's first job
            threading.Thread(
                target=self.ensure_egress, name="bashfleet-egress", daemon=True
            ).start()
        if config.isolation != "local" and "docker" not in self.executors:
            # the engine may come up later (it was restarting, or starts after us): look again
            threading.Thread(
                target=self._probe_docker, name="bashfleet-docker-probe", daemon=True
            ).start()

    def _mover(self, config: ServiceConfig) -> WorkspaceMover:
        """Moves of workspaces between nodes (cluster/move.py)."""
        from sandbox.cluster.move import WorkspaceMover

        mover = WorkspaceMover(
            self.cluster,
            self.store,
            self.scheduler,
            config.data_dir.resolve() / "tmp" / "moves",
            limits={
                "max_bytes": config.downloads.max_bytes,
                "max_entries": config.downloads.max_entries,
            },
            files=self.files,
        )
        self.files.moving = mover.moving  # type: ignore[attr-defined]
        return mover

    def _prepare_local(self) -> None:
        problem = self.local.prepare()
        if not os.environ.get(ROOTFS_ENV):  # a shared folder of trees is the operator's to prune
            # the trees of images a workspace names stay (unpacking one again takes seconds)
            try:
                named = {w.image for w in self.store.workspaces.list() if w.image}
            except Exception:  # the store is not ready: keep only the default image's
                log.exception("could not list the workspaces' images")
                named = set()
            self.local.prune_trees(named)
        if problem is None:
            log.info("local pool: %s", self.local.isolation)
        elif "docker" in self.executors:
            log.warning("local sandbox unusable (%s): safe commands run in containers", problem)
        else:
            log.error("local sandbox unusable (%s), no Docker engine: commands refused", problem)

    def _gauges(self) -> dict[str, float]:
        docker = self.executors.get("docker")
        breaker = getattr(docker, "breaker", None)
        states = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
        return {
            "docker_available": 1.0 if docker is not None else 0.0,
            "docker_breaker_state": states.get(str(breaker.state), 0.0) if breaker else 0.0,
        }

    def metrics_summary(self) -> dict[str, Any]:
        summary = self.metrics.summary(self.scheduler.snapshot())
        summary["docker"] = self._gauges()
        summary["host"] = host_usage()
        return summary

    @classmethod
    def open(cls, config: ServiceConfig) -> Service:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        url = config.database_url or default_url(config.data_dir)
        engine = make_engine(url)
        migrate(engine)
        store = Store.open(engine, config.data_dir)
        service = cls(config, store)
        service.recover()
        service.load_durations()
        threading.Thread(
            target=service._save_durations_loop, name="bashfleet-durations", daemon=True
        ).start()
        if config.schedules:
            service.schedules = ScheduleRunner(service)
            service.schedules.start()
        if config.retention_every_s > 0:
            threading.Thread(
                target=service._retention_loop, name="bashfleet-retention", daemon=True
            ).start()
        return service

    def ensure_egress(self, *, needed: bool | None = None) -> str:
        """Make the egress network and its iptables rules (sandbox/executors/egress.py)
        when a workspace has ``network=egress`` (``needed``: known by the caller); a failure
        is logged as an error (egress jobs are then refused, never run unprotected). The
        outcome: "not needed", "ready", "no docker" or "failed: WHY"."""
        if needed is None:
            try:
                needed = any(w.network == "egress" for w in self.store.workspaces.list())
            except Exception:  # the store is not ready: the first egress job makes them
                log.exception("could not list the workspaces for egress")
                return "failed: the workspaces could not be listed"
        if not needed:
            return "not needed"
        docker = self.executors.get("docker")
        client_of = getattr(docker, "_docker", None)
        if client_of is None:
            log.error(
                "a workspace has network=egress but no Docker engine answers (%s): its "
                "containers cannot start until one does",
                self.docker_why or "isolation is local",
            )
            return "no docker"
        try:
            egress.ensure(client_of())
        except Exception as e:
            log.error(
                "cannot set up the egress network for network=egress workspaces: %s; their "
                "jobs are refused until it is (run bashfleet doctor)",
                e,
            )
            return f"failed: {e}"
        return "ready"

    def _probe_docker(self) -> None:
        while not self._closed.wait(self.config.docker_probe_s):
            docker, why = open_docker(self.config.instance_id)
            if docker is None:
                self.docker_why = why
                continue
            self._recover_containers(docker)
            self.scheduler.add_executor("docker", docker)  # first: the router reads executors
            self.executors["docker"] = docker
            log.warning("the Docker engine answers now: non-safe commands run in containers")
            self.ensure_egress()
            return

    # --- commands -------------------------------------------------------------------------

    def classify(self, script: str) -> Judgement:
        """A dry run: statements, classes, effects and the plan. Stores nothing."""
        check_script(script, max_bytes=self.config.max_script_bytes)
        return self.judge(script, max_statements=self.config.max_statements)

    def submit(
        self,
        user: UserRecord | None,
        *,
        script: str | None = None,
        commands: list[str] | None = None,
        workspace: str = "default",
        priority: int = 5,
        timeout_s: float | None = None,
        retries: int = 0,
        needs: Mapping[int, Iterable[int]] | None = None,
        source: Source = Source.API,
        schedule_id: int | None = None,
        on_failure: FailurePolicy | str | None = None,
        deadline_s: float | None = None,
        rerun_of: str | None = None,
        environment: WorkspaceEnvironment | None = None,
        artifacts: list[str] | tuple[str, ...] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> BatchRecord:
        """Judge, plan, store and start a batch. A rejected batch stores nothing.
        ``params``: a template's environment (``BF_PARAM_x``; sandbox/templates.py).

        ``environment``: the workspace's image, network, variables and secrets for this
        batch (``workspace_env``); None: resolved from the workspace's settings.

        ``on_failure`` None: ``halt`` when the script starts with ``set -e``, else
        ``skip_dependents``; ``deadline_s``: for the whole batch; ``artifacts``: globs of
        files copied out of the workspace when the batch ends (sandbox/artifacts.py)."""
        if user is not None and not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not submit batches")
        if self.cluster is not None:
            self.cluster.check()  # Redis down: 503, nothing stored
        text = script_text(script, commands)
        check_script(text, max_bytes=self.config.max_script_bytes)
        if not 1 <= priority <= 10:
            raise InputError("priority must be between 1 and 10")
        if retries < 0 or retries > 10:
            raise InputError("retries must be between 0 and 10")
        if timeout_s is not None and not 0 < timeout_s <= 7 * 86400:
            raise InputError("timeout_s must be more than 0 and at most 604800 (a week)")
        if deadline_s is not None and not 0 < deadline_s <= 7 * 86400:
            raise InputError("deadline_s must be more than 0 and at most 604800 (a week)")
        patterns = check_patterns(artifacts)
        judgement = self.judge(text, needs=needs, max_statements=self.config.max_statements)
        policy = failure_policy(judgement, on_failure)
        # a workspace made by this submission belongs to its submitter
        ws = self.store.workspaces.get_or_create(
            workspace, owner_user_id=user.id if user is not None else None
        )
        if self.files.uploading(ws.id):
            raise PolicyError(f"an upload into {ws.name!r} is under way; submit when it is done")
        # the quota check and the insert as one step: two submissions cannot both pass
        with self._team_lock(ws.owner_team_id):
            self._check_team_quota(ws, len(judgement.judged))
            maxima = Maxima.from_env()
            if environment is None:  # tests may pass one; the portal resolves the settings
                environment = environment_for(
                    self.store,
                    ws,
                    self.secret_box,
                    base=Limits(disk_bytes=self.config.disk_bytes),
                    maxima=maxima,
                )
            if timeout_s is None:
                classes = {j.verdict.cls.value for j in judgement.judged}
                timeout_s = _class_timeout(ws, maxima, classes, self.config.default_timeout_s)
            home = self.cluster.place(ws.name) if self.cluster is not None else None
            _own_workspace(ws.path)
            self._workspace_ids[str(ws.path)] = ws.id
            batch_id = new_id()
            command_ids = [new_id() for _ in judgement.judged]
            route = self.scheduler.route
            new = []
            gated: set[int] = set()  # the commands that wait for a person's approval
            for j, node, cid in zip(
                judgement.judged, judgement.plan.nodes, command_ids, strict=True
            ):
                executor, _why = route(j.verdict.cls)
                if ws.approve.wants(j.verdict.cls):
                    gated.add(node.index)
                new.append(
                    NewCommand(
                        id=cid,
                        index=node.index,
                        command=j.statement.text,
                        cls=j.verdict.cls,
                        reasons=j.verdict.reasons,
                        executor=ExecutorKind(executor) if executor else ExecutorKind.NONE,
                        needs=tuple(node.needs),
                        reads=tuple(sorted(j.effects.reads)),
                        writes=tuple(sorted(j.effects.writes)),
                        status=Status.AWAITING_APPROVAL if node.index in gated else Status.PENDING,
                        approval="required" if node.index in gated else None,
                    )
                )
            record = self.store.batches.create(
                batch_id=batch_id,
                script=text,
                commands=new,
                workspace_id=ws.id,
                user_id=user.id if user else None,
                source=source,
                schedule_id=schedule_id,
                priority=priority,
                timeout_s=timeout_s,
                retries=retries,
                on_failure=policy,
                deadline_s=deadline_s,
                rerun_of=rerun_of,
                artifact_patterns=patterns,
                params=dict(params) if params else None,
            )
        if home is not None and self.cluster is not None:
            self.cluster.mark_batch(batch_id, home)
            record = replace(record, commands=tuple(replace(c, node=home) for c in record.commands))
        spec = batch_spec(
            judgement,
            ws.path,
            batch_id=batch_id,
            priority=priority,
            timeout_s=timeout_s or self.config.default_timeout_s,
            retries=retries,
            limits=Limits(disk_bytes=self.config.disk_bytes),
            command_ids=command_ids,
            on_failure=policy,
            deadline_s=deadline_s,
            environment=environment,
        )
        if gated:
            spec = _gate(spec, gated, self.config.approval_ttl_s)
        if params:
            spec = replace(spec, env=tuple(sorted(params.items())))
        self.scheduler.submit(spec)
        return record

    @property
    def secret_box(self) -> SecretBox:
        """Seals and opens workspace secrets with DATA/workspace-secrets.key."""
        with self._lock:
            if self._secret_box is None:
                self._secret_box = SecretBox.for_data(self.config.data_dir)
            return self._secret_box

    def _team_lock(self, team_id: int | None) -> threading.Lock:
        """One lock a team (one process): its quota checks and batch inserts in turn."""
        if team_id is None:
            return threading.Lock()  # nothing to serialise
        with self._lock:
            return self._team_locks.setdefault(team_id, threading.Lock())

    def _check_team_quota(self, ws: WorkspaceRecord, adding: int) -> None:
        """A team's ``max_commands``: its workspaces' unfinished commands, this batch's
        included, stay within it; and its ``max_bytes``: a team already storing more
        than that submits nothing until it has deleted some."""
        if ws.owner_team_id is None:
            return
        team = self.store.teams.get(ws.owner_team_id)
        if team.max_bytes is not None:
            used = self.files.team_bytes(team.id)
            if used > team.max_bytes:
                raise QuotaExceeded(
                    f"team {team.name} may store {team.max_bytes} bytes and stores {used}: "
                    "delete files or old batches (or ask an admin to raise the quota) "
                    "before submitting"
                )
        if team.max_commands is None:
            return
        busy = self.store.batches.count_unfinished(self.store.workspaces.of_team(team.id))
        if busy + adding > team.max_commands:
            raise QuotaExceeded(
                f"team {team.name} may have {team.max_commands} commands waiting or running "
                f"at once; it has {busy} and this batch adds {adding}: wait, or ask an admin "
                "to raise the quota"
            )

    def rerun(
        self,
        user: UserRecord | None,
        batch_id: str,
        *,
        only: str = "all",
        source: Source = Source.API,
    ) -> BatchRecord:
        """A new batch in the same workspace with the same options, linked to the original
        (``rerun_of``): every command (``only="all"``) or the failed, timed-out,
        interrupted and skipped ones, in their original order."""
        if only not in ("all", "failed"):
            raise InputError("`only` is all or failed")
        original = self.store.batches.get(batch_id)
        if not original.status.final:
            raise PolicyError(f"batch {batch_id} is still {original.status.value}; wait or cancel")
        if only == "all":
            script = original.script
        else:
            again = [c.command for c in original.commands if c.status in RERUN_FAILED]
            if not again:
                raise PolicyError(
                    f"batch {batch_id} has no failed, timed-out, interrupted or skipped commands"
                )
            script = "\n".join(again) + "\n"
        return self.submit(
            user,
            script=script,
            workspace=original.workspace_name,
            priority=original.priority,
            timeout_s=original.timeout_s,
            retries=original.retries,
            source=source,
            on_failure=original.on_failure,
            deadline_s=original.deadline_s,
            rerun_of=original.id,
            artifacts=original.artifact_patterns,
            params=original.params,
        )

    def cancel_batch(self, user: UserRecord | None, batch_id: str) -> BatchRecord:
        batch = self.store.batches.get(batch_id)
        self._may_change(user, batch)
        try:
            self.scheduler.cancel_batch(batch_id)
        except KeyError:
            if not batch.status.final:
                # not running in this process (e.g. interrupted): settle it in the store
                self.store.batches.set_commands_status(
                    batch_id,
                    only_from=[Status.PENDING, Status.QUEUED, Status.AWAITING_APPROVAL],
                    status=Status.CANCELLED,
                    finished_at=utcnow(),
                )
                self.store.batches.update_batch(
                    batch_id, status=Status.CANCELLED, finished_at=utcnow()
                )
        self.writer.flush(2)
        return self.store.batches.get(batch_id)

    def cancel_command(self, user: UserRecord | None, batch_id: str, command_id: str) -> None:
        batch = self.store.batches.get(batch_id)
        self._may_change(user, batch)
        if not any(c.id == command_id for c in batch.commands):
            raise NotFound(f"batch {batch_id} has no command {command_id}")
        try:
            self.scheduler.cancel_command(command_id)
        except KeyError:
            raise PolicyError("that command is not running in this server") from None

    def _may_change(self, user: UserRecord | None, batch: BatchRecord) -> None:
        if user is None or user.role is Role.ADMIN:
            return
        if not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not cancel batches")
        if batch.user_id != user.id:
            raise Forbidden("operators may cancel only their own batches")

    # --- reads ----------------------------------------------------------------------------

    def get_batch(self, batch_id: str) -> BatchRecord:
        return self.store.batches.get(batch_id)

    def list_batches(self, **filters: Any) -> Page[BatchRecord]:
        return self.store.batches.list(**filters)

    def read_output(
        self, batch_id: str, command_id: str, stream: str, offset: int = 0, limit: int = 1 << 20
    ) -> tuple[bytes, int, int]:
        if stream not in ("stdout", "stderr"):
            raise InputError("stream must be stdout or stderr")
        command = self.store.batches.get_command(command_id)
        if command.batch_id != batch_id:
            raise NotFound(f"batch {batch_id} has no command {command_id}")
        return self.store.output.read(batch_id, command_id, stream, offset, limit)

    def wait(self, batch_id: str, timeout: float | None = None) -> bool:
        try:
            done = self.scheduler.wait(batch_id, timeout)
        except KeyError:
            return self.store.batches.get(batch_id).status.final
        self.writer.flush(10)
        if done:
            self.artifacts.wait(batch_id, 30)
        return done

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(fn)

    def pools(self) -> dict[str, dict[str, int]]:
        return self.scheduler.snapshot()

    def abandon(self, timeout_s: float = 15.0) -> None:
        """This process is going away uncleanly (e.g. its parent was killed): record
        nothing more, so that what was running stays `running` in the store and the next
        start marks it `interrupted` exactly once; then stop its processes and containers
        (within ``timeout_s``; the next start removes whatever is left)."""
        self._closed.set()
        if self.schedules is not None:
            self.schedules.stop()
        self.writer.flush(2)
        self._unrecord()
        stopper = threading.Thread(target=self.scheduler.shutdown, args=(0.0,), daemon=True)
        stopper.start()
        stopper.join(timeout_s)

    def close(self, grace_s: float = 0.0) -> None:
        self._closed.set()
        if self.schedules is not None:
            self.schedules.stop()
        if self.autoscaler is not None:
            self.autoscaler.stop()
        self.scheduler.shutdown(grace_s)
        self.writer.close()
        self.artifacts.close()
        self.hooks.close()
        if self.mail is not None:
            self.mail.close()
        self.save_durations()
        for ex in self.executors.values():
            close = getattr(ex, "close", None)
            if callable(close):
                close()
        self.store.close()


def _class_timeout(
    ws: WorkspaceRecord, maxima: Maxima, classes: set[str], default: float | None
) -> float | None:
    """A batch without a timeout of its own: the longest timeout of its classes (one timeout
    holds per batch), each the workspace's for that class or else ``default``; None (the
    server's default) when the workspace sets none of them."""
    timeouts = class_timeouts(ws, maxima)
    if not any(c in timeouts for c in classes):
        return None
    chosen = [timeouts.get(c, default) for c in classes]
    return None if None in chosen else max(c for c in chosen if c is not None)


def _own_workspace(path: Path) -> None:
    """Containers never run as root: give a root-owned workspace to the sandbox user."""
    try:
        if os.geteuid() == 0 and path.stat().st_uid == 0:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
    except OSError as e:
        log.warning("cannot hand %s to uid %d: %s", path, SANDBOX_UID, e)
