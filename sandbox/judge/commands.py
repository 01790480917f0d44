"""Simple commands: wrappers peeled, nested scripts parsed, find -exec and xargs targets. No I/O.

The walker is passed in (``walk``), so this module does not import it.
"""

from __future__ import annotations

from collections.abc import Callable

import tree_sitter

from sandbox.judge.syntax import SHELLS, Command, Word, replace
from sandbox.judge.tree import (
    MAX_NESTED_DEPTH,
    Acc,
    check_nodes,
    check_tokens,
    parse_tree,
    top_level_groups,
)

Walk = Callable[[tree_sitter.Node, Acc], None]


def emit(cmd: Command, acc: Acc, walk: Walk) -> None:
    """Record a command, then peel wrappers and expand nested commands."""
    cmd = _peel_wrappers(cmd, acc)
    program = cmd.program
    nested: list[Command] = []
    if program in SHELLS or program in ("eval", "trap"):
        nested_ok = _nested_script(cmd, acc, walk)
        if nested_ok:
            cmd = replace(cmd, nested_script=True)
    elif program == "find":
        nested = _find_exec(cmd)
    elif program == "xargs":
        nested = _xargs_target(cmd)
    acc.commands.append(cmd)
    for inner in nested:
        emit(inner, acc, walk)


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


def _peel_wrappers(cmd: Command, acc: Acc) -> Command:
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
    return replace(cmd, argv=tuple(argv), assignments=tuple(assignments), wrappers=tuple(wrappers))


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


def _nested_script(cmd: Command, acc: Acc, walk: Walk) -> bool:
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
    check_tokens(source)
    tree = parse_tree(source)
    count = tree.root_node.descendant_count
    check_nodes(count, 1, acc.budget[0])
    acc.budget[0] -= count
    inner = Acc(source, depth=acc.depth + 1, budget=acc.budget)
    label = program if program in ("eval", "trap") else f"{program} -c"
    for _s, _e, nodes, background in top_level_groups(tree.root_node):
        for node in nodes:
            walk(node, inner)
        if background:
            inner.constructs.add("background")
    for c in inner.commands:
        acc.commands.append(replace(c, via=(*cmd.via, label, *c.via)))
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
