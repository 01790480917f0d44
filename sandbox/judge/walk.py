"""The walk over one statement's syntax tree: every command, redirection and construct. No I/O."""

from __future__ import annotations

import re

import tree_sitter

from sandbox.errors import InputTooComplex
from sandbox.judge.commands import emit
from sandbox.judge.syntax import Command, Redirect, Word, replace
from sandbox.judge.tree import MAX_DEPTH, Acc, parse_tree, snippet
from sandbox.judge.words import read_redirect, read_word

_ARITH_ASSIGN = re.compile(r"\+\+|--|(?<![=!<>])=(?!=)")

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


def walk(root: tree_sitter.Node, acc: Acc) -> None:
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
            acc.problem(f"syntax error near {snippet(acc.text(node))!r}")
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
                if (r := read_redirect(child, acc, stack, via, extra)) is not None
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
            read_redirect(node, acc, stack, via)
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
                if _ARITH_ASSIGN.search(acc.text(node)):
                    where = acc.assignments if not via and acc.depth == 0 else acc.inner_assignments
                    where.append(acc.text(node))
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
    node: tree_sitter.Node, acc: Acc, via: tuple[str, ...], piped: bool
) -> None:
    """`[ x > f ]` is the command `[` with a redirection in bash (tree-sitter sees a test).

    The text is parsed again with `[` replaced by a plain name, and the
    command found is given its name back.
    """
    source = b"_" + acc.source[node.start_byte + 1 : node.end_byte]
    inner = Acc(source, depth=acc.depth, budget=acc.budget)
    for child in parse_tree(source).root_node.children:
        if child.is_named or child.type == "ERROR":
            walk(child, inner)
    bracket = Word(text="[", value="[")
    for i, c in enumerate(inner.commands):
        if i == 0 and c.argv and c.argv[0].text == "_":
            c = replace(c, argv=(bracket, *c.argv[1:]))
        acc.commands.append(replace(c, via=(*via, *c.via), piped_stdin=piped or c.piped_stdin))
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


def _check_unnamed(node: tree_sitter.Node, acc: Acc) -> None:
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


def _command(
    node: tree_sitter.Node,
    acc: Acc,
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
            argv.append(read_word(inner, acc))
            stack.append((inner, via, False))
        elif ctype == "variable_assignment":
            assignments.append(acc.text(child))
            # only the value is walked: a prefix assignment is not shell state
            for part in child.named_children[1:]:
                stack.append((part, via, False))
        elif ctype in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            later: list[Word] = []
            r = read_redirect(child, acc, stack, via, later)
            if r is not None:
                redirects.append(r)
            argv.extend(later)
        elif ctype in ("ERROR",) or child.is_missing:
            acc.problem(f"syntax error near {snippet(acc.text(child))!r}")
        elif child.is_named:
            if kind == "declaration_command" and ctype == "variable_name":
                argv.append(Word(text=acc.text(child), value=acc.text(child)))
                continue
            argv.append(read_word(child, acc))
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
    emit(Command(tuple(argv), tuple(assignments), tuple(redirects), via, (), piped), acc, walk)
