"""Paths for effects: normalised strings in four namespaces, and how they overlap. No I/O."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from functools import lru_cache

from sandbox.judge.syntax import Word

WORKSPACE = "."
EVERYTHING = "/"


# --- paths ----------------------------------------------------------------------------


def normalise(path: str) -> str:
    """``./a//b/`` -> ``a/b``; ``~/x`` stays home-relative; escapes above ``..`` -> ``/``."""
    if not path:
        return WORKSPACE
    if path.startswith("/"):
        norm = posixpath.normpath(path)
        return "/" + norm.lstrip("/") if norm.startswith("//") else norm
    if path == "~" or path.startswith("~/"):
        rest = normalise(path[2:])
        if rest == WORKSPACE:
            return "~"
        return EVERYTHING if rest.startswith(("/", "..")) else "~/" + rest
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        parts = norm.split("/")
        # a sibling of the workspace keeps its name; anything higher contains us
        return norm if len(parts) > 1 and parts[1] != ".." else EVERYTHING
    return norm


def key(path: str) -> tuple[str, ...]:
    """Components of a normalised path; ``/`` is the empty key (the root of everything)."""
    if path == EVERYTHING:
        return ()
    if path.startswith("/"):
        return tuple(path[1:].split("/"))
    if path == WORKSPACE:
        return (".",)
    if path == "~" or path.startswith(("~/", "../")):
        return tuple(path.split("/"))
    return (".", *path.split("/"))


def overlaps(a: str, b: str) -> bool:
    """Whether two paths can name the same file: one is a prefix of the other by components.

    ``.`` overlaps every workspace path, ``/`` overlaps everything; absolute, home,
    sibling and workspace paths never overlap each other.
    """
    ka, kb = key(normalise(a)), key(normalise(b))
    n = min(len(ka), len(kb))
    return ka[:n] == kb[:n]


def minimal(paths: Iterable[str]) -> frozenset[str]:
    """Drop paths already covered by another path of the set."""
    keys = sorted({key(p) for p in paths}, key=len)
    kept: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for k in keys:
        if not any(k[:i] in seen for i in range(len(k) + 1)):
            kept.append(k)
            seen.add(k)
    return frozenset(_unkey(k) for k in kept)


def _unkey(k: tuple[str, ...]) -> str:
    if not k:
        return EVERYTHING
    if k[0] == ".":
        return "/".join(k[1:]) or WORKSPACE
    if k[0] in ("~", ".."):
        return "/".join(k)
    return "/" + "/".join(k)


_DYNAMIC_START = re.compile(r"\$(?:(HOME|PWD|TMPDIR)\b|\{(HOME|PWD|TMPDIR)\})")
_BRACE = re.compile(r"\{[^{}]*\}")  # a brace expansion when it holds `,` or `..`
_SUBST = {"HOME": "~", "PWD": ".", "TMPDIR": "/tmp"}


def _has_brace(text: str) -> bool:
    return any("," in m.group() or ".." in m.group() for m in _BRACE.finditer(text))


@lru_cache(maxsize=8192)
def word_path(word: Word) -> tuple[str, str | None]:
    """(normalised path, widening note or None) of one word."""
    text, value = word.text, word.value
    if value is not None and not word.glob and not (not word.quoted and _has_brace(text)):
        if value.startswith("~") and not text.startswith("~"):
            return WORKSPACE, f"{text} names a file called ~, widened to ."
        if value.startswith("~") and not value.startswith(("~/",)) and value != "~":
            return EVERYTHING, f"{text} is another user's home, widened to /"
        return normalise(value), None
    prefix, complete = _literal_prefix(text)
    if complete and (value is not None or _DYNAMIC_START.match(text.lstrip('"'))):
        return normalise(prefix), None
    if prefix.startswith("~") and not prefix.startswith("~/"):
        return EVERYTHING, f"{text} widened to /"
    directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    if prefix.startswith("/") and not directory:
        directory = "/"
    path = normalise(directory)
    kind = "glob" if value is not None else "variable"
    return path, f"{kind} {text} widened to {path}"


def _literal_prefix(text: str) -> tuple[str, bool]:
    """The literal text before the first expansion; True if there was no expansion at all."""
    out: list[str] = []
    i, n = 0, len(text)
    single = double = False
    while i < n:
        c = text[i]
        if single:
            if c == "'":
                single = False
            else:
                out.append(c)
        elif c == "'" and not double:
            single = True
        elif c == '"':
            double = not double
        elif c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 1
        elif c == "$" and not out and (m := _DYNAMIC_START.match(text, i)):
            out.append(_SUBST[m.group(1) or m.group(2)])
            i = m.end()
            continue
        elif c in "$`" or (not double and c in "*?[{("):
            return "".join(out), False
        else:
            out.append(c)
        i += 1
    return "".join(out), True
