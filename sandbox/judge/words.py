"""Words and redirections: literal values after quote removal, redirect targets. No I/O."""

from __future__ import annotations

import re

import tree_sitter

from sandbox.judge.syntax import GLOB_CHARS, Redirect, Word
from sandbox.judge.tree import Acc, snippet


def read_redirect(
    node: tree_sitter.Node,
    acc: Acc,
    stack: list[tuple[tree_sitter.Node, tuple[str, ...], bool]],
    via: tuple[str, ...],
    extra: list[Word] | None = None,
) -> Redirect | None:
    """One redirection. tree-sitter gives it every word that follows (`> out -la x`);
    bash takes only the first as the target and the rest as arguments: they go to ``extra``.
    """
    fd: int | None = None
    op = ""
    target: Word | None = None
    body: str | None = None
    kind = node.type
    for child in node.children:
        ctype = child.type
        if ctype == "file_descriptor":
            text = acc.text(child)
            fd = int(text) if text.isascii() and text.isdigit() and len(text) < 6 else None
        elif not child.is_named:
            if child.is_missing:
                acc.problem(f"syntax error: missing {ctype!r}")
            elif not op:
                op = ctype
        elif ctype == "heredoc_body":
            body = _static_heredoc(child, acc)
            stack.append((child, via, False))
        elif ctype in ("heredoc_start", "heredoc_end"):
            continue
        elif ctype in ("ERROR",):
            acc.problem(f"syntax error near {snippet(acc.text(child))!r}")
        else:
            if target is None:
                target = read_word(child, acc)
                if kind == "herestring_redirect":
                    body = target.value
            elif extra is not None:
                extra.append(read_word(child, acc))
            else:
                acc.problem("words after a redirection that belong to no simple command")
            # Substitutions inside the target still run.
            stack.append((child, via, False))
    if kind == "heredoc_redirect":
        op = "<<"
        if body is None and not any(c.type == "heredoc_body" for c in node.children):
            body = ""
    elif kind == "herestring_redirect":
        op = "<<<"
    op = _normalise_op(op)
    redirect = Redirect(
        op=op, fd=fd, target=None if kind == "heredoc_redirect" else target, body=body
    )
    acc.redirects.append(redirect)
    return redirect


def _normalise_op(op: str) -> str:
    return {
        ">|": ">",
        "&>": ">",
        "&>>": ">>",
        "<<-": "<<",
    }.get(op, op) or ">"


def _static_heredoc(node: tree_sitter.Node, acc: Acc) -> str | None:
    for child in node.children:
        if child.type not in ("heredoc_content",):
            return None
    return acc.text(node)


def read_word(node: tree_sitter.Node, acc: Acc) -> Word:
    text = acc.text(node)
    value, quoted, glob = _value(node, acc)
    return Word(text=text, value=value, quoted=quoted, glob=glob)


_ESCAPE_WORD = re.compile(r"\\(.)", re.S)
_UNESCAPED_BLANK = re.compile(r"(?<!\\)[ \t\n]")
_ESCAPE_DQ = re.compile(r'\\([$`"\\\n])')


def _value(node: tree_sitter.Node, acc: Acc) -> tuple[str | None, bool, bool]:
    """(literal value or None, quoted?, glob?) of a word-like node."""
    kind = node.type
    text = acc.text(node)
    if kind == "word":
        if _UNESCAPED_BLANK.search(text):
            # tree-sitter glued two words (`] ]`); bash would split them
            acc.problem(f"the word {snippet(text)!r} holds a blank that bash splits on")
        quoted = "\\" in text
        glob = bool(GLOB_CHARS.search(text)) or _has_brace_expansion(text)
        value = _ESCAPE_WORD.sub(lambda m: "" if m.group(1) == "\n" else m.group(1), text)
        return value, quoted, glob
    if kind == "number":
        return text, False, False
    if kind == "raw_string":
        return text[1:-1], True, False
    if kind == "ansi_c_string":
        return _ansi_c(text[2:-1]), True, False
    if kind in ("string", "translated_string"):
        parts: list[str] = []
        for child in node.children:
            if child.type == "string_content":
                parts.append(
                    _ESCAPE_DQ.sub(
                        lambda m: "" if m.group(1) == "\n" else m.group(1), acc.text(child)
                    )
                )
            elif child.is_named:
                return None, True, False
        return "".join(parts), True, False
    if kind == "concatenation":
        values: list[str] = []
        quoted = glob = False
        dynamic = False
        for child in node.children:
            if not child.is_named:
                # e.g. '=' or brace pieces kept as plain text
                values.append(acc.text(child))
                continue
            v, q, g = _value(child, acc)
            quoted |= q
            glob |= g
            if v is None:
                dynamic = True
            else:
                values.append(v)
        return (None if dynamic else "".join(values)), quoted, glob
    if kind == "brace_expression":
        return None, False, True
    return None, False, False


def _has_brace_expansion(text: str) -> bool:
    return "{" in text and "}" in text and ("," in text or ".." in text)


def _ansi_c(body: str) -> str:
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return body
