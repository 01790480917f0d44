"""The facade the web app, the CLI and schedules use. Nothing else talks to executors.

    svc = Service.open(ServiceConfig(data_dir=Path("data")))
    batch = svc.submit(user, script="ls\\nmake test", workspace="default")
    svc.get_batch(batch.id); svc.cancel_batch(user, batch.id); svc.close()

At start it recovers from a dead predecessor: commands left ``running`` (or
waiting) become ``interrupted``, their leftover processes (found by the job
marker in their environment, not by pid) are killed, and every labelled
container is removed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.approvals import approval_ttl_s, check_approval_settings
from sandbox.artifacts import ArtifactCollector, ArtifactLimits, check_patterns
from sandbox.autoscale import Autoscaler
from sandbox.errors import BashfleetError, InputError, PolicyError
from sandbox.events import Event, EventBus
from sandbox.executors import egress
from sandbox.executors.base import Executor
from sandbox.executors.local import LocalExecutor
from sandbox.executors.proctree import kill_jobs
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
from sandbox.routing import instance_alive, make_router, new_instance_id, open_docker
from sandbox.scheduler import BatchSpec, Scheduler, default_limits
from sandbox.schedules import ScheduleRunner, trigger_for
from sandbox.store import (
    BatchRecord,
    CommandRecord,
    NewCommand,
    NotFound,
    Page,
    Role,
    ScheduleRecord,
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
from sandbox.templates import bind, render
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
DURATIONS_EVERY_S = 5.0  # learned durations go to the store in groups, this often


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


class Forbidden(BashfleetError):
    """The user's role does not allow this."""


class QuotaExceeded(PolicyError):
    """A team's quota would be passed (the web answers 429)."""


class Service:
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

    # --- retention ------------------------------------------------------------------------

    def _live(self, batch_id: str) -> bool:
        try:
            return not self.scheduler.batch_status(batch_id).final
        except KeyError:
            return False

    def remove_batch_files(self, batch_id: str) -> None:
        """A batch's output files and artifacts (its rows are the caller's)."""
        self.scheduler.forget(batch_id)
        self.store.output.remove_batch(batch_id)
        self.artifacts.remove(batch_id)

    def run_retention(self) -> dict[str, int]:
        done = self.retention.run()
        if done["deleted"]:
            self.store.audit.append("retention_ran", actor="retention", detail=done)
        return done

    def _retention_loop(self) -> None:
        while not self._closed.wait(self.config.retention_every_s):
            try:
                self.run_retention()
            except Exception:  # a store that went away: next time
                log.exception("retention failed")

    # --- schedules ------------------------------------------------------------------------

    def _runner(self) -> ScheduleRunner:
        if self.schedules is None:
            raise PolicyError("schedules are switched off in this server")
        return self.schedules

    def create_schedule(self, user: UserRecord, **fields: Any) -> ScheduleRecord:
        if not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not create schedules")
        runner = self._runner()
        values = self._schedule_values(fields, creating=True, owner=user)
        if self.store.schedules.find(user.id, values["name"]) is not None:
            raise InputError(f"you have a schedule named {values['name']!r} already")
        record = self.store.schedules.create(user_id=user.id, **values)
        return runner.added(record)

    def update_schedule(self, user: UserRecord, schedule_id: int, **fields: Any) -> ScheduleRecord:
        runner = self._runner()
        current = self.store.schedules.get(schedule_id)
        self._may_manage(user, current.user_id)
        values = self._schedule_values(fields, creating=False, current=current, owner=user)
        record = self.store.schedules.update(schedule_id, **values)
        trigger_changed = "cron" in values or "interval_s" in values
        return runner.changed(record, trigger_changed)

    def delete_schedule(self, user: UserRecord, schedule_id: int) -> None:
        current = self.store.schedules.get(schedule_id)
        self._may_manage(user, current.user_id)
        self._runner().removed(schedule_id)
        self.store.schedules.delete(schedule_id)

    def run_schedule(self, user: UserRecord, schedule_id: int) -> BatchRecord:
        """Run a schedule now, outside its trigger (its next run stays as it was): a batch
        of its owner's, with source ``schedule``, as a scheduled run would make it."""
        s = self.store.schedules.get(schedule_id)
        self._may_manage(user, s.user_id)
        owner = self.store.accounts.get_user(s.user_id)
        if owner.disabled:
            raise PolicyError(f"the schedule's owner {owner.name} is disabled")
        script, params = self.schedule_script(s)
        return self.submit(
            owner,
            script=script,
            params=params,
            workspace=self.store.workspaces.get(s.workspace_id).name,
            priority=max(1, min(10, s.priority or 5)),
            timeout_s=s.timeout_s,
            retries=s.retries,
            source=Source.SCHEDULE,
            schedule_id=s.id,
        )

    def template_script(self, name: Any, values: Any) -> tuple[str, dict[str, str]]:
        """A template's script rendered (placeholders become ``"${BF_PARAM_x}"``) and the
        environment of its values, as ``POST /batches {"template", "params"}`` makes them;
        InputError names what is missing or wrong."""
        if not isinstance(name, str) or not name:
            raise InputError("`template` is a template's name")
        t = self.store.templates.find(name)
        if t is None:
            raise InputError(f"`template`: no template {name!r}")
        definitions = list(t.params)
        return render(t.script, definitions), bind(definitions, values)

    def schedule_script(self, s: ScheduleRecord) -> tuple[str, dict[str, str] | None]:
        """What a run of the schedule submits: its script, or its template as it is now."""
        if s.template is None:
            return s.script, None
        return self.template_script(s.template, dict(s.params or {}))

    def _may_manage(self, user: UserRecord, owner_id: int) -> None:
        if user.role is Role.ADMIN:
            return
        if not user.role.allows(Role.OPERATOR) or user.id != owner_id:
            raise Forbidden("operators manage only their own schedules")

    def _schedule_values(
        self,
        fields: dict[str, Any],
        *,
        creating: bool,
        current: ScheduleRecord | None = None,
        owner: UserRecord | None = None,
    ) -> dict[str, Any]:
        allowed = {
            "name",
            "script",
            "template",
            "params",
            "workspace",
            "cron",
            "interval_s",
            "priority",
            "timeout_s",
            "retries",
            "paused",
        }
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise InputError(f"unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        if creating or "name" in fields:
            name = fields.get("name")
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
                raise InputError("a schedule needs a `name` of 1 to 100 characters")
            values["name"] = name.strip()
        if "template" in fields and "script" in fields:
            raise InputError("give `template` (with `params`) or `script`, not both")
        uses_template = "template" in fields or (
            not creating and "script" not in fields and current is not None and current.template
        )
        if "params" in fields and not uses_template:
            raise InputError("`params` goes with `template`")
        if uses_template and ("template" in fields or "params" in fields):
            name = fields.get("template", current.template if current else None)
            given = fields.get("params", {} if "template" in fields or not current else None)
            if given is None:
                given = dict(current.params or {}) if current else {}
            rendered, _env = self.template_script(name, given)
            self.classify(rendered)  # the same limits and checks as a submission
            values.update(script="", template=name, params=dict(given))
        elif creating or "script" in fields:
            script = fields.get("script")
            if not isinstance(script, str):
                raise InputError("`script` (text) or `template` is required")
            self.classify(script)  # the same limits and checks as a submission
            values.update(script=script, template=None, params=None)
        if creating or "workspace" in fields:
            ws = fields.get("workspace", "default")
            if not isinstance(ws, str):
                raise InputError("`workspace` is a name")
            made_by = owner.id if owner is not None else None
            values["workspace_id"] = self.store.workspaces.get_or_create(
                ws, owner_user_id=made_by
            ).id
        if creating or "cron" in fields or "interval_s" in fields:
            cron = fields.get(
                "cron", None if creating or "interval_s" in fields else current and current.cron
            )
            interval = fields.get(
                "interval_s",
                None if creating or "cron" in fields else current and current.interval_s,
            )
            trigger_for(cron, interval)  # raises InputError with what is wrong
            values["cron"], values["interval_s"] = cron, interval
        for key, lo, hi in (("priority", 1, 10), ("retries", 0, 10)):
            if key in fields:
                v = fields[key]
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise InputError(f"`{key}` must be from {lo} to {hi}")
                values[key] = v
        if "timeout_s" in fields:
            t = fields["timeout_s"]
            if t is not None and (
                isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 7 * 86400
            ):
                raise InputError("`timeout_s` is a number of seconds, more than 0, at most a week")
            values["timeout_s"] = t
        if "paused" in fields:
            if not isinstance(fields["paused"], bool):
                raise InputError("`paused` is true or false")
            values["paused"] = fields["paused"]
        elif creating:
            values.setdefault("priority", 5)
        return values

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

    # --- learned durations ----------------------------------------------------------------

    def load_durations(self) -> int:
        """What earlier runs learned, so shortest-job-first works from the first batch."""
        paths = {w.id: str(w.path) for w in self.store.workspaces.list()}
        self._workspace_ids.update({p: i for i, p in paths.items()})
        items = [(paths[w], f, e) for w, f, e in self.store.durations.load() if w in paths]
        self.durations.remember(items)
        return len(items)

    def save_durations(self) -> int:
        """Write what was learned since the last call, in one transaction."""
        changed = self.durations.take_changed()
        if not changed:
            return 0
        if any(scope not in self._workspace_ids for scope, _f, _e in changed):
            self._workspace_ids.update({str(w.path): w.id for w in self.store.workspaces.list()})
        rows = [
            (self._workspace_ids[scope], fp, estimate)
            for scope, fp, estimate in changed
            if scope in self._workspace_ids
        ]
        try:
            return self.store.durations.save(rows)
        except Exception as e:  # a hint, not a record: a database that went away costs it
            log.warning("cannot store %d learned durations: %s", len(rows), e)
            return 0

    def _save_durations_loop(self) -> None:
        while not self._closed.wait(DURATIONS_EVERY_S):
            self.save_durations()

    # --- recovery -------------------------------------------------------------------------

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

    # --- approvals ------------------------------------------------------------------------

    def decide(
        self,
        user: UserRecord | None,
        batch_id: str,
        command_id: str,
        *,
        approve: bool,
        reason: str | None = None,
    ) -> CommandRecord:
        """Approve or reject a command that awaits approval. Operators and admins decide;
        under the workspace's two-person rule, never the batch's submitter (rejecting is
        allowed to them: it is no more than cancelling their own command)."""
        if user is not None and not user.role.allows(Role.OPERATOR):
            raise Forbidden("viewers may not approve or reject commands")
        batch = self.store.batches.get(batch_id)
        command = next((c for c in batch.commands if c.id == command_id), None)
        if command is None:
            raise NotFound(f"batch {batch_id} has no command {command_id}")
        if command.status is not Status.AWAITING_APPROVAL:
            raise PolicyError(
                f"command #{command.index + 1} is {command.status.value}, not awaiting approval"
            )
        ws = self.store.workspaces.get(batch.workspace_id)
        if approve and ws.two_person and user is not None and batch.user_id == user.id:
            raise Forbidden(
                f"workspace {ws.name} has the two-person rule: "
                "someone other than the submitter must approve"
            )
        name = user.name if user is not None else "system"
        try:
            if approve:
                self.scheduler.approve(command_id, name)
            else:
                why = f"rejected by {name}" + (f": {reason}" if reason else "")
                self.scheduler.reject(command_id, why)
        except KeyError:
            raise PolicyError("that command is not waiting in this server") from None
        except InputError as e:
            raise PolicyError(str(e)) from None
        self.store.batches.update_command(
            command_id,
            approval="approved" if approve else "rejected",
            approval_by=name,
            approval_at=utcnow(),
        )
        self.writer.flush(5)
        return self.store.batches.get_command(command_id)

    def pending_approvals(self) -> list[tuple[CommandRecord, BatchRecord, WorkspaceRecord]]:
        """Every command that awaits approval, with its batch and workspace."""
        spaces = {w.id: w for w in self.store.workspaces.list()}
        return [
            (c, b, spaces[b.workspace_id])
            for c, b in self.store.batches.awaiting_approval()
            if b.workspace_id in spaces
        ]

    def set_approval(
        self, user: UserRecord | None, workspace: str, **settings: Any
    ) -> WorkspaceRecord:
        """An admin changes a workspace's approval settings (see approvals.py)."""
        if user is not None and user.role is not Role.ADMIN:
            raise Forbidden("only admins change a workspace's approval settings")
        values = check_approval_settings(settings)
        ws = self.store.workspaces.get_or_create(workspace)  # settings may come first
        return self.store.workspaces.set_approval(ws.id, **values)

    def _recover_containers(self, docker: Executor) -> None:
        try:
            # every labelled container, except those of bashfleet processes still alive
            docker.recover_orphans(  # type: ignore[attr-defined]
                all_instances=True, alive=instance_alive
            )
        except BashfleetError as e:
            log.warning("could not remove leftover containers: %s", e)

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


def _gate(spec: BatchSpec, gated: set[int], ttl_s: float) -> BatchSpec:
    """The batch with the commands at ``gated`` waiting for a person's approval."""
    commands = tuple(replace(c, approval=True) if c.index in gated else c for c in spec.commands)
    return replace(spec, commands=commands, approval_ttl_s=ttl_s)


def _own_workspace(path: Path) -> None:
    """Containers never run as root: give a root-owned workspace to the sandbox user."""
    try:
        if os.geteuid() == 0 and path.stat().st_uid == 0:
            os.chown(path, SANDBOX_UID, SANDBOX_UID)
    except OSError as e:
        log.warning("cannot hand %s to uid %d: %s", path, SANDBOX_UID, e)
