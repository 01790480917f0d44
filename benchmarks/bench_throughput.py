"""1,000 trivial commands (`echo N`) at 8 at a time: bashfleet run vs GNU parallel vs xargs.

Run: .venv/bin/python benchmarks/bench_throughput.py [N]
Every tool runs `bash -c` per command; bashfleet's time includes its own start-up,
parsing, classifying, planning and the local pool's isolation (bubblewrap on the sandbox
image's tree, unpacked beforehand: a one-time cost; and, as the baseline, bubblewrap on a
read-only view of the host, which is what the local pool ran on before).
bashfleet runs as installed, from compiled bytecode: pip compiles it at install time, and
this script compiles the checkout first (a shell with PYTHONDONTWRITEBYTECODE=1 would
otherwise recompile every module on every run, about +40 ms).
"""

from __future__ import annotations

import compileall
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _util import BASHFLEET, ROOT, machine, median_of, timed

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REPEAT = 3


def main() -> None:
    for package in ("sandbox", "webapp"):
        compileall.compile_dir(ROOT / package, quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # read the compiled modules
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        script = ws / "batch.sh"
        script.write_text("".join(f"echo {i}\n" for i in range(N)))
        run = [BASHFLEET, "run", str(script), "--jobs", "8", "--workspace", str(ws)]
        rows = []
        rows.append(
            (
                "xargs -P8",
                median_of(
                    REPEAT,
                    lambda: timed(f"seq {N} | xargs -P8 -I{{}} bash -c 'echo {{}}'", shell=True),
                ),
            )
        )
        if shutil.which("parallel"):
            rows.append(
                (
                    "GNU parallel -j8",
                    median_of(
                        REPEAT,
                        lambda: timed(
                            f"seq {N} | parallel -j8 \"bash -c 'echo {{}}'\"", shell=True
                        ),
                    ),
                )
            )
        rows.append(
            (
                "bashfleet run --jobs 8",
                median_of(
                    REPEAT,
                    lambda: timed(run),
                ),
            )
        )
        # the same batch, its safe commands on a read-only view of the host: the local
        # pool before it ran on the workspace's image (the baseline for the image view)
        rows.append(
            (
                "  ... on the host's view",
                median_of(
                    REPEAT,
                    lambda: timed([*run, "--isolation", "local"]),
                ),
            )
        )
    print(f"# {N} x `echo N` at 8 in parallel ({machine()}), median of {REPEAT}")
    print(f"{'tool':<26}{'seconds':>9}{'cmds/s':>10}{'ms/cmd':>9}")
    for name, secs in rows:
        print(f"{name:<26}{secs:>9.2f}{N / secs:>10.0f}{1000 * secs / N:>9.2f}")
    base = dict(rows)
    ours = base["bashfleet run --jobs 8"]
    print(f"bashfleet / xargs = {ours / base['xargs -P8']:.2f}x (target <= 1.5x)")
    host = base["  ... on the host's view"]
    print(f"image view / host view = {ours / host:.2f}x (target <= 1.10x)")
    if "GNU parallel -j8" in base:
        print(f"bashfleet / parallel = {ours / base['GNU parallel -j8']:.2f}x (target < 1.0x)")


if __name__ == "__main__":
    main()
