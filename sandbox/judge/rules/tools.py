"""Flag rules for tools with subcommands: git, package managers, interpreters, shells.

No I/O here. Same contract as ``flags``: a check returns a ``Finding``
that replaces the program's default verdict, or ``None`` to keep it.
"""

from __future__ import annotations

import re

from sandbox.judge.rules.flags import (
    COND,
    DANGER,
    SAFE,
    SEQ,
    Check,
    Finding,
    opts,
    words,
    write_finding,
)
from sandbox.judge.syntax import Command, Word
from sandbox.judge.verdict import judge_command, judge_text
from sandbox.model import CommandClass

# --- package managers and build tools ------------------------------------------------------


def subcommand(cmd: Command, value_opts: frozenset[str] = frozenset()) -> tuple[str | None, int]:
    """The first non-option argument and its index, skipping ``value_opts`` values."""
    args = cmd.args
    i = 0
    while i < len(args):
        v = args[i].value
        if v is None:
            return None, i
        if not v.startswith("-"):
            return v, i
        i += 2 if v in value_opts else 1
    return "", i


def by_subcommand(
    safe: str,
    default: Finding,
    specific: dict[str, Finding] | None = None,
    runs: str = "",
    value_opts: str = "",
    reads: dict[str, str] | None = None,
) -> Check:
    """A check keyed by subcommand: ``safe`` ones only read; ``runs`` ones run a command.

    ``reads`` maps a subcommand with its own subcommands (``pip config``, ``conda
    env``) to the second words that only read (``list get``); any other is not safe.
    """
    second = {k: frozenset(v.split()) for k, v in (reads or {}).items()}
    safe_set = frozenset(safe.split()) | second.keys()
    runs_set = frozenset(runs.split())
    table = specific or {}
    vopts = frozenset(value_opts.split())

    def check(cmd: Command) -> Finding | None:
        sub, i = subcommand(cmd, vopts)
        tool = cmd.program or "?"
        if sub is None:
            return DANGER, f"{tool} subcommand is known only at run time"
        if sub == "" and {w.value for w in cmd.args} & {"--version", "-V", "-v", "--help", "-h"}:
            return SAFE, f"{tool} --version only prints"
        migration = migration_finding(cmd)
        if migration:
            return migration
        if sub in second:
            nxt = cmd.args[i + 1].value if i + 1 < len(cmd.args) else ""
            if nxt not in second[sub]:
                return default[0], f"{tool} {sub} {nxt or '?'} {default[1]}"
            return SAFE, f"{tool} {sub} {nxt} only reads"
        if sub in safe_set:
            return SAFE, f"{tool} {sub} only reads"
        if sub in table:
            return table[sub]
        if sub in runs_set:
            return run_target(cmd.args[i + 1 :], COND, f"{tool} {sub} runs a command")
        shown = f"{tool} {sub}" if _SUBCOMMAND.fullmatch(sub) else tool
        return default[0], f"{shown} {default[1]}"

    return check


_SUBCOMMAND = re.compile(r"[a-z][a-z0-9:-]*")


def run_target(words: tuple[Word, ...], floor: CommandClass, reason: str) -> Finding:
    """Judge the command a runner starts; the result is at least ``floor``."""

    while words and (words[0].value or "").startswith("-"):
        words = words[1:]
    if not words:
        return floor, reason
    inner = judge_command(Command(argv=words, via=("runner",)))
    if inner.cls.rank > floor.rank:
        return inner.cls, inner.reasons[0] if inner.reasons else reason
    return floor, reason


_MIGRATE = re.compile(
    r"^(?:db:)?(?:migrate|makemigrations|upgrade|downgrade|rollback)(?:[:.]\S*)?$|"
    r"^db:(?:setup|seed|schema:load|prepare)$|^ecto\.(?:migrate|rollback)$|^migration$|^up$"
)
_DB_DESTROY = re.compile(
    r"^(?:db:(?:drop|reset|purge)|flush|reset_db|migrate:(?:fresh|reset|refresh)|ecto\.(?:drop|reset)"
    r"|dropdb|drop)$"
)
MIGRATION_TOOLS = words(
    "alembic flask rails rake bundle prisma knex sequelize php artisan mix dbmate goose flyway "
    "liquibase diesel sqlx typeorm django-admin manage.py migrate make npm yarn pnpm npx"
)


def migration_finding(cmd: Command) -> Finding | None:
    """Database migrations change shared state: sequential; drops and resets: dangerous."""
    values = [w.value for w in cmd.args if w.value]
    for v in values:
        if _DB_DESTROY.match(v):
            return DANGER, f"{v} drops or resets a database"
    plain_up = cmd.program in ("alembic", "dbmate", "goose", "flask")  # `alembic upgrade head`
    for v in values:
        if _MIGRATE.match(v) and (plain_up or v not in ("upgrade", "up")):
            return SEQ, f"{v!r} runs database migrations"
    return None


# --- network ---------------------------------------------------------------------------------


def curl(cmd: Command) -> Finding | None:
    o = opts(
        cmd,
        frozenset("odHXuAeKwrmTxcbFEC")
        | {"--output", "--dump-header", "--cookie-jar", "--data", "--header", "--config"},
    )
    if {w.value for w in cmd.args} & {"--version", "-V", "--help"}:
        return SAFE, "curl --version only prints"
    if (upload := _curl_upload(cmd)) is not None:
        return DANGER, f"curl {upload} sends a file to another machine (data leaves the machine)"
    words = [o.values.get(k) for k in ("o", "--output", "D", "--dump-header", "c", "--cookie-jar")]
    written = [Word(text=v, value=v) for v in words if v is not None and v != "-"]
    if "O" in o.short or "--remote-name" in o.long or "--remote-name-all" in o.long:
        return SEQ, "curl -O downloads into a file"
    return write_finding("curl", written, "downloads into") or (COND, "curl uses the network")


_CURL_DATA = frozenset(
    {"-d", "--data", "--data-binary", "--data-raw", "--data-urlencode", "--data-ascii", "-F",
     "--form", "--json"}
)  # fmt: skip


def _curl_upload(cmd: Command) -> str | None:
    """The option that uploads a local file: -T, --upload-file, -d @file, -F x=@file."""
    args = cmd.args
    for i, w in enumerate(args):
        v = w.value or ""
        name, eq, attached = v.partition("=") if v.startswith("--") else (v[:2], "", v[2:])
        if name in ("-T", "--upload-file"):
            return name
        if name in _CURL_DATA:
            value = (
                attached if (eq or attached) else (args[i + 1].value if i + 1 < len(args) else "")
            )
            if value is None or "@" in value or "<" in value:
                return f"{name} @file"
    return None


def wget(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("OoaPeitU") | {"--output-document", "--directory-prefix"})
    if {w.value for w in cmd.args} & {"--version", "-V", "--help"}:
        return SAFE, "wget --version only prints"
    doc = o.values.get("O", o.values.get("--output-document"))
    if doc == "-" or "--spider" in o.long:
        return COND, "wget uses the network"
    if doc is not None:
        return write_finding("wget", [Word(text=doc, value=doc)], "downloads into") or (
            COND,
            "wget uses the network",
        )
    return SEQ, "wget downloads into a file"


def netcat(cmd: Command) -> Finding | None:
    o = opts(cmd)
    if o.short & {"e", "c"} or o.long & {"--exec", "--sh-exec", "--lua-exec"}:
        return DANGER, f"{cmd.program} -e connects a shell to the network"
    return None


def rsync(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("e") | {"--rsh"})
    if any(v.startswith("--delete") or v == "--remove-source-files" for v in o.long):
        return DANGER, "rsync --delete removes files at the destination"
    dest = o.positionals[-1:] if len(o.positionals) > 1 else ()
    if any(w.value is None or ":" in (w.value or "").split("/", 1)[0] for w in dest):
        return DANGER, f"rsync copies files to {dest[0].text} (data leaves the machine)"
    return write_finding(cmd.program or "rsync", o.positionals[-1:], "copies into")


# --- services and session state -----------------------------------------------------------------

_SERVICE_READ = words(
    "status show cat is-active is-enabled is-failed list-units list-unit-files list-timers "
    "list-sockets list-jobs list-dependencies --status-all help --version -h"
)
_POWER = words("reboot poweroff halt kexec suspend hibernate isolate rescue emergency")


def service_manager(cmd: Command) -> Finding | None:
    words = [
        w.value
        for w in cmd.args
        if not (w.value or "-").startswith("-") or w.value in _SERVICE_READ
    ]
    if not words:
        return SAFE, f"{cmd.program} only lists services"
    if any(w is None for w in words):
        return DANGER, f"{cmd.program} action is known only at run time"
    if set(words) & _POWER:
        return DANGER, f"{cmd.program} powers the machine off or changes its mode"
    if set(words) & _SERVICE_READ:
        return SAFE, f"{cmd.program} {' '.join(w for w in words if w)} only reads service state"
    return SEQ, f"{cmd.program} {' '.join(w for w in words if w)} changes a running service"


def session_builtin(read_only_without_args: bool, query_flags: str = "") -> Check:
    """cd, export, set ...: they change the shell session; some only print without arguments."""
    queries = frozenset(query_flags.split())

    def check(cmd: Command) -> Finding | None:
        if read_only_without_args and all(w.value in queries for w in cmd.args):
            return SAFE, f"{cmd.program} without arguments only prints"
        return None

    return check


def coproc(cmd: Command) -> Finding | None:
    return run_target(cmd.args, COND, "coproc starts a background process")


def watch(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("nd") | {"--interval", "--differences"})
    if any(w.value is None for w in o.positionals):
        return DANGER, "watch runs a command known only at run time"

    inner = judge_text(" ".join(w.value or "" for w in o.positionals))
    if inner.cls.rank > COND.rank:
        return inner.cls, inner.reasons[0]
    return COND, "watch runs a command repeatedly until stopped"


def formatter(write_flags: str = "", check_flags: str = "") -> Check:
    """Formatters rewrite files unless checking; others only with a write flag."""
    writes = frozenset(write_flags.split())
    checks = frozenset(check_flags.split())

    def check(cmd: Command) -> Finding | None:
        flags = {(w.value or "").partition("=")[0] for w in cmd.args}
        if flags & {"--version", "-V"} and len(cmd.args) == 1:
            return SAFE, f"{cmd.program} --version only prints"
        if (writes and flags & writes) or (checks and not flags & checks):
            return SEQ, f"{cmd.program} rewrites files"
        return None

    return check


def ruff(cmd: Command) -> Finding | None:
    sub, _ = subcommand(cmd)
    flags = {(w.value or "").partition("=")[0] for w in cmd.args}
    if sub == "format" and not flags & {"--check", "--diff"}:
        return SEQ, "ruff format rewrites files"
    if flags & {"--fix", "--fix-only", "--unsafe-fixes"} and "--no-fix" not in flags:
        return SEQ, "ruff --fix rewrites files"
    if flags & {"--version", "-V"} or sub == "version":
        return SAFE, "ruff --version only prints"
    return None


def runs_target(reason: str, floor: CommandClass = COND) -> Check:
    """For runners (strace, flock, nohup ...): the started command's class, at least ``floor``."""

    def check(cmd: Command) -> Finding | None:
        return run_target(cmd.args, floor, reason.format(program=cmd.program))

    return check


def rg(cmd: Command) -> Finding | None:
    for i, w in enumerate(cmd.args):
        v = w.value or ""
        if v == "--pre" or v.startswith("--pre="):
            nxt = cmd.args[i + 1].value if i + 1 < len(cmd.args) else None
            prog = v.partition("=")[2] if "=" in v else nxt
            words = (Word(text=prog or "?", value=prog), Word(text="<file>", value=None))
            return run_target(words, COND, "rg --pre runs a program on every file")
    return None


def fd(cmd: Command) -> Finding | None:
    for i, w in enumerate(cmd.args):
        if w.value in ("-x", "--exec", "-X", "--exec-batch"):
            words = (*cmd.args[i + 1 :], Word(text="<file>", value=None))
            return run_target(words, COND, "fd -x runs a command on every match")
    return None


_CLOUD_DESTROY = re.compile(
    r"^(rm|rb|delete|delete-\S+|destroy|terminate|terminate-\S+|purge|remove|drop|deregister)$"
)
_CLOUD_CHANGE = re.compile(
    r"^(cp|mv|sync|put|put-\S+|create|create-\S+|deploy|apply|update|update-\S+|merge|"
    r"close|set|set-\S+|run|start|stop|restart|scale|release|publish|upload|invoke|"
    r"attach|detach|modify-\S+|enable|disable)$"
)


def cloud(cmd: Command) -> Finding | None:
    """Cloud CLIs always use the network; deleting or changing resources is worse."""
    for w in cmd.args:
        v = w.value or ""
        if _CLOUD_DESTROY.match(v):
            return DANGER, f"{cmd.program} {v} deletes cloud resources"
    for w in cmd.args:
        v = w.value or ""
        if _CLOUD_CHANGE.match(v):
            return SEQ, f"{cmd.program} {v} changes remote resources"
    return None


def history(cmd: Command) -> Finding | None:
    if any(
        (w.value or "").startswith("-") and set(w.value or "") & set("cdwranps") for w in cmd.args
    ):
        return SEQ, "history -c/-d/-w changes the shell's history (shell session state)"
    return None


def seven_zip(cmd: Command) -> Finding | None:
    sub, _ = subcommand(cmd)
    if sub in ("l", "t", "i", "h"):
        return SAFE, f"7z {sub} only reads the archive"
    return None
