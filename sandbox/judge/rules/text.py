"""Flag rules for text tools that carry a program: sed scripts, awk programs, find actions.

No I/O here. The sed and awk readers are small and conservative: a command or
construct they cannot read is judged not safe.
"""

from __future__ import annotations

import re

from sandbox.judge.rules.flags import (
    COND,
    DANGER,
    SEQ,
    Finding,
    opts,
    words,
    write_finding,
)
from sandbox.judge.rules.shell import holds_secrets
from sandbox.judge.syntax import Command, Word
from sandbox.judge.verdict import judge_text

_SED_SIMPLE = frozenset("=dDgGhHnNpPxzF")


def _skip_delimited(script: str, i: int, delim: str) -> int:
    """Index just past the next unescaped ``delim`` at or after ``i``; -1 when none."""
    n = len(script)
    while i < n:
        c = script[i]
        if c == "\\":
            i += 2
            continue
        if c == delim:
            return i + 1
        i += 1
    return -1


def _to_eol(script: str, i: int, stops: str = "\n") -> int:
    while i < len(script) and script[i] not in stops:
        i += 2 if script[i] == "\\" else 1
    return i


def sed_script_risk(script: str) -> Finding | None:
    """Why a sed script is not read-only (w/W/e commands, s///w or s///e), else None."""
    i, n = 0, len(script)
    while i < n:
        c = script[i]
        if c in " \t\n;{}!,~0123456789$+":
            i += 1
        elif c == "#":
            i = _to_eol(script, i)
        elif c in "/\\":
            delim = "/" if c == "/" else script[i + 1 : i + 2]
            i = _skip_delimited(script, i + (1 if c == "/" else 2), delim)
            if i < 0 or not delim:
                return _SED_UNREADABLE
            while i < n and script[i] in "IM":
                i += 1
        elif c in "wW":
            return SEQ, f"sed script uses the {c!r} command, which writes a file"
        elif c == "e":
            end = _to_eol(script, i + 1)
            return _sed_exec(script[i + 1 : end].strip())
        elif c in "sy":
            delim = script[i + 1 : i + 2]
            if not delim or delim in "\n\\":
                return _SED_UNREADABLE
            i = _skip_delimited(script, i + 2, delim)
            i = _skip_delimited(script, i, delim) if i >= 0 else -1
            if i < 0:
                return _SED_UNREADABLE
            j = _to_eol(script, i, ";\n}#")
            if c == "s" and (flag := _sed_s_flag(script[i:j])) is not None:
                return flag
            i = j
        elif c in "aicrR:btTvlLqQ":
            i = _to_eol(script, i + 1, "\n" if c in "aicrR" else ";\n}")
        elif c in _SED_SIMPLE:
            i += 1
        else:
            return COND, f"sed command {c!r} not understood"
    return None


_SED_UNREADABLE: Finding = (COND, "sed script could not be read")


def _sed_s_flag(flags: str) -> Finding | None:
    for ch in flags:
        if ch == "w":  # the rest of the line is a file name
            return SEQ, "sed s///w writes a file"
        if ch == "e":
            return DANGER, "sed s///e runs the edited lines as shell commands"
        if ch not in "gpiImM0123456789 \t":
            return _SED_UNREADABLE
    return None


def _sed_exec(command: str) -> Finding:
    if not command:
        return DANGER, "sed 'e' runs input lines as shell commands"

    inner = judge_text(command)
    if inner.cls.rank > COND.rank:
        return inner.cls, f"sed runs {command!r}: {inner.reasons[0]}"
    return COND, f"sed 'e' runs {command!r}"


_SED_VALUES = frozenset({"e", "f", "l", "--expression", "--file", "--line-length"})


def sed(cmd: Command) -> Finding | None:
    args = cmd.args
    scripts: list[Word] = []
    in_place = False
    script_file = False
    positionals: list[Word] = []
    i = 0
    while i < len(args):
        w = args[i]
        v = w.value
        i += 1
        if v is None or not v.startswith("-") or v == "-":
            positionals.append(w)
            continue
        if v.startswith("--"):
            key = v.partition("=")[0]
            in_place |= key == "--in-place"
            if key in ("--expression", "--file"):
                val = v.partition("=")[2] if "=" in v else None
                if val is None and i < len(args):
                    val_word, i = args[i], i + 1
                else:
                    val_word = Word(text=val or "", value=val)
                if key == "--file":
                    script_file = True
                else:
                    scripts.append(val_word)
            continue
        for pos, letter in enumerate(v[1:], start=1):
            if letter == "i":
                in_place = True
                break  # the rest is a backup suffix
            if letter in "efl":
                rest = v[pos + 1 :]
                word = Word(text=rest, value=rest) if rest else (args[i] if i < len(args) else None)
                if not rest:
                    i += 1
                if letter == "e" and word is not None:
                    scripts.append(word)
                script_file |= letter == "f"
                break
    if not scripts and not script_file and positionals:
        scripts.append(positionals.pop(0))
    if in_place:
        return SEQ, "sed -i edits files in place"
    if script_file:
        return COND, "sed -f runs a script file that was not inspected"
    for w in scripts:
        if w.value is None:
            return COND, "sed script is known only at run time"
        risk = sed_script_risk(w.value)
        if risk:
            return risk
    return None


_AWK_VALUES = frozenset("FvfEil") | frozenset(
    {"--file", "--source", "--include", "--load", "--assign", "--field-separator", "--exec"}
)
_AWK_STD_REDIRECT = re.compile(r'>>?\s*"/dev/(?:stderr|stdout|null)"')
_AWK_SYSTEM = re.compile(r"\bsystem\s*\(")
_AWK_SYSTEM_LITERAL = re.compile(r'\bsystem\s*\(\s*"((?:\\.|[^"\\])*)"\s*\)')
_AWK_PIPE = re.compile(r"(?<!\|)\|(?!\|)")
_AWK_PRINT = re.compile(r"\bprintf?\b")
_AWK_STATEMENT_END = re.compile(r"[;{}\n]")


def _prints_into_file(code: str) -> bool:
    """`print ... > file` in some statement: one pass per statement, so linear."""
    return any(
        (m := _AWK_PRINT.search(part)) is not None and ">" in part[m.end() :]
        for part in _AWK_STATEMENT_END.split(code)
    )


_REGEX_BEFORE = frozenset("(,~!{};&|=\n")


def _awk_code(program: str) -> str:
    """The program with strings, regex literals and comments blanked out."""
    out: list[str] = []
    i, n = 0, len(program)
    prev = "\n"
    while i < n:
        c = program[i]
        if c == "#":
            i = _to_eol(program, i)
            continue
        if c == '"' or (c == "/" and prev in _REGEX_BEFORE):
            end = _skip_delimited(program, i + 1, c)
            i = n if end < 0 else end
            out.append('""')
            prev = '"'
            continue
        out.append(c)
        if not c.isspace():
            prev = c
        i += 1
    return "".join(out)


def awk_program_risk(program: str) -> Finding | None:
    raw = _AWK_STD_REDIRECT.sub("", program)
    code = _awk_code(raw)
    if _AWK_SYSTEM.search(code):
        found: Finding = (COND, "awk calls system() to run commands")

        for literal in _AWK_SYSTEM_LITERAL.findall(raw):
            inner = judge_text(literal.replace('\\"', '"'))
            if inner.cls.rank > found[0].rank:
                found = inner.cls, f"awk runs {literal!r}: {inner.reasons[0]}"
        return found
    if _AWK_PIPE.search(code):
        return COND, "awk pipes to or from a command"
    if _prints_into_file(code):
        return SEQ, "awk prints into a file"
    if "@load" in code or "@include" in code:
        return COND, "awk loads an extension or library"
    return None


def awk(cmd: Command) -> Finding | None:
    o = opts(cmd, _AWK_VALUES)
    if "i" in o.values or "--include" in o.values:
        lib = o.values.get("i") or o.values.get("--include")
        if lib in ("inplace", "inplace.awk"):
            return SEQ, "awk -i inplace edits files in place"
        return COND, "awk -i loads a library that was not inspected"
    if {"f", "E", "--file", "--exec"} & o.values.keys():
        return COND, "awk -f runs a program file that was not inspected"
    if {"l", "--load"} & o.values.keys():
        return COND, "awk -l loads an extension"
    source = o.values.get("e", o.values.get("--source", ""))
    if "e" not in o.values and "--source" not in o.values:
        if not o.positionals:
            return None
        source = o.positionals[0].value
    if source is None:
        return COND, "awk program is known only at run time"
    return awk_program_risk(source)


_FIND_VALUE = words(
    "-name -iname -path -ipath -wholename -iwholename -regex -iregex -lname -ilname -type "
    "-xtype -size -mtime -mmin -atime -amin -ctime -cmin -newer -anewer -cnewer -used -perm "
    "-user -group -uid -gid -maxdepth -mindepth -links -inum -samefile -regextype -fstype "
    "-printf -newermt -newerct -newerat -newermm -newercc -newerca -newerma -D -O"
)
_FIND_FLAG = words(
    "-print -print0 -ls -prune -not -a -o -and -or -true -false -readable -writable "
    "-executable -empty -nouser -nogroup -depth -follow -xdev -mount -daystart -noleaf -quit "
    "-ignore_readdir_race -noignore_readdir_race -help --help -version --version -H -L -P "
    "( ) ! ,"
)


def _secret_root(args: tuple[Word, ...]) -> str | None:
    """A start directory of find (the words before the expression) that holds secrets."""
    for w in args:
        text = w.value if w.value is not None else w.text
        if text.startswith(("-", "(", "!")):
            return None
        if holds_secrets(text):
            return text
    return None


def find(cmd: Command) -> Finding | None:
    """find's expression: actions that write are named; unknown primaries are not safe."""
    args = cmd.args
    i = 0
    while i < len(args):
        w = args[i]
        v = w.value
        i += 1
        if v == "-delete":
            return DANGER, "find -delete deletes every match"
        if v in ("-fprint", "-fprint0", "-fprintf", "-fls"):
            target = args[i : i + 1]
            return write_finding("find", target, f"{v} writes") or (SEQ, f"find {v} writes a file")
        if v in ("-exec", "-execdir", "-ok", "-okdir") and (secret := _secret_root(args)):
            return COND, f"find {v} runs a command on every file under {secret}, secrets included"
        if v in ("-exec", "-execdir", "-ok", "-okdir"):
            while i < len(args) and args[i].value not in (";", "+"):
                i += 1  # the command is judged on its own
            i += 1
            continue
        if v is None:
            if w.text.startswith("-") or (i > 1 and args[i - 2].value not in _FIND_VALUE):
                return COND, f"find argument {w.text!r} may become an action such as -delete"
            continue
        if v in _FIND_VALUE:
            i += 1
        elif v.startswith("-") and v not in _FIND_FLAG:
            return COND, f"find option {v!r} is not on its allowlist of read-only primaries"
    return None
