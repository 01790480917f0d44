"""Container latency: `bashfleet run` (whole process) vs `docker run --rm`.

- 20 trivial sequential commands (`touch fN`) through `bashfleet run`, start-up,
  judging, the warm batch container and clean-up included, against 20
  `docker run --rm IMAGE true` one after another (target: <= 0.4x).
- dangerous commands per second, and container (conditional) commands per second
  at --jobs 4.
Run: .venv/bin/python benchmarks/bench_docker_latency.py   (needs a Docker engine)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from _util import BASHFLEET, machine, timed

from sandbox.image import build_image, default_image

N = 20
OWNER = 1000


def batch(ws: Path, name: str, lines: list[str], jobs: int | None = None) -> float:
    script = ws.parent / name
    script.write_text("".join(line + "\n" for line in lines))
    argv = [BASHFLEET, "run", str(script), "--workspace", str(ws)]
    if jobs:
        argv += ["--jobs", str(jobs)]
    return timed(argv)


def main() -> None:
    image = build_image(default_image())
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        os.chown(ws, OWNER, OWNER)
        baseline = sum(timed(["docker", "run", "--rm", image, "true"]) for _ in range(N))
        seq = batch(ws, "seq.sh", [f"touch f{i}" for i in range(N)])
        dangerous = batch(ws, "dangerous.sh", [f"rm -rf d{i}" for i in range(10)])
        conditional = batch(ws, "cond.sh", [f"./x{i} || true" for i in range(40)], jobs=4)
    print(f"# container latency ({machine()})")
    print(
        f"{N} x docker run --rm {image} true: {baseline:.2f} s ({1000 * baseline / N:.0f} ms each)"
    )
    print(
        f"bashfleet run, {N} x touch fN (sequential, whole process): {seq:.2f} s "
        f"({1000 * seq / N:.0f} ms each) = {seq / baseline:.2f}x (target <= 0.4x)"
    )
    print(
        f"dangerous: 10 commands in {dangerous:.2f} s = {10 / dangerous:.1f}/s"
        " (fresh container each)"
    )
    print(f"conditional at --jobs 4: 40 commands in {conditional:.2f} s = {40 / conditional:.1f}/s")


if __name__ == "__main__":
    main()
