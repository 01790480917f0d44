"""The rule table: what each program does by default, and which flags change that.

No I/O here. ``RULES`` maps a program's basename to a ``Rule``: its default
class, a short description (shown to users as "<program> <what>"), and an
optional flag check from ``flags`` / ``tools`` (and the others) that replaces the
default when options change what the program does (``sed -i``, ``git push
--force``, ``python --version``). Programs missing from the table are unknown
and judged ``conditional``; see ``classify.py`` for names that are dynamic or
obfuscated.
"""

from __future__ import annotations

from sandbox.judge.rules import code as code
from sandbox.judge.rules import flags as f
from sandbox.judge.rules import git as git
from sandbox.judge.rules import text as text
from sandbox.judge.rules import tools as t
from sandbox.judge.rules.flags import COND, DANGER, SAFE, SEQ
from sandbox.judge.rules.rule import Rule, group
from sandbox.judge.rules.table_changes import CHANGES

_pip = t.by_subcommand(
    "list show freeze check help inspect index search debug",
    (COND, "installs or removes Python packages"),
    value_opts="-r --requirement -c --constraint -t --target",
    reads={"config": "list get debug", "cache": "dir info list"},
)
_node_pm = t.by_subcommand(
    "ls list ll la view info v show why explain root prefix bin help get whoami",
    (COND, "installs packages or runs project scripts"),
    {
        "publish": (SEQ, "publishing a package changes a registry"),
        "unpublish": (SEQ, "unpublishing a package changes a registry"),
    },
    runs="exec dlx x",
    reads={"config": "get list ls"},
)
_runner_pm = t.by_subcommand(
    "list show info --version help check",
    (COND, "manages a project environment"),
    runs="run exec",
    reads={"env": "list info", "config": "--show --show-sources --list"},
)
_build = t.by_subcommand("--version version help", (COND, "builds or tests code"))
_cargo = t.by_subcommand(
    "version help locate-project pkgid",
    (COND, "builds or tests Rust code"),
    {"fmt": (SEQ, "cargo fmt rewrites source files"), "publish": (SEQ, "cargo publish uploads")},
)
_go = t.by_subcommand(
    "version help doc",
    (COND, "builds or tests Go code"),
    {"fmt": (SEQ, "go fmt rewrites source files")},
)
_gem = t.by_subcommand("list query env contents which info help", (COND, "installs Ruby packages"))
_bundle = t.by_subcommand("list show check info help", (COND, "installs Ruby gems"), runs="exec")

RULES: dict[str, Rule] = {
    # --- read-only inspection --------------------------------------------------------------
    **group(SAFE, "only reads", "cat tac nl head tail wc cut paste join comm"),
    **group(SAFE, "lists files", "ls dir vdir tree exa eza lsd"),
    **group(SAFE, "searches text", "grep egrep fgrep zgrep ag ack pcregrep"),
    **group(SAFE, "transforms text to its output", "tr rev fold fmt expand unexpand column"),
    **group(SAFE, "transforms text to its output", "numfmt pr nroff col colrm look"),
    **group(SAFE, "prints its arguments", "echo"),
    **group(SAFE, "only reads file metadata", "stat file du df namei lsattr getfacl readlink"),
    **group(SAFE, "only computes paths", "basename dirname realpath pwd"),
    **group(SAFE, "computes checksums", "md5sum sha1sum sha224sum sha256sum sha384sum"),
    **group(SAFE, "computes checksums", "sha512sum b2sum cksum sum base32 base64 basenc"),
    **group(SAFE, "compares files", "diff cmp diff3 colordiff wdiff"),
    **group(SAFE, "dumps bytes", "od hexdump strings"),
    **group(SAFE, "reads binaries", "nm objdump readelf size"),
    **group(SAFE, "does nothing but set an exit status", "true false : test [ break continue"),
    **group(SAFE, "prints numbers or words", "seq yes factor expr jot"),
    **group(SAFE, "waits", "sleep wait"),
    **group(SAFE, "prints user identity", "id whoami groups logname users who w last lastlog"),
    **group(SAFE, "prints system information", "uname arch nproc uptime free lscpu lsblk"),
    **group(SAFE, "prints system information", "lsmod lspci lsusb lsof vmstat iostat getconf"),
    **group(SAFE, "prints network state", "netstat ss arp"),
    **group(SAFE, "prints block devices", "blkid"),
    **group(SAFE, "prints system information", "htop btop atop mpstat pidstat sensors"),
    **group(SAFE, "only clears the terminal", "clear"),
    **group(SAFE, "is a calculator", "bc"),
    **group(SAFE, "prints system information", "locale tty printenv cal hostid"),
    **group(SAFE, "lists processes", "ps pgrep pstree top pidof"),
    **group(SAFE, "looks a program up", "which whereis type whatis apropos"),
    **group(SAFE, "prints shell state", "jobs dirs times caller help"),
    "history": Rule(SAFE, "prints the shell's history", t.history),
    **group(SAFE, "looks names up", "getent locate mlocate plocate"),
    **group(SAFE, "queries JSON/text data", "jq gron"),
    **group(SAFE, "lists a zip archive", "zipinfo"),
    **group(SAFE, "prints compressed files", "zcat bzcat xzcat zstdcat lz4cat"),
    **group(SAFE, "counts or describes files", "ncdu_ tokei cloc scc"),
    "env": Rule(SAFE, "alone only prints the environment"),
    "date": Rule(SAFE, "prints the date", f.date),
    "hostname": Rule(SAFE, "prints the machine's name", f.hostname),
    "printf": Rule(SAFE, "formats its arguments", f.printf),
    "sort": Rule(SAFE, "sorts to its output", f.sort),
    "shuf": Rule(SAFE, "shuffles to its output", f.sort),
    "uniq": Rule(SAFE, "filters lines to its output", f.uniq),
    "tee": Rule(SEQ, "writes files", f.tee),
    "sed": Rule(SAFE, "edits a text stream to its output", text.sed),
    **group(SAFE, "runs a read-only awk program", "awk gawk mawk nawk busybox-awk", text.awk),
    "find": Rule(SAFE, "only lists files (no actions)", text.find),
    "xargs": Rule(SAFE, "passes its input to another command (judged on its own)"),
    "rg": Rule(SAFE, "searches text", t.rg),
    **group(SAFE, "finds files", "fd fdfind", t.fd),
    **group(SAFE, "dumps bytes", "xxd", f.second_positional_written),
    "iconv": Rule(SAFE, "converts text to its output", f.iconv),
    "yq": Rule(SAFE, "queries YAML", f.yq),
    "tar": Rule(SEQ, "works on an archive", f.tar),
    "unzip": Rule(SEQ, "extracts files", f.unzip),
    **group(
        SEQ,
        "compresses files",
        "gzip gunzip bzip2 bunzip2 xz unxz zstd unzstd lz4 pigz",
        f.compressor,
    ),
    "git": Rule(COND, "runs a git command", git.git),
    "command": Rule(SAFE, "-v only looks a program up"),
    "builtin": Rule(SAFE, "alone does nothing"),
    "time": Rule(SAFE, "alone only prints times"),
    "exec": Rule(SAFE, "without a command does nothing"),
    # --- builds, tests, package-manager-local installs, network: conditional ------------------
    **group(
        COND, "builds code", "make gmake bmake cmake ninja meson scons bazel bazelisk buck", _build
    ),
    **group(
        COND, "builds code", "mvn mvnw gradle gradlew ant sbt lein ctest xmake just task", _build
    ),
    **group(
        COND, "compiles code", "gcc g++ cc c++ clang clang++ rustc javac tsc zig ld as nasm", _build
    ),
    **group(COND, "compiles code", "swift swiftc kotlinc ghc scalac dotnet emcc", _build),
    **group(
        COND, "runs tests", "pytest py.test tox nox jest mocha vitest karma phpunit rspec", _build
    ),
    **group(COND, "runs tests or linters", "cucumber ava tap behave coverage pre-commit", _build),
    **group(COND, "lints code", "mypy flake8 pylint pyright bandit shellcheck hadolint", _build),
    **group(COND, "lints code", "golangci-lint staticcheck tflint cppcheck clang-tidy", _build),
    "eslint": Rule(COND, "lints code", t.formatter("--fix")),
    "rubocop": Rule(COND, "lints code", t.formatter("-a -A --auto-correct --autocorrect")),
    "prettier": Rule(COND, "formats code to its output", t.formatter("--write -w")),
    **group(COND, "formats code", "black isort", t.formatter("", "--check --diff -c --check-only")),
    **group(COND, "formats code", "rustfmt", t.formatter("", "--check")),
    **group(COND, "formats code", "gofmt goimports shfmt", t.formatter("-w")),
    **group(COND, "formats code", "clang-format autopep8 yapf", t.formatter("-i --in-place")),
    "ruff": Rule(COND, "lints code", t.ruff),
    **group(COND, "manages Python packages", "pip pip3 pipx uv", _pip),
    **group(
        COND,
        "manages Python projects",
        "poetry pipenv pdm hatch conda mamba micromamba",
        _runner_pm,
    ),
    **group(COND, "manages Node packages", "npm pnpm yarn bun", _node_pm),
    **group(
        COND,
        "runs a package's command",
        "npx pnpx bunx uvx",
        t.runs_target("{program} runs a package"),
    ),
    "cargo": Rule(COND, "builds Rust code", _cargo),
    "go": Rule(COND, "builds Go code", _go),
    "gem": Rule(COND, "manages Ruby gems", _gem),
    "bundle": Rule(COND, "manages Ruby gems", _bundle),
    **group(COND, "manages PHP/Erlang/Elixir packages", "composer mix rebar3 cabal stack", _build),
    **group(
        COND,
        "runs a framework command",
        "rails rake flask alembic prisma knex sequelize artisan",
        _build,
    ),
    **group(
        COND,
        "runs migrations",
        "dbmate goose flyway liquibase diesel sqlx typeorm django-admin",
        _build,
    ),
    **group(
        COND,
        "runs a program",
        "python python2 python3 pypy pypy3 node nodejs deno ruby perl",
        code.interpreter,
    ),
    **group(
        COND,
        "runs a program",
        "php lua luajit Rscript R julia tclsh groovy ts-node tsx",
        code.interpreter,
    ),
    **group(
        COND,
        "runs a program",
        "java jshell elixir erl escript racket guile sbcl pwsh",
        code.interpreter,
    ),
    **group(
        COND, "runs a shell", "bash sh dash zsh ksh mksh ash fish busybox-sh tcsh csh", code.shell
    ),
    "eval": Rule(DANGER, "runs text as shell code", code.eval_),
    **group(COND, "uses the network", "ping traceroute tracepath mtr dig nslookup host whois"),
    **group(COND, "uses the network", "telnet ftp sftp nmap http https xh httpie aria2c"),
    **group(
        COND, "uses a cloud API", "aws gcloud gsutil az gh glab doctl heroku fly flyctl", t.cloud
    ),
    **group(COND, "uses a cloud API", "vercel netlify firebase wrangler s3cmd rclone", t.cloud),
    "curl": Rule(COND, "uses the network", t.curl),
    "wget": Rule(SEQ, "downloads into a file", t.wget),
    **group(COND, "opens network connections", "nc ncat netcat socat", t.netcat),
    **group(COND, "is an interactive pager that can run commands", "less more most pager man info"),
    **group(
        COND,
        "runs another command",
        "strace ltrace valgrind gdb lldb perf taskset chrt",
        t.runs_target("{program} runs another command"),
    ),
    **group(
        COND,
        "runs another command",
        "numactl flock parallel entr xvfb-run faketime",
        t.runs_target("{program} runs another command"),
    ),
    **group(
        COND,
        "runs in the background",
        "nohup setsid screen tmux",
        t.runs_target("{program} lets it outlive the batch"),
    ),
    "watch": Rule(COND, "runs a command repeatedly", t.watch),
    "coproc": Rule(COND, "starts a background process", t.coproc),
    **group(COND, "resumes a background job", "fg bg"),
    **group(COND, "is an interpreter with shell escapes", "dc"),
    **group(
        COND, "queries a database", "psql mysql sqlite3 mongo mongosh redis-cli clickhouse-client"
    ),
    "ldd": Rule(COND, "may run the binary it inspects"),
    **CHANGES,
}
