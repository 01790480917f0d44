"""Effects: the value, option splitting and the accumulator handlers write into. No I/O."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sandbox.judge.paths import EVERYTHING, WORKSPACE, normalise, word_path
from sandbox.judge.syntax import Command, Word

LOCAL_RESOURCES = frozenset({"session"})  # per-statement state: never a conflict


@dataclass(frozen=True, slots=True)
class Effects:
    reads: frozenset[str]
    writes: frozenset[str]
    resources: frozenset[str]  # every resource touched (read or changed)
    exact: bool  # False when anything was widened
    notes: tuple[str, ...] = ()  # why it was widened, for people
    resource_writes: frozenset[str] = frozenset()  # the resources it changes

    @property
    def resource_reads(self) -> frozenset[str]:
        return self.resources - self.resource_writes


# --- option parsing -------------------------------------------------------------------

Opt = tuple[str, Word | None]


def names_of(text: str) -> frozenset[str]:
    return frozenset(text.split())


def split_args(
    args: Sequence[Word], short: str = "", long: Iterable[str] = ()
) -> tuple[list[Opt], list[Word]]:
    """GNU-style options (permuted) and operands.

    ``short`` letters and ``long`` names take a value.
    """
    long_values = frozenset(long)
    opts: list[Opt] = []
    operands: list[Word] = []
    i, n = 0, len(args)
    while i < n:
        w = args[i]
        v = w.value
        if v is None:
            opt = _dynamic_option(w, short)
            if opt is None:
                operands.append(w)
            else:
                opts.append(opt)
        elif v == "-" or not v.startswith("-"):
            operands.append(w)
        elif v == "--":
            operands.extend(args[i + 1 :])
            break
        elif v.startswith("--"):
            name, eq, val = v.partition("=")
            if eq:
                opts.append((name, Word(val, val, glob=w.glob)))
            elif name in long_values and i + 1 < n:
                i += 1
                opts.append((name, args[i]))
            else:
                opts.append((name, None))
        else:
            for j in range(1, len(v)):
                c = v[j]
                if c in short:
                    rest = v[j + 1 :]
                    if rest:
                        opts.append(("-" + c, Word(rest, rest, glob=w.glob)))
                    elif i + 1 < n:
                        i += 1
                        opts.append(("-" + c, args[i]))
                    else:
                        opts.append(("-" + c, None))
                    break
                opts.append(("-" + c, None))
        i += 1
    return opts, operands


def _dynamic_option(w: Word, short: str) -> Opt | None:
    """``--output=$f`` / ``-o$f``: an option whose value depends on an expansion."""
    text = w.text
    if text.startswith("--") and "=" in text:
        name, _, rest = text.partition("=")
        if re.fullmatch(r"--[\w-]+", name):
            return name, Word(rest, None)
    if re.match(r"-\w", text) and text[1] in short:
        return text[:2], Word(text[2:], None)
    return None


def has_opt(opts: list[Opt], *names: str) -> bool:
    return any(name in names for name, _ in opts)


def opt_values(opts: list[Opt], *names: str) -> list[Word]:
    return [v for name, v in opts if name in names and v is not None]


# --- accumulation ---------------------------------------------------------------------


@dataclass
class Acc:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    resource_writes: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    exact: bool = True
    cwd: str | None = None  # set once `cd` moved the statement somewhere
    find_paths: list[str] = field(default_factory=list)
    via: tuple[str, ...] = ()

    def note(self, text: str) -> None:
        self.exact = False
        if text not in self.notes:
            self.notes.append(text)

    def paths(self, word: Word) -> list[str]:
        if word.text.startswith(("<(", ">(")):
            return []  # process substitution: its commands are counted on their own
        if self.via and "{}" in word.text and self.via[-1].startswith(("find -", "xargs")):
            if self.via[-1].startswith("find -") and self.find_paths:
                return list(self.find_paths)
            self.note(f"{word.text} is filled in at run time, widened to .")
            return [WORKSPACE]
        path, note = word_path(word)
        if note:
            self.note(note)
        if path.startswith(("/", "~")):
            return [path]
        if self.via and self.via[-1] in ("find -execdir", "find -okdir") and self.find_paths:
            return list(self.find_paths)
        if self.cwd is not None:
            widened = EVERYTHING if path.startswith("..") else self.cwd
            self.note(f"{path} is relative to a changed directory, widened to {widened}")
            return [widened]
        return [path]

    def read(self, *words: Word) -> None:
        for w in words:
            self.reads.update(self.paths(w))

    def write(self, *words: Word) -> None:
        for w in words:
            self.writes.update(self.paths(w))

    def write_renamed(self, word: Word, suffix: str | None, strip: bool = False) -> None:
        """Write the file named ``word`` + ``suffix`` (or with ``suffix`` stripped)."""
        path, note = word_path(word)
        before = len(self.notes)
        paths = self.paths(word)
        if note or len(self.notes) > before or paths != [path] or path in (".", "/", "~"):
            self.writes.update(paths)  # widened already: the directory covers the new name
        elif not suffix or "/" in suffix or "*" in suffix:
            self.writes.add(normalise(posixpath.dirname(path) or WORKSPACE))
        else:
            self.writes.add(normalise(path[: -len(suffix)] if strip else path + suffix))

    def use(self, *names: str, write: bool = False) -> None:
        self.resources.update(names)
        if write:
            self.resource_writes.update(names)

    def everything(self, why: str) -> None:
        self.reads.add(EVERYTHING)
        self.writes.add(EVERYTHING)
        self.note(why)

    def workspace(self, why: str) -> None:
        self.reads.add(WORKSPACE)
        self.writes.add(WORKSPACE)
        self.note(why)


Handler = Callable[[Command, Acc], None]
