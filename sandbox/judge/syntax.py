"""The judge's values: words, redirections, simple commands, statements. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox-sh"})
GLOB_CHARS = re.compile(r"(?<!\\)[*?\[]")


@dataclass(frozen=True, slots=True)
class Word:
    """One shell word (an argument or a redirect target)."""

    text: str  # as written in the script
    value: str | None  # after quote removal; None when it depends on an expansion
    quoted: bool = False  # quotes or backslashes were used
    glob: bool = False  # unquoted glob characters (*, ?, [..]) or brace expansion

    @property
    def dynamic(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class Redirect:
    """A redirection. ``op`` is normalised: '>', '>>', '<', '<>', '>&', '<&', '<<', '<<<'."""

    op: str
    fd: int | None
    target: Word | None  # None for heredocs
    body: str | None = None  # heredoc/herestring text when static

    @property
    def writes(self) -> bool:
        return self.op in (">", ">>", "<>", ">&") and not self.harmless

    @property
    def reads(self) -> bool:
        return self.op in ("<", "<>") and not self.harmless

    @property
    def harmless(self) -> bool:
        """Redirects to /dev/null, stdout/stderr duplication, closing fds."""
        if self.target is None:
            return self.op in ("<<", "<<<")
        value = self.target.value
        if value in ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/stdin", "/dev/tty"):
            return True
        return (
            self.op in (">&", "<&")
            and value is not None
            and ((value.isascii() and value.isdigit()) or value == "-")
        )


@dataclass(frozen=True, slots=True)
class Command:
    """A simple command after wrappers are peeled off."""

    argv: tuple[Word, ...]
    assignments: tuple[str, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    # how it was reached: "bash -c", "find -exec", "xargs", "$(...)", "<(...)", "(...)" (subshell)
    via: tuple[str, ...] = ()
    wrappers: tuple[tuple[Word, ...], ...] = ()  # peeled wrappers, outermost first
    piped_stdin: bool = False  # stdin comes from a pipe
    nested_script: bool = False  # its inline script (bash -c, eval) was parsed into more commands

    @property
    def name(self) -> Word | None:
        return self.argv[0] if self.argv else None

    @property
    def program(self) -> str | None:
        """Basename of the program when it is literal, else None."""
        if not self.argv or self.argv[0].value is None:
            return None
        return self.argv[0].value.rsplit("/", 1)[-1]

    @property
    def args(self) -> tuple[Word, ...]:
        return self.argv[1:]

    @property
    def arg_values(self) -> tuple[str | None, ...]:
        return tuple(w.value for w in self.argv[1:])

    @property
    def wrapper_names(self) -> tuple[str, ...]:
        return tuple((w[0].value or "?").rsplit("/", 1)[-1] for w in self.wrappers if w)


@dataclass(frozen=True, slots=True)
class Statement:
    """A top-level statement: what ``bashfleet run`` runs as one command."""

    index: int
    text: str
    line: int  # 1-based line of its first character
    commands: tuple[Command, ...] = ()
    redirects: tuple[Redirect, ...] = ()  # every redirect anywhere in the statement
    constructs: frozenset[str] = frozenset()  # pipeline, loop, function, background, ...
    problems: tuple[str, ...] = ()  # why the parser could not fully understand it
    assignments: tuple[str, ...] = ()  # bare NAME=value assignments (shell state)
    # every other variable set: in (...), $(...), bash -c, and `for NAME in`
    inner_assignments: tuple[str, ...] = ()

    @property
    def understood(self) -> bool:
        return not self.problems


def replace(cmd: Command, **changes: object) -> Command:
    values = {f: getattr(cmd, f) for f in cmd.__dataclass_fields__}
    values.update(changes)
    return Command(**values)
