"""A rule: a program's default class, what it does, and an optional flag check. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.judge.rules.flags import Check
from sandbox.model import CommandClass


@dataclass(frozen=True, slots=True)
class Rule:
    cls: CommandClass
    what: str
    check: Check | None = None


def group(cls: CommandClass, what: str, names: str, check: Check | None = None) -> dict[str, Rule]:
    rule = Rule(cls, what, check)
    return dict.fromkeys(names.split(), rule)
