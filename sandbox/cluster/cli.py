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
            "portal sends it (signed with this node's own key: $BASHFLEET_NODE_KEY or the "
            "file in $BASHFLEET_NODE_KEY_FILE, as --print-key gives it where the cluster key "
            "is; or derived from the cluster key in $BASHFLEET_CLUSTER_KEY) in its local pool "
            "and Docker engine; workspaces live under its data folder.",
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

        p.add_argument(
            "--print-key",
            action="store_true",
            help="print this node's own key (from the cluster key in $BASHFLEET_CLUSTER_KEY) "
            "for its $BASHFLEET_NODE_KEY, and exit: a node holding only its own key cannot "
            "sign jobs for the others",
        )

    def run(self, args: argparse.Namespace, data: Path) -> int:
        from sandbox.cluster.wire import NODE_NAME
        from sandbox.cluster.worker import serve

        if args.print_key:
            from sandbox.cluster.signing import load_key, node_key

            if not NODE_NAME.fullmatch(args.name):
                raise BashfleetError(f"invalid node name {args.name!r}")
            print(node_key(load_key(), args.name).decode())
            return 0

        broker = args.broker or os.environ.get(BROKER_ENV, "")
        if not broker.startswith(("redis://", "rediss://")):
            raise BashfleetError("--broker redis://[:PASSWORD@]HOST:PORT/DB is required")
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        return serve(args.name, broker, data, isolation=args.isolation)
