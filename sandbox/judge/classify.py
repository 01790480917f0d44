"""Statement -> class + reasons. Pure: no I/O, no web imports.

A statement gets the most dangerous class of any of its parts: every simple
command inside it (pipelines, lists, loops, ``$(...)``, ``bash -c``, ``find
-exec``, ``xargs`` targets), every redirection, and statement-level effects
(background jobs, function definitions, bare assignments). Per-program rules
live in ``rules/``; this module judges what no single rule can see:

* the command *name*: dynamic (``$cmd``), quoted or escaped (``\\rm``,
  ``'ls'``), a glob, or made of look-alike characters is dangerous; a local
  script (``./x``) or a program missing from the table is conditional;
* wrappers (``sudo`` is dangerous, ``nohup``/``setsid`` at least conditional,
  ``timeout``/``nice``/``env``... change nothing);
* environment prefixes beyond a short allowlist (``LC_*``, ``LANG``, ``TZ`` ...),
  and any variable that changes what runs (``PATH``, ``LD_*``, ``GIT_*`` ...),
  set anywhere, subshells included;
* default deny for programs judged safe: options off their allowlist, words
  that may become options, secrets (``~/.ssh``, ``.env``), wide searches;
* redirections: writing a file is at least sequential, outside the workspace
  or to ``/dev/tcp`` dangerous; duplicating fds and ``/dev/null`` are harmless;
* shell session state: ``cd``, ``export``, assignments, function definitions
  are sequential, except inside a subshell, ``$(...)`` or ``bash -c``, where
  they cannot outlive the statement (``( cd x && ls )`` is safe); builtins
  that store code (``trap``, ``alias``, ``hash`` ...) get no such exemption;
* parse problems make a statement dangerous; empty text is safe ("empty:
  nothing to run").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from sandbox.judge.parse import Command, Redirect, Statement, parse_unit
from sandbox.judge.rules.allow import unknown_option
from sandbox.judge.rules.allow_tools import ALLOWED
from sandbox.judge.rules.flags import COND, DANGER, SAFE, SEQ, Finding, name, outside, words
from sandbox.judge.rules.shell import (
    builtin_finding,
    env_dump_finding,
    prefix_finding,
    secret_finding,
    variable_finding,
    wide_read_finding,
)
from sandbox.judge.rules.table import RULES
from sandbox.judge.rules.tools import migration_finding
from sandbox.judge.verdict import Verdict, register

__all__ = ["Verdict", "classify", "classify_command", "classify_text"]

MAX_REASONS = 8


def classify_text(text: str) -> Verdict:
    """Judge ``text`` as one unit, however many statements it holds."""
    return classify(parse_unit(text))


def classify(stmt: Statement) -> Verdict:
    findings: list[Finding] = [(DANGER, f"could not parse: {p}") for p in stmt.problems]
    for cmd in stmt.commands:
        if cmd.program == "read" and "loop" in stmt.constructs and len(cmd.argv) > 1:
            # `while read -r line; do ...`: the loop's own variable, like `for f in ...`
            found = builtin_finding(cmd) or (SAFE, "read sets the loop variable")
            findings.extend([found, *_command_findings(cmd, name_only=False)])
            continue
        findings.extend(_command_findings(cmd))
    findings.extend(_statement_findings(stmt))
    if not findings:
        if not stmt.text.strip() or all(
            not line.strip() or line.lstrip().startswith("#") for line in stmt.text.splitlines()
        ):
            return Verdict(SAFE, ("empty: nothing to run",))
        return Verdict(SAFE, ("only evaluates a test or an expression",))
    return _verdict(findings)


def classify_command(cmd: Command) -> Verdict:
    """Judge one simple command with its wrappers, prefix assignments and redirects.

    Nested commands are separate entries of ``Statement.commands``: a ``bash
    -c 'literal'`` or ``eval 'literal'`` command is judged safe here because
    its inner commands are judged on their own by ``classify``.
    """
    return _verdict(_command_findings(cmd))


def _verdict(findings: Iterable[Finding]) -> Verdict:
    ordered = sorted(findings, key=lambda f: -f[0].rank)
    if not ordered:
        return Verdict(SAFE, ("nothing to run",))
    worst = ordered[0][0]
    reasons: dict[str, None] = {}
    for cls, reason in ordered:
        if cls is SAFE and worst is not SAFE:
            break
        reasons.setdefault(reason)
        if len(reasons) >= MAX_REASONS:
            break
    return Verdict(worst, tuple(reasons))


# --- one command -------------------------------------------------------------------------

_ROOT_WRAPPERS = frozenset({"sudo", "doas", "su", "pkexec", "run0", "runuser"})
_ESCAPE_WRAPPERS = frozenset({"nohup", "setsid"})
_STD_DIRS = frozenset(
    {"/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin",
     "/opt/homebrew/bin", "/usr/games"}
)  # fmt: skip
# Session-state builtins that only change variables or the directory: harmless in a subshell.
_SUBSHELL_HARMLESS = words(
    "cd pushd popd export set shopt umask ulimit unset read readarray mapfile let getopts shift "
    "declare typeset local readonly exit return logout"
)
# Look-alike letters that NFKC does not fold (Cyrillic, Greek, dotless i ...).
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁһӏɡοαεινκρτυχΑВЕКМНОРСТХІЈЅıℓ",
    "aeopcyxijsdhlgoaeivkptuxABEKMHOPCTXIJSil",
)


def _command_findings(cmd: Command, name_only: bool = True) -> list[Finding]:
    found = _name_findings(cmd) if name_only else []
    for wrapper_words in cmd.wrappers:
        wrapper = (wrapper_words[0].value or "?").rsplit("/", 1)[-1]
        if wrapper in _ROOT_WRAPPERS:
            found.append((DANGER, f"{wrapper} runs it with root privileges"))
        elif wrapper in _ESCAPE_WRAPPERS:
            found.append((COND, f"{wrapper} lets it outlive the batch"))
        elif wrapper == "exec":
            found.append((COND, "exec replaces the shell with the command"))
        elif wrapper == "time" and any(w.value in ("-o", "--output") for w in wrapper_words):
            found.append((SEQ, "time -o writes a file"))
    for assignment in cmd.assignments:
        if (finding := prefix_finding(assignment, cmd.program or "it")) is not None:
            found.append(finding)
    for r in cmd.redirects:
        if (finding := redirect_finding(r)) is not None:
            found.append(finding)
        elif r.reads and r.target is not None:
            found.extend(f for f in [secret_finding(r.target, "a redirection")] if f)
    if cmd.program == "exec" and len(cmd.argv) == 1 and cmd.redirects:
        found.append(
            (SEQ, "exec with redirections changes the shell's files (shell session state)")
        )
    return found


def _name_findings(cmd: Command) -> list[Finding]:
    word = cmd.argv[0]
    value = word.value
    if value is None:
        return [(DANGER, f"command name {word.text!r} is known only at run time")]
    if word.glob:
        return [(DANGER, f"command name {word.text!r} is a glob pattern")]
    if word.quoted and " " not in value:
        return [(DANGER, f"command name {word.text!r} is quoted or escaped, which hides what runs")]
    if not value.isascii():
        if _fold(value) != unicodedata.normalize("NFC", value):
            return [(DANGER, f"command name {value!r} uses look-alike or invisible characters")]
        return [(COND, f"unknown program {value!r}")]
    if "/" in value:
        directory, _, program = value.rpartition("/")
        if directory not in _STD_DIRS:
            return [
                migration_finding(cmd)
                or (COND, f"runs the program {value}, which was not inspected")
            ]
    else:
        program = value
    return [_program_finding(cmd, program)]


def _fold(value: str) -> str:
    visible = "".join(c for c in value if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", visible).translate(_CONFUSABLES)


def _program_finding(cmd: Command, program: str) -> Finding:
    rule = RULES.get(program)
    if rule is None:
        return migration_finding(cmd) or (COND, f"unknown program {program!r}")
    checked = rule.check(cmd) if rule.check is not None else None
    finding = checked or (rule.cls, f"{program} {rule.what}")
    if program in _SUBSHELL_HARMLESS and finding[0] is SEQ and _in_subshell(cmd):
        finding = SAFE, f"{program} changes shell state only inside a subshell"
    shell = builtin_finding(cmd) or env_dump_finding(cmd)
    if shell is not None:
        # the shell rule names the token; the program rule may know a worse class
        return max(shell[0], finding[0], key=lambda c: c.rank), shell[1]
    if finding[0] is SAFE:
        return _safe_args_finding(cmd, program, checked is None) or finding
    return finding


def _safe_args_finding(cmd: Command, program: str, by_default: bool) -> Finding | None:
    """Default deny for a program judged safe: unknown options, secrets, wide reads."""
    table = ALLOWED.get(program)
    if not by_default and table is None:
        # a rule judged a form safe (`pip list`, `git cat-file`, `tar -t`): options that write
        # or run code are still refused (these forms have no allowlist of their own yet)
        for w in cmd.args:
            name = (w.value if w.value is not None else w.text).partition("=")[0]
            if name in _WRITING_OPTIONS:
                return COND, f"{program} option {name!r} may write a file or run code"
    if table is not None or by_default:
        if table is None:
            bad = next((w for w in cmd.args if (w.value or "").startswith("-")), None)
        else:
            bad = unknown_option(cmd, table)
        if bad is not None:
            shown = bad.value if bad.value is not None else bad.text
            if bad.value is None or bad.glob:
                return COND, f"{program} argument {shown!r} may become an option that writes"
            return COND, f"{program} option {shown!r} is not on its allowlist of read-only flags"
    if program not in _METADATA_ONLY:
        for w in cmd.args:
            if (found := secret_finding(w, program)) is not None:
                return found
    return wide_read_finding(cmd)


_WRITING_OPTIONS = words(
    "--output --out --output-file --outfile --output-document --log --log-file --index-file "
    "--save --write --dump --textconv --filters --exec --pre --ext-diff --upload --to-command "
    "--checkpoint-action --use-compress-program --editor --pager --cache-dir --target --prefix "
    "--root --config --rcfile --init-file --exec-path"
)  # fmt: skip
# Programs that print names, sizes or counts, never contents: a secret's path is harmless.
_METADATA_ONLY = words(
    "ls dir vdir stat du find tree namei realpath readlink basename dirname test [ wc lsattr "
    "getfacl"
)


def _in_subshell(cmd: Command) -> bool:
    return any(v not in ("eval", "trap") for v in cmd.via)


def redirect_finding(r: Redirect) -> Finding | None:
    target = r.target
    if target is None:
        return None
    text = target.value if target.value is not None else target.text
    if text.startswith(("/dev/tcp/", "/dev/udp/")):
        return DANGER, f"redirection opens a network connection ({text})"
    if not r.writes:
        return None
    if outside(target):
        return DANGER, f"redirects output into {name(target)}, outside the workspace"
    return SEQ, f"redirects output into {name(target)}"


# --- statement-level effects ---------------------------------------------------------------

_DEFINITION = re.compile(r"\(\s*\)\s*\{")  # `() {` after a function's name
_NAME_STOP = frozenset(" \t\n(){}|&;")
_BLANKS = re.compile(r"\s+")


def _fork_bomb(text: str) -> bool:
    """A function whose body pipes itself into itself in the background: `f(){ f|f& }`.

    Linear: names are read backwards from each `() {` (at most 64 characters, at most
    32 functions), then one search each in the text without blanks.
    """
    names: set[str] = set()
    for m in _DEFINITION.finditer(text):
        end = m.start()
        while end > 0 and text[end - 1] in " \t":
            end -= 1
        start = end
        while start > 0 and end - start < 64 and text[start - 1] not in _NAME_STOP:
            start -= 1
        if start < end:
            names.add(text[start:end])
        if len(names) >= 32:
            break
    if not names:
        return False
    compact = _BLANKS.sub("", text)
    return any(f"{name}|{name}&" in compact for name in names)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _first_name(assignment: str) -> str:
    """`PATH=x` -> PATH; `(( IFS = 1 ))` -> IFS; `for f in` (recorded as `f=`) -> f."""
    m = _NAME.search(assignment.partition("=")[0])
    return m.group() if m else ""


def _statement_findings(stmt: Statement) -> list[Finding]:
    found: list[Finding] = []
    constructs = stmt.constructs
    for r in stmt.redirects:
        if (finding := redirect_finding(r)) is not None:
            found.append(finding)
    if "background" in constructs:
        found.append((COND, "starts a background job that outlives the command"))
    if "function" in constructs:
        if _fork_bomb(stmt.text):
            found.append((DANGER, "fork bomb: a function that starts copies of itself"))
        found.append((SEQ, "defines a shell function (shell session state)"))
    if stmt.assignments:
        names = ", ".join(sorted({_first_name(a) for a in stmt.assignments})[:4])
        found.append((SEQ, f"assigns {names} (shell session state)"))
    for assignment in (*stmt.assignments, *stmt.inner_assignments):
        var = _first_name(assignment)
        if (finding := variable_finding(var, "assigns")) is not None:
            found.append(finding)
    if "prompt_expansion" in constructs:
        found.append((COND, "${...@P} expands a variable as a prompt, which can run commands"))
    if "arithmetic_substitution" in constructs:
        found.append((COND, "arithmetic with a command substitution (a[$(...)]) runs commands"))
    if "arithmetic" in constructs and any(
        c.program in ("read", "mapfile", "readarray") for c in stmt.commands
    ):
        found.append((COND, "arithmetic on text read at run time can run commands (a[$(...)])"))
    return found


register(classify_text, classify_command)  # rules that judge an inner command call back here
