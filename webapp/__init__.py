"""bashfleet's web portal (Flask). Talks only to ``sandbox.service.Service``.

``create_app(config)`` builds the app and opens the service; nothing happens at
import time. Config keys (all optional): ``DATA_DIR``, ``DATABASE_URL``,
``ISOLATION``, ``JOBS``, ``MAX_SCRIPT_BYTES``, ``MAX_STATEMENTS``,
``SUBMIT_RATE`` (submissions per minute per user), ``JUDGE_DEADLINE_S`` (judging runs in
other processes and is stopped past it; 0: judge in the serving thread), ``SECRET_KEY``,
``DISK_CAP_MB`` (what one container command may take of the workspace's disk; 0: no
cap), ``UPLOAD_MAX_BYTES``, ``UPLOAD_EXTRACTED_BYTES``, ``UPLOAD_ENTRIES``,
``DOWNLOAD_MAX_BYTES``, ``ARTIFACT_MAX_BYTES``, ``RETENTION_DAYS`` (0: keep for ever),
``WORKSPACE_BUDGET_BYTES`` (0: no budget), ``RETENTION_EVERY_S``,
``SESSION_COOKIE_SECURE``, ``PROXY_HOPS`` (trusted proxies in front), ``SERVICE``
(an already opened Service, for tests). Scale-out: ``BROKER`` (redis://...), ``REPLICA``
(true: a web replica, webapp/replica.py), ``ADVERTISE_URL`` (the control plane's URL that
replicas forward state changes to).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: `bashfleet classify` must not pay for Flask
    from flask import Flask

    from sandbox.service import Service


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from flask import Flask

    from sandbox.artifacts import ArtifactLimits
    from sandbox.service import Service, ServiceConfig
    from sandbox.uploads import UploadLimits
    from sandbox.workspace_io import DownloadLimits
    from webapp.errors import register_errors

    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.config.update(
        DATA_DIR=os.environ.get("BASHFLEET_DATA", "data"),
        DATABASE_URL=os.environ.get("BASHFLEET_DATABASE_URL") or None,
        ISOLATION=os.environ.get("BASHFLEET_ISOLATION", "auto"),
        JOBS=None,
        MAX_SCRIPT_BYTES=1 << 20,
        MAX_STATEMENTS=5000,
        SUBMIT_RATE=_int_env("BASHFLEET_SUBMIT_RATE", 60),
        MAX_CONTENT_LENGTH=2 << 20,
        DISK_CAP_MB=_int_env("BASHFLEET_DISK_CAP_MB", 10 << 10),
    )
    app.config.update(
        LOGIN_RATE=_int_env("BASHFLEET_LOGIN_RATE", 10),
        JUDGE_DEADLINE_S=_int_env("BASHFLEET_JUDGE_DEADLINE_S", 5),
        SOCKET_AUTH_S=_int_env("BASHFLEET_SOCKET_AUTH_S", 5),
        SOCKETS_PER_USER=_int_env("BASHFLEET_SOCKETS_PER_USER", 8),
        SUBSCRIPTIONS_PER_SOCKET=_int_env("BASHFLEET_SUBSCRIPTIONS_PER_SOCKET", 16),
        SOCKET_QUEUE_KB=_int_env("BASHFLEET_SOCKET_QUEUE_KB", 4096),
        AUTH_FAIL_RATE=_int_env("BASHFLEET_AUTH_FAIL_RATE", 30),
        SCHEDULES_PER_USER=_int_env("BASHFLEET_SCHEDULES_PER_USER", 20),
        MCP_WAIT_S=_int_env("BASHFLEET_MCP_WAIT_S", 240),
        MCP_CALLS_PER_USER=_int_env("BASHFLEET_MCP_CALLS_PER_USER", 8),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=_int_env("BASHFLEET_SECURE_COOKIES", 0) > 0,
        PROXY_HOPS=_int_env("BASHFLEET_PROXY_HOPS", 0),
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_NAME="bashfleet_session",
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    app.config.update(
        UPLOAD_MAX_BYTES=_int_env("BASHFLEET_UPLOAD_MAX_BYTES", 512 << 20),
        UPLOAD_EXTRACTED_BYTES=_int_env("BASHFLEET_UPLOAD_EXTRACTED_BYTES", 2 << 30),
        UPLOAD_ENTRIES=_int_env("BASHFLEET_UPLOAD_ENTRIES", 20_000),
        DOWNLOAD_MAX_BYTES=_int_env("BASHFLEET_DOWNLOAD_MAX_BYTES", 1 << 30),
        ARTIFACT_MAX_BYTES=_int_env("BASHFLEET_ARTIFACT_MAX_BYTES", 1 << 30),
        RETENTION_DAYS=_int_env("BASHFLEET_RETENTION_DAYS", 30),
        WORKSPACE_BUDGET_BYTES=_int_env("BASHFLEET_WORKSPACE_BUDGET_BYTES", 10 << 30),
        RETENTION_EVERY_S=_int_env("BASHFLEET_RETENTION_EVERY_S", 3600),
    )
    app.config.update(config or {})
    replica = bool(app.config.get("REPLICA"))
    if replica and not app.config.get("BROKER"):
        raise SystemExit("a replica (--replica) needs the control plane's --broker")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # UTF-8, not 6-byte escapes
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ.get("BASHFLEET_SECRET_KEY") or _secret_key(
            Path(app.config["DATA_DIR"])
        )
    service: Any = app.config.get("SERVICE")  # a Service, or a replica's ReplicaService
    if service is None:
        settings = ServiceConfig(
            data_dir=Path(app.config["DATA_DIR"]),
            database_url=app.config["DATABASE_URL"],
            isolation=app.config["ISOLATION"],
            jobs=app.config["JOBS"],
            max_script_bytes=app.config["MAX_SCRIPT_BYTES"],
            max_statements=app.config["MAX_STATEMENTS"],
            disk_bytes=app.config["DISK_CAP_MB"] << 20 if app.config["DISK_CAP_MB"] else None,
            uploads=UploadLimits(
                max_bytes=app.config["UPLOAD_MAX_BYTES"],
                extracted_bytes=app.config["UPLOAD_EXTRACTED_BYTES"],
                entries=app.config["UPLOAD_ENTRIES"],
            ),
            downloads=DownloadLimits(max_bytes=app.config["DOWNLOAD_MAX_BYTES"]),
            artifacts=ArtifactLimits(max_bytes=app.config["ARTIFACT_MAX_BYTES"]),
            retention_days=app.config["RETENTION_DAYS"],
            workspace_budget_bytes=app.config["WORKSPACE_BUDGET_BYTES"],
            retention_every_s=app.config["RETENTION_EVERY_S"],
            broker=app.config.get("BROKER") or None,  # scale-out (sandbox/cluster/)
        )
        if replica:  # a web replica: reads here, state changes on the control plane
            from webapp.replica import ReplicaService

            service = ReplicaService.open(settings, _cluster_key())
        else:
            service = Service.open(settings)
    app.extensions["bashfleet"] = service
    if app.config.get("BROKER") and not replica:
        _relay(app, service)
    from webapp.auth import auth_failed

    auth_failed.limit = app.config["AUTH_FAIL_RATE"]
    if app.config["JUDGE_DEADLINE_S"] and not replica:
        from functools import partial

        from webapp.judging import JudgePool

        # judging holds the GIL: it runs in other processes, with a deadline
        service.judge = partial(JudgePool.shared().judge, deadline_s=app.config["JUDGE_DEADLINE_S"])

    from webapp.admin import admin
    from webapp.api import api
    from webapp.approvals_api import approvals_api
    from webapp.files_api import files_api
    from webapp.health import health
    from webapp.notify_api import notify_api
    from webapp.schedules_api import schedules_api
    from webapp.sessions import sessions
    from webapp.templates_api import templates_api
    from webapp.webhooks_api import webhooks_api
    from webapp.workspaces_api import workspaces_api

    if service.schedules is not None:
        _schedules_count(app, service)
    app.register_blueprint(health)
    app.register_blueprint(api, url_prefix="/api/v1")
    app.register_blueprint(sessions, url_prefix="/api/v1")
    app.register_blueprint(admin, url_prefix="/api/v1")
    app.register_blueprint(schedules_api, url_prefix="/api/v1")
    app.register_blueprint(workspaces_api, url_prefix="/api/v1")
    app.register_blueprint(files_api, url_prefix="/api/v1")
    app.register_blueprint(approvals_api, url_prefix="/api/v1")
    app.register_blueprint(webhooks_api, url_prefix="/api/v1")
    app.register_blueprint(templates_api, url_prefix="/api/v1")
    app.register_blueprint(notify_api, url_prefix="/api/v1")
    from webapp.live import init_live
    from webapp.pages import pages, secure_headers

    app.register_blueprint(pages)
    from webapp.mcp_http import init_mcp_http

    init_mcp_http(app)
    app.after_request(secure_headers)
    register_errors(app)
    app.extensions["socketio"] = init_live(app, service)
    if replica:
        from webapp.replica import init_replica

        init_replica(app, _cluster_key())
    hops = app.config["PROXY_HOPS"]
    if hops:
        # behind that many trusted proxies: the client's address, scheme and host come from
        # their X-Forwarded-* headers (rate limits, audit, same-origin checks); outermost, so
        # that Socket.IO sees them too
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    return app


def _cluster_key() -> bytes:
    from sandbox.cluster.signing import load_key

    return load_key()


def _relay(app: Flask, service: Service) -> None:
    """The control plane of a cluster: its live events go to the broker for the web
    replicas (after the store writer: see sandbox/cluster/events.py), and it advertises
    where they forward state changes (``ADVERTISE_URL``)."""
    from sandbox.cluster.events import Advertiser, EventRelay

    key = _cluster_key()
    relay = EventRelay(app.config["BROKER"], key)
    service.subscribe(relay)
    app.extensions["bashfleet_relay"] = relay
    if app.config.get("ADVERTISE_URL"):
        app.extensions["bashfleet_advertiser"] = Advertiser(
            app.config["BROKER"], key, app.config["ADVERTISE_URL"]
        )


def close_cluster(app: Flask) -> None:
    """No longer advertised, the last events relayed (a control plane that stops)."""
    for name in ("bashfleet_advertiser", "bashfleet_relay"):
        part = app.extensions.pop(name, None)
        if part is not None:
            part.close()


def _schedules_count(app: Flask, service: Service) -> None:
    """Scheduled runs count against their owner's submission rate, and what a schedule
    could not do goes to the audit log."""
    from sandbox.store import ScheduleRecord
    from webapp.api import submissions

    runner = service.schedules
    assert runner is not None
    rate = app.config["SUBMIT_RATE"]
    runner.admit = lambda user_id: submissions.allow(f"user:{user_id}", rate)

    def note(s: ScheduleRecord, action: str, why: str) -> None:
        service.store.audit.append(
            action,
            actor="scheduler",
            user_id=s.user_id,
            address=None,
            target=str(s.id),
            detail={"schedule": s.name, "why": why},
        )

    runner.note = note


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise SystemExit(f"{name} must be a whole number, not {raw!r}")
    return int(raw)


def _secret_key(data: Path) -> str:
    """Kept in the data folder (mode 0600) so that sessions survive a restart."""
    data.mkdir(parents=True, exist_ok=True)
    path = data / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def current_service() -> Service:
    """The service of the app handling the current request."""
    from flask import current_app

    svc: Service = current_app.extensions["bashfleet"]
    return svc
