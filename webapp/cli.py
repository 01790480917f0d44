"""The `bashfleet` console script: the engine's commands plus `serve`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox import cli as engine_cli
from sandbox.procenv import hide_secrets


class ServeCommand:
    name = "serve"

    def add(self, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        p = sub.add_parser("serve", help="run the portal (embedded SQLite by default)")
        p.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        p.add_argument("--port", type=int, default=8080)
        p.add_argument("--database-url", default=None, help="e.g. postgresql://user@host/db")
        p.add_argument(
            "--isolation",
            choices=("auto", "docker", "local"),
            default=None,
            help="default: $BASHFLEET_ISOLATION or auto",
        )
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="worker threads; each open live stream (browser tab) holds one while it is "
            "open, a request only once it has fully arrived (default 400)",
        )
        p.add_argument("--dev", action="store_true", help="Flask's development server")
        p.add_argument(
            "--broker",
            default=None,
            help="scale out: redis://[:PASSWORD@]HOST:PORT/DB; jobs run on `bashfleet worker` "
            "nodes (default: $BASHFLEET_BROKER, else everything runs in this process)",
        )
        p.add_argument(
            "--replica",
            action="store_true",
            help="scale-out: a web replica of the control plane on --broker (same database, "
            "data volume and secret key): serves pages, live streams and reads, forwards "
            "every state change to the control plane (default: $BASHFLEET_REPLICA=1)",
        )
        p.add_argument(
            "--advertise",
            default=None,
            metavar="URL",
            help="scale-out: the URL where replicas reach this control plane (default: "
            "$BASHFLEET_ADVERTISE_URL, else http://HOST:PORT, HOST this machine's name "
            "when listening on all addresses)",
        )

    def run(self, args: argparse.Namespace, data: Path) -> int:
        from sandbox.accounts_cli import ensure_admin, open_store

        broker = args.broker or os.environ.get("BASHFLEET_BROKER") or None
        replica = args.replica or os.environ.get("BASHFLEET_REPLICA", "") in ("1", "true", "yes")
        if replica and not broker:
            raise SystemExit(
                "--replica needs --broker (or $BASHFLEET_BROKER): the broker "
                "that the control plane advertises itself on"
            )
        if broker:  # scale-out: a missing key or a bad timeout stops the start here
            from sandbox.cluster.signing import load_key
            from sandbox.cluster.wire import node_timeout_s

            load_key()
            node_timeout_s()
        advertise = _advertised(args, broker, replica)
        if advertise is not None:
            from sandbox.cluster.signing import load_key

            _one_control_plane(broker, advertise, load_key())
        password = None
        if not replica:  # the control plane's first run makes the admin, not a replica's
            store = open_store(data, args.database_url)
            try:
                password = ensure_admin(store)
            finally:
                store.close()
        if password:
            print(
                f"first run: created user `admin` with password {password} (shown once; "
                "set BASHFLEET_ADMIN_PASSWORD to choose it)",
                file=sys.stderr,
            )
        config: dict[str, Any] = {
            "DATA_DIR": str(data),
            "DATABASE_URL": args.database_url or os.environ.get("BASHFLEET_DATABASE_URL"),
            "ISOLATION": args.isolation or os.environ.get("BASHFLEET_ISOLATION") or "auto",
            "BROKER": broker,
            "REPLICA": replica,
            "ADVERTISE_URL": advertise,
        }
        print(f"bashfleet: serving on http://{args.host}:{args.port}/", file=sys.stderr)
        hide_secrets()
        if args.dev:
            from webapp import create_app

            app = create_app(config)
            app.extensions["socketio"].run(
                app, host=args.host, port=args.port, allow_unsafe_werkzeug=True
            )
            return 0
        threads = args.threads or _whole(os.environ.get("BASHFLEET_THREADS") or "400")
        _gunicorn(config, args.host, args.port, threads)
        return 0


def _advertised(args: argparse.Namespace, broker: str | None, replica: bool) -> str | None:
    """Where replicas forward state changes to (only a control plane advertises)."""
    if not broker or replica:
        return None
    url = args.advertise or os.environ.get("BASHFLEET_ADVERTISE_URL") or ""
    if not url:
        import socket

        host = args.host if args.host not in ("", "0.0.0.0", "::") else socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        url = f"http://{host}:{args.port}"
    if not url.startswith(("http://", "https://")) or len(url) > 500:
        raise SystemExit(f"--advertise must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


def _one_control_plane(broker: Any, url: str, key: bytes) -> None:
    """Two control planes on one database would both schedule and recover: refuse to
    start while another one is alive, i.e. advertised under another URL and seen to
    refresh its advertisement (every 2 s). One that died leaves an advertisement that
    ends within 10 s: wait for that, then start. A broker that does not answer is no
    refusal (submissions answer 503 until it is back)."""
    import time

    import redis

    from sandbox.cluster.events import ADVERT, ADVERT_TTL_S, control_url

    try:
        client = redis.Redis.from_url(broker, socket_timeout=2, socket_connect_timeout=2)
        other, first = control_url(client, key), client.get(ADVERT)
        deadline = time.monotonic() + ADVERT_TTL_S + 1
        while other is not None and other != url and time.monotonic() < deadline:
            time.sleep(0.2)
            if client.get(ADVERT) != first:  # gone, or refreshed by a live control plane
                other = control_url(client, key)
                break
    except redis.RedisError:
        return
    if other is not None and other != url:
        raise SystemExit(
            f"another control plane is advertised at {other}: start this portal with "
            "--replica, or stop that one first"
        )


def _whole(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= 10_000):
        raise SystemExit(f"BASHFLEET_THREADS must be a whole number from 1 to 10000, not {raw!r}")
    return int(raw)


def _gunicorn(config: dict[str, Any], host: str, port: int, threads: int) -> None:
    from gunicorn.app.base import BaseApplication

    from webapp import server

    server.LIMITS = server.ServerLimits.from_env()  # read here: a bad value stops the start
    apps: list[Any] = []

    def orphaned() -> None:
        # the main process died (kill -9, OOM): behave as if this worker died with it.
        # Nothing more is recorded, so what was running stays `running` in the store and
        # the next start marks it `interrupted` once; its processes and containers go now.
        for app in apps:
            app.extensions["bashfleet"].abandon()
        os._exit(1)

    server.ON_PARENT_DEATH.append(orphaned)

    def worker_exit(_server: Any, _worker: Any) -> None:
        # drain: no new work, running commands get a grace period, the rest is interrupted
        from webapp import close_cluster

        for app in apps:
            close_cluster(app)  # replicas answer 503 from now on, not connection errors
            app.extensions["bashfleet"].close(grace_s=10.0)

    class Portal(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("worker_exit", worker_exit)
            # one worker: the scheduler and the live streams live in one process
            for key, value in {
                "bind": f"{host}:{port}",
                "workers": 1,
                "worker_class": "webapp.server.GuardedWorker",
                "threads": threads,
                "worker_connections": 4096,
                "timeout": 0,
                "graceful_timeout": 30,
                "accesslog": None,
                "control_socket_disable": True,  # no shared socket in $HOME between servers
            }.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from webapp import create_app

            app = create_app(config)
            apps.append(app)
            return app

    Portal().run()


def main(argv: Sequence[str] | None = None) -> int:
    return engine_cli.main(argv, extensions=[ServeCommand()])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
