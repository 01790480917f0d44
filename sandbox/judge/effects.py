"""Statement -> the paths it reads and writes and the resources it touches.

No I/O here: effects are inferred from the parsed words alone, so the workspace
location, the environment and the file system are unknown. Whatever cannot be
pinned down is widened, never narrowed:

- a glob, brace or variable widens to its literal directory prefix
  (``src/*.py`` -> ``src``, ``out/$x.txt`` -> ``out``, ``$f`` -> ``.``);
- ``cd`` inside a statement widens its relative paths to ``.`` (or to ``/`` when
  the new directory is unknown or outside the workspace);
- build tools read and write ``.`` (the whole workspace);
- unknown programs, interpreters running code we cannot see, dynamic program
  names and unparsable text read and write ``/``.

Paths are normalised strings in four namespaces: workspace-relative
(``src/a.py``, ``.`` = the whole workspace), absolute (``/etc/passwd``), home
(``~``, ``~/.bashrc``) and siblings of the workspace (``../x``). ``/`` is
special: it is the whole machine, so it overlaps every path of every namespace
and every resource. Other namespaces never overlap each other: the workspace
is assumed not to live under any absolute path a batch names (pure code cannot
know where it is). See :func:`overlaps`.

Resources are named non-file state (``network``, ``processes``, ``git`` ...).
``resources`` lists every resource touched and ``resource_writes`` the ones
changed; two statements conflict on a resource when at least one changes it,
so two ``curl`` downloads run in parallel but ``kill`` orders after ``ps``.
``session`` (cd, export, aliases ...) is recorded but never orders anything:
each statement runs in its own ``bash -c``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from sandbox.judge.effects_archives import (
    _COMPRESSORS,
    _archive_tar,
    _cd,
    _compress,
    _install,
    _mktemp,
    _rsync,
    _split,
    _test,
    _touch,
    _xargs,
    _zip,
)
from sandbox.judge.effects_base import LOCAL_RESOURCES, Acc, Effects, Handler, names_of, split_args
from sandbox.judge.effects_files import (
    READERS,
    _awk,
    _chmod,
    _copy,
    _dd,
    _find,
    _ln,
    _read_operands,
    _sed,
    _tee,
    _writer,
)
from sandbox.judge.effects_resources import (
    _NOTHING,
    _SESSION,
    BUILD_TOOLS,
    _curl,
    _docker,
    _everything,
    _git,
    _packages,
    _python,
    _resource,
    _shell,
    _system,
    _trap,
    _wget,
)
from sandbox.judge.paths import EVERYTHING, WORKSPACE, key, minimal, normalise, overlaps, word_path
from sandbox.judge.syntax import SHELLS, Command, Statement

__all__ = [
    "EVERYTHING",
    "LOCAL_RESOURCES",
    "WORKSPACE",
    "Effects",
    "effects",
    "key",
    "normalise",
    "overlaps",
    "split_args",
    "word_path",
]


def effects(stmt: Statement) -> Effects:
    acc = Acc()
    for problem in stmt.problems:
        acc.everything(f"not understood ({problem}): may read and write anything")
    if stmt.assignments or stmt.constructs & {"function"}:
        acc.use("session", write=True)
    if "test" in stmt.constructs:
        acc.reads.add(WORKSPACE)  # [[ -f x ]] operands are not exposed by the parser
        acc.note("a test ([ ] or [[ ]]) may look at any file, widened to .")
    cwd_hint = _cwd_hint(stmt.commands)
    for cmd in stmt.commands:
        acc.via = cmd.via
        acc.cwd = cwd_hint if cwd_hint is not None else _chdir_wrapper(cmd)
        _command(cmd, acc)
    acc.via = ()
    acc.cwd = cwd_hint
    for r in stmt.redirects:
        if r.target is None or r.harmless:
            continue
        if r.reads:
            acc.read(r.target)
        if r.writes:
            acc.write(r.target)
    return Effects(
        reads=minimal(acc.reads),
        writes=minimal(acc.writes),
        resources=frozenset(acc.resources),
        exact=acc.exact,
        notes=tuple(acc.notes),
        resource_writes=frozenset(acc.resource_writes),
    )


def _cwd_hint(commands: Sequence[Command]) -> str | None:
    """Where relative paths may point once `cd` ran: ``.`` inside the workspace, else ``/``."""
    if not any(c.program in ("cd", "pushd") for c in commands):
        return None
    here = "."
    for c in commands:
        if c.program not in ("cd", "pushd"):
            continue
        _, operands = split_args(c.args)
        target = operands[0] if operands else None
        if target is None or target.value is None or target.glob:
            return EVERYTHING
        here = normalise(posixpath.join(here, target.value))
        if here.startswith(("/", "~", "..")):
            return EVERYTHING
    return WORKSPACE


def _chdir_wrapper(cmd: Command) -> str | None:
    for wrapper in cmd.wrappers:
        values = [w.value for w in wrapper]
        if any(v in ("-C", "--chdir", "-D") or (v or "").startswith("--chdir=") for v in values):
            return EVERYTHING
    return None


def _command(cmd: Command, acc: Acc) -> None:
    program = cmd.program
    if program is None:
        acc.everything(f"program name {cmd.argv[0].text if cmd.argv else '?'} is dynamic")
        return
    handler = _HANDLERS.get(program)
    if handler is not None:
        handler(cmd, acc)
    elif program in BUILD_TOOLS:
        acc.workspace(f"{program} may read and write anything in the workspace")
    elif program in _NOTHING:
        pass
    elif program in _SESSION:
        acc.use("session", write=True)
    elif program in READERS:
        _read_operands(cmd, acc, READERS[program])
    elif re.fullmatch(r"python[0-9.]*|pypy[0-9.]*", program):
        _python(cmd, acc)
    else:
        acc.everything(f"unknown program {program}: may read and write anything")


_HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("rm", "rmdir", "unlink"), _writer()),
    "shred": _writer("nsz", "--iterations --size --random-source"),
    "mkdir": _writer("m", "--mode"),
    "mkfifo": _writer("mZ", "--mode"),
    "mknod": _writer("mZ", "--mode"),
    "touch": _touch,
    "truncate": _writer("sr", "--size --reference", reads="-r --reference"),
    "chmod": _chmod,
    "chown": _writer("", "--reference --from", skip=1, reads="--reference"),
    "chgrp": _writer("", "--reference", skip=1, reads="--reference"),
    "chattr": _writer("vpR", skip=1),
    "setfacl": _writer("mMxX", "--modify --modify-file --remove --remove-file"),
    "sponge": _writer(),
    "cp": _copy(False),
    "mv": _copy(True),
    "install": _install,
    "ln": _ln,
    "tee": _tee,
    "dd": _dd,
    "sed": _sed,
    **dict.fromkeys(("awk", "gawk", "mawk", "nawk"), _awk),
    "find": _find,
    "xargs": _xargs,
    "test": _test,
    "[": _test,
    "cd": _cd,
    "pushd": _cd,
    "tar": _archive_tar,
    **dict.fromkeys(_COMPRESSORS, _compress),
    "zip": _zip,
    "unzip": _zip,
    "split": _split,
    "csplit": _split,
    "mktemp": _mktemp,
    "rsync": _rsync,
    "scp": _rsync,
    "git": _git,
    **dict.fromkeys(("docker", "podman", "nerdctl", "docker-compose"), _docker),
    "curl": _curl,
    "wget": _wget,
    **dict.fromkeys(
        names_of(
            "pip pip3 pipx uv poetry conda npm yarn pnpm bun gem cargo go apt apt-get dnf yum apk "
            "brew pacman zypper snap flatpak"
        ),
        _packages,
    ),
    **dict.fromkeys(SHELLS, _shell),
    "eval": _shell,
    "source": _everything("runs a file we cannot see: may read and write anything"),
    ".": _everything("runs a file we cannot see: may read and write anything"),
    "trap": _trap,
    **dict.fromkeys(("kill", "pkill", "killall", "skill"), _resource("processes")),
    **dict.fromkeys(
        ("ps", "pgrep", "pidof", "pstree", "top", "htop", "lsof", "jobs"),
        _resource("processes", write=False),
    ),
    **dict.fromkeys(
        ("systemctl", "service"),
        _resource(
            "services",
            reads_if="status is-active is-enabled is-failed "
            "list-units list-unit-files show cat --status-all",
        ),
    ),
    "journalctl": _resource("services", write=False),
    **dict.fromkeys(
        ("ping", "dig", "nslookup", "host", "traceroute"), _resource("network", write=False)
    ),
    **dict.fromkeys(("ssh", "nc", "netcat", "telnet", "ftp", "sftp"), _resource("network")),
    **dict.fromkeys(
        (
            "free",
            "uptime",
            "vmstat",
            "iostat",
            "dmesg",
            "lscpu",
            "lsblk",
            "df",
            "hostnamectl",
            "timedatectl",
        ),
        _resource("system", write=False),
    ),
    "sysctl": _system(writes_if="-w --write -p --load --system"),
    **dict.fromkeys(
        ("iptables", "ip6tables", "nft", "ufw"),
        _system(reads_if="-L -S --list --list-rules status list"),
    ),
    "ip": _system(writes_if="add del delete set flush change replace append exec up down"),
    "ifconfig": _system(writes_if="up down netmask inet inet6 add del mtu hw broadcast"),
    "date": _system(writes_if="-s --set"),
    "hostname": _system(reads_if="-f -s -i -I -d"),
    "crontab": _system(reads_if="-l"),
    **dict.fromkeys(
        (
            "useradd",
            "userdel",
            "usermod",
            "groupadd",
            "groupdel",
            "passwd",
            "chpasswd",
            "adduser",
            "deluser",
        ),
        _system(paths="/etc"),
    ),
    **dict.fromkeys(
        (
            "mount",
            "umount",
            "swapon",
            "swapoff",
            "reboot",
            "shutdown",
            "poweroff",
            "halt",
            "chroot",
            "modprobe",
            "insmod",
            "rmmod",
            "mkfs",
            "fdisk",
            "parted",
            "wipefs",
            "losetup",
        ),
        _everything("changes the machine: may affect anything"),
    ),
}
