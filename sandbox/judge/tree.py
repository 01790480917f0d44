"""tree-sitter-bash, the walk's accumulator and the budget of one statement. No I/O.

Work per statement is bounded: ``MAX_STATEMENT_NODES`` syntax nodes (nested scripts
included), ``MAX_DEPTH`` levels of nesting, ``MAX_UNIT_TOKENS`` blanks and operators for a
text judged as one unit. Beyond them ``InputTooComplex`` says what to shorten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter
import tree_sitter_bash

from sandbox.errors import InputTooComplex
from sandbox.judge.syntax import Command, Redirect

MAX_NESTED_DEPTH = 4  # bash -c 'bash -c "..."' is re-parsed this many levels deep
MAX_STATEMENT_NODES = 2000  # tree-sitter nodes in one statement, nested scripts included
MAX_DEPTH = 64  # levels of $(...), (...), <(...) and bash -c inside one statement
MAX_UNIT_TOKENS = 3000  # blanks and operators in one text judged as one unit

_LANGUAGE = tree_sitter.Language(tree_sitter_bash.language())
PARSER = tree_sitter.Parser(_LANGUAGE)
# tree-sitter-bash reads out of bounds on some characters outside the BMP (`{` then
# U+F8199 kills the process with SIGSEGV): each 4-byte UTF-8 character is replaced by two
# 2-byte letters (`éé`) before parsing, so every offset stays the same and the text of
# every word and statement is still sliced from the original bytes.
_FOUR_BYTES = re.compile(rb"[\xf0-\xf7][\x80-\xbf]{3}")
_ANY_FOUR = re.compile(rb"[\xf0-\xf7]")


def parse_tree(source: bytes) -> tree_sitter.Tree:
    """tree-sitter's tree of ``source`` (offsets as in ``source``; see above)."""
    if _ANY_FOUR.search(source):
        source = _FOUR_BYTES.sub(b"\xc3\xa9\xc3\xa9", source)
    return PARSER.parse(source)


@dataclass
class Acc:
    """Accumulates what a walk over one statement finds."""

    source: bytes
    depth: int
    commands: list[Command] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    constructs: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    assignments: list[str] = field(default_factory=list)
    inner_assignments: list[str] = field(default_factory=list)
    budget: list[int] = field(default_factory=lambda: [MAX_STATEMENT_NODES])  # shared, nested

    def text(self, node: tree_sitter.Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def problem(self, message: str) -> None:
        if message not in self.problems and len(self.problems) < 20:
            self.problems.append(message)


# bytes that start a syntax node: blanks, operators, quotes, arithmetic and brace characters
_TOKEN_BYTES = b" \t\n;|&<>()`$\"'+-*/%,{}[]=!^~:?"


def check_size(root: tree_sitter.Node, line0: int, max_statements: int | None) -> None:
    """Refuse, before any work in Python, what the budget does not cover (O(1) per child)."""
    if max_statements is not None and root.named_child_count > max_statements:
        raise InputTooComplex(
            f"the script has more than {max_statements} statements; the limit is "
            f"{max_statements}: split it into several batches"
        )
    for child in root.children:
        check_nodes(child.descendant_count, line0 + child.start_point.row + 1)


def check_nodes(count: int, line: int, remaining: int = MAX_STATEMENT_NODES) -> None:
    if count > remaining:
        raise InputTooComplex(
            f"the statement on line {line} is too complex to judge: it has more than "
            f"{MAX_STATEMENT_NODES} words, operators and quotes (nested scripts included); "
            "split it into several shorter commands"
        )


def token_count(source: bytes) -> int:
    """A C-speed estimate of the syntax nodes of a text: its blanks, operators and quotes."""
    return len(source) - len(source.translate(None, _TOKEN_BYTES))  # one pass in C


def check_tokens(source: bytes) -> None:
    """Refuse before tree-sitter runs what cannot fit in the budget of one statement."""
    if len(source) <= MAX_UNIT_TOKENS:
        return
    tokens = token_count(source)
    if tokens > MAX_UNIT_TOKENS:
        raise InputTooComplex(
            f"the command is too complex to judge: it has {tokens} blanks, quotes and "
            f"operators, the limit is {MAX_UNIT_TOKENS}; split it into several shorter commands"
        )


MAX_LINE_TOKENS = 16_000  # one line of a script: even 5,000 `ls;` fit


def check_lines(source: bytes) -> None:
    """Refuse a line that no budget can cover before tree-sitter reads the script: its
    time grows with the text, so a 1 MiB one-line pipeline would take seconds."""
    if len(source) <= MAX_LINE_TOKENS or token_count(source) <= MAX_LINE_TOKENS:
        return
    for number, line in enumerate(source.split(b"\n"), 1):
        if len(line) > MAX_LINE_TOKENS and (tokens := token_count(line)) > MAX_LINE_TOKENS:
            raise InputTooComplex(
                f"line {number} is too complex to judge: it has {tokens} blanks, quotes and "
                f"operators, the limit is {MAX_LINE_TOKENS}; split it into several commands"
            )


def top_level_groups(
    root: tree_sitter.Node,
) -> Iterator[tuple[int, int, list[tree_sitter.Node], bool]]:
    """Yield (start, end, nodes, background) for each top-level statement.

    Statements whose byte ranges overlap (a heredoc body that follows a later
    statement on the same line) are merged into one.
    """
    groups: list[tuple[int, int, list[tree_sitter.Node], bool]] = []
    children = root.children
    for i, node in enumerate(children):
        if node.type in ("comment", ";", "&", "\n", ";;") or (
            not node.is_named and node.type != "ERROR"
        ):
            continue
        background = i + 1 < len(children) and children[i + 1].type == "&"
        end = children[i + 1].end_byte if background else node.end_byte
        same_line = (
            node.type == "ERROR"
            and groups
            and children[i - 1].type not in (";", "&", "\n")
            and node.start_point.row == children[i - 1].end_point.row
        )
        if groups and (node.start_byte < groups[-1][1] or same_line):
            s, e, nodes, bg = groups[-1]
            groups[-1] = (s, max(e, end), [*nodes, node], bg or background)
        else:
            groups.append((node.start_byte, end, [node], background))
    yield from groups


def snippet(text: str) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


Stack = list[tuple[tree_sitter.Node, tuple[str, ...], bool]]  # node, how reached, piped stdin
