"""Effects of programs that read and write files: readers, writers, sed, awk, find. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.judge.effects_base import Acc, Handler, has_opt, names_of, opt_values, split_args
from sandbox.judge.paths import WORKSPACE
from sandbox.judge.syntax import Command, Word

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
        names_of(
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


def _read_operands(cmd: Command, acc: Acc, spec: Spec) -> None:
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
    if skip and has_opt(opts, "-e", "--regexp", "-f", "--file", "--from-file"):
        skip = 0
    files = [w for w in operands[skip:] if w.value != "-"]
    if program in ("xxd", "uniq") and len(files) > 1:
        acc.write(files[1])  # `uniq IN OUT`, `xxd IN OUT`
        files = files[:1]
    if (
        program in ("grep", "egrep", "fgrep")
        and not files
        and has_opt(opts, "-r", "-R", "--recursive")
    ):
        acc.reads.add(_rel(acc, WORKSPACE))
    elif not files and spec.default and not (cmd.piped_stdin and program in ("rg", "ag", "ack")):
        acc.reads.add(_rel(acc, spec.default))
    if program in ("sha1sum", "sha256sum", "md5sum", "sha512sum", "b2sum") and has_opt(
        opts, "-c", "--check"
    ):
        acc.reads.add(_rel(acc, WORKSPACE))
    acc.read(*files)


def _drop_jq_pairs(args: list[Word], acc: Acc) -> list[Word]:
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


def _rel(acc: Acc, path: str) -> str:
    return acc.cwd if acc.cwd is not None else path


def _writer(short: str = "", long: str = "", skip: int = 0, reads: str = "") -> Handler:
    """Programs that change each file operand (rm, mkdir, touch, chmod MODE ...)."""
    longs = frozenset(long.split())
    read_opts = frozenset(reads.split())

    def handle(cmd: Command, acc: Acc) -> None:
        opts, operands = split_args(cmd.args, short, longs)
        for name, value in opts:
            if value is not None and name in read_opts:
                acc.read(value)
        n = 0 if has_opt(opts, "--reference") else skip
        acc.write(*operands[n:])

    return handle


def _chmod(cmd: Command, acc: Acc) -> None:
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
    def handle(cmd: Command, acc: Acc) -> None:
        opts, operands = split_args(cmd.args, "tS", ("--target-directory", "--suffix"))
        targets = opt_values(opts, "-t", "--target-directory")
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
            if has_opt(opts, "-b", "--backup", "-S", "--suffix"):
                suffixes = opt_values(opts, "-S", "--suffix")
                acc.write_renamed(dest, suffixes[0].value if suffixes else "~")

    return handle


def _ln(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(cmd.args, "St", ("--target-directory", "--suffix"))
    targets = opt_values(opts, "-t", "--target-directory")
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


def _sed(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(cmd.args, "efl", ("--expression", "--file", "--line-length"))
    scripts = opt_values(opts, "-e", "--expression")
    acc.read(*opt_values(opts, "-f", "--file"))
    if not scripts and not has_opt(opts, "-f", "--file") and operands:
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


def _awk(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(
        cmd.args,
        "fvFilEe",
        ("--file", "--assign", "--field-separator", "--include", "--load", "--exec", "--source"),
    )
    programs = opt_values(opts, "-e", "--source")
    acc.read(*opt_values(opts, "-f", "--file", "-E", "--exec", "-i", "--include"))
    if not programs and not has_opt(opts, "-f", "--file", "-E", "--exec") and operands:
        programs, operands = [operands[0]], operands[1:]
    for p in programs:
        if p.value is None or _AWK_RUNS.search(p.value) or awk_prints_into(p.value):
            acc.everything("awk program writes files or runs commands: may do anything")
    files = [w for w in operands if w.value != "-" and "=" not in (w.value or "")]
    acc.read(*files)
    if any(v is not None and v.value == "inplace" for v in opt_values(opts, "-i", "--include")):
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


def _tee(cmd: Command, acc: Acc) -> None:
    _, operands = split_args(cmd.args, "", ("--output-error",))
    acc.write(*operands)


def _dd(cmd: Command, acc: Acc) -> None:
    for w in cmd.args:
        v = w.value or ""
        for op, act in (("if=", acc.read), ("of=", acc.write)):
            if w.text.startswith(op):
                rest = w.text[len(op) :]
                act(Word(rest, v[len(op) :] if w.value is not None else None, glob=w.glob))


def _find(cmd: Command, acc: Acc) -> None:
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
