"""Time the pure pipeline on a realistic 10,000-statement batch, on one core.

    .venv/bin/python benchmarks/bench_plan.py [--statements N] [--seed S]

Stages: parse -> classify (when sandbox/classify.py exists) -> effects -> plan.
Target: at least 5,000 statements per second for the whole pipeline.
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.judge.effects import effects
from sandbox.judge.parse import parse
from sandbox.judge.plan import build_plan

TARGET = 5000.0


def make_script(n: int, seed: int) -> str:
    rng = random.Random(seed)
    files = [f"src/mod{i}/file{j}.py" for i in range(20) for j in range(10)]
    outs = [f"out/{kind}{i}.txt" for kind in ("report", "data", "log") for i in range(40)]

    def f() -> str:
        return rng.choice(files)

    def o() -> str:
        return rng.choice(outs)

    kinds: list[tuple[float, Callable[[], str]]] = [
        (14, lambda: f"grep -n 'def ' {f()} | head -n 20"),
        (8, lambda: f"wc -l {f()} {f()}"),
        (6, lambda: f"grep -rn TODO src/mod{rng.randrange(20)}"),
        (5, lambda: f"diff -u {f()} {f()}"),
        (4, lambda: f"ls -la src/mod{rng.randrange(20)}"),
        (3, lambda: "git status --short"),
        (2, lambda: "git log --oneline -n 5"),
        (10, lambda: f'echo "step {rng.randrange(1000)}" >> {o()}'),
        (8, lambda: f"sort -u {f()} > {o()}"),
        (5, lambda: f"cp {f()} backup/{rng.randrange(50)}.py"),
        (4, lambda: f"sed -i 's/foo/bar/g' {f()}"),
        (3, lambda: f"mkdir -p build/{rng.randrange(30)} && touch build/{rng.randrange(30)}/stamp"),
        (3, lambda: f"rm -f {o()}"),
        (3, lambda: f"mv {o()} {o()}"),
        (4, lambda: f"wc -l src/mod{rng.randrange(20)}/*.py"),
        (2, lambda: f'for f in out/*.txt; do head -n 1 "$f"; done > {o()}'),
        (2, lambda: f"find src/mod{rng.randrange(20)} -name '*.pyc' -delete"),
        (2, lambda: "make -j2 all"),
        (1, lambda: "pytest -q tests/"),
        (2, lambda: f"curl -fsS https://example.com/{rng.randrange(99)} -o {o()}"),
        (1, lambda: "ps aux | grep python"),
        (1, lambda: f"tar czf dist/src{rng.randrange(9)}.tgz src"),
        (1, lambda: f"awk -F, '{{print $2}}' {o()} | sort -u"),
        (1, lambda: f"python3 scripts/gen.py --seed {rng.randrange(9)}"),
        (1, lambda: f"bash -c 'cd src && ls mod{rng.randrange(20)}'"),
    ]
    weights = [w for w, _ in kinds]
    makers = [m for _, m in kinds]
    return "\n".join(rng.choices(makers, weights)[0]() for _ in range(n)) + "\n"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """CPU seconds of this process: fair on a machine shared with other work."""
    start = time.process_time()
    result = fn()
    return result, time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    script = make_script(args.statements, args.seed)

    stages: list[tuple[str, float]] = []
    statements, t = timed(lambda: parse(script))
    n = len(statements)
    stages.append(("parse", t))
    if n != args.statements:
        print(f"WARNING: {args.statements} lines parsed into {n} statements")
    try:
        classify = importlib.import_module("sandbox.judge.classify").classify
    except (ImportError, AttributeError) as e:
        print(f"classify: SKIPPED (sandbox.judge.classify not available: {e})")
        classes = None
    else:
        verdicts, t = timed(lambda: [classify(s) for s in statements])
        classes = [v.cls for v in verdicts]
        stages.append(("classify", t))
    effs, t = timed(lambda: [effects(s) for s in statements])
    stages.append(("effects", t))
    plan, t = timed(lambda: build_plan(statements, classes=classes, effects_of=effs))
    stages.append(("plan", t))

    print(
        f"{n} statements, {len(plan.edges)} edges, {len(plan.levels)} levels, "
        f"critical path {len(plan.critical_path()[0])} nodes"
    )
    print(f"{'stage':<10} {'CPU s':>9} {'statements/s':>14}")
    for name, seconds in stages:
        print(f"{name:<10} {seconds:>9.3f} {n / seconds:>14,.0f}")
    total = sum(s for _, s in stages)
    rate = n / total
    print(f"{'total':<10} {total:>9.3f} {rate:>14,.0f}")
    verdict = "OK" if rate >= TARGET else "BELOW TARGET"
    print(f"target >= {TARGET:,.0f} statements/s: {verdict}")
    return 0 if rate >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
