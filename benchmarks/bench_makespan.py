"""Makespan of a DAG-shaped batch against its lower bound.

lower bound = max(critical path, total work / slots), from the nominal sleep times.
Real processes (`sleep`) in the local pool, 8 slots.
Run: .venv/bin/python benchmarks/bench_makespan.py

What is measured: submit to the end of the last command, so every command's own
overhead (spawn, bash, the `sleep` exec; a few ms each, more on a loaded machine)
counts against the scheduler. Steps last 0.2-0.8 s (they were 0.1-0.4 s: with ~10 ms
of overhead per step, a 15-step chain then lost 5-8% to process start-up alone,
which says little about scheduling). Seed 0 is tight (critical path = work / slots):
only a perfect packing reaches its bound.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from _util import machine

from sandbox.executors.local import LocalExecutor
from sandbox.model import CommandClass
from sandbox.priority import DurationModel
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler

SLOTS = 8


def dag(seed: int) -> tuple[list[CommandSpec], list[float]]:
    """Chains of dependent steps mixed with independent work, shuffled into a script."""
    rng = random.Random(seed)
    durations: list[float] = []
    specs: list[CommandSpec] = []
    chains = [[] for _ in range(4)]  # type: list[list[int]]
    for i in range(60):
        d = rng.choice([0.2, 0.4, 0.6, 0.8])
        chain = rng.randrange(12)  # 4 chains, and independent commands otherwise
        needs: tuple[int, ...] = ()
        if chain < 4:
            if chains[chain]:
                needs = (chains[chain][-1],)
            chains[chain].append(i)
        durations.append(d)
        specs.append(CommandSpec(index=i, command=f"sleep {d}", cls=CommandClass.SAFE, needs=needs))
    return specs, durations


def lower_bound(specs: list[CommandSpec], durations: list[float]) -> float:
    finish = [0.0] * len(specs)
    for s in specs:
        finish[s.index] = durations[s.index] + max((finish[n] for n in s.needs), default=0.0)
    return max(max(finish), sum(durations) / SLOTS)


def main() -> None:
    print(f"# DAG makespan vs lower bound, {SLOTS} slots ({machine()})")
    print(f"{'seed':>4} {'run':<5}{'commands':>9}{'bound s':>10}{'makespan s':>12}{'ratio':>8}")
    ratios = []
    durations_model = DurationModel()  # learned across runs, as in a long-lived server
    executor = LocalExecutor()
    for seed in range(3):
        specs, durations = dag(seed)
        bound = lower_bound(specs, durations)
        for run in ("cold", "warm"):
            sched = Scheduler(
                {"local": executor},
                lambda c: ("local", None),
                limits={c: SLOTS for c in CommandClass},
                max_running=SLOTS,
                durations=durations_model,
            )
            with tempfile.TemporaryDirectory() as ws:
                started = time.monotonic()
                bid = sched.submit(BatchSpec(commands=tuple(specs), workspace=Path(ws)))
                sched.wait(bid)
                makespan = time.monotonic() - started
            sched.shutdown()
            if run == "warm":
                ratios.append(makespan / bound)
            print(
                f"{seed:>4} {run:<5}{len(specs):>9}{bound:>10.2f}{makespan:>12.2f}"
                f"{makespan / bound:>8.2f}"
            )
    executor.close()
    print(f"worst warm ratio {max(ratios):.2f} (target <= 1.10); cold = no duration history yet")


if __name__ == "__main__":
    main()
