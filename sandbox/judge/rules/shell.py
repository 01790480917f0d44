"""Rules for the shell itself: variables, builtins that run code, secret files.

No I/O here. These rules see what no program rule can: which variables a
statement sets (``PATH=./x``, ``read -r PATH``, ``export LD_PRELOAD=...``),
builtins that store code to run later (``trap``, ``alias``, ``hash -p``,
``mapfile -C``), and words that name secrets (``~/.ssh``, ``/etc/shadow``,
``/proc/1/environ``, ``.env``). Subshells get no exemption: ``(PATH=./x; ls)``
runs ``./x/ls``.
"""

from __future__ import annotations

import fnmatch
import re

from sandbox.judge.rules.flags import COND, SEQ, Finding, words
from sandbox.judge.syntax import Command, Word

# Environment variables known not to change which code runs or what it writes.
SAFE_ENV = words(
    "LANG LANGUAGE LC_ALL TZ NO_COLOR TERM COLUMNS LINES CLICOLOR CLICOLOR_FORCE FORCE_COLOR "
    "GREP_COLOR GREP_COLORS LS_COLORS TIME_STYLE QUOTING_STYLE POSIXLY_CORRECT"
)
# Variables that change which code runs: always named in the reason.
_HIJACK = re.compile(
    r"(PATH|LD_\w+|DYLD_\w+|BASH_ENV|ENV|IFS|HOME|SHELL|SHELLOPTS|BASHOPTS|PS[0-4]|"
    r"PROMPT_COMMAND|\w*PAGER|LESS\w*|EDITOR|VISUAL|GIT_\w+|\w+_OPTIONS|\w+_OPTS|"
    r"PYTHON\w+|PERL\w*|RUBY\w+|NODE_\w+|JAVA\w*|_JAVA_OPTIONS|BROWSER|TMPDIR|XDG_\w+|"
    r"CDPATH|GLOBIGNORE|BASH_\w+|HIST\w*|MAIL\w*|TERMINFO\w*|\w+_proxy|\w+_PROXY)"
)


def variable_finding(name: str, how: str) -> Finding | None:
    """Setting shell variable ``name``: not safe unless it cannot be an environment variable.

    Lower-case names (``f``, ``line``) are the script's own; upper-case names may
    be inherited environment variables that programs read, so only ``SAFE_ENV``
    and ``LC_*`` are allowed (default deny).
    """
    base = name.partition("[")[0].strip("+-")
    if not base or base in SAFE_ENV or base.startswith("LC_"):
        return None
    if _HIJACK.fullmatch(base):
        return COND, f"{how} {base}, which changes which code runs"
    if base.lower() == base and not base.endswith("_proxy"):
        return None
    return COND, f"{how} {base}, an environment variable not on the allowlist"


def prefix_finding(assignment: str, program: str) -> Finding | None:
    """``NAME=value cmd``: the variable is exported to ``cmd`` only."""
    name = assignment.partition("=")[0]
    if name in SAFE_ENV or name.startswith("LC_"):
        return None
    if _HIJACK.fullmatch(name.rstrip("+")):
        return COND, f"{name}=... changes which code {program} runs"
    return COND, f"{name}=... sets an environment variable for {program} not on the allowlist"


# --- builtins ---------------------------------------------------------------------------------

_ASSIGNING = words("export declare typeset local readonly")
# Builtins that store code or change how names resolve: never safe, even in a subshell.
_CODE_BUILTINS = {
    "trap": "trap stores code to run on a signal or on exit",
    "alias": "alias changes what a command name runs",
    "hash": "hash changes which file a command name runs",
    "enable": "enable turns builtins on or off or loads them from a file",
    "exec": "exec replaces the shell or changes its files",
    "eval": "eval runs text as shell code",
    "source": "source runs a file in the current shell",
    ".": ". runs a file in the current shell",
    "coproc": "coproc starts a background process",
    "unalias": "unalias changes what a command name runs",
    "complete": "complete stores code to run on completion",
    "bind": "bind changes the line editor",
}
_LISTING = {"trap": words("-p -l"), "alias": words("-p"), "hash": words("-l -t"),
            "enable": words("-a -p -n -s"), "complete": words("-p")}  # fmt: skip


def builtin_finding(cmd: Command) -> Finding | None:
    """Findings for shell builtins that no program rule covers; None to keep the rule's."""
    program = cmd.program or ""
    args = cmd.args
    if program in _CODE_BUILTINS:
        listing = _LISTING.get(program)
        if listing is not None and all(w.value in listing for w in args):
            return None  # `trap -p`, `alias`: only print
        if program == "exec" and not args and not cmd.redirects:
            return None
        if program in ("eval", "source", ".", "coproc", "exec"):
            return COND, _CODE_BUILTINS[program]
        return SEQ, _CODE_BUILTINS[program]
    if program in ("mapfile", "readarray") and any(
        (v := w.value or "-C").startswith("-") and "C" in v for w in args
    ):
        return COND, f"{program} -C runs a callback for every line"
    if program in ("declare", "typeset", "local") and any(
        (v := w.value or "").startswith("-") and "n" in v for w in args
    ):
        return COND, f"{program} -n makes a name refer to another variable (PATH, IFS ...)"
    if program in ("read", "mapfile", "readarray", "printf", "getopts", "let", *_ASSIGNING):
        for name, how in _assigned_names(cmd):
            if (found := variable_finding(name, how)) is not None:
                return found
    return None


def _assigned_names(cmd: Command) -> list[tuple[str, str]]:
    """(variable, how) for every variable a builtin sets."""
    program = cmd.program or ""
    values = [w.value for w in cmd.args]
    how = f"{program} sets"
    if any(v is None for v in values) and program != "printf":
        return [("DYNAMIC_NAME", f"{program} sets a variable named at run time:")]
    names: list[tuple[str, str]] = []
    if program == "read":
        skip = False
        for v in values:
            if skip:
                skip = False
            elif v and v.startswith("-") and len(v) > 1:
                letters = v[1:]
                for pos, letter in enumerate(letters):
                    if letter in "adinNpt":
                        rest = letters[pos + 1 :]
                        if letter == "a" and rest:
                            names.append((rest, how))
                        elif letter == "a":
                            names.append(("", how))  # the next word: filled below
                        skip = not rest and letter != "a"
                        break
            elif v and names and names[-1] == ("", how):
                names[-1] = (v, how)
            elif v:
                names.append((v, how))
        return names
    if program == "printf":
        if len(values) > 1 and values[0] == "-v":
            return [(values[1] or "DYNAMIC_NAME", how)]
        return []
    if program == "getopts":
        return [(values[1] or "", how)] if len(values) > 1 else []
    if program == "let":
        return [(_lhs(v or ""), how) for v in values]
    if program in ("mapfile", "readarray"):
        plain = [v for v in values if v and not v.startswith("-")]
        return [(plain[-1], how)] if plain else []
    return [(_lhs(v or ""), how) for v in values if v and not v.startswith(("-", "+"))]


_LHS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _lhs(text: str) -> str:
    m = _LHS.match(text)
    return m.group(0) if m else ""


# --- secrets -----------------------------------------------------------------------------------

_SECRET = re.compile(
    r"(?:^|/)(?:\.ssh|\.gnupg|\.aws|\.azure|\.kube|\.docker|\.password-store)(?:/|$)|"
    r"(?:^|/)(?:\.netrc|\.pgpass|\.git-credentials|\.npmrc|\.pypirc|\.my\.cnf|"
    r"id_rsa|id_dsa|id_ecdsa|id_ed25519)$|"
    r"(?:^|/)\.env(?:\.[\w.-]+)?$|"
    r"^/etc/(?:g?shadow-?|sudoers|master\.passwd|ssh/ssh_host_\w+_key)$|"
    r"^/proc/[^/]+/(?:environ|mem|cmdline)$|^/proc/[^/]+/task/[^/]+/environ$"
)
_HOME_GLOB = re.compile(r"^(?:~|\$HOME|\$\{HOME\}|/root|/home)(?:/|$)")


def secret_finding(word: Word, program: str) -> Finding | None:
    """A word naming a secret file, or a glob that could match one."""
    text = word.value if word.value is not None else _unquote(word.text)
    path = text.partition("=")[2] if text.startswith("-") and "=" in text else text
    if _SECRET.search(path):
        return COND, f"{program} reads {path}, a secret"
    if (word.glob or word.value is None) and _may_match_secret(path):
        return COND, f"{program} reads {path}, which may match a secret"
    return None


# Where secrets live; None is any one name (a user, a process id).
_SECRET_PATHS: tuple[tuple[str | None, ...], ...] = (
    ("", "root", ".ssh", "id_rsa"),
    ("", "root", ".aws", "credentials"),
    ("", "home", None, ".ssh", "id_rsa"),
    ("", "home", None, ".aws", "credentials"),
    ("", "home", None, ".netrc"),
    ("", "etc", "shadow"),
    ("", "etc", "gshadow"),
    ("", "proc", None, "environ"),
    ("~", ".ssh", "id_rsa"),
    ("~", ".aws", "credentials"),
    ("~", ".netrc"),
)
_RELATIVE_SECRETS = (".env", ".ssh", ".netrc", ".git-credentials")


def _may_match_secret(pattern: str) -> bool:
    """Could this glob (or partly dynamic path) expand to a secret? Bash's rules: a
    component matches a dot file only when it starts with a literal dot."""
    if pattern.startswith("/proc/") or (pattern.startswith("/etc/") and "*" in pattern):
        return True
    if _HOME_GLOB.match(pattern) and ("*" in pattern or "?" in pattern or "[" in pattern):
        return True
    parts = tuple(pattern.split("/"))
    if any(leads_to(parts, secret) for secret in _SECRET_PATHS):
        return True
    return any(_component_matches(parts[-1], name) for name in _RELATIVE_SECRETS)


def leads_to(parts: tuple[str, ...], secret: tuple[str | None, ...]) -> bool:
    """The path (glob components) is the secret or a directory on the way to it."""
    if len(parts) > len(secret):
        return False
    return all(
        name is None or _component_matches(part, name)
        for part, name in zip(parts, secret, strict=False)
    )


def _component_matches(part: str, name: str) -> bool:
    if name.startswith(".") and not part.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, part)


def _unquote(text: str) -> str:
    return text.replace('"', "").replace("'", "")


_RECURSIVE_READERS = words("grep egrep fgrep zgrep rg ag ack")
_WIDE_DIRS = frozenset({"", "~", "$HOME", "${HOME}", "/root", "/home", "/proc", "/etc"})


def wide_read_finding(cmd: Command) -> Finding | None:
    """Searching file contents under the home directory or / reads every secret there."""
    program = cmd.program or ""
    if program not in _RECURSIVE_READERS:
        return None
    recursive = program in ("rg", "ag", "ack") or any(
        ((v := w.value or "").startswith("-") and not v.startswith("--") and set(v) & set("rR"))
        or v in ("--recursive", "--dereference-recursive")
        for w in cmd.args
    )
    if not recursive:
        return None
    if (root := _searches_workspace_root(cmd)) is not None:
        return COND, f"{program} searches {root}, .env files included"
    for w in cmd.args:
        text = w.value if w.value is not None else _unquote(w.text)
        if text.startswith("-") or not text:
            continue
        parts = tuple(text.rstrip("/").split("/")) if text != "/" else ("",)
        if (
            text.rstrip("/") in _WIDE_DIRS
            or _HOME_GLOB.match(text)
            or any(leads_to(parts, s) for s in _SECRET_PATHS)
        ):
            return COND, f"{program} searches every file under {text}, secrets included"
    return None


_GREP_VALUES = frozenset("efmABCdD")
_HIDDEN = frozenset({"--hidden", "-uu", "-uuu", "-.", "--unrestricted"})


def _searches_workspace_root(cmd: Command) -> str | None:
    """grep -r with no directory or `.` reads the .env at the workspace's root (rg, ag and
    ack skip hidden files unless told otherwise); `--include=` narrows it to named files."""
    program = cmd.program or ""
    values = [w.value or "" for w in cmd.args]
    if any(v.startswith("--include") for v in values):
        return None
    if program in ("rg", "ag", "ack") and not _HIDDEN & set(values):
        return None
    operands: list[str] = []
    pattern_given = False
    skip = False
    for v in values:
        if skip:
            skip = False
        elif v.startswith("--"):
            pattern_given |= v.partition("=")[0] in ("--regexp", "--file")
            skip = v in ("--regexp", "--file") or v in _LONG_VALUES
        elif v.startswith("-") and len(v) > 1:
            letter = next((c for c in v[1:] if c in _GREP_VALUES), None)
            pattern_given |= letter in ("e", "f")
            skip = letter is not None and v.endswith(letter)
        else:
            operands.append(v)
    paths = operands if pattern_given else operands[1:]
    if not paths:
        return "the whole workspace"
    root = next((p for p in paths if p in (".", "./")), None)
    return "the whole workspace" if root is not None else None


_LONG_VALUES = frozenset(
    {"--max-count", "--label", "--binary-files", "--directories", "--devices", "--exclude",
     "--exclude-from", "--exclude-dir", "--before-context", "--after-context", "--context"}
)  # fmt: skip


def holds_secrets(path: str) -> bool:
    """The home directory, /, /root, /etc, /proc, or a directory on the way to a secret."""
    parts = tuple(path.rstrip("/").split("/")) if path != "/" else ("",)
    return (
        path.rstrip("/") in _WIDE_DIRS
        or bool(_HOME_GLOB.match(path))
        or any(leads_to(parts, s) for s in _SECRET_PATHS)
    )


def env_dump_finding(cmd: Command) -> Finding | None:
    """``env``, ``printenv``, ``set``, ``export -p``, ``declare -p`` print every variable."""
    program = cmd.program or ""
    values = [w.value for w in cmd.args]
    dumps = (
        (program in ("env", "printenv") and all(v and v.startswith("-") for v in values))
        or (program == "set" and not values)
        or (program in ("export", "declare", "typeset") and set(values) <= {"-p"})
    )
    if dumps:
        return COND, f"{program} prints every environment variable, secrets included"
    return None
