"""Flag rules for file and text tools: which options turn a reader into a writer.

No I/O here. Each check takes one ``Command`` and returns a ``Finding``
(class, reason) that replaces the program's default verdict, or ``None`` to
keep the default. Checks are conservative: what they cannot read they judge
not safe.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sandbox.judge.syntax import Command, Word
from sandbox.model import CommandClass

SAFE = CommandClass.SAFE
COND = CommandClass.CONDITIONAL
SEQ = CommandClass.SEQUENTIAL
DANGER = CommandClass.DANGEROUS

Finding = tuple[CommandClass, str]
Check = Callable[[Command], Finding | None]

NO_VALUES: frozenset[str] = frozenset()


def words(text: str) -> frozenset[str]:
    """A set of names written as one space-separated string (reads like a table)."""
    return frozenset(text.split())


@dataclass(frozen=True, slots=True)
class Opts:
    """A command's options, split the way most GNU tools read them."""

    short: frozenset[str]  # letters of -abc clusters
    long: frozenset[str]  # --name, without =value
    values: dict[str, str | None]  # option -> its value (last one wins); None when dynamic
    positionals: tuple[Word, ...]


def opts(cmd: Command, takes_value: frozenset[str] = NO_VALUES) -> Opts:
    """Split arguments; ``takes_value`` names short letters and --long options with a value."""
    short: set[str] = set()
    long: set[str] = set()
    values: dict[str, str | None] = {}
    positionals: list[Word] = []
    args = cmd.args
    i = 0
    while i < len(args):
        w = args[i]
        v = w.value
        i += 1
        if v is None or v == "-" or not v.startswith("-"):
            positionals.append(w)
            continue
        if v == "--":
            positionals.extend(args[i:])
            break
        if v.startswith("--"):
            name, eq, val = v.partition("=")
            long.add(name)
            if eq:
                values[name] = val
            elif name in takes_value and i < len(args):
                values[name] = args[i].value
                i += 1
            continue
        for pos, letter in enumerate(v[1:], start=1):
            short.add(letter)
            if letter in takes_value:
                rest = v[pos + 1 :]
                if rest:
                    values[letter] = rest
                elif i < len(args):
                    values[letter] = args[i].value
                    i += 1
                break
    return Opts(frozenset(short), frozenset(long), values, tuple(positionals))


# --- paths -----------------------------------------------------------------------------

HARMLESS_FILES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/stdin"})
_SCRATCH = ("/tmp/", "/var/tmp/", "/dev/shm/", "/workspace/")
_HOME_VARS = ("~", "$HOME", "${HOME", '"$HOME', '"${HOME', "$XDG_", "${XDG_")


def outside(word: Word) -> bool:
    """True when a path clearly lies outside the workspace (system dirs, home, `..`)."""
    v = word.value
    if v is None:
        return word.text.lstrip("\"'").startswith(("/", *_HOME_VARS))
    if v.startswith("~"):
        return True
    if v.startswith("/"):
        if v in HARMLESS_FILES:
            return False
        norm = posixpath.normpath(v)
        return not (norm + "/").startswith(_SCRATCH) or norm + "/" in _SCRATCH
    norm = posixpath.normpath(v)
    return norm == ".." or norm.startswith("../")


def name(word: Word) -> str:
    return word.value if word.value is not None else word.text


def write_finding(tool: str, words: Iterable[Word], verb: str = "writes") -> Finding | None:
    """The verdict for a tool that writes ``words``: outside the workspace is dangerous."""
    targets = [w for w in words if w.value not in HARMLESS_FILES]
    if not targets:
        return None
    for w in targets:
        if outside(w):
            return DANGER, f"{tool} {verb} {name(w)}, outside the workspace"
    shown = ", ".join(name(w) for w in targets[:3])
    return SEQ, f"{tool} {verb} {shown}"


def writes_positionals(verb: str, last_only: bool = False, takes: str = "") -> Check:
    """A check for tools whose positional arguments are files they change."""
    takes_value = frozenset(takes) | frozenset({"--target-directory", "--mode", "--suffix"})

    def check(cmd: Command) -> Finding | None:
        o = opts(cmd, takes_value)
        tool = cmd.program or "?"
        if tool == "scp" and any(_remote(w) for w in o.positionals[-1:]):
            return (
                DANGER,
                f"scp copies files to {name(o.positionals[-1])} (data leaves the machine)",
            )
        target = o.values.get("t") or o.values.get("--target-directory")
        words: tuple[Word, ...] = o.positionals
        if target is not None:
            words = (Word(text=target, value=target),)
        elif last_only and words:
            words = words[-1:]
        if not words:
            return SEQ, f"{tool} {verb} files"
        if any(w.value is None and not outside(w) for w in words):
            found = write_finding(tool, words, verb)
            if found and found[0] is DANGER:
                return found
            return SEQ, f"{tool} {verb} files named at run time"
        return write_finding(tool, words, verb) or (SEQ, f"{tool} {verb} files")

    return check


def _remote(word: Word) -> bool:
    """`host:path` or `user@host:path` (not `./a:b`, not a URL-less absolute path)."""
    v = word.value
    if v is None:
        return True
    head = v.split("/", 1)[0]
    return ":" in head and not v.startswith(("/", "."))


_RECURSIVE = frozenset({"r", "R"})


def rm(cmd: Command) -> Finding | None:
    o = opts(cmd)
    tool = cmd.program or "rm"
    if o.short & _RECURSIVE or "--recursive" in o.long:
        return DANGER, f"{tool} -r deletes directories recursively"
    if "--no-preserve-root" in o.long:
        return DANGER, f"{tool} --no-preserve-root may delete the whole system"
    return writes_positionals("deletes")(cmd)


def chmod(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset({"--reference"}))
    tool = cmd.program or "chmod"
    if "R" in o.short or "--recursive" in o.long:
        return DANGER, f"{tool} -R changes permissions of a whole tree"
    mode = o.positionals[0].value if o.positionals else None
    if tool == "chmod" and mode and (re.fullmatch(r"[2467]\d{3}", mode) or "s" in mode):
        return DANGER, "chmod sets a setuid/setgid bit"
    found = write_finding(tool, o.positionals[1:], "changes")
    return found or (SEQ, f"{tool} changes file permissions")


def sort(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("kotTS") | {"--output", "--key", "--field-separator"})
    out = o.values.get("o", o.values.get("--output", ""))
    if "o" in o.values or "--output" in o.values:
        w = Word(text=out or "$?", value=out)
        tool = f"{cmd.program} -o"
        return write_finding(tool, [w]) or (SEQ, f"{tool} writes a file")
    if "--compress-program" in o.long or "--random-source" in o.long:
        return COND, f"{cmd.program} reads or runs an extra source"
    return None


def uniq(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("fsw") | {"--skip-fields", "--skip-chars", "--check-chars"})
    if len(o.positionals) >= 2:
        return write_finding("uniq", o.positionals[1:2])
    return None


def tee(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset({"--output-error"}))
    if not o.positionals:
        return SAFE, "tee without files only copies its input to its output"
    return write_finding("tee", o.positionals) or (SAFE, "tee writes only to /dev/null")


def date(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("dfrI") | {"--date", "--file", "--reference"})
    if "s" in o.short or "--set" in o.long:
        return DANGER, "date -s sets the system clock"
    if any(w.value is None or not w.value.startswith("+") for w in o.positionals):
        return DANGER, "date with a bare argument sets the system clock"
    return None


def hostname(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("F") | {"--file"})
    if o.positionals or "F" in o.short or "--file" in o.long:
        return DANGER, "hostname with an argument changes the machine's name"
    return None


def printf(cmd: Command) -> Finding | None:
    if cmd.args and cmd.args[0].value == "-v":
        return SEQ, "printf -v sets a shell variable (changes shell session state)"
    return None


def second_positional_written(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("cglos") | {"--cols", "--len", "--seek", "--groupsize"})
    if len(o.positionals) >= 2:
        return write_finding(cmd.program or "?", o.positionals[1:2])
    return None


_TAR_WRITE_MODES = frozenset("cxruA")
_TAR_VALUES = frozenset("fCTXbIKLNV") | {
    "--file",
    "--directory",
    "--files-from",
    "--exclude-from",
    "--use-compress-program",
    "--to-command",
    "--checkpoint-action",
}


_TAR_LIST_LONG = frozenset(
    {"--list", "--file", "--verbose", "--gzip", "--bzip2", "--xz", "--zstd", "--auto-compress",
     "--directory", "--wildcards", "--no-wildcards", "--exclude", "--numeric-owner",
     "--full-time", "--utc", "--quoting-style", "--show-transformed-names", "--anchored"}
)  # fmt: skip


def tar(cmd: Command) -> Finding | None:
    args = cmd.args
    first = args[0].value if args else None
    o = opts(cmd, _TAR_VALUES)
    modes = set(o.short)
    if first and not first.startswith("-"):
        modes |= set(first)  # old style: `tar xzf a.tgz`
    longs = o.long | o.values.keys()
    if "--checkpoint-action" in longs or "--to-command" in longs:
        return DANGER, "tar runs commands (--checkpoint-action / --to-command)"
    if {"I", "--use-compress-program"} & o.values.keys():
        return COND, "tar runs a compression program"
    extract = "x" in modes or {"--extract", "--get"} & longs
    if modes & _TAR_WRITE_MODES or extract or {"--create", "--append", "--update"} & longs:
        where = o.values.get("C") or o.values.get("--directory")
        if extract and where is not None and outside(Word(text=where, value=where)):
            return DANGER, f"tar extracts into {where}, outside the workspace"
        verb = "extracts files" if extract else "writes an archive"
        return SEQ, f"tar {verb}"
    if "t" in modes or "--list" in longs:
        unknown = (modes - set("tvfzjJaCOw")) | {k for k in longs - _TAR_LIST_LONG if k[:2] == "--"}
        if unknown:
            return COND, f"tar option {sorted(unknown)[0]!r} is not on its allowlist for -t"
        return SAFE, "tar -t only lists an archive"
    return COND, "tar mode not understood"


def unzip(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("dxP"))
    if o.short & set("lvtZpcz"):
        return SAFE, "unzip -l/-t/-p only reads the archive"
    where = o.values.get("d")
    if where is not None and outside(Word(text=where, value=where)):
        return DANGER, f"unzip extracts into {where}, outside the workspace"
    return SEQ, "unzip extracts files"


def compressor(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("S") | {"--suffix"})
    if o.short & set("clt") or o.long & {"--stdout", "--to-stdout", "--list", "--test"}:
        return SAFE, f"{cmd.program} -c/-l/-t only reads"
    if not o.positionals:
        return SAFE, f"{cmd.program} filters its input to its output"
    return write_finding(cmd.program or "?", o.positionals, "replaces") or (SEQ, "compresses")


def only_flags(allowed: str, reason: str, otherwise: Finding) -> Check:
    """Safe when every argument is one of ``allowed`` (space separated); else ``otherwise``."""
    ok = frozenset(allowed.split())

    def check(cmd: Command) -> Finding | None:
        if all(w.value in ok for w in cmd.args):
            return SAFE, reason
        return otherwise

    return check


def kill(cmd: Command) -> Finding | None:
    listing = cmd.args and cmd.args[0].value in ("-l", "-L", "--list", "--table")
    if listing and len(cmd.args) <= 2:
        return SAFE, f"{cmd.program} -l only lists signal names"
    return None


def sysctl(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("pf") | {"--load"})
    if o.short & set("wpf") or o.long & {"--write", "--load", "--system"}:
        return DANGER, "sysctl changes kernel parameters"
    if not o.short <= set("anNbeqrAXdo") or not o.long <= {"--all", "--values", "--names"}:
        return COND, "sysctl option not on its allowlist of read-only flags"
    if any(w.value is None or "=" in w.value for w in o.positionals):
        return DANGER, "sysctl changes kernel parameters"
    return SAFE, "sysctl only reads kernel parameters"


def iconv(cmd: Command) -> Finding | None:
    o = opts(cmd, frozenset("ftoc") | {"--output", "--from-code", "--to-code"})
    out = o.values.get("o", o.values.get("--output"))
    if "o" in o.values or "--output" in o.values:
        return write_finding("iconv", [Word(text=out or "?", value=out)]) or (SEQ, "iconv -o")
    return None


def yq(cmd: Command) -> Finding | None:
    o = opts(cmd)
    if "i" in o.short or "--inplace" in o.long or "--in-place" in o.long:
        return SEQ, "yq -i edits files in place"
    return None


_IP_OBJECTS = words("a addr address r route l link n neigh neighbour rule maddr -4 -6")
_IP_READ = frozenset({"show", "list", "ls", "get", "lst"})


def ip(cmd: Command) -> Finding | None:
    words = [w.value for w in cmd.args if not (w.value or "").startswith("-")]
    if words and words[0] in _IP_OBJECTS and (len(words) == 1 or words[1] in _IP_READ):
        return SAFE, "ip only shows network state"
    return None


def ifconfig(cmd: Command) -> Finding | None:
    if len(cmd.args) <= 1 and all((w.value or "").lstrip("-").isalnum() for w in cmd.args):
        return SAFE, "ifconfig only shows interfaces"
    return None


def journalctl(cmd: Command) -> Finding | None:
    if any((w.value or "").startswith(("--vacuum", "--rotate", "--flush")) for w in cmd.args):
        return DANGER, "journalctl --vacuum/--rotate deletes logs"
    return None


def dmesg(cmd: Command) -> Finding | None:
    o = opts(cmd)
    if o.short & set("cCDEn") or o.long & {"--clear", "--read-clear"}:
        return DANGER, "dmesg -c clears the kernel log"
    return None
