"""Small helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASHFLEET = str(Path(sys.executable).parent / "bashfleet")


def timed(argv: list[str] | str, *, shell: bool = False, cwd: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        argv, shell=shell, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({done.returncode}): {argv}\n{done.stderr[-2000:]!r}"
        )
    return elapsed


def median_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(fn() for _ in range(n))


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
