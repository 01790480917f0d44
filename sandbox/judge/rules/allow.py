"""Allowlists of options for programs judged safe: default deny at the flag level.

No I/O here. A program in ``ALLOWED`` is safe only when every option it is
given is listed: short letters (alone or clustered), short letters that take a
value (attached or as the next word), long options with or without a value.
Anything else (an unknown flag, an abbreviated long option, an option a rule
author never read about) makes it ``conditional`` with a reason naming the
token. A program judged safe that has no entry here accepts no options at all.

``risky`` programs have options that write files or run code (``sort -o``,
``tree -o``, ``find -delete``); for them a word known only at run time (``$x``,
a glob such as ``*.txt`` that may match a file named ``--output=x``) could be
such an option, so it is not safe either unless it follows ``--``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.judge.syntax import Command, Word


@dataclass(frozen=True, slots=True)
class Allowed:
    short: frozenset[str] = frozenset()  # letters without a value: -l, -la
    short_values: frozenset[str] = frozenset()  # letters with a value: -n 5, -n5
    long: frozenset[str] = frozenset()  # --name
    long_values: frozenset[str] = frozenset()  # --name=value, --name value
    long_optional: frozenset[str] = frozenset()  # --name or --name=value (never the next word)
    numeric: bool = False  # -5 (head, tail, grep context)
    risky: bool = False  # some unlisted options write or run code
    any_args: bool = False  # every word is an operand (echo): options cannot change anything


def allow(
    short: str = "",
    values: str = "",
    long: str = "",
    long_values: str = "",
    optional: str = "",
    *,
    numeric: bool = False,
    risky: bool = False,
) -> Allowed:
    """A table row: letters as strings, long options space separated without dashes."""
    return Allowed(
        frozenset(short),
        frozenset(values),
        frozenset(f"--{n}" for n in long.split()),
        frozenset(f"--{n}" for n in long_values.split()),
        frozenset(f"--{n}" for n in optional.split()),
        numeric,
        risky,
    )


FREE = Allowed(any_args=True)
HELP = "help version"


def names(text: str) -> list[str]:
    return text.split()


def unknown_option(cmd: Command, table: Allowed) -> Word | None:
    """The first argument that is not an allowed option (or may become one), else None."""
    if table.any_args:
        return None
    args = cmd.args
    i = 0
    while i < len(args):
        w = args[i]
        v = w.value
        i += 1
        if v is None or w.glob:
            if table.risky and (v is None or v.startswith("-") or w.text.startswith(("*", "?"))):
                return w
            if v is None:
                continue
        if v == "--":
            rest = args[i:]
            return next((r for r in rest if r.value is None and table.risky), None)
        if v == "-" or not v.startswith("-"):
            continue
        if v.startswith("--"):
            name, eq, _ = v.partition("=")
            if name in table.long_optional or (eq and name in table.long_values):
                continue
            if not eq and name in table.long:
                continue
            if not eq and name in table.long_values and i < len(args):
                i += 1
                continue
            return w
        if table.numeric and v[1:].isdigit():
            continue
        letters = v[1:]
        for pos, letter in enumerate(letters):
            if letter in table.short_values:
                if pos == len(letters) - 1:
                    i += 1  # the value is the next word
                break
            if letter not in table.short:
                return w
    return None
