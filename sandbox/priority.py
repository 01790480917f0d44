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
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
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
    """Exponential moving average of run time per workspace and fingerprint (thread-safe,
    bounded). ``scope`` is the workspace ("" when there is none). What changed since the
    last ``take_changed`` can be written out in one go (the portal's store, the CLI's file).
    """

    def __init__(self, alpha: float = 0.3, max_entries: int = 10_000) -> None:
        self.alpha = alpha
        self.max_entries = max_entries
        self._avg: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._changed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def estimate(self, key: str, cls: CommandClass, scope: str = "") -> float:
        """This workspace's estimate; else one learned without a workspace; else the class's."""
        with self._lock:
            found = self._avg.get((scope, key))
            if found is None:
                found = self._avg.get(("", key))
            return DEFAULT_ESTIMATE_S[cls] if found is None else found

    def observe(self, key: str, duration_s: float, scope: str = "") -> None:
        with self._lock:
            old = self._avg.pop((scope, key), None)
            new = duration_s if old is None else old + self.alpha * (duration_s - old)
            self._avg[scope, key] = new
            self._changed.add((scope, key))
            while len(self._avg) > self.max_entries:
                dropped, _ = self._avg.popitem(last=False)
                self._changed.discard(dropped)

    def remember(self, items: Iterable[tuple[str, str, float]]) -> None:
        """Take known estimates (scope, fingerprint, seconds), e.g. from the store at start."""
        with self._lock:
            for scope, key, value in items:
                if value >= 0 and (scope, key) not in self._avg:
                    self._avg[scope, key] = float(value)
            while len(self._avg) > self.max_entries:
                self._avg.popitem(last=False)

    def take_changed(self) -> list[tuple[str, str, float]]:
        """(scope, fingerprint, estimate) of every entry observed since the last call."""
        with self._lock:
            out = [(sc, k, self._avg[sc, k]) for sc, k in self._changed if (sc, k) in self._avg]
            self._changed.clear()
        return sorted(out)

    def load(self, path: Path) -> None:
        """A file written by ``save``: [[scope, fingerprint, seconds], ...]."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, list):
            self.remember(
                (sc, k, float(v))
                for sc, k, v in (e for e in data if isinstance(e, list) and len(e) == 3)
                if isinstance(sc, str) and isinstance(k, str) and isinstance(v, int | float)
            )

    def save(self, path: Path) -> None:
        with self._lock:
            data = [[sc, k, v] for (sc, k), v in self._avg.items()]
            self._changed.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two runs at once: the last one wins
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
