"""A verdict (class + reasons), and the way rules judge an inner command. No I/O.

Some rules must judge a command inside another one (``sed 'e CMD'``, awk's
``system("CMD")``, ``watch CMD``, ``git submodule foreach CMD``, runners such as
``strace CMD``). They call ``judge_text``/``judge_command`` here; ``classify``
registers itself on import, so no rule module imports the classifier (no cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.judge.syntax import Command
from sandbox.model import CommandClass


@dataclass(frozen=True, slots=True)
class Verdict:
    cls: CommandClass
    reasons: tuple[str, ...]


_JUDGES: dict[str, Callable[..., Verdict]] = {}


def register(text: Callable[[str], Verdict], command: Callable[[Command], Verdict]) -> None:
    _JUDGES["text"] = text
    _JUDGES["command"] = command


def judge_text(text: str) -> Verdict:
    """The classifier's verdict on ``text`` judged as one unit."""
    return _JUDGES["text"](text)


def judge_command(cmd: Command) -> Verdict:
    """The classifier's verdict on one simple command."""
    return _JUDGES["command"](cmd)
