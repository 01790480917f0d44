"""Secrets out of output: every secret value, and its base64 and URL-encoded forms, becomes ``***``.

    Redactor(secrets)            the forms to look for (None-like when there are none: ``bool``)
    redactor.redact(data)        one whole text
    redactor.stream()            a StreamRedactor: feed(chunk) -> bytes, flush() -> bytes

The scheduler puts a StreamRedactor per stream of each command between the executor and
everything else (the stored output, the live stream, downloads), so byte offsets are those
of the redacted text and a secret never reaches the store.

Forms of a secret ``s`` (UTF-8): ``s``; ``quote(s)``, ``quote(s, safe="")`` and
``quote_plus(s)``; and base64 of ``s`` at each of the three alignments it can have inside a
longer encoded text (the characters that depend on ``s`` alone), and of ``s`` encoded on its
own (with and without padding), standard and url-safe.

A value split across chunks: a stream keeps back the shortest tail that could still begin a
form (at most the longest form's length minus one byte) until the next chunk or the end,
so that feeding any split of a text gives exactly ``redact`` of the whole text. Output with
no such tail (a prompt without a newline, most text) is passed on at once.

Values shorter than ``MIN_SECRET_BYTES`` are not redacted (replacing every ``ab`` in the
output would mangle it and reveal the value anyway): the settings refuse them, and the
engine ignores them here. Forms shorter than that (the base64 of a short value at an odd
alignment) are skipped the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = b"***"
MIN_SECRET_BYTES = 4


def forms(secret: str | bytes) -> set[bytes]:
    """The byte strings that give ``secret`` away in output (see the module docstring)."""
    raw = secret.encode("utf-8", "surrogateescape") if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_BYTES:
        return set()
    found = {raw}
    for encoded in (quote(raw), quote(raw, safe=""), quote_plus(raw)):
        found.add(encoded.encode())
    whole = base64.b64encode(raw)  # the value encoded on its own: its last characters too
    for text in (whole, whole.rstrip(b"=")):
        found.add(text)
        found.add(text.translate(_URLSAFE))
    for k in range(3):
        # k unknown bytes before the secret: its first (4k+2)//3 characters and the last
        # partial one depend on those, or on what follows
        text = base64.b64encode(b"\0" * k + raw).rstrip(b"=")
        start = (4 * k + 2) // 3
        end = ((k + len(raw)) * 8) // 6
        part = text[start:end]
        found.add(part)
        found.add(part.translate(_URLSAFE))
    return {f for f in found if len(f) >= MIN_SECRET_BYTES}


_URLSAFE = bytes.maketrans(b"+/", b"-_")


class Redactor:
    """The forms of a set of secrets; false (``bool``) when there is nothing to redact."""

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        patterns: set[bytes] = set()
        for secret in secrets:
            patterns |= forms(secret)
        # longest first: at one position the longest form wins, whatever the chunking
        self.patterns = tuple(sorted(patterns, key=lambda p: (-len(p), p)))
        self.longest = len(self.patterns[0]) if self.patterns else 0
        # proper prefixes of the forms: a stream's tail that is one of these is kept back
        self._prefixes = {p[:i] for p in self.patterns for i in range(1, len(p))}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def redact(self, data: bytes) -> bytes:
        return self._split(data, final=True)[0] if self.patterns else data

    def stream(self) -> StreamRedactor:
        return StreamRedactor(self)

    def _split(self, buf: bytes, final: bool) -> tuple[bytes, bytes]:
        """(redacted text that is certain, the tail to keep for the next chunk)."""
        hold = len(buf)
        if not final:
            for i in range(max(0, len(buf) - self.longest + 1), len(buf)):
                if buf[i:] in self._prefixes:
                    hold = i
                    break
        # every occurrence of every form (bytes.find: C speed, where a regex alternation of
        # ~50 literals crawls at ~15 MB/s), then leftmost first, the longest at a position
        found = []
        for p in self.patterns:
            i = buf.find(p)
            while i != -1:
                found.append((i, -len(p)))
                i = buf.find(p, i + 1)
        found.sort()
        out: list[bytes] = []
        pos = 0
        for start, neg in found:
            if start >= hold:
                break
            if start < pos:
                continue  # overlaps the one taken
            out.append(buf[pos:start])
            out.append(MASK)
            pos = start - neg
        cut = max(pos, hold)
        out.append(buf[pos:cut])
        return b"".join(out), buf[cut:]


class StreamRedactor:
    """One stream's redaction: ``feed`` chunks in order, then ``flush`` once at its end.
    The concatenation of what they return is ``redact`` of the whole stream."""

    __slots__ = ("_redactor", "_tail")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        if not self._redactor.patterns:
            return data
        out, self._tail = self._redactor._split(self._tail + data, final=False)
        return out

    def flush(self) -> bytes:
        if not self._tail:
            return b""
        out, _ = self._redactor._split(self._tail, final=True)
        self._tail = b""
        return out
