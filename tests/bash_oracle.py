"""What bash does with a script, for comparison: only ever inside a throwaway container.

One container of the sandbox image (no network) per test module, removed at the end;
every script runs in a workspace folder of its own under the shared mount, one
top-level statement after another, each in its own ``bash`` as bashfleet runs them,
stopping at the first failure when ``errexit`` (what ``bash -e`` does with a script of
simple statements). ``script`` runs a whole file with ``bash FILE`` instead.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.image import default_image


@dataclass(frozen=True)
class BashRun:
    stdout: list[str]  # per statement; "" for one that did not run
    codes: list[int | None]  # exit status per statement; None: it did not run


class BashOracle:
    def __init__(self, base: Path, container: str) -> None:
        self.base = base
        self.container = container

    def workspace(self) -> Path:
        ws = self.base / f"ws-{uuid.uuid4().hex[:8]}"
        ws.mkdir()
        return ws

    def run(self, ws: Path, statements: list[str], *, errexit: bool = False) -> BashRun:
        cmds = self.base / f"cmds-{uuid.uuid4().hex[:8]}"
        cmds.mkdir()
        inside = f"/w/{cmds.name}"
        lines = [f"cd /w/{ws.name} || exit 99"]
        for i, text in enumerate(statements):
            (cmds / f"{i}.sh").write_text(text + "\n")
            out, rc = f"{inside}/{i}.out", f"{inside}/{i}.rc"
            lines.append(f"bash {inside}/{i}.sh >{out} 2>/dev/null; rc=$?; echo $rc >{rc}")
            if errexit:
                lines.append('[ "$rc" = 0 ] || exit 0')
        (cmds / "driver.sh").write_text("\n".join(lines) + "\n")
        self._exec(f"bash {inside}/driver.sh")
        stdout, codes = [], []
        for i in range(len(statements)):
            rc = cmds / f"{i}.rc"
            codes.append(int(rc.read_text()) if rc.exists() else None)
            out = cmds / f"{i}.out"
            stdout.append(out.read_text() if out.exists() else "")
        return BashRun(stdout, codes)

    def script(self, ws: Path, text: str) -> tuple[int, str]:
        """``bash FILE`` on the whole text: (exit status, stdout)."""
        path = self.base / f"script-{uuid.uuid4().hex[:8]}.sh"
        path.write_text(text)
        done = self._exec(f"cd /w/{ws.name} && bash /w/{path.name}", check=False)
        return done.returncode, done.stdout

    def _exec(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", "exec", self.container, "bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"the oracle container failed: {done.stderr}")
        return done


@pytest.fixture(scope="module")
def bash_oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BashOracle]:
    base = tmp_path_factory.mktemp("bash-oracle")
    name = f"bashfleet-test-oracle-{uuid.uuid4().hex[:8]}"
    run = ["docker", "run", "-d", "--rm", "--name", name, "--network", "none", "-v"]
    started = subprocess.run(
        [*run, f"{base}:/w", default_image(), "sleep", "600"],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:  # a failure, never a skip: CI provides the engine
        pytest.fail(f"DOCKER NEEDED for the bash oracle: {started.stderr}", pytrace=False)
    try:
        yield BashOracle(base, name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def snapshot(root: Path) -> dict[str, bytes | None]:
    tree: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        tree[rel] = p.read_bytes() if p.is_file() else None
    return tree
