"""Script text -> top-level statements, each with every simple command inside it.

No I/O here: this module only turns text into values. It never raises on bad
text; whatever it cannot understand is recorded in ``Statement.problems`` so
that the classifier treats the statement as unknown (never safe). The one
exception is size: a statement beyond the judge's budget (``MAX_STATEMENT_NODES``
syntax nodes, ``MAX_DEPTH`` levels of nesting, ``MAX_UNIT_TOKENS`` blanks and
operators for one unit) raises ``InputTooComplex`` with what to shorten, so
that the work per statement stays bounded (linear in its size, and small).

Every nested command counts: pipelines, ``&&``/``||`` lists, subshells,
groups, loops, functions, ``$(...)``, backticks, process substitution,
unquoted heredoc bodies, the script of ``bash -c`` (parsed again, to a bounded
depth), ``eval`` of literal text, ``find -exec`` targets, ``xargs`` targets,
and commands behind wrappers (``env``, ``sudo``, ``nice``, ``timeout`` ...).
"""

from __future__ import annotations

import dataclasses
import itertools

import tree_sitter

from sandbox.judge.commands import shell_script_arg
from sandbox.judge.syntax import GLOB_CHARS, SHELLS, Command, Redirect, Statement, Word
from sandbox.judge.tree import (
    MAX_DEPTH,
    MAX_NESTED_DEPTH,
    MAX_STATEMENT_NODES,
    MAX_UNIT_TOKENS,
    Acc,
    check_lines,
    check_nodes,
    check_size,
    check_tokens,
    parse_tree,
    token_count,
    top_level_groups,
)
from sandbox.judge.walk import walk

__all__ = [
    "GLOB_CHARS",
    "MAX_DEPTH",
    "MAX_NESTED_DEPTH",
    "MAX_STATEMENT_NODES",
    "MAX_UNIT_TOKENS",
    "SHELLS",
    "Command",
    "Redirect",
    "Statement",
    "Word",
    "parse",
    "parse_unit",
    "shell_script_arg",
    "token_count",
]


def parse(text: str, *, max_statements: int | None = None) -> list[Statement]:
    """Split a script into top-level statements.

    Raises ``InputTooComplex`` (and only that) when one statement is beyond the
    budget, or when the script has more than ``max_statements`` top-level parts.
    """
    return _parse(text.encode("utf-8", "surrogatepass"), max_statements, None)


def _parse(
    source: bytes, max_statements: int | None, first: tree_sitter.Tree | None
) -> list[Statement]:
    """``first``: the whole source already parsed (parse_unit has it), else None."""
    check_lines(source)
    statements: list[Statement] = []
    # tree-sitter-bash sometimes glues the next line onto a pipeline's last command
    # (`a | b | c` then `d > f`). An unescaped newline between two words of a top-level
    # command always ends that command in bash, so the source is cut at every such
    # newline and each piece parsed on its own (once: the work stays linear).
    segments = [(0, len(source))]
    line, line_at = 0, 0  # newlines before offset `line_at`, counted incrementally
    rounds = 0
    while segments:
        start, end = segments.pop()
        segment = source[start:end]
        tree = first if first is not None and rounds == 0 else parse_tree(segment)
        check_size(tree.root_node, source.count(b"\n", 0, start), max_statements)
        cuts = _glued_newlines(tree.root_node, segment) if rounds < 10_000 else []
        if cuts:
            rounds += 1
            bounds = [0, *cuts, len(segment)]
            segments.extend(
                (start + a, start + b) for a, b in reversed(list(itertools.pairwise(bounds)))
            )
            continue
        line += source.count(b"\n", line_at, start)
        line_at = start
        statements.extend(_statements(tree, segment, line))
    return [dataclasses.replace(s, index=i) for i, s in enumerate(statements)]


def _glued_newlines(root: tree_sitter.Node, source: bytes) -> list[int]:
    """Offsets of unescaped newlines between two words of a top-level command."""
    found: list[int] = []
    stack = [c for c in root.children if c.type in _TOP_CHAIN]
    while stack:
        node = stack.pop()
        if node.type not in ("command", "file_redirect"):
            stack.extend(c for c in node.children if c.type in _TOP_CHAIN_REDIRECT)
            continue
        # the words of a redirect: tree-sitter gives it the words that follow (`> f x`)
        stack.extend(c for c in node.children if c.type == "file_redirect")
        for a, b in itertools.pairwise(node.children):
            gap = source[a.end_byte : b.start_byte]
            nl = gap.find(b"\n")
            if nl >= 0 and not gap[:nl].rstrip(b" \t").endswith(b"\\"):
                found.append(a.end_byte + nl)
            elif b.type == "word" and source.startswith(b"\n", b.start_byte):
                # `echo hi` newline `\rm x`: tree-sitter starts the word `\rm` at the newline
                found.append(b.start_byte)
    return sorted(set(found))


_TOP_CHAIN = frozenset({"pipeline", "list", "redirected_statement", "command"})
_TOP_CHAIN_REDIRECT = _TOP_CHAIN | {"file_redirect"}


def _statements(tree: tree_sitter.Tree, source: bytes, line0: int) -> list[Statement]:
    statements: list[Statement] = []
    text = source.decode("utf-8", "replace")
    for start, end, nodes, background in top_level_groups(tree.root_node):
        acc = Acc(source, depth=0)
        for node in nodes:
            walk(node, acc)
        if background:
            acc.constructs.add("background")
        stmt_text = source[start:end].decode("utf-8", "replace")
        if "\x00" in stmt_text:
            acc.problem("contains a NUL byte, which bash cannot run")
        if not acc.problems and any(n.has_error for n in nodes):
            acc.problem("syntax error")
        line = line0 + nodes[0].start_point.row + 1
        statements.append(_statement(len(statements), stmt_text, line, acc))
    root = tree.root_node
    if root.has_error and not any(s.problems for s in statements):
        # the error swallowed the whole script (e.g. 500 unclosed `$(`)
        problem = ("syntax error: the script could not be parsed",)
        if statements:
            last = statements[-1]
            statements[-1] = dataclasses.replace(last, problems=(*last.problems, *problem))
        else:
            statements.append(Statement(index=0, text=text, line=line0 + 1, problems=problem))
    return statements


def parse_unit(text: str) -> Statement:
    """Judge the whole text as one unit, however many statements it holds.

    Raises ``InputTooComplex`` when the text is beyond the budget of one statement.
    """
    source = text.encode("utf-8", "surrogatepass")
    check_tokens(source)
    tree = parse_tree(source)
    check_nodes(tree.root_node.descendant_count, 1)  # one budget for all its statements
    statements = _parse(source, None, tree)
    if len(statements) == 1:
        return statements[0]
    acc = Acc(b"", depth=0)
    for stmt in statements:
        acc.commands.extend(stmt.commands)
        acc.redirects.extend(stmt.redirects)
        acc.constructs.update(stmt.constructs)
        acc.assignments.extend(stmt.assignments)
        acc.inner_assignments.extend(stmt.inner_assignments)
        for p in stmt.problems:
            acc.problem(p)
    if len(statements) > 1:
        acc.constructs.add("list")
    return _statement(0, text, statements[0].line if statements else 1, acc)


def _statement(index: int, text: str, line: int, acc: Acc) -> Statement:
    return Statement(
        index=index,
        text=text,
        line=line,
        commands=tuple(acc.commands),
        redirects=tuple(acc.redirects),
        constructs=frozenset(acc.constructs),
        problems=tuple(acc.problems),
        assignments=tuple(acc.assignments),
        inner_assignments=tuple(acc.inner_assignments),
    )
