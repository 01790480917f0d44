"""`bashfleet mcp` and `bashfleet submit`: CLI extensions (sandbox.cli.CliExtension),
found through the ``bashfleet.cli`` entry-point group so the engine never imports them.
Importing this module is cheap: the SDK and httpx load only when a command runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sandbox.errors import BashfleetError

TOKEN_ENV = "BASHFLEET_TOKEN"


def _token() -> str:
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise BashfleetError(
            f"--url needs a token in ${TOKEN_ENV} (create one with `bashfleet token create NAME`)"
        )
    return token


class McpCommand:
    name = "mcp"

    def add(self, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        p = sub.add_parser(
            "mcp",
            help="serve the MCP tools over stdio (local engine, or a portal with --url)",
            description="An MCP tool server on stdin/stdout. With --workspace, batches run in "
            "this process like `bashfleet run`; with --url, every call goes to that portal's "
            f"REST API as the user of ${TOKEN_ENV}.",
        )
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--workspace", "-w", type=Path, help="run batches here, locally")
        where.add_argument("--url", help="a portal, e.g. http://127.0.0.1:8080")
        p.add_argument(
            "--isolation",
            choices=("auto", "docker", "local"),
            default="auto",
            help="local mode only: where non-safe classes run (as `bashfleet run`)",
        )
        p.add_argument(
            "--jobs",
            "-j",
            type=int,
            default=None,
            help="local mode only: most commands at once (default: by cores, as `bashfleet run`)",
        )

    def run(self, args: argparse.Namespace, data: Path) -> int:
        from bashfleet.backends import Backend, LocalBackend, PortalBackend
        from bashfleet.mcp_server import serve_stdio

        backend: Backend
        if args.jobs is not None and args.jobs < 1:
            raise BashfleetError("--jobs must be at least 1")
        if args.url:
            backend = PortalBackend(args.url, _token())
            mode = f"on the portal {args.url}"
        else:
            backend = LocalBackend(args.workspace, args.isolation, data, jobs=args.jobs)
            mode = f"locally in {args.workspace.resolve()} (isolation {args.isolation})"
        serve_stdio(backend, mode=mode)
        return 0


class SubmitCommand:
    name = "submit"

    def add(self, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        p = sub.add_parser(
            "submit",
            help="submit a batch to a portal (token in $BASHFLEET_TOKEN)",
        )
        p.add_argument("script", metavar="SCRIPT", help="the script ('-' for standard input)")
        p.add_argument("--url", required=True, help="the portal, e.g. http://127.0.0.1:8080")
        p.add_argument("--workspace", default=None, help="the portal's workspace name")
        p.add_argument("--timeout", type=float, default=None, help="limit per command (s)")
        p.add_argument("--on-failure", choices=("skip_dependents", "continue", "halt"))
        p.add_argument("--wait", action="store_true", help="print output live; exit 0 if all ok")
        p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    def run(self, args: argparse.Namespace, data: Path) -> int:
        from bashfleet.submit import submit
        from sandbox.cli import _read_text

        try:
            text = _read_text(args.script)
        except OSError as e:
            raise BashfleetError(f"cannot read {args.script}: {e.strerror}") from e
        return submit(args, text, _token())
