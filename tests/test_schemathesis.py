"""schemathesis against the live portal's OpenAPI document: no 5xx, no response that
breaks its own schema, no traceback.

`positive_data_acceptance` is left out on purpose: a schema cannot say "at least one
command that is not a comment", so some schema-valid scripts are rightly refused (400).
Non-safe commands are refused (no Docker engine is given to this server), so fuzzed
scripts never run outside the read-only sandbox.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.portal import Portal, running_portal

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture
def fuzz_portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(
        tmp_path,
        env={
            "BASHFLEET_SUBMIT_RATE": "100000",
            # every endpoint is also tried with a bad token; with this many endpoints the
            # per-address failure limit would answer 429 instead of the 401 it checks for
            "BASHFLEET_AUTH_FAIL_RATE": "100000",
            "DOCKER_HOST": "unix:///nonexistent/docker.sock",
        },
        extra=["--isolation", "auto"],
    ) as p:
        yield p


def test_the_whole_openapi_document(fuzz_portal: Portal) -> None:
    token = fuzz_portal.token("fuzzer", "admin")
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{fuzz_portal.url}/api/v1/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "-n",
            "40",
            "--request-timeout",
            "20",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:]
    assert "Traceback" not in fuzz_portal.log()
