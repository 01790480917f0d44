"""The secret redactor's cost: MB/s of command output through a StreamRedactor.

Run: .venv/bin/python benchmarks/bench_redact.py [MB]
Output: build-log-like lines (80 bytes each) in the 64 KiB chunks executors send, with a
secret (or one of its encoded forms) in one line of a thousand; 10 secrets of 24-40 bytes
(each has ~14 forms: plain, URL-encoded, base64 at three alignments, url-safe). Baselines:
no secrets (the scheduler skips the redactor entirely) and one secret.
"""

from __future__ import annotations

import base64
import random
import secrets
import sys
import time

from _util import machine

from sandbox.executors.base import CHUNK_LIMIT
from sandbox.redact import Redactor

MB = int(sys.argv[1]) if len(sys.argv) > 1 else 64


def corpus(values: list[str], size: int) -> bytes:
    rng = random.Random(7)
    words = [b"compiling", b"src/module.c", b"-O2", b"warning:", b"ok", b"[100%]", b"linking"]
    lines = []
    total = 0
    while total < size:
        if values and rng.random() < 0.001:
            v = rng.choice(values).encode()
            line = b"token " + rng.choice([v, base64.b64encode(b"x" + v)]) + b"\n"
        else:
            line = b" ".join(rng.choice(words) for _ in range(10))[:79] + b"\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)[:size]


def rate(values: list[str], data: bytes) -> float:
    r = Redactor(values)
    best = float("inf")
    for _ in range(3):
        stream = r.stream()
        t0 = time.perf_counter()
        for i in range(0, len(data), CHUNK_LIMIT):
            stream.feed(data[i : i + CHUNK_LIMIT])
        stream.flush()
        best = min(best, time.perf_counter() - t0)
    return len(data) / best / 1e6


def main() -> None:
    print(machine())
    values = [secrets.token_urlsafe(random.Random(i).randint(18, 30)) for i in range(10)]
    data = corpus(values, MB << 20)
    for label, vs in (("no secrets", []), ("1 secret", values[:1]), ("10 secrets", values)):
        forms = len(Redactor(vs).patterns)
        print(f"{label:>11}: {rate(vs, data):8.0f} MB/s ({forms} forms)")


if __name__ == "__main__":
    main()
