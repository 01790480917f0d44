"""Shared fixtures: `portal` and `any_portal` (a real `bashfleet serve` process, the
latter on SQLite and on PostgreSQL) and `module_portal` (one per module) live in
tests/portal.py; `pg_url` in tests/pg.py.

Once per session, the sandbox image is unpacked for `bashfleet run` (into the CLI's
default data folder, as its first run would): a one-time cost of seconds that tests
timing a batch should not count."""

import compileall
import contextlib
from pathlib import Path

import pytest

from sandbox.cli import data_dir
from sandbox.errors import BashfleetError
from sandbox.executors.rootfs import ImageTrees, trees_dir
from sandbox.image import default_image
from tests.pg import pg_server, pg_url
from tests.portal import any_portal, fresh_portal, module_portal, portal

__all__ = [
    "any_portal",
    "fresh_portal",
    "module_portal",
    "pg_server",
    "pg_url",
    "portal",
]


def _compile_project() -> None:
    """Write the bytecode of the project's own modules once (PYTHONDONTWRITEBYTECODE may be
    set, and an editable install ships none): otherwise every portal, worker and CLI
    process the tests start compiles ~120 modules again, most of a second of CPU each."""
    root = Path(__file__).resolve().parent.parent
    for package in ("sandbox", "webapp", "bashfleet"):
        compileall.compile_dir(root / package, quiet=1, workers=1)


_compile_project()


@pytest.fixture(scope="session", autouse=True)
def _cli_image_tree() -> None:
    with contextlib.suppress(BashfleetError):  # no engine: the tests that need one say so
        ImageTrees(trees_dir(data_dir(None))).tree(default_image())
