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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import tree_sitter
import tree_sitter_bash

from sandbox.errors import InputTooComplex

MAX_NESTED_DEPTH = 4  # bash -c 'bash -c "..."' is re-parsed this many levels deep
MAX_STATEMENT_NODES = 4000  # tree-sitter nodes in one statement, nested scripts included
MAX_DEPTH = 64  # levels of $(...), (...), <(...) and bash -c inside one statement
MAX_UNIT_TOKENS = 8000  # blanks and operators in one text judged as one unit
SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash", "busybox-sh"})

_LANGUAGE = tree_sitter.Language(tree_sitter_bash.language())
_PARSER = tree_sitter.Parser(_LANGUAGE)

GLOB_CHARS = re.compile(r"(?<!\\)[*?\[]")
_ARITH_ASSIGN = re.compile(r"\+\+|--|(?<![=!<>])=(?!=)")


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


@dataclass
class _Acc:
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


# Node types that only structure the tree; their children are walked.
_CONTAINERS = {
    "program": None,
    "list": "list",
    "pipeline": "pipeline",
    "subshell": "subshell",
    "compound_statement": "group",
    "do_group": None,
    "for_statement": "loop",
    "c_style_for_statement": "loop",
    "while_statement": "loop",
    "if_statement": "if",
    "elif_clause": None,
    "else_clause": None,
    "case_statement": "case",
    "case_item": None,
    "function_definition": "function",
    "negated_command": "negation",
    "test_command": "test",
    "command_substitution": "substitution",
    "process_substitution": "process_substitution",
    "arithmetic_expansion": "arithmetic",
    "expansion": None,
    "string": None,
    "translated_string": None,
    "concatenation": None,
    "array": None,
    "subscript": None,
    "binary_expression": None,
    "unary_expression": None,
    "ternary_expression": None,
    "postfix_expression": None,
    "parenthesized_expression": None,
    "heredoc_body": None,
    "variable_assignments": None,
    "brace_expression": None,
}
# Leaves that carry no commands.
_LEAVES = {
    "word",
    "number",
    "string_content",
    "raw_string",
    "ansi_c_string",
    "simple_expansion",
    "variable_name",
    "special_variable_name",
    "comment",
    "regex",
    "extglob_pattern",
    "heredoc_start",
    "heredoc_content",
    "heredoc_end",
    "file_descriptor",
    "test_operator",
    "command_name",
}


def parse(text: str, *, max_statements: int | None = None) -> list[Statement]:
    """Split a script into top-level statements.

    Raises ``InputTooComplex`` (and only that) when one statement is beyond the
    budget, or when the script has more than ``max_statements`` top-level parts.
    """
    source = text.encode("utf-8", "surrogatepass")
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
        tree = _PARSER.parse(segment)
        _check_size(tree.root_node, source.count(b"\n", 0, start), max_statements)
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


# bytes that start a syntax node: blanks, operators, quotes, arithmetic and brace characters
_TOKEN_BYTES = tuple(bytes([c]) for c in b" \t\n;|&<>()`$\"'+-*/%,{}[]=!^~:?")


def _check_size(root: tree_sitter.Node, line0: int, max_statements: int | None) -> None:
    """Refuse, before any work in Python, what the budget does not cover (O(1) per child)."""
    if max_statements is not None and root.named_child_count > max_statements:
        raise InputTooComplex(
            f"the script has more than {max_statements} statements; the limit is "
            f"{max_statements}: split it into several batches"
        )
    for child in root.children:
        _check_nodes(child.descendant_count, line0 + child.start_point.row + 1)


def _check_nodes(count: int, line: int, remaining: int = MAX_STATEMENT_NODES) -> None:
    if count > remaining:
        raise InputTooComplex(
            f"the statement on line {line} is too complex to judge: it has more than "
            f"{MAX_STATEMENT_NODES} words, operators and quotes (nested scripts included); "
            "split it into several shorter commands"
        )


def token_count(source: bytes) -> int:
    """A C-speed estimate of the syntax nodes of a text: its blanks, operators and quotes."""
    return sum(source.count(b) for b in _TOKEN_BYTES)


def _check_tokens(source: bytes) -> None:
    """Refuse before tree-sitter runs what cannot fit in the budget of one statement."""
    tokens = token_count(source)
    if tokens > MAX_UNIT_TOKENS:
        raise InputTooComplex(
            f"the command is too complex to judge: it has {tokens} blanks, quotes and "
            f"operators, the limit is {MAX_UNIT_TOKENS}; split it into several shorter commands"
        )


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
    for start, end, nodes, background in _top_level_groups(tree.root_node):
        acc = _Acc(source, depth=0)
        for node in nodes:
            _walk(node, acc)
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
    _check_tokens(source)
    _check_nodes(_PARSER.parse(source).root_node.descendant_count, 1)  # one budget for all
    statements = parse(text)
    if len(statements) == 1:
        return statements[0]
    acc = _Acc(b"", depth=0)
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
    line = statements[0].line if statements else 1
    return Statement(
        index=0,
        text=text,
        line=line,
        commands=tuple(acc.commands),
        redirects=tuple(acc.redirects),
        constructs=frozenset(acc.constructs),
        problems=tuple(acc.problems),
        assignments=tuple(acc.assignments),
        inner_assignments=tuple(acc.inner_assignments),
    )


def _statement(index: int, text: str, line: int, acc: _Acc) -> Statement:
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


def _top_level_groups(
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


def _walk(root: tree_sitter.Node, acc: _Acc) -> None:
    """Walk a subtree iteratively (deep nesting must not hit Python's recursion limit)."""
    stack: list[tuple[tree_sitter.Node, tuple[str, ...], bool]] = [(root, (), False)]
    # redirects (and the words bash reads after them) for a command further down
    _pending_redirects: dict[int, tuple[tuple[Redirect, ...], tuple[Word, ...]]] = {}
    while stack:
        node, via, piped = stack.pop()
        kind = node.type
        if len(via) + acc.depth > MAX_DEPTH:
            raise InputTooComplex(
                f"a statement nests $(...), (...) or bash -c more than {MAX_DEPTH} levels "
                "deep; flatten it"
            )
        if node.is_error or kind == "ERROR":
            acc.problem(f"syntax error near {_snippet(acc.text(node))!r}")
            continue
        if node.is_missing:
            acc.problem(f"syntax error: missing {kind!r}")
            continue
        if node.has_error and kind == "program":
            pass  # children report it
        if kind in ("command", "declaration_command", "unset_command"):
            _command(node, acc, via, piped, stack, *_pending_redirects.pop(node.id, ((), ())))
            continue
        if kind == "redirected_statement":
            extra: list[Word] = []  # `ls > out -la`: bash gives -la to ls
            outer = [
                r
                for child in node.children_by_field_name("redirect")
                if (r := _redirect(child, acc, stack, via, extra)) is not None
            ]
            body = node.child_by_field_name("body")
            if body is None:
                continue
            target = _last_simple_command(body)
            if (target is not None and body.type == "command") or (
                target is not None and any(r.op in ("<<", "<<<") for r in outer)
            ):
                # bash applies a statement's heredoc to its last command
                if target is body:
                    _command(body, acc, via, piped, stack, tuple(outer), tuple(extra))
                    continue
                _pending_redirects[target.id] = (tuple(outer), tuple(extra))
            elif extra:
                acc.problem("words after a redirection that belong to no simple command")
            stack.append((body, via, piped))
            continue
        if kind == "variable_assignment":
            if not via and acc.depth == 0:
                # only the top-level shell keeps it; in (...), $(...) or bash -c it is gone after
                acc.assignments.append(acc.text(node))
            else:
                acc.inner_assignments.append(acc.text(node))
            acc.constructs.add("assignment")
            _push_children(node, stack, via)
            continue
        if kind in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            _redirect(node, acc, stack, via)
            continue
        if kind == "test_command" and node.children and node.children[0].type == "[":
            _single_bracket_test(node, acc, via, piped)
            continue
        if kind in _CONTAINERS:
            construct = _CONTAINERS[kind]
            if kind in _ARITH_KINDS or (kind == "compound_statement" and _is_arith(node)):
                text = acc.text(node)
                if "$(" in text or "`" in text:
                    acc.constructs.add("arithmetic_substitution")
            elif kind == "expansion" and acc.text(node).endswith("@P}"):
                acc.constructs.add("prompt_expansion")
            elif kind == "for_statement" and (var := node.child_by_field_name("variable")):
                acc.inner_assignments.append(acc.text(var) + "=")
            if construct:
                acc.constructs.add(construct)
            child_via = via
            if kind in ("command_substitution", "process_substitution"):
                child_via = (*via, "$(...)" if kind == "command_substitution" else "<(...)")
            elif kind == "subshell":
                child_via = (*via, "(...)")
            elif kind == "compound_statement" and node.children and node.children[0].type == "((":
                # `((i++))`: an arithmetic command; it can assign shell variables
                acc.constructs.add("arithmetic")
                if not via and acc.depth == 0 and _ARITH_ASSIGN.search(acc.text(node)):
                    acc.assignments.append(acc.text(node))
            if kind == "pipeline":
                named = [c for c in node.children if c.is_named]
                for pos in range(len(named) - 1, -1, -1):
                    stack.append((named[pos], child_via, pos > 0))
                _check_unnamed(node, acc)
                continue
            if kind == "command_substitution" and acc.text(node).startswith("`"):
                acc.constructs.add("backticks")
            _push_children(node, stack, child_via)
            _check_unnamed(node, acc)
            continue
        if kind in _LEAVES or not node.is_named:
            continue
        acc.problem(f"unsupported syntax: {kind}")


_ARITH_KINDS = frozenset({"arithmetic_expansion", "subscript", "c_style_for_statement"})


def _is_arith(node: tree_sitter.Node) -> bool:
    return bool(node.children) and node.children[0].type == "(("


def _single_bracket_test(
    node: tree_sitter.Node, acc: _Acc, via: tuple[str, ...], piped: bool
) -> None:
    """`[ x > f ]` is the command `[` with a redirection in bash (tree-sitter sees a test).

    The text is parsed again with `[` replaced by a plain name, and the
    command found is given its name back.
    """
    source = b"_" + acc.source[node.start_byte + 1 : node.end_byte]
    inner = _Acc(source, depth=acc.depth, budget=acc.budget)
    for child in _PARSER.parse(source).root_node.children:
        if child.is_named or child.type == "ERROR":
            _walk(child, inner)
    bracket = Word(text="[", value="[")
    for i, c in enumerate(inner.commands):
        if i == 0 and c.argv and c.argv[0].text == "_":
            c = _replace(c, argv=(bracket, *c.argv[1:]))
        acc.commands.append(_replace(c, via=(*via, *c.via), piped_stdin=piped or c.piped_stdin))
    acc.redirects.extend(inner.redirects)
    acc.constructs.update(inner.constructs)
    acc.constructs.add("test")
    acc.inner_assignments.extend(inner.inner_assignments + inner.assignments)
    for p in inner.problems:
        acc.problem(p)


def _last_simple_command(node: tree_sitter.Node) -> tree_sitter.Node | None:
    for _ in range(64):
        if node.type in ("command", "declaration_command", "unset_command"):
            return node
        if node.type not in ("list", "pipeline", "redirected_statement"):
            return None
        named = [c for c in node.children if c.is_named and c.type not in _REDIRECT_TYPES]
        if not named:
            return None
        node = named[-1]
    return None


_REDIRECT_TYPES = ("file_redirect", "heredoc_redirect", "herestring_redirect")


def _push_children(
    node: tree_sitter.Node,
    stack: list[tuple[tree_sitter.Node, tuple[str, ...], bool]],
    via: tuple[str, ...],
) -> None:
    for child in reversed(node.children):
        if child.is_named or child.type == "ERROR" or child.is_missing:
            stack.append((child, via, False))


def _check_unnamed(node: tree_sitter.Node, acc: _Acc) -> None:
    for child in node.children:
        if child.is_missing:
            acc.problem(f"syntax error: missing {child.type!r}")
        elif child.type == "&" and node.type in (
            "list",
            "program",
            "compound_statement",
            "do_group",
            "subshell",
        ):
            acc.constructs.add("background")
        elif child.type == "|&":
            acc.constructs.add("pipeline")


def _snippet(text: str) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def _redirect(
    node: tree_sitter.Node,
    acc: _Acc,
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
            acc.problem(f"syntax error near {_snippet(acc.text(child))!r}")
        else:
            if target is None:
                target = _word(child, acc)
                if kind == "herestring_redirect":
                    body = target.value
            elif extra is not None:
                extra.append(_word(child, acc))
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


def _static_heredoc(node: tree_sitter.Node, acc: _Acc) -> str | None:
    for child in node.children:
        if child.type not in ("heredoc_content",):
            return None
    return acc.text(node)


def _word(node: tree_sitter.Node, acc: _Acc) -> Word:
    text = acc.text(node)
    value, quoted, glob = _value(node, acc)
    return Word(text=text, value=value, quoted=quoted, glob=glob)


_ESCAPE_WORD = re.compile(r"\\(.)", re.S)
_UNESCAPED_BLANK = re.compile(r"(?<!\\)[ \t\n]")
_ESCAPE_DQ = re.compile(r'\\([$`"\\\n])')


def _value(node: tree_sitter.Node, acc: _Acc) -> tuple[str | None, bool, bool]:
    """(literal value or None, quoted?, glob?) of a word-like node."""
    kind = node.type
    text = acc.text(node)
    if kind == "word":
        if _UNESCAPED_BLANK.search(text):
            # tree-sitter glued two words (`] ]`); bash would split them
            acc.problem(f"the word {_snippet(text)!r} holds a blank that bash splits on")
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


# --- simple commands -----------------------------------------------------------------


def _command(
    node: tree_sitter.Node,
    acc: _Acc,
    via: tuple[str, ...],
    piped: bool,
    stack: list[tuple[tree_sitter.Node, tuple[str, ...], bool]],
    outer_redirects: tuple[Redirect, ...] = (),
    outer_words: tuple[Word, ...] = (),
) -> None:
    argv: list[Word] = []
    assignments: list[str] = []
    redirects: list[Redirect] = list(outer_redirects)
    kind = node.type
    if kind in ("declaration_command", "unset_command"):
        keyword = node.children[0] if node.children else None
        if keyword is not None:
            argv.append(Word(text=acc.text(keyword), value=acc.text(keyword)))
    for child in node.children:
        ctype = child.type
        if ctype == "command_name":
            inner = child.named_children[0] if child.named_children else child
            argv.append(_word(inner, acc))
            stack.append((inner, via, False))
        elif ctype == "variable_assignment":
            assignments.append(acc.text(child))
            # only the value is walked: a prefix assignment is not shell state
            for part in child.named_children[1:]:
                stack.append((part, via, False))
        elif ctype in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            later: list[Word] = []
            r = _redirect(child, acc, stack, via, later)
            if r is not None:
                redirects.append(r)
            argv.extend(later)
        elif ctype in ("ERROR",) or child.is_missing:
            acc.problem(f"syntax error near {_snippet(acc.text(child))!r}")
        elif child.is_named:
            if kind == "declaration_command" and ctype == "variable_name":
                argv.append(Word(text=acc.text(child), value=acc.text(child)))
                continue
            argv.append(_word(child, acc))
            stack.append((child, via, False))
    argv.extend(outer_words)
    if kind == "declaration_command" and assignments:
        # `export A=1`: the assignments are arguments of export, not a prefix
        argv.extend(Word(text=a, value=a) for a in assignments)
        assignments = []
    if not argv:
        # `A=1` alone (tree-sitter makes it a variable_assignment, but be safe)
        acc.assignments.extend(assignments)
        return
    _emit(Command(tuple(argv), tuple(assignments), tuple(redirects), via, (), piped), acc)


def _emit(cmd: Command, acc: _Acc) -> None:
    """Record a command, then peel wrappers and expand nested commands."""
    cmd = _peel_wrappers(cmd, acc)
    program = cmd.program
    nested: list[Command] = []
    if program in SHELLS or program in ("eval", "trap"):
        nested_ok = _nested_script(cmd, acc)
        if nested_ok:
            cmd = _replace(cmd, nested_script=True)
    elif program == "find":
        nested = _find_exec(cmd)
    elif program == "xargs":
        nested = _xargs_target(cmd)
    acc.commands.append(cmd)
    for inner in nested:
        _emit(inner, acc)


def _replace(cmd: Command, **changes: object) -> Command:
    values = {f: getattr(cmd, f) for f in cmd.__dataclass_fields__}
    values.update(changes)
    return Command(**values)


# Wrappers: name -> (options that take a value, whether a positional precedes the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"}), 0),
    "sudo": (
        frozenset(
            {
                "-u",
                "--user",
                "-g",
                "--group",
                "-C",
                "--close-from",
                "-h",
                "--host",
                "-p",
                "--prompt",
                "-r",
                "--role",
                "-t",
                "--type",
                "-U",
                "--other-user",
                "-D",
                "--chdir",
                "-T",
                "--command-timeout",
                "-R",
                "--chroot",
            }
        ),
        0,
    ),
    "doas": (frozenset({"-u", "-C"}), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "ionice": (frozenset({"-c", "--class", "-n", "--classdata", "-p", "-P", "-u"}), 0),
    "nohup": (frozenset(), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "time": (frozenset({"-f", "--format", "-o", "--output"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}), 0),
    "setsid": (frozenset(), 0),
    "nocache": (frozenset(), 0),
    "chronic": (frozenset(), 0),
    "unbuffer": (frozenset(), 0),
}


def _peel_wrappers(cmd: Command, acc: _Acc) -> Command:
    wrappers: list[tuple[Word, ...]] = list(cmd.wrappers)
    argv = list(cmd.argv)
    assignments = list(cmd.assignments)
    for _ in range(16):
        if not argv or argv[0].value is None:
            break
        name = argv[0].value.rsplit("/", 1)[-1]
        if name not in _WRAPPERS or argv[0].quoted:
            break
        takes_value, positionals = _WRAPPERS[name]
        i = 1
        stop = False
        while i < len(argv):
            v = argv[i].value
            if v is None:
                break
            if name == "command" and v in ("-v", "-V"):
                stop = True  # `command -v x` looks a name up; it runs nothing
                break
            if name == "env" and (bad := _env_option_problem(v)):
                acc.problem(bad)
                stop = True
                break
            if v == "--":
                i += 1
                break
            if name == "env" and "=" in v and not v.startswith("-"):
                assignments.append(v)
                i += 1
                continue
            if v.startswith("-") and len(v) > 1:
                i += 2 if (v in takes_value) else 1
                continue
            break
        if stop:
            break
        i += positionals
        if i >= len(argv):
            break  # a wrapper with no command (`env`, `nice`, `time`): itself is the command
        wrappers.append(tuple(argv[:i]))
        argv = argv[i:]
    if len(wrappers) == len(cmd.wrappers):
        return cmd
    return _replace(cmd, argv=tuple(argv), assignments=tuple(assignments), wrappers=tuple(wrappers))


_ENV_SHORT = frozenset("i0v")
_ENV_LONG = frozenset(
    {"--ignore-environment", "--null", "--debug", "--unset", "--chdir", "--help", "--version",
     "--default-signal", "--ignore-signal", "--block-signal", "--list-signal-handling"}
)  # fmt: skip


def _env_option_problem(v: str) -> str | None:
    """Why an `env` option is not understood (`-S` splits a string into a command line)."""
    if v in ("-", "--") or not v.startswith("-"):
        return None
    if v.startswith("--"):
        if v.partition("=")[0] in _ENV_LONG:
            return None
        return f"env option {v!r} is not understood (it may split a string into a command)"
    letters = v[1:]
    for letter in letters:
        if letter in "uC":
            return None  # the rest (or the next word) is its value
        if letter == "S":
            return f"env {v!r}: -S splits a string into a command line; not analysed"
        if letter not in _ENV_SHORT:
            return f"env option {v!r} is not understood"
    return None


def shell_script_arg(args: tuple[Word, ...]) -> tuple[bool, int, bool]:
    """How bash reads its options: (has -c, index of the first operand, all words literal).

    `bash -o noglob -c TEXT`, `bash -c -- TEXT`, `sh -e -c TEXT`, `bash -xc TEXT`,
    `bash --norc -c TEXT`: options come first; `-o`/`-O` take the next word;
    `--` or `-` ends them; the first operand is the script (with -c) or a file.
    """
    has_c = False
    i = 0
    while i < len(args):
        v = args[i].value
        if v is None:
            return has_c, i, False
        if v in ("--", "-"):
            return has_c, i + 1, True
        if v.startswith("--"):
            i += 2 if v in ("--rcfile", "--init-file") else 1
            continue
        if len(v) > 1 and v[0] in "-+":
            has_c |= v[0] == "-" and "c" in v[1:]
            i += 1 + sum(1 for letter in v[1:] if letter in "oO")
            continue
        break
    return has_c, i, True


def _nested_script(cmd: Command, acc: _Acc) -> bool:
    """Parse the inline script of `bash -c TEXT` / `eval TEXT`; True if it was parsed."""
    program = cmd.program
    script: str | None = None
    if program == "trap":
        action = next((w for w in cmd.args if w.value != "--"), None)
        if action is None or action.value is None or action.value.startswith("-"):
            return False
        script = action.value
    elif program == "eval":
        values = [w.value for w in cmd.args]
        if not values or any(v is None for v in values):
            return False
        script = " ".join(v for v in values if v is not None)
    else:
        args = cmd.args
        has_c, first, literal = shell_script_arg(args)
        if not literal:
            return False
        if has_c:
            script = args[first].value if first < len(args) else None
            if script is None:
                return False
        elif first < len(args):
            return False  # `bash script.sh`: a file we cannot see
        if script is None:
            script = _stdin_script(cmd)
            if script is None:
                return False
    if acc.depth >= MAX_NESTED_DEPTH:
        acc.problem(f"nested shell scripts deeper than {MAX_NESTED_DEPTH} levels")
        return False
    source = script.encode("utf-8", "surrogatepass")
    _check_tokens(source)
    tree = _PARSER.parse(source)
    count = tree.root_node.descendant_count
    _check_nodes(count, 1, acc.budget[0])
    acc.budget[0] -= count
    inner = _Acc(source, depth=acc.depth + 1, budget=acc.budget)
    label = program if program in ("eval", "trap") else f"{program} -c"
    for _s, _e, nodes, background in _top_level_groups(tree.root_node):
        for node in nodes:
            _walk(node, inner)
        if background:
            inner.constructs.add("background")
    for c in inner.commands:
        acc.commands.append(_replace(c, via=(*cmd.via, label, *c.via)))
    acc.redirects.extend(inner.redirects)
    acc.constructs.update(inner.constructs)
    acc.assignments.extend(inner.assignments)
    acc.inner_assignments.extend(inner.inner_assignments)
    for p in inner.problems:
        acc.problem(p)
    return True


def _stdin_script(cmd: Command) -> str | None:
    """`bash <<EOF ... EOF` or `bash <<< '...'`: the script comes from a static heredoc."""
    for r in cmd.redirects:
        if r.op in ("<<", "<<<") and (r.fd in (None, 0)):
            return r.body
    return None


def _find_exec(cmd: Command) -> list[Command]:
    out: list[Command] = []
    args = cmd.args
    i = 0
    while i < len(args):
        v = args[i].value
        if v in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(args) and args[j].value not in (";", "+"):
                j += 1
            target = tuple(args[i + 1 : j])
            if target:
                out.append(Command(target, (), (), (*cmd.via, f"find {v}"), (), False))
            i = j + 1
            continue
        i += 1
    return out


# GNU xargs: getopt string "+0a:E:e::i::I:l::L:n:prs:txP:d:" ("::" = value only when attached)
_XARGS_REQUIRED = frozenset("aEILnsPd")
_XARGS_OPTIONAL = frozenset("eil")
_XARGS_FLAGS = frozenset("0prtx")
_XARGS_LONG_REQUIRED = frozenset(
    {"--arg-file", "--delimiter", "--max-args", "--max-procs", "--max-chars",
     "--process-slot-var"}
)  # fmt: skip
_XARGS_LONG = frozenset(
    {"--null", "--interactive", "--verbose", "--exit", "--no-run-if-empty", "--show-limits",
     "--open-tty", "--eof", "--replace", "--max-lines", "--help", "--version"}
)  # fmt: skip


def _xargs_target(cmd: Command) -> list[Command]:
    args = cmd.args
    via = (*cmd.via, "xargs")
    unknown = Command((Word(text="<xargs>", value=None),), (), (), via)
    i = 0
    while i < len(args):
        v = args[i].value
        if v is None:
            return [unknown]
        if v == "--":
            i += 1
            break
        if not v.startswith("-") or v == "-":
            break
        i += 1
        if v.startswith("--"):
            name, eq, _ = v.partition("=")
            if name in _XARGS_LONG_REQUIRED and not eq:
                i += 1
            elif name not in _XARGS_LONG_REQUIRED and name not in _XARGS_LONG:
                return [unknown]  # an option xargs would reject, or an abbreviation
            continue
        for pos, letter in enumerate(v[1:], start=1):
            if letter in _XARGS_REQUIRED:
                if pos == len(v) - 1:
                    i += 1
                break
            if letter in _XARGS_OPTIONAL:
                break  # its value, if any, is the rest of this word
            if letter not in _XARGS_FLAGS:
                return [unknown]
    target = tuple(args[i:]) or (Word(text="echo", value="echo"),)
    # xargs appends arguments read from stdin: unknown words.
    target = (*target, Word(text="<stdin args>", value=None))
    return [Command(target, (), (), via, (), True)]
