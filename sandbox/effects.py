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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from sandbox.parse import SHELLS, Command, Statement, Word

WORKSPACE = "."
EVERYTHING = "/"
LOCAL_RESOURCES = frozenset({"session"})  # per-statement state: never a conflict


@dataclass(frozen=True, slots=True)
class Effects:
    reads: frozenset[str]
    writes: frozenset[str]
    resources: frozenset[str]  # every resource touched (read or changed)
    exact: bool  # False when anything was widened
    notes: tuple[str, ...] = ()  # why it was widened, for people
    resource_writes: frozenset[str] = frozenset()  # the resources it changes

    @property
    def resource_reads(self) -> frozenset[str]:
        return self.resources - self.resource_writes


# --- paths ----------------------------------------------------------------------------


def normalise(path: str) -> str:
    """``./a//b/`` -> ``a/b``; ``~/x`` stays home-relative; escapes above ``..`` -> ``/``."""
    if not path:
        return WORKSPACE
    if path.startswith("/"):
        norm = posixpath.normpath(path)
        return "/" + norm.lstrip("/") if norm.startswith("//") else norm
    if path == "~" or path.startswith("~/"):
        rest = normalise(path[2:])
        if rest == WORKSPACE:
            return "~"
        return EVERYTHING if rest.startswith(("/", "..")) else "~/" + rest
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        parts = norm.split("/")
        # a sibling of the workspace keeps its name; anything higher contains us
        return norm if len(parts) > 1 and parts[1] != ".." else EVERYTHING
    return norm


def key(path: str) -> tuple[str, ...]:
    """Components of a normalised path; ``/`` is the empty key (the root of everything)."""
    if path == EVERYTHING:
        return ()
    if path.startswith("/"):
        return tuple(path[1:].split("/"))
    if path == WORKSPACE:
        return (".",)
    if path == "~" or path.startswith(("~/", "../")):
        return tuple(path.split("/"))
    return (".", *path.split("/"))


def overlaps(a: str, b: str) -> bool:
    """Whether two paths can name the same file: one is a prefix of the other by components.

    ``.`` overlaps every workspace path, ``/`` overlaps everything; absolute, home,
    sibling and workspace paths never overlap each other.
    """
    ka, kb = key(normalise(a)), key(normalise(b))
    n = min(len(ka), len(kb))
    return ka[:n] == kb[:n]


def _minimal(paths: Iterable[str]) -> frozenset[str]:
    """Drop paths already covered by another path of the set."""
    keys = sorted({key(p) for p in paths}, key=len)
    kept: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    for k in keys:
        if not any(k[:i] in seen for i in range(len(k) + 1)):
            kept.append(k)
            seen.add(k)
    return frozenset(_unkey(k) for k in kept)


def _unkey(k: tuple[str, ...]) -> str:
    if not k:
        return EVERYTHING
    if k[0] == ".":
        return "/".join(k[1:]) or WORKSPACE
    if k[0] in ("~", ".."):
        return "/".join(k)
    return "/" + "/".join(k)


_DYNAMIC_START = re.compile(r"\$(?:(HOME|PWD|TMPDIR)\b|\{(HOME|PWD|TMPDIR)\})")
_BRACE = re.compile(r"\{[^{}]*\}")  # a brace expansion when it holds `,` or `..`
_SUBST = {"HOME": "~", "PWD": ".", "TMPDIR": "/tmp"}


def _has_brace(text: str) -> bool:
    return any("," in m.group() or ".." in m.group() for m in _BRACE.finditer(text))


@lru_cache(maxsize=8192)
def word_path(word: Word) -> tuple[str, str | None]:
    """(normalised path, widening note or None) of one word."""
    text, value = word.text, word.value
    if value is not None and not word.glob and not (not word.quoted and _has_brace(text)):
        if value.startswith("~") and not text.startswith("~"):
            return WORKSPACE, f"{text} names a file called ~, widened to ."
        if value.startswith("~") and not value.startswith(("~/",)) and value != "~":
            return EVERYTHING, f"{text} is another user's home, widened to /"
        return normalise(value), None
    prefix, complete = _literal_prefix(text)
    if complete and (value is not None or _DYNAMIC_START.match(text.lstrip('"'))):
        return normalise(prefix), None
    if prefix.startswith("~") and not prefix.startswith("~/"):
        return EVERYTHING, f"{text} widened to /"
    directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
    if prefix.startswith("/") and not directory:
        directory = "/"
    path = normalise(directory)
    kind = "glob" if value is not None else "variable"
    return path, f"{kind} {text} widened to {path}"


def _literal_prefix(text: str) -> tuple[str, bool]:
    """The literal text before the first expansion; True if there was no expansion at all."""
    out: list[str] = []
    i, n = 0, len(text)
    single = double = False
    while i < n:
        c = text[i]
        if single:
            if c == "'":
                single = False
            else:
                out.append(c)
        elif c == "'" and not double:
            single = True
        elif c == '"':
            double = not double
        elif c == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 1
        elif c == "$" and not out and (m := _DYNAMIC_START.match(text, i)):
            out.append(_SUBST[m.group(1) or m.group(2)])
            i = m.end()
            continue
        elif c in "$`" or (not double and c in "*?[{("):
            return "".join(out), False
        else:
            out.append(c)
        i += 1
    return "".join(out), True


# --- option parsing -------------------------------------------------------------------

Opt = tuple[str, Word | None]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


def split_args(
    args: Sequence[Word], short: str = "", long: Iterable[str] = ()
) -> tuple[list[Opt], list[Word]]:
    """GNU-style options (permuted) and operands.

    ``short`` letters and ``long`` names take a value.
    """
    long_values = frozenset(long)
    opts: list[Opt] = []
    operands: list[Word] = []
    i, n = 0, len(args)
    while i < n:
        w = args[i]
        v = w.value
        if v is None:
            opt = _dynamic_option(w, short)
            if opt is None:
                operands.append(w)
            else:
                opts.append(opt)
        elif v == "-" or not v.startswith("-"):
            operands.append(w)
        elif v == "--":
            operands.extend(args[i + 1 :])
            break
        elif v.startswith("--"):
            name, eq, val = v.partition("=")
            if eq:
                opts.append((name, Word(val, val, glob=w.glob)))
            elif name in long_values and i + 1 < n:
                i += 1
                opts.append((name, args[i]))
            else:
                opts.append((name, None))
        else:
            for j in range(1, len(v)):
                c = v[j]
                if c in short:
                    rest = v[j + 1 :]
                    if rest:
                        opts.append(("-" + c, Word(rest, rest, glob=w.glob)))
                    elif i + 1 < n:
                        i += 1
                        opts.append(("-" + c, args[i]))
                    else:
                        opts.append(("-" + c, None))
                    break
                opts.append(("-" + c, None))
        i += 1
    return opts, operands


def _dynamic_option(w: Word, short: str) -> Opt | None:
    """``--output=$f`` / ``-o$f``: an option whose value depends on an expansion."""
    text = w.text
    if text.startswith("--") and "=" in text:
        name, _, rest = text.partition("=")
        if re.fullmatch(r"--[\w-]+", name):
            return name, Word(rest, None)
    if re.match(r"-\w", text) and text[1] in short:
        return text[:2], Word(text[2:], None)
    return None


def _has(opts: list[Opt], *names: str) -> bool:
    return any(name in names for name, _ in opts)


def _values(opts: list[Opt], *names: str) -> list[Word]:
    return [v for name, v in opts if name in names and v is not None]


# --- accumulation ---------------------------------------------------------------------


@dataclass
class _Acc:
    reads: set[str] = field(default_factory=set)
    writes: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    resource_writes: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    exact: bool = True
    cwd: str | None = None  # set once `cd` moved the statement somewhere
    find_paths: list[str] = field(default_factory=list)
    via: tuple[str, ...] = ()

    def note(self, text: str) -> None:
        self.exact = False
        if text not in self.notes:
            self.notes.append(text)

    def paths(self, word: Word) -> list[str]:
        if word.text.startswith(("<(", ">(")):
            return []  # process substitution: its commands are counted on their own
        if self.via and "{}" in word.text and self.via[-1].startswith(("find -", "xargs")):
            if self.via[-1].startswith("find -") and self.find_paths:
                return list(self.find_paths)
            self.note(f"{word.text} is filled in at run time, widened to .")
            return [WORKSPACE]
        path, note = word_path(word)
        if note:
            self.note(note)
        if path.startswith(("/", "~")):
            return [path]
        if self.via and self.via[-1] in ("find -execdir", "find -okdir") and self.find_paths:
            return list(self.find_paths)
        if self.cwd is not None:
            widened = EVERYTHING if path.startswith("..") else self.cwd
            self.note(f"{path} is relative to a changed directory, widened to {widened}")
            return [widened]
        return [path]

    def read(self, *words: Word) -> None:
        for w in words:
            self.reads.update(self.paths(w))

    def write(self, *words: Word) -> None:
        for w in words:
            self.writes.update(self.paths(w))

    def write_renamed(self, word: Word, suffix: str | None, strip: bool = False) -> None:
        """Write the file named ``word`` + ``suffix`` (or with ``suffix`` stripped)."""
        path, note = word_path(word)
        before = len(self.notes)
        paths = self.paths(word)
        if note or len(self.notes) > before or paths != [path] or path in (".", "/", "~"):
            self.writes.update(paths)  # widened already: the directory covers the new name
        elif not suffix or "/" in suffix or "*" in suffix:
            self.writes.add(normalise(posixpath.dirname(path) or WORKSPACE))
        else:
            self.writes.add(normalise(path[: -len(suffix)] if strip else path + suffix))

    def use(self, *names: str, write: bool = False) -> None:
        self.resources.update(names)
        if write:
            self.resource_writes.update(names)

    def everything(self, why: str) -> None:
        self.reads.add(EVERYTHING)
        self.writes.add(EVERYTHING)
        self.note(why)

    def workspace(self, why: str) -> None:
        self.reads.add(WORKSPACE)
        self.writes.add(WORKSPACE)
        self.note(why)


Handler = Callable[[Command, _Acc], None]


def effects(stmt: Statement) -> Effects:
    acc = _Acc()
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
        reads=_minimal(acc.reads),
        writes=_minimal(acc.writes),
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


def _command(cmd: Command, acc: _Acc) -> None:
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


# --- readers and writers --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spec:
    """How a file-reading program takes its arguments."""

    short: str = ""  # short options that take a value
    long: frozenset[str] = frozenset()  # long options that take a value
    skip: int = 0  # leading operands that are not files (a pattern, a script)
    default: str | None = None  # what it reads with no file operands
    writes: frozenset[str] = frozenset()  # options whose value is a file written
    reads: frozenset[str] = frozenset()  # options whose value is a file read


def _spec(short: str = "", long: str = "", **kw: object) -> Spec:
    return Spec(short, frozenset(long.split()), **kw)  # type: ignore[arg-type]


READERS: dict[str, Spec] = {
    **dict.fromkeys(
        _names(
            "cat tac nl od hexdump md5sum sha1sum sha224sum sha256sum sha384sum sha512sum b2sum "
            "cksum sum file strings cmp comm paste rev fold fmt expand unexpand base64 base32 "
            "less more readlink realpath zcat bzcat xzcat zless gzip-cat wc pr tsort"
        ),
        _spec("", "--files0-from", reads=frozenset(["--files0-from"])),
    ),
    "head": _spec("nc", "--lines --bytes"),
    "tail": _spec("ncs", "--lines --bytes --sleep-interval --pid"),
    "cut": _spec("bcfd", "--bytes --characters --fields --delimiter --output-delimiter"),
    "join": _spec("aejot12", ""),
    "column": _spec("csoNRHEOWl", ""),
    "diff": _spec(
        "UCLIxXFS",
        "--label --exclude --exclude-from --ignore-matching-lines",
        reads=frozenset(["-X", "--exclude-from"]),
    ),
    "ls": _spec(
        "IwT", "--hide --ignore --format --sort --time-style --width --tabsize", default="."
    ),
    "du": _spec("dBtX", "--max-depth --block-size --threshold --exclude-from", default="."),
    "tree": _spec("LPIoHT", "", default=".", writes=frozenset(["-o"])),
    "stat": _spec("c", "--format --printf"),
    "grep": _spec(
        "efmABCdD",
        "--regexp --file --max-count --after-context --before-context "
        "--context --label --binary-files --devices --directories",
        skip=1,
        reads=frozenset(["-f", "--file"]),
    ),
    "rg": _spec(
        "efgtTmABCjMErd",
        "--regexp --file --glob --type --type-not --max-count "
        "--after-context --before-context --context --threads --replace --max-depth",
        skip=1,
        default=".",
        reads=frozenset(["-f", "--file"]),
    ),
    "sort": _spec(
        "kotST",
        "--key --output --field-separator --buffer-size --temporary-directory "
        "--files0-from --parallel --random-source --batch-size --compress-program",
        writes=frozenset(["-o", "--output"]),
        reads=frozenset(["--files0-from", "--random-source"]),
    ),
    "shuf": _spec(
        "noi",
        "--head-count --output --random-source --input-range",
        writes=frozenset(["-o", "--output"]),
    ),
    "jq": _spec(
        "fL",
        "--arg --argjson --slurpfile --rawfile --indent --from-file",
        skip=1,
        reads=frozenset(["-f", "--from-file"]),
    ),
    "iconv": _spec("fto", "--from-code --to-code --output", writes=frozenset(["-o", "--output"])),
    "bc": _spec(),
    "xxd": _spec("lscgon", ""),
    "uniq": _spec("fsw", "--skip-fields --skip-chars --check-chars"),
}
for _name in ("egrep", "fgrep", "zgrep"):
    READERS[_name] = READERS["grep"]
for _name in ("ag", "ack"):
    READERS[_name] = READERS["rg"]

_ALL_VALUE_LONGS = ("--arg", "--argjson", "--slurpfile", "--rawfile")  # jq: two values


def _read_operands(cmd: Command, acc: _Acc, spec: Spec) -> None:
    program = cmd.program
    args = list(cmd.args)
    if program == "jq":  # --arg NAME VALUE takes two words
        args = _drop_jq_pairs(args, acc)
    opts, operands = split_args(args, spec.short, spec.long)
    for name, value in opts:
        if value is not None and name in spec.writes and value.value != "-":
            acc.write(value)
        elif value is not None and name in spec.reads:
            acc.read(value)
    skip = spec.skip
    if skip and _has(opts, "-e", "--regexp", "-f", "--file", "--from-file"):
        skip = 0
    files = [w for w in operands[skip:] if w.value != "-"]
    if program in ("xxd", "uniq") and len(files) > 1:
        acc.write(files[1])  # `uniq IN OUT`, `xxd IN OUT`
        files = files[:1]
    if (
        program in ("grep", "egrep", "fgrep")
        and not files
        and _has(opts, "-r", "-R", "--recursive")
    ):
        acc.reads.add(_rel(acc, WORKSPACE))
    elif not files and spec.default and not (cmd.piped_stdin and program in ("rg", "ag", "ack")):
        acc.reads.add(_rel(acc, spec.default))
    if program in ("sha1sum", "sha256sum", "md5sum", "sha512sum", "b2sum") and _has(
        opts, "-c", "--check"
    ):
        acc.reads.add(_rel(acc, WORKSPACE))
    acc.read(*files)


def _drop_jq_pairs(args: list[Word], acc: _Acc) -> list[Word]:
    out: list[Word] = []
    i = 0
    while i < len(args):
        v = args[i].value
        if v in _ALL_VALUE_LONGS and i + 2 < len(args):
            if v in ("--slurpfile", "--rawfile"):
                acc.read(args[i + 2])
            i += 3
            continue
        out.append(args[i])
        i += 1
    return out


def _rel(acc: _Acc, path: str) -> str:
    return acc.cwd if acc.cwd is not None else path


def _writer(short: str = "", long: str = "", skip: int = 0, reads: str = "") -> Handler:
    """Programs that change each file operand (rm, mkdir, touch, chmod MODE ...)."""
    longs = frozenset(long.split())
    read_opts = frozenset(reads.split())

    def handle(cmd: Command, acc: _Acc) -> None:
        opts, operands = split_args(cmd.args, short, longs)
        for name, value in opts:
            if value is not None and name in read_opts:
                acc.read(value)
        n = 0 if _has(opts, "--reference") else skip
        acc.write(*operands[n:])

    return handle


def _chmod(cmd: Command, acc: _Acc) -> None:
    refs: list[Word] = []
    operands: list[Word] = []
    args = list(cmd.args)
    while args:
        w = args.pop(0)
        v = w.value or ""
        if v == "--reference" and args:
            refs.append(args.pop(0))
        elif v.startswith("--reference="):
            refs.append(Word(w.text.split("=", 1)[1], v.split("=", 1)[1]))
        elif v.startswith("-") and not re.fullmatch(r"-[rwxXst]+", v):
            continue  # -R, -v, --recursive ...; `chmod -w f` is a mode
        else:
            operands.append(w)
    acc.read(*refs)
    acc.write(*operands[0 if refs else 1 :])


def _copy(move: bool) -> Handler:
    def handle(cmd: Command, acc: _Acc) -> None:
        opts, operands = split_args(cmd.args, "tS", ("--target-directory", "--suffix"))
        targets = _values(opts, "-t", "--target-directory")
        if targets:
            sources, dest = operands, targets[0]
        elif len(operands) >= 2:
            sources, dest = operands[:-1], operands[-1]
        else:
            sources, dest = operands, None
        acc.read(*sources)
        if move:
            acc.write(*sources)
        if dest is not None:
            acc.write(dest)
            if _has(opts, "-b", "--backup", "-S", "--suffix"):
                suffixes = _values(opts, "-S", "--suffix")
                acc.write_renamed(dest, suffixes[0].value if suffixes else "~")

    return handle


def _ln(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(cmd.args, "St", ("--target-directory", "--suffix"))
    targets = _values(opts, "-t", "--target-directory")
    if targets:
        acc.read(*operands)
        acc.write(targets[0])
    elif len(operands) == 1 and operands[0].value is not None:
        acc.read(operands[0])
        name = operands[0].value.rstrip("/").rsplit("/", 1)[-1]
        acc.write(Word(name, name))
    elif operands:
        acc.read(*operands[:-1])
        acc.write(operands[-1])


def _sed(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(cmd.args, "efl", ("--expression", "--file", "--line-length"))
    scripts = _values(opts, "-e", "--expression")
    acc.read(*_values(opts, "-f", "--file"))
    if not scripts and not _has(opts, "-f", "--file") and operands:
        scripts, operands = [operands[0]], operands[1:]
    for s in scripts:
        if s.value is None or _SED_RUNS.search(s.value):
            acc.everything("sed script writes files or runs commands (w/e): may do anything")
    files = [w for w in operands if w.value != "-"]
    acc.read(*files)
    in_place = [(n, v) for n, v in opts if n in ("-i", "--in-place")]
    if in_place:
        acc.write(*files)
    for raw in cmd.args:  # -i.bak / --in-place=.bak also writes the backup
        v = raw.value or ""
        if v.startswith("--in-place="):
            suffix: str | None = v.split("=", 1)[1]
        elif v.startswith("-i") and not v.startswith("--"):
            suffix = v[2:]
        else:
            continue
        if suffix or raw.value is None:
            for f in files:
                acc.write_renamed(f, suffix)


_SED_RUNS = re.compile(
    r"(?:^|[;{}\n])\s*(?:(?:[0-9$,]+|/[^/]*/)\s*)?[wWe](?:\s|$)|/[gpIiMm0-9]*[we](?:\s|$|;|})"
)


def _awk(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(
        cmd.args,
        "fvFilEe",
        ("--file", "--assign", "--field-separator", "--include", "--load", "--exec", "--source"),
    )
    programs = _values(opts, "-e", "--source")
    acc.read(*_values(opts, "-f", "--file", "-E", "--exec", "-i", "--include"))
    if not programs and not _has(opts, "-f", "--file", "-E", "--exec") and operands:
        programs, operands = [operands[0]], operands[1:]
    for p in programs:
        if p.value is None or _AWK_RUNS.search(p.value) or awk_prints_into(p.value):
            acc.everything("awk program writes files or runs commands: may do anything")
    files = [w for w in operands if w.value != "-" and "=" not in (w.value or "")]
    acc.read(*files)
    if any(v is not None and v.value == "inplace" for v in _values(opts, "-i", "--include")):
        acc.write(*files)


_AWK_RUNS = re.compile(r"\bsystem\s*\(|\|\s*(?:getline|\")|\bclose\b|\bfflush\b")
_AWK_PRINT = re.compile(r"\bprintf?\b")
_AWK_STATEMENT_END = re.compile(r"[;{}]")


def awk_prints_into(program: str) -> bool:
    """`print ... > file` in some statement: linear (one pass per statement)."""
    return any(
        (m := _AWK_PRINT.search(part)) is not None and ">" in part[m.end() :]
        for part in _AWK_STATEMENT_END.split(program)
    )


def _tee(cmd: Command, acc: _Acc) -> None:
    _, operands = split_args(cmd.args, "", ("--output-error",))
    acc.write(*operands)


def _dd(cmd: Command, acc: _Acc) -> None:
    for w in cmd.args:
        v = w.value or ""
        for op, act in (("if=", acc.read), ("of=", acc.write)):
            if w.text.startswith(op):
                rest = w.text[len(op) :]
                act(Word(rest, v[len(op) :] if w.value is not None else None, glob=w.glob))


def _find(cmd: Command, acc: _Acc) -> None:
    args = list(cmd.args)
    while (args and args[0].value in ("-H", "-L", "-P")) or (
        args and (args[0].value or "").startswith(("-O", "-D"))
    ):
        args = args[2:] if args[0].value == "-D" else args[1:]
    roots: list[Word] = []
    while args and not ((args[0].value or "x")[0] in "-(!," and args[0].value != "-"):
        roots.append(args.pop(0))
    paths: list[str] = []
    for w in roots or [Word(".", ".")]:
        paths.extend(acc.paths(w))
    acc.find_paths = paths
    acc.reads.update(paths)
    values = [w.value for w in args]
    if "-delete" in values:
        acc.writes.update(paths)
    for i, v in enumerate(values[:-1]):
        if v in ("-fprint", "-fprint0", "-fls", "-fprintf"):
            acc.write(args[i + 1])
        elif v in ("-newer", "-anewer", "-cnewer", "-samefile") or (v or "").startswith("-newer"):
            acc.read(args[i + 1])


def _xargs(cmd: Command, acc: _Acc) -> None:
    opts, _ = split_args(cmd.args, "a", ("--arg-file",))
    acc.read(*_values(opts, "-a", "--arg-file"))


def _test(cmd: Command, acc: _Acc) -> None:
    args = [w for w in cmd.args if w.value != "]"]
    for i, w in enumerate(args):
        if w.value in _FILE_TESTS and i + 1 < len(args):
            acc.read(args[i + 1])
        elif w.value in ("-nt", "-ot", "-ef") and 0 < i < len(args) - 1:
            acc.read(args[i - 1], args[i + 1])


_FILE_TESTS = _names("-a -b -c -d -e -f -g -h -k -p -r -s -u -w -x -G -L -N -O -S")


def _cd(cmd: Command, acc: _Acc) -> None:
    acc.use("session", write=True)
    _, operands = split_args(cmd.args)
    acc.read(*operands[:1])


def _touch(cmd: Command, acc: _Acc) -> None:
    _writer("dtrA", "--date --reference", reads="-r --reference")(cmd, acc)


def _archive_tar(cmd: Command, acc: _Acc) -> None:
    args = list(cmd.args)
    if args and args[0].value and not args[0].value.startswith("-"):
        first = args[0]  # old style: `tar czf out.tgz ...`
        args[0] = Word("-" + first.text, "-" + first.value) if first.value else first
    opts, operands = split_args(
        args,
        "fCTXbHKLNVg",
        ("--file", "--directory", "--files-from", "--exclude-from", "--exclude"),
    )
    flags = {name for name, _ in opts}
    archives = _values(opts, "-f", "--file")
    dirs = _values(opts, "-C", "--directory")
    acc.read(*_values(opts, "-T", "--files-from", "-X", "--exclude-from"))
    if flags & {"-x", "--extract", "--get"}:
        acc.read(*archives)
        if dirs:
            acc.write(*dirs)
        else:
            acc.writes.add(_rel(acc, WORKSPACE))
            acc.note("tar extracts names we cannot see, widened to .")
    elif flags & {"-c", "--create", "-r", "--append", "-u", "--update"}:
        acc.write(*archives)
        if dirs:
            acc.read(*dirs)
            acc.note("tar -C changes the directory of the files, widened")
        acc.read(*operands)
    else:
        acc.read(*archives, *operands)


_COMPRESSORS = {
    "gzip": ".gz",
    "bzip2": ".bz2",
    "xz": ".xz",
    "zstd": ".zst",
    "lz4": ".lz4",
    "gunzip": ".gz",
    "bunzip2": ".bz2",
    "unxz": ".xz",
    "unzstd": ".zst",
}


def _compress(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(cmd.args, "S#TbpoM", ("--suffix",))
    files = [w for w in operands if w.value != "-"]
    acc.read(*files)
    if _has(opts, "-c", "--stdout", "-t", "--test", "-l", "--list"):
        return
    acc.write(*files)
    suffix = _COMPRESSORS.get(cmd.program or "", ".gz")
    for f in files:  # the other name: a.txt <-> a.txt.gz
        if f.value is not None and f.value.endswith(suffix):
            acc.write_renamed(f, suffix, strip=True)
        else:
            acc.write_renamed(f, suffix)


def _zip(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(cmd.args, "dxibPnt", ("--password",))
    if cmd.program == "unzip":
        acc.read(*operands[:1])
        if _has(opts, "-l", "-t", "-v", "-p", "-Z"):
            return
        dirs = _values(opts, "-d")
        if dirs:
            acc.write(*dirs)
        else:
            acc.writes.add(_rel(acc, WORKSPACE))
            acc.note("unzip extracts names we cannot see, widened to .")
        return
    acc.write(*operands[:1])
    acc.read(*operands[1:])


def _split(cmd: Command, acc: _Acc) -> None:
    _, operands = split_args(
        cmd.args, "abCdlnt", ("--bytes", "--lines", "--line-bytes", "--number", "--suffix-length")
    )
    acc.read(*operands[:1])
    prefix = operands[1] if len(operands) > 1 else Word("x", "x")
    acc.write(
        Word(prefix.text + "*", None if prefix.value is None else prefix.value + "*", glob=True)
    )


def _mktemp(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(cmd.args, "p", ("--tmpdir", "--suffix"))
    dirs = _values(opts, "-p", "--tmpdir")
    if dirs:
        acc.write(*dirs)
    elif operands and operands[0].value is not None and not _has(opts, "-t"):
        template = operands[0]
        acc.write(
            Word(template.text.replace("X", "*"), template.value.replace("X", "*"), glob=True)
            if template.value is not None
            else template
        )
    # a fresh unique name in /tmp: nobody else can name it


def _install(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(
        cmd.args, "mogStT", ("--mode", "--owner", "--group", "--suffix", "--target-directory")
    )
    if _has(opts, "-d", "--directory"):
        acc.write(*operands)
        return
    _copy(False)(cmd, acc)


def _rsync(cmd: Command, acc: _Acc) -> None:
    opts, operands = split_args(
        cmd.args, "eBfTcFiloPSJ", ("--exclude", "--include", "--rsh", "--filter", "--temp-dir")
    )
    if not operands:
        return
    *sources, dest = operands
    remote = [w for w in operands if _remote(w)]
    if remote:
        acc.use("network", write=_remote(dest))
    for w in sources:
        if not _remote(w):
            acc.read(w)
    if not _remote(dest):
        acc.write(dest)
    if cmd.program == "rsync" and _has(opts, "--remove-source-files"):
        acc.write(*[w for w in sources if not _remote(w)])


def _remote(w: Word) -> bool:
    text = w.value if w.value is not None else w.text
    head = text.split("/", 1)[0]
    return text.startswith("rsync://") or (":" in head and not text.startswith(("/", ".")))


# --- resources ------------------------------------------------------------------------


def _resource(name: str, *, write: bool = True, reads_if: str = "", writes_if: str = "") -> Handler:
    """A program that changes a resource; or reads it with no arguments / a ``reads_if`` word,
    or changes it only with a ``writes_if`` word."""
    readers, writers = frozenset(reads_if.split()), frozenset(writes_if.split())

    def handle(cmd: Command, acc: _Acc) -> None:
        values = {w.value for w in cmd.args}
        if not write:
            changes = False
        elif writers:
            changes = bool(values & writers) or None in values
        elif readers:
            first = next((w.value for w in cmd.args if not (w.value or "-").startswith("-")), "")
            changes = bool(cmd.args) and not (first in readers or values & readers)
        else:
            changes = True
        acc.use(name, write=changes)

    return handle


def _packages(cmd: Command, acc: _Acc) -> None:
    program = cmd.program or ""
    words = [w.value for w in cmd.args if w.value is not None and not w.value.startswith("-")]
    sub = words[0] if words else None
    if program in ("npm", "yarn", "pnpm", "bun") and sub in (
        None,
        "test",
        "run",
        "build",
        "start",
        "exec",
        "t",
        "run-script",
    ):
        acc.workspace(f"{program} {sub or ''} runs project scripts: may change the workspace")
        return
    if program in ("cargo", "go") and sub not in (
        "install",
        "get",
        "add",
        "fetch",
        "update",
        "mod",
    ):
        acc.workspace(f"{program} {sub or ''} may read and write anything in the workspace")
        return
    if sub in _PKG_READS or (program in ("pip", "pip3", "uv") and sub is None):
        acc.use("packages")
        if sub in ("search", "info", "view", "outdated"):
            acc.use("network")
        return
    acc.use("packages", write=True)
    acc.use("network")
    opts, _ = split_args(cmd.args, "rce", ("--requirement", "--constraint", "--editable"))
    acc.read(*_values(opts, "-r", "--requirement", "-c", "--constraint"))
    if program not in ("apt", "apt-get", "dnf", "yum", "apk", "brew", "pacman", "zypper", "snap"):
        acc.workspace(
            f"{program} {sub or ''} may install into the workspace (a venv, node_modules)"
        )


_PKG_READS = _names(
    "list show freeze check search info view outdated ls why policy "
    "help --version version config audit"
)


def _git(cmd: Command, acc: _Acc) -> None:
    args = list(cmd.args)
    while args and (args[0].value or "").startswith("-"):
        flag = args.pop(0).value
        if flag in ("-C", "-c", "--git-dir", "--work-tree", "--namespace") and args:
            args.pop(0)
    sub = args[0].value if args else None
    rest = {w.value for w in args[1:]}
    operands = [w for w in args[1:] if not (w.value or "").startswith("-")]
    first = operands[0].value if operands else None
    acc.use("git")
    if sub in ("fetch", "pull", "clone", "ls-remote", "submodule", "push") or first == "update":
        acc.use("network", write=sub == "push")
    if sub is None or sub in _GIT_READS or _git_lists(sub, first, rest, len(operands)):
        acc.reads.add(_rel(acc, WORKSPACE))
    elif sub in ("branch", "tag", "remote", "config", "fetch", "notes", "reflog", "push"):
        acc.use("git", write=True)  # refs and config only
        acc.reads.add(_rel(acc, WORKSPACE))
        if "--global" in rest:
            acc.writes.add("~/.gitconfig")
    elif sub == "clone":
        if len(operands) > 1:
            acc.write(operands[-1])
        else:
            acc.writes.add(_rel(acc, WORKSPACE))
            acc.note("git clone names the directory after the URL, widened to .")
    elif sub != "ls-remote":
        acc.use("git", write=True)
        acc.workspace(f"git {sub} may change any file of the work tree")


def _git_lists(sub: str, first: str | None, flags: set[str | None], operands: int) -> bool:
    """`git branch`, `git stash list`, `git config --get x`: the listing forms."""
    if sub in ("branch", "tag"):
        writes = _BRANCH_WRITES if sub == "branch" else _TAG_WRITES
        listing = {"-l", "--list", "--show-current", "--contains", "--merged", "--no-merged"}
        return not (flags & writes) and (operands == 0 or bool(flags & listing))
    if sub == "config":
        reads = {"-l", "--list", "--get", "--get-all", "--get-regexp", "--show-origin"}
        return bool(flags & reads) or operands == 1
    if sub in ("remote", "stash", "reflog", "worktree", "notes"):
        if sub == "stash" and first is None:
            return False  # `git stash` pushes
        return first in (None, "list", "show", "get-url", "-v")
    return False


_BRANCH_WRITES = _names("-d -D -m -M -c -C -f -u --delete --move --copy --force --set-upstream-to")
_TAG_WRITES = _names("-d -a -s -f -m -F -u --delete --annotate --sign --force --message --file")
_GIT_READS = _names(
    "status diff log show blame grep ls-files ls-tree rev-parse describe shortlog cat-file "
    "rev-list name-rev for-each-ref merge-base count-objects fsck check-ignore check-attr "
    "show-ref var help version whatchanged diff-tree diff-index diff-files cherry range-diff "
    "show-branch verify-commit verify-tag --version --help"
)


def _docker(cmd: Command, acc: _Acc) -> None:
    words = [w.value for w in cmd.args]
    plain = [v for v in words if v is not None and not v.startswith("-")]
    sub = plain[0] if plain else None
    if sub in _CONTAINER_GROUPS and len(plain) > 1:
        sub = plain[1]
    if sub is None or sub in _DOCKER_READS:
        acc.use("docker")
        return
    acc.use("docker", write=True)
    if sub in ("build", "run", "create", "pull", "push", "up"):
        acc.use("network", write=sub == "push")
    if sub == "build":
        acc.reads.add(_rel(acc, WORKSPACE))
    mounts = {"-v", "--volume", "--mount", "--volumes-from"} & set(words)
    if (
        sub in ("cp", "up", "exec", "start", "restart", "attach")
        or mounts
        or any((v or "").startswith(("--volume=", "--mount=")) for v in words)
    ):
        acc.workspace(f"docker {sub} may write into mounted or copied paths")


_CONTAINER_GROUPS = _names(
    "image container volume network compose system buildx context "
    "plugin secret service stack node swarm"
)
_DOCKER_READS = _names(
    "ps images inspect logs version info stats top events history port "
    "diff search ls list df config"
)


def _curl(cmd: Command, acc: _Acc) -> None:
    opts, _ = split_args(cmd.args, "odFHXuTeAbcrKmEwzyYCDxUQ", _CURL_LONG)
    data = _has(
        opts,
        "-d",
        "-F",
        "-T",
        "--data",
        "--data-raw",
        "--data-binary",
        "--form",
        "--data-urlencode",
        "--upload-file",
        "--json",
    )
    methods = {(v.value or "").upper() for v in _values(opts, "-X", "--request")}
    acc.use("network", write=data or bool(methods - {"GET", "HEAD", "OPTIONS"}))
    for name, value in opts:
        if value is None:
            continue
        if (
            name
            in (
                "-o",
                "--output",
                "-D",
                "--dump-header",
                "-c",
                "--cookie-jar",
                "--trace",
                "--trace-ascii",
                "--stderr",
                "--output-dir",
            )
            and value.value != "-"
        ):
            acc.write(value)
        elif name in ("-K", "--config", "-T", "--upload-file"):
            acc.read(value)
        elif name in ("-d", "--data", "--data-binary", "-F", "--form", "--data-urlencode"):
            text = value.value or ""
            at = text.find("@")
            raw = name in ("-d", "--data", "--data-binary") and at == 0
            if at >= 0 and (raw or "=@" in text):
                file = text[at + 1 :].split(";", 1)[0]
                acc.read(Word(file, file))
    if _has(opts, "-O", "--remote-name", "--remote-name-all") and not _has(opts, "--output-dir"):
        acc.writes.add(_rel(acc, WORKSPACE))
        acc.note("curl -O names the file after the URL, widened to .")


_CURL_LONG = _names(
    "--output --data --data-raw --data-binary --data-urlencode --form --header --request --user "
    "--upload-file --referer --user-agent --cookie --cookie-jar --config --max-time --cacert "
    "--cert --key --dump-header --proxy --json --url --connect-timeout --retry --output-dir "
    "--trace --trace-ascii --stderr --write-out --resolve"
)


def _wget(cmd: Command, acc: _Acc) -> None:
    opts, _ = split_args(
        cmd.args,
        "OoaPiUtTwARQlDe",
        (
            "--output-document",
            "--output-file",
            "--directory-prefix",
            "--input-file",
            "--post-data",
            "--post-file",
            "--method",
        ),
    )
    acc.use("network", write=_has(opts, "--post-data", "--post-file", "--method"))
    acc.read(*_values(opts, "-i", "--input-file", "--post-file"))
    acc.write(*[w for w in _values(opts, "-o", "--output-file", "-a") if w.value != "-"])
    outputs = _values(opts, "-O", "--output-document")
    dirs = _values(opts, "-P", "--directory-prefix")
    if outputs:
        acc.write(*[w for w in outputs if w.value != "-"])
    elif dirs:
        acc.write(*dirs)
    elif not _has(opts, "--spider"):
        acc.writes.add(_rel(acc, WORKSPACE))
        acc.note("wget names the file after the URL, widened to .")


def _python(cmd: Command, acc: _Acc) -> None:
    values = [w.value for w in cmd.args]
    if values and values[0] in ("--version", "-V", "-h", "--help"):
        return
    if "-m" in values and values.index("-m") + 1 < len(values):
        module = values[values.index("-m") + 1]
        rest = cmd.args[values.index("-m") + 2 :]
        if module in ("pip", "pip3"):
            _packages(Command((Word("pip", "pip"), *rest)), acc)
            return
        if module in ("venv", "virtualenv"):
            acc.write(*[w for w in rest if not (w.value or "").startswith("-")])
            return
        if module in BUILD_TOOLS or module in ("unittest", "build", "coverage", "compileall"):
            acc.workspace(f"python -m {module} may read and write anything in the workspace")
            return
    acc.everything(f"{cmd.program} runs code we cannot see: may read and write anything")


def _shell(cmd: Command, acc: _Acc) -> None:
    if cmd.nested_script:
        return  # its script was parsed: those commands are counted
    values = [w.value for w in cmd.args]
    if values and values[0] in ("-n", "--version", "--help"):
        acc.read(*cmd.args[1:2])
        return
    acc.everything(f"{cmd.program} runs a script we cannot see: may read and write anything")


def _trap(cmd: Command, acc: _Acc) -> None:
    acc.use("session", write=True)
    action = cmd.args[0] if cmd.args else None
    if action is not None and action.value not in ("", "-") and not (action.value or "x").isdigit():
        acc.everything("trap runs a command later: may read and write anything")


def _system(
    name: str = "system", *, reads_if: str = "", writes_if: str = "", paths: str = ""
) -> Handler:
    base = _resource(name, reads_if=reads_if, writes_if=writes_if)

    def handle(cmd: Command, acc: _Acc) -> None:
        base(cmd, acc)
        if name in acc.resource_writes:
            acc.writes.update(paths.split())
        if cmd.program == "sysctl" and any("=" in (w.value or "") for w in cmd.args):
            acc.use(name, write=True)

    return handle


def _everything(why: str) -> Handler:
    def handle(cmd: Command, acc: _Acc) -> None:
        acc.everything(f"{cmd.program} {why}")

    return handle


BUILD_TOOLS = _names(
    "make gmake cmake ninja meson bazel bazelisk gradle gradlew mvn ant sbt rustc gcc g++ cc c++ "
    "clang clang++ ld as javac tsc webpack vite esbuild rollup npx pytest py.test tox nox mypy "
    "ruff black isort flake8 pylint eslint prettier jest mocha vitest dotnet swift swiftc ghc "
    "stack cabal mix rake bundle composer phpunit sphinx-build latexmk pdflatex xelatex "
    "autoreconf configure pre-commit hatch"
)
_NOTHING = _names(
    "echo printf true false : pwd sleep seq yes basename dirname whoami id groups uname nproc "
    "arch tty logname getconf locale printenv expr factor numfmt tput clear cal type which "
    "whereis help times caller return exit break continue wait sync env nohup time command "
    "builtin stdbuf timeout nice ionice setsid sudo doas nocache chronic unbuffer"
)
_SESSION = _names(
    "export unset alias unalias set shopt declare typeset local readonly ulimit umask read "
    "mapfile readarray getopts shift let enable complete compgen bind dirs disown bg fg suspend "
    "hash popd exec history"
)

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
        _names(
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
