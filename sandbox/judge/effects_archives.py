"""Effects of archives, compressors, copies between machines, and small builtins. No I/O."""

from __future__ import annotations

from sandbox.judge.effects_base import Acc, has_opt, names_of, opt_values, split_args
from sandbox.judge.effects_files import _copy, _rel, _writer
from sandbox.judge.paths import WORKSPACE
from sandbox.judge.syntax import Command, Word


def _xargs(cmd: Command, acc: Acc) -> None:
    opts, _ = split_args(cmd.args, "a", ("--arg-file",))
    acc.read(*opt_values(opts, "-a", "--arg-file"))


def _test(cmd: Command, acc: Acc) -> None:
    args = [w for w in cmd.args if w.value != "]"]
    for i, w in enumerate(args):
        if w.value in _FILE_TESTS and i + 1 < len(args):
            acc.read(args[i + 1])
        elif w.value in ("-nt", "-ot", "-ef") and 0 < i < len(args) - 1:
            acc.read(args[i - 1], args[i + 1])


_FILE_TESTS = names_of("-a -b -c -d -e -f -g -h -k -p -r -s -u -w -x -G -L -N -O -S")


def _cd(cmd: Command, acc: Acc) -> None:
    acc.use("session", write=True)
    _, operands = split_args(cmd.args)
    acc.read(*operands[:1])


def _touch(cmd: Command, acc: Acc) -> None:
    _writer("dtrA", "--date --reference", reads="-r --reference")(cmd, acc)


def _archive_tar(cmd: Command, acc: Acc) -> None:
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
    archives = opt_values(opts, "-f", "--file")
    dirs = opt_values(opts, "-C", "--directory")
    acc.read(*opt_values(opts, "-T", "--files-from", "-X", "--exclude-from"))
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


def _compress(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(cmd.args, "S#TbpoM", ("--suffix",))
    files = [w for w in operands if w.value != "-"]
    acc.read(*files)
    if has_opt(opts, "-c", "--stdout", "-t", "--test", "-l", "--list"):
        return
    acc.write(*files)
    suffix = _COMPRESSORS.get(cmd.program or "", ".gz")
    for f in files:  # the other name: a.txt <-> a.txt.gz
        if f.value is not None and f.value.endswith(suffix):
            acc.write_renamed(f, suffix, strip=True)
        else:
            acc.write_renamed(f, suffix)


def _zip(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(cmd.args, "dxibPnt", ("--password",))
    if cmd.program == "unzip":
        acc.read(*operands[:1])
        if has_opt(opts, "-l", "-t", "-v", "-p", "-Z"):
            return
        dirs = opt_values(opts, "-d")
        if dirs:
            acc.write(*dirs)
        else:
            acc.writes.add(_rel(acc, WORKSPACE))
            acc.note("unzip extracts names we cannot see, widened to .")
        return
    acc.write(*operands[:1])
    acc.read(*operands[1:])


def _split(cmd: Command, acc: Acc) -> None:
    _, operands = split_args(
        cmd.args, "abCdlnt", ("--bytes", "--lines", "--line-bytes", "--number", "--suffix-length")
    )
    acc.read(*operands[:1])
    prefix = operands[1] if len(operands) > 1 else Word("x", "x")
    acc.write(
        Word(prefix.text + "*", None if prefix.value is None else prefix.value + "*", glob=True)
    )


def _mktemp(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(cmd.args, "p", ("--tmpdir", "--suffix"))
    dirs = opt_values(opts, "-p", "--tmpdir")
    if dirs:
        acc.write(*dirs)
    elif operands and operands[0].value is not None and not has_opt(opts, "-t"):
        template = operands[0]
        acc.write(
            Word(template.text.replace("X", "*"), template.value.replace("X", "*"), glob=True)
            if template.value is not None
            else template
        )
    # a fresh unique name in /tmp: nobody else can name it


def _install(cmd: Command, acc: Acc) -> None:
    opts, operands = split_args(
        cmd.args, "mogStT", ("--mode", "--owner", "--group", "--suffix", "--target-directory")
    )
    if has_opt(opts, "-d", "--directory"):
        acc.write(*operands)
        return
    _copy(False)(cmd, acc)


def _rsync(cmd: Command, acc: Acc) -> None:
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
    if cmd.program == "rsync" and has_opt(opts, "--remove-source-files"):
        acc.write(*[w for w in sources if not _remote(w)])


def _remote(w: Word) -> bool:
    text = w.value if w.value is not None else w.text
    head = text.split("/", 1)[0]
    return text.startswith("rsync://") or (":" in head and not text.startswith(("/", ".")))
