"""Effects on named resources: processes, packages, git, containers, the network. No I/O."""

from __future__ import annotations

from sandbox.judge.effects_base import Acc, Handler, has_opt, names_of, opt_values, split_args
from sandbox.judge.effects_files import _rel
from sandbox.judge.paths import WORKSPACE
from sandbox.judge.syntax import Command, Word

# --- resources ------------------------------------------------------------------------


def _resource(name: str, *, write: bool = True, reads_if: str = "", writes_if: str = "") -> Handler:
    """A program that changes a resource; or reads it with no arguments / a ``reads_if`` word,
    or changes it only with a ``writes_if`` word."""
    readers, writers = frozenset(reads_if.split()), frozenset(writes_if.split())

    def handle(cmd: Command, acc: Acc) -> None:
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


def _packages(cmd: Command, acc: Acc) -> None:
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
    acc.read(*opt_values(opts, "-r", "--requirement", "-c", "--constraint"))
    if program not in ("apt", "apt-get", "dnf", "yum", "apk", "brew", "pacman", "zypper", "snap"):
        acc.workspace(
            f"{program} {sub or ''} may install into the workspace (a venv, node_modules)"
        )


_PKG_READS = names_of(
    "list show freeze check search info view outdated ls why policy "
    "help --version version config audit"
)


def _git(cmd: Command, acc: Acc) -> None:
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


_BRANCH_WRITES = names_of(
    "-d -D -m -M -c -C -f -u --delete --move --copy --force --set-upstream-to"
)
_TAG_WRITES = names_of("-d -a -s -f -m -F -u --delete --annotate --sign --force --message --file")
_GIT_READS = names_of(
    "status diff log show blame grep ls-files ls-tree rev-parse describe shortlog cat-file "
    "rev-list name-rev for-each-ref merge-base count-objects fsck check-ignore check-attr "
    "show-ref var help version whatchanged diff-tree diff-index diff-files cherry range-diff "
    "show-branch verify-commit verify-tag --version --help"
)


def _docker(cmd: Command, acc: Acc) -> None:
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


_CONTAINER_GROUPS = names_of(
    "image container volume network compose system buildx context "
    "plugin secret service stack node swarm"
)
_DOCKER_READS = names_of(
    "ps images inspect logs version info stats top events history port "
    "diff search ls list df config"
)


def _curl(cmd: Command, acc: Acc) -> None:
    opts, _ = split_args(cmd.args, "odFHXuTeAbcrKmEwzyYCDxUQ", _CURL_LONG)
    data = has_opt(
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
    methods = {(v.value or "").upper() for v in opt_values(opts, "-X", "--request")}
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
    if has_opt(opts, "-O", "--remote-name", "--remote-name-all") and not has_opt(
        opts, "--output-dir"
    ):
        acc.writes.add(_rel(acc, WORKSPACE))
        acc.note("curl -O names the file after the URL, widened to .")


_CURL_LONG = names_of(
    "--output --data --data-raw --data-binary --data-urlencode --form --header --request --user "
    "--upload-file --referer --user-agent --cookie --cookie-jar --config --max-time --cacert "
    "--cert --key --dump-header --proxy --json --url --connect-timeout --retry --output-dir "
    "--trace --trace-ascii --stderr --write-out --resolve"
)


def _wget(cmd: Command, acc: Acc) -> None:
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
    acc.use("network", write=has_opt(opts, "--post-data", "--post-file", "--method"))
    acc.read(*opt_values(opts, "-i", "--input-file", "--post-file"))
    acc.write(*[w for w in opt_values(opts, "-o", "--output-file", "-a") if w.value != "-"])
    outputs = opt_values(opts, "-O", "--output-document")
    dirs = opt_values(opts, "-P", "--directory-prefix")
    if outputs:
        acc.write(*[w for w in outputs if w.value != "-"])
    elif dirs:
        acc.write(*dirs)
    elif not has_opt(opts, "--spider"):
        acc.writes.add(_rel(acc, WORKSPACE))
        acc.note("wget names the file after the URL, widened to .")


def _python(cmd: Command, acc: Acc) -> None:
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


def _shell(cmd: Command, acc: Acc) -> None:
    if cmd.nested_script:
        return  # its script was parsed: those commands are counted
    values = [w.value for w in cmd.args]
    if values and values[0] in ("-n", "--version", "--help"):
        acc.read(*cmd.args[1:2])
        return
    acc.everything(f"{cmd.program} runs a script we cannot see: may read and write anything")


def _trap(cmd: Command, acc: Acc) -> None:
    acc.use("session", write=True)
    action = cmd.args[0] if cmd.args else None
    if action is not None and action.value not in ("", "-") and not (action.value or "x").isdigit():
        acc.everything("trap runs a command later: may read and write anything")


def _system(
    name: str = "system", *, reads_if: str = "", writes_if: str = "", paths: str = ""
) -> Handler:
    base = _resource(name, reads_if=reads_if, writes_if=writes_if)

    def handle(cmd: Command, acc: Acc) -> None:
        base(cmd, acc)
        if name in acc.resource_writes:
            acc.writes.update(paths.split())
        if cmd.program == "sysctl" and any("=" in (w.value or "") for w in cmd.args):
            acc.use(name, write=True)

    return handle


def _everything(why: str) -> Handler:
    def handle(cmd: Command, acc: Acc) -> None:
        acc.everything(f"{cmd.program} {why}")

    return handle


BUILD_TOOLS = names_of(
    "make gmake cmake ninja meson bazel bazelisk gradle gradlew mvn ant sbt rustc gcc g++ cc c++ "
    "clang clang++ ld as javac tsc webpack vite esbuild rollup npx pytest py.test tox nox mypy "
    "ruff black isort flake8 pylint eslint prettier jest mocha vitest dotnet swift swiftc ghc "
    "stack cabal mix rake bundle composer phpunit sphinx-build latexmk pdflatex xelatex "
    "autoreconf configure pre-commit hatch"
)
_NOTHING = names_of(
    "echo printf true false : pwd sleep seq yes basename dirname whoami id groups uname nproc "
    "arch tty logname getconf locale printenv expr factor numfmt tput clear cal type which "
    "whereis help times caller return exit break continue wait sync env nohup time command "
    "builtin stdbuf timeout nice ionice setsid sudo doas nocache chronic unbuffer"
)
_SESSION = names_of(
    "export unset alias unalias set shopt declare typeset local readonly ulimit umask read "
    "mapfile readarray getopts shift let enable complete compgen bind dirs disown bg fg suspend "
    "hash popd exec history"
)
