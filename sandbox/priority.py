"""Priority scores and learned duration estimates. No I/O except load/save.

score = 0.3*safety + 0.25*resource + 0.25*time + 0.2*user, each on 1..10,
higher runs first; the time term is stepped by order of magnitude (``time_score``),
so that equal scores are common and the scheduler's tie-break, the longest chain
behind a command (critical path first), decides within a step. Waiting raises
priority (aging): the effective score is ``score + AGING_PER_S * seconds_waiting``.
Because every waiting command ages at the same rate, ordering by
``score - AGING_PER_S * ready_at`` is the same at every instant, so a plain heap
keeps the order without re-scoring.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path

from sandbox.model import CommandClass

AGING_PER_S = 0.05  # one point of priority per 20 s of waiting

SAFETY = {
    CommandClass.SAFE: 10,
    CommandClass.CONDITIONAL: 6,
    CommandClass.SEQUENTIAL: 4,
    CommandClass.DANGEROUS: 2,
}
# Lighter commands score higher: they free their slot quickly and cost little.
RESOURCE = {
    CommandClass.SAFE: 9,
    CommandClass.CONDITIONAL: 3,
    CommandClass.SEQUENTIAL: 7,
    CommandClass.DANGEROUS: 4,
}
DEFAULT_ESTIMATE_S = {
    CommandClass.SAFE: 0.2,
    CommandClass.CONDITIONAL: 10.0,
    CommandClass.SEQUENTIAL: 1.0,
    CommandClass.DANGEROUS: 2.0,
}


# The time term ranks orders of magnitude, not seconds: a learned estimate is a rough
# moving average, and within one step (two sleeps of 0.2 and 0.7 s, two builds of 2 and
# 4 min) the command with the longest chain behind it must go first, or a batch's
# makespan suffers (shortest-first starves the critical path: 1.37x the lower bound
# instead of 1.00x on bench_makespan's tight DAG). Steps: up to 1 s, 10 s, 1 min, 10 min.
TIME_STEPS_S = (1.0, 10.0, 60.0, 600.0)


def time_score(estimate_s: float) -> float:
    """10 for a second or less, 1 for more than ten minutes, in equal steps between."""
    step = sum(1 for edge in TIME_STEPS_S if estimate_s > edge)
    return 10.0 - 9.0 * step / len(TIME_STEPS_S)


def score(cls: CommandClass, estimate_s: float, user_priority: int) -> float:
    user = min(10, max(1, user_priority))
    return 0.3 * SAFETY[cls] + 0.25 * RESOURCE[cls] + 0.25 * time_score(estimate_s) + 0.2 * user


_NUMBER = re.compile(r"\d+")
_SUBCOMMAND = re.compile(r"^[a-z][a-z0-9:_-]*$")
_NUMERIC = re.compile(r"^[0-9][0-9.]{0,11}[smhd]?$")


def fingerprint(command: str) -> str:
    """A normalised key for "the same command": program, subcommand and flags.

    ``pytest tests/a.py -k x`` and ``pytest tests/b.py -k y`` share a key;
    numeric arguments are kept, so ``sleep 1`` and ``sleep 100`` don't.
    """
    tokens = command.split()[:32]
    if not tokens:
        return ""
    out = [tokens[0].rsplit("/", 1)[-1]]
    for i, tok in enumerate(tokens[1:], 1):
        if tok in ("|", "&&", "||", ";"):
            break
        if tok.startswith("-"):
            out.append(_NUMBER.sub("N", tok.split("=", 1)[0]))
        elif _NUMERIC.match(tok):
            out.append(tok)  # `sleep 1` and `sleep 100` are different commands
        elif i == 1 and _SUBCOMMAND.match(tok):
            out.append(tok)
    return " ".join(out)


class DurationModel:
    """Exponential moving average of run time per fingerprint (thread-safe, bounded)."""

    def __init__(self, alpha: float = 0.3, max_entries: int = 10_000) -> None:
        self.alpha = alpha
        self.max_entries = max_entries
        self._avg: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def estimate(self, key: str, cls: CommandClass) -> float:
        with self._lock:
            return self._avg.get(key, DEFAULT_ESTIMATE_S[cls])

    def observe(self, key: str, duration_s: float) -> None:
        with self._lock:
            old = self._avg.pop(key, None)
            self._avg[key] = duration_s if old is None else old + self.alpha * (duration_s - old)
            while len(self._avg) > self.max_entries:
                self._avg.popitem(last=False)

    def load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict):
            with self._lock:
                for k, v in data.items():
                    if isinstance(k, str) and isinstance(v, int | float) and v >= 0:
                        self._avg[k] = float(v)

    def save(self, path: Path) -> None:
        with self._lock:
            data = dict(self._avg)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
