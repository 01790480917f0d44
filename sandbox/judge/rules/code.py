"""Flag rules for programs that run code: interpreters, shells, eval, source.

No I/O here. Inline code is scanned for obvious destruction (``shutil.rmtree``,
``os.system`` ...) and writes; code read from a pipe, a process substitution or
an expansion is dangerous (``curl ... | sh``).
"""

from __future__ import annotations

import re

from sandbox.judge.commands import shell_script_arg
from sandbox.judge.rules.flags import (
    COND,
    DANGER,
    SAFE,
    SEQ,
    Finding,
)
from sandbox.judge.rules.tools import migration_finding, run_target
from sandbox.judge.syntax import Command

_INLINE_FLAGS = frozenset({"-c", "-e", "-E", "-r", "--eval", "-p", "--print", "-Command", "-x"})
_VERSION_FLAGS = frozenset({"--version", "-V", "-VV", "--help", "-h", "-v", "-version"})
_CODE_DESTROYS = re.compile(
    r"rmtree|os\.(system|popen|remove|unlink|rmdir|exec\w*|spawn\w*|kill)|subprocess|pty\.spawn|"
    r"child_process|execSync|spawnSync|fs\.(rm|unlink)|rm\s+-\w*[rf]|\bsystem\s*\(|\bexec\s*\(|"
    r"`[^`]+`|\bqx\b|File\.delete|FileUtils\.rm|unlink\s*\(|__import__|ctypes|socket",
)
_CODE_WRITES = re.compile(
    r"write_text|write_bytes|writeFile|appendFile|File\.write|"
    r"shutil\.(copy|move)|os\.(rename|replace|mkdir|makedirs)|mkdir"
)
_OPEN_CALL = re.compile(r"\bopen\s*\(")
_WRITE_MODE = re.compile(r"['\"][wax+]|^\s*\w+\s*,\s*['\"]?>")


def _opens_for_writing(code: str) -> bool:
    """`open(f, 'w')`, perl `open(F, ">f")`: the text after each `open(` up to its `)`.

    One pass per `)`-separated part, so linear however many `open(` there are.
    """
    for part in code.split(")"):
        at = None
        for m in _OPEN_CALL.finditer(part):
            at = m.end()
        if at is not None and _WRITE_MODE.search(part[at:]):
            return True
    return False


def inline_code(tool: str, code: str | None) -> Finding:
    if code is None:
        return DANGER, f"{tool} runs code known only at run time"
    if _CODE_DESTROYS.search(code):
        return DANGER, f"{tool} inline code deletes files or runs commands"
    if _CODE_WRITES.search(code) or _opens_for_writing(code):
        return SEQ, f"{tool} inline code writes files"
    return COND, f"{tool} runs inline code"


def interpreter(cmd: Command) -> Finding | None:
    tool = cmd.program or "?"
    args = cmd.args
    if (
        args
        and all(w.value in _VERSION_FLAGS for w in args)
        and not (tool.startswith("python") and any(w.value == "-v" for w in args))
    ):
        return SAFE, f"{tool} --version only prints"
    in_place = False
    for i, w in enumerate(args):
        v = w.value
        if v is None:
            return DANGER, f"{tool} runs code known only at run time"
        in_place |= tool in ("perl", "ruby") and v[:1] == "-" and "i" in v[1:] and v[1:2] != "-"
        if v in ("-m", "run") and i + 1 < len(args):
            return run_target(args[i + 1 :], COND, f"{tool} {v} runs {args[i + 1].text}")
        if v in _INLINE_FLAGS or (v.startswith("-") and not v.startswith("--") and v[-1:] in "ce"):
            code = args[i + 1].value if i + 1 < len(args) else ""
            found = inline_code(tool, code)
            if in_place:
                return max(found, (SEQ, f"{tool} -i edits files in place"), key=_rank)
            return found
        if v in ("-", "/dev/stdin") or w.text.startswith("<("):
            break
        if not v.startswith("-"):
            migration = migration_finding(cmd)
            return migration or (COND, f"{tool} runs the script {v}")
    return stdin_code(cmd, tool, "code")


def stdin_code(cmd: Command, tool: str, what: str) -> Finding:
    """A shell or interpreter with no script argument reads its program from stdin."""
    if any(w.text.startswith("<(") for w in cmd.args):
        return DANGER, f"{tool} runs {what} produced by another command"
    for r in cmd.redirects:
        if r.op in ("<<", "<<<") and r.fd in (None, 0):
            return inline_code(tool, r.body)
        if r.op == "<" and r.fd in (None, 0):
            return COND, f"{tool} runs the script {r.target.text if r.target else '?'}"
    if cmd.piped_stdin:
        return DANGER, f"{tool} runs {what} read from a pipe (e.g. downloaded text)"
    return COND, f"{tool} starts an interactive session"


def shell(cmd: Command) -> Finding | None:
    tool = cmd.program or "sh"
    if cmd.nested_script:
        if cmd.via and cmd.via[-1] in ("xargs", "find -exec", "find -execdir"):
            script = " ".join(w.value or "" for w in cmd.args)
            if "{}" in script:
                return COND, f"{tool} -c splices file names into shell code"
        return SAFE, f"{tool} -c runs an inline script (its commands are judged on their own)"
    if [w.value for w in cmd.args] in (["--version"], ["--help"]):
        return SAFE, f"{tool} --version only prints"
    has_c, first, literal = shell_script_arg(cmd.args)
    if has_c:
        return DANGER, f"{tool} -c runs shell code known only at run time"
    reads_stdin = any(
        (v := w.value or "").startswith("-") and not v.startswith("--") and "s" in v
        for w in cmd.args[:first]
    )
    if first < len(cmd.args) and not reads_stdin:
        w = cmd.args[first]
        if w.text.startswith("<(") or w.value == "/dev/stdin":
            return stdin_code(cmd, tool, "shell code")
        if not literal or w.value is None:
            return DANGER, f"{tool} runs shell code known only at run time"
        return COND, f"{tool} runs the script {w.value}"
    return stdin_code(cmd, tool, "shell code")


def eval_(cmd: Command) -> Finding | None:
    if cmd.nested_script:
        return SAFE, "eval of literal text (its commands are judged on their own)"
    return DANGER, "eval runs text known only at run time"


def source(cmd: Command) -> Finding | None:
    target = cmd.args[0] if cmd.args else None
    if target is not None and target.text.startswith("<("):
        return DANGER, f"{cmd.program} runs code produced by another command"
    if target is not None and target.value is None:
        return DANGER, f"{cmd.program} runs a file named at run time"
    return None


def _rank(f: Finding) -> int:
    return f[0].rank
