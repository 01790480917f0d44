"""`bashfleet worker --broker redis://... --name NAME [--data DIR]`: a CLI extension
(sandbox.cli.CliExtension) found through the ``bashfleet.cli`` entry-point group."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from sandbox.errors import BashfleetError

BROKER_ENV = "BASHFLEET_BROKER"


class WorkerCommand:
    name = "worker"

    def add(self, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        p = sub.add_parser(
            "worker",
            help="run an execution node of a cluster (jobs from a portal's broker)",
            description="An execution node: runs the jobs a `bashfleet serve --broker` "
            "portal sends it (signed with the shared key in $BASHFLEET_CLUSTER_KEY or the "
            "file in $BASHFLEET_CLUSTER_KEY_FILE) in its local pool and Docker engine; "
            "workspaces live under its data folder.",
        )
        p.add_argument(
            "--broker", default=None, help=f"redis://:PASSWORD@HOST:PORT/0 (${BROKER_ENV})"
        )
        p.add_argument("--name", required=True, help="this node's name, unique in the cluster")
        p.add_argument(  # also after the command word: `bashfleet worker ... --data DIR`
            "--data",
            default=argparse.SUPPRESS,
            help="this node's data folder: workspaces, image trees, its journal",
        )
        p.add_argument(
            "--isolation",
            choices=("auto", "docker", "local"),
            default="auto",
            help="local: no containers on this node (default auto)",
        )

    def run(self, args: argparse.Namespace, data: Path) -> int:
        from sandbox.cluster.worker import serve

        broker = args.broker or os.environ.get(BROKER_ENV, "")
        if not broker.startswith(("redis://", "rediss://")):
            raise BashfleetError("--broker redis://[:PASSWORD@]HOST:PORT/DB is required")
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        return serve(args.name, broker, data, isolation=args.isolation)
