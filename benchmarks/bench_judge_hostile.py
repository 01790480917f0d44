"""Time the judge (parse -> classify -> effects) on hostile and on ordinary statements.

    .venv/bin/python benchmarks/bench_judge_hostile.py [--size BYTES] [--ordinary N]

Hostile: one statement of --size bytes (128 KiB by default) per pathological
shape (long lists, deep nesting, repeated quotes, many words, pipelines,
redirections, regex-hostile text for the sed/awk/inline-code readers). Each
must be judged, or refused with ``InputTooComplex``, in under 50 ms.
Ordinary: the realistic mix of bench_plan.py, judged statement by statement;
target 5,000 statements per second or better.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_plan import make_script
from sandbox.errors import InputTooComplex
from sandbox.judge.classify import classify
from sandbox.judge.effects import effects
from sandbox.judge.parse import MAX_UNIT_TOKENS, parse, parse_unit, token_count

HOSTILE_MS = 50.0
ORDINARY_PER_S = 5000.0


def hostile_cases(size: int) -> dict[str, str]:
    def rep(unit: str, head: str = "", tail: str = "") -> str:
        return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail

    depth = size // 8
    return {
        "a; x N": rep("a;"),
        "10,000 ;": "ls" + ";" * 10_000,
        "$( x N (unclosed)": rep("$("),
        "$(...) nested": "echo " + "$(" * depth + "ls" + ")" * depth,
        "`` x N": rep("`", "echo "),
        "(( nested": "(" * depth + "ls" + ")" * depth,
        "'a' x N": rep("'a'", "echo "),
        '"a" x N': rep('"a"', "echo "),
        '"\\"" x N': rep('\\"', 'echo "', '"'),
        "words": rep("a ", "ls "),
        "pipeline": rep(" | cat", "ls"),
        "&& list": rep(" && ls", "ls"),
        "redirections": rep(" >f", "ls"),
        "assignments": rep("A=1 ", "", "ls"),
        "line continuations": rep("ls \\\n"),
        "${a:- nested": "echo " + "${a:-" * depth + "}" * depth,
        "arithmetic": rep("1+", "echo $((", "1))"),
        "heredoc": rep("x\n", "cat <<EOF\n", "EOF"),
        "case items": rep("a) ls;; ", "case x in ", "esac"),
        "for nested": "for i in 1; do " * (depth // 4) + "ls" + "; done" * (depth // 4),
        "git -c": rep("-c a=b ", "git ", "log"),
        "sed script": rep("s/a/b/;", "sed '", "' f"),
        "awk print print": rep("print ", "awk '{", "}' f"),
        "python open(": rep("open(", "python -c '", "'"),
        "fork-bomb text": rep("f ", "f() { ", "}; f"),
        "brace ,,,": rep(",", "echo {", ""),
        "bash -c nested": "bash -c '" + rep("ls; ")[: size - 20] + "'",
        "[ ... ]": rep("a = b -a ", "[ ", "]"),
        "backslash lines": rep("\\ls\n"),
    }


def time_one(text: str) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        stmt = parse_unit(text)
        verdict = classify(stmt)
        effects(stmt)
        outcome = verdict.cls.value
    except InputTooComplex as e:
        outcome = f"refused: {str(e)[:60]}"
    return (time.perf_counter() - start) * 1000, outcome


def within_budget(text: str) -> str:
    """The longest prefix-shaped version of ``text`` that the budget accepts."""
    tokens = token_count(text.encode())
    if tokens <= MAX_UNIT_TOKENS:
        return text
    keep = len(text) * (MAX_UNIT_TOKENS - 200) // tokens
    head, tail = text[: keep // 2], text[len(text) - keep // 2 :]
    return head + tail  # balanced nesting keeps its shape: opening half + closing half


def ordinary(n: int) -> float:
    statements = parse(make_script(n, 7))
    texts = [s.text for s in statements]
    start = time.perf_counter()
    for text in texts:
        stmt = parse_unit(text)
        classify(stmt)
        effects(stmt)
    return len(texts) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128 * 1024)
    parser.add_argument("--ordinary", type=int, default=10_000)
    args = parser.parse_args(argv)
    worst = 0.0
    report: Callable[[str], None] = print
    report(f"hostile statements of {args.size} bytes (limit {HOSTILE_MS:.0f} ms each):")
    for name, text in hostile_cases(args.size).items():
        ms, outcome = time_one(text)
        worst = max(worst, ms)
        flag = "" if ms < HOSTILE_MS else "  <-- over the limit"
        report(f"  {name:22} {len(text):7} B {ms:8.1f} ms  {outcome}{flag}")
    report(f"the same shapes cut to fit the budget ({MAX_UNIT_TOKENS} tokens):")
    for name, text in hostile_cases(args.size).items():
        small = within_budget(text)
        ms, outcome = time_one(small)
        worst = max(worst, ms)
        flag = "" if ms < HOSTILE_MS else "  <-- over the limit"
        report(f"  {name:22} {len(small):7} B {ms:8.1f} ms  {outcome}{flag}")
    rate = ordinary(args.ordinary)
    report(f"worst hostile statement: {worst:.1f} ms")
    report(f"ordinary statements: {rate:,.0f} per second (target {ORDINARY_PER_S:,.0f})")
    return 0 if worst < HOSTILE_MS and rate >= ORDINARY_PER_S else 1


if __name__ == "__main__":
    sys.exit(main())
