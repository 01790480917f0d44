"""Serial equivalence: `bashfleet run --jobs 8 --isolation local` == bash, one statement at a time.

Random batches of file commands (with random sleeps to provoke races) must give
the same per-command stdout and the same final workspace as running each
statement in order with `bash -c`. The generator only emits commands that
succeed when run in order, because a failing command deliberately skips its
dependents (DESIGN.md), which a plain serial run does not do.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.runner import RunOptions, run_script

WORDS = ("lima", "alpha", "delta", "gala")  # all contain "l", so `grep l` never fails
FILES = ("a.txt", "b.txt", "c.log", "d/e.txt", "d/f.log")


@st.composite
def batches(draw: st.DrawFn) -> list[str]:
    files: set[str] = {"a.txt"}
    dirs: set[str] = set()
    out: list[str] = []
    for _ in range(draw(st.integers(3, 14))):
        existing = sorted(files)
        choice = draw(st.integers(0, 13))
        sleep = draw(st.sampled_from(["", "", "sleep 0.02 && ", "sleep 0.05 && "]))
        f = draw(st.sampled_from(FILES))
        if "/" in f and "d" not in dirs:
            out.append("mkdir -p d")
            dirs.add("d")
        word = draw(st.sampled_from(WORDS))
        src = draw(st.sampled_from(existing)) if existing else None
        if choice == 0 or src is None:
            out.append(f"{sleep}echo {word} > {f}")
            files.add(f)
        elif choice == 1:
            out.append(f"{sleep}echo {word} >> {f}")
            files.add(f)
        elif choice == 2:
            out.append(f"{sleep}cat {src}")
        elif choice == 3 and src != f:
            out.append(f"{sleep}cp {src} {f}")
            files.add(f)
        elif choice == 4 and src != f and len(existing) > 1:
            out.append(f"{sleep}mv {src} {f}")
            files.discard(src)
            files.add(f)
        elif choice == 5 and len(existing) > 1:
            out.append(f"rm {src}")
            files.discard(src)
        elif choice == 6:
            out.append(f"{sleep}sed -i s/a/b/ {src}")
        elif choice == 7:
            out.append(f"sort {src}")
        elif choice == 8:
            out.append(f"{sleep}ls" + (" d" if "d" in dirs and draw(st.booleans()) else ""))
        elif choice == 9:
            out.append(f"grep l {src}")
        elif choice == 10:
            out.append(f"wc -l {src}")
        elif choice == 11:
            out.append(f"for i in 1 2 3; do echo {word}$i >> {f}; done")
            files.add(f)
        elif choice == 12:
            out.append(f"cat *.txt {src} | sort | uniq -c")
        elif src != "sorted.out":
            out.append(f"{{ sort {src} > sorted.out; cat sorted.out; }}")
            files.add("sorted.out")
    return out


def snapshot(root: Path) -> dict[str, bytes | None]:
    tree: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        tree[rel] = p.read_bytes() if p.is_file() else None
    return tree


def serial(commands: list[str], ws: Path) -> list[str]:
    outs = []
    for c in commands:
        done = subprocess.run(["bash", "-c", c], cwd=ws, capture_output=True, check=False)
        assert done.returncode == 0, (c, done.stderr)
        outs.append(done.stdout.decode())
    return outs


def parallel(commands: list[str], ws: Path) -> tuple[int, dict[str, object]]:
    out = io.BytesIO()
    err = io.StringIO()
    opts = RunOptions(jobs=8, workspace=ws, isolation="local", json=True)
    code = run_script("\n".join(commands) + "\n", opts, out, err)
    return code, json.loads(out.getvalue().decode().strip().splitlines()[-1])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(commands=batches())
def test_parallel_run_equals_serial_bash(commands: list[str], tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("eq")
    a, b = base / "parallel", base / "serial"
    for ws in (a, b):
        ws.mkdir()
        (ws / "a.txt").write_text("lima\nalpha\n")
    expected = serial(commands, b)
    code, summary = parallel(commands, a)
    got = [c["stdout"] for c in summary["commands"]]  # type: ignore[index]
    statuses = [c["status"] for c in summary["commands"]]  # type: ignore[index]
    assert code == 0, (commands, statuses, summary)
    assert got == expected, commands
    assert snapshot(a) == snapshot(b), commands
    shutil.rmtree(base)
