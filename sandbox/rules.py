"""The rule table: what each program does by default, and which flags change that.

No I/O here. ``RULES`` maps a program's basename to a ``Rule``: its default
class, a short description (shown to users as "<program> <what>"), and an
optional flag check from ``rules_flags`` / ``rules_tools`` that replaces the
default when options change what the program does (``sed -i``, ``git push
--force``, ``python --version``). Programs missing from the table are unknown
and judged ``conditional``; see ``classify.py`` for names that are dynamic or
obfuscated.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox import rules_code as code
from sandbox import rules_flags as f
from sandbox import rules_git as git
from sandbox import rules_text as text
from sandbox import rules_tools as t
from sandbox.model import CommandClass
from sandbox.rules_flags import COND, DANGER, SAFE, SEQ, Check


@dataclass(frozen=True, slots=True)
class Rule:
    cls: CommandClass
    what: str
    check: Check | None = None


def _group(cls: CommandClass, what: str, names: str, check: Check | None = None) -> dict[str, Rule]:
    rule = Rule(cls, what, check)
    return dict.fromkeys(names.split(), rule)


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
_system_pm = t.by_subcommand(
    "list show search policy depends rdepends info showpkg madison changelog history repolist "
    "provides whatprovides query",
    (DANGER, "installs, removes or updates system packages"),
)
_brew = t.by_subcommand(
    "list ls info search config doctor deps leaves outdated --prefix",
    (DANGER, "installs or removes system packages"),
)
_pacman = f.only_flags(
    "-Q -Qi -Ql -Qe -Qs -Qo -Ss -Si --query",
    "pacman -Q only queries",
    (DANGER, "pacman changes system packages"),
)
_dpkg = f.only_flags(
    "-l -L -s -S -p -c -I --list --listfiles --status --search --print-architecture "
    "--get-selections --contents --info --version",
    "dpkg only queries the package database",
    (DANGER, "dpkg installs or removes system packages"),
)
_infra = t.by_subcommand(
    "version validate providers graph",
    (COND, "plans infrastructure changes"),
    {
        "fmt": (SEQ, "terraform fmt rewrites configuration files"),
        "show": (COND, "reads state, which may live in a remote backend (the network)"),
        "output": (COND, "reads state, which may live in a remote backend (the network)"),
        "apply": (DANGER, "applies changes to real infrastructure"),
        "destroy": (DANGER, "destroys real infrastructure"),
        "up": (DANGER, "applies changes to real infrastructure"),
        "import": (SEQ, "changes infrastructure state"),
        "state": (SEQ, "changes infrastructure state"),
    },
)

RULES: dict[str, Rule] = {
    # --- read-only inspection --------------------------------------------------------------
    **_group(SAFE, "only reads", "cat tac nl head tail wc cut paste join comm"),
    **_group(SAFE, "lists files", "ls dir vdir tree exa eza lsd"),
    **_group(SAFE, "searches text", "grep egrep fgrep zgrep ag ack pcregrep"),
    **_group(SAFE, "transforms text to its output", "tr rev fold fmt expand unexpand column"),
    **_group(SAFE, "transforms text to its output", "numfmt pr nroff col colrm look"),
    **_group(SAFE, "prints its arguments", "echo"),
    **_group(SAFE, "only reads file metadata", "stat file du df namei lsattr getfacl readlink"),
    **_group(SAFE, "only computes paths", "basename dirname realpath pwd"),
    **_group(SAFE, "computes checksums", "md5sum sha1sum sha224sum sha256sum sha384sum"),
    **_group(SAFE, "computes checksums", "sha512sum b2sum cksum sum base32 base64 basenc"),
    **_group(SAFE, "compares files", "diff cmp diff3 colordiff wdiff"),
    **_group(SAFE, "dumps bytes", "od hexdump strings"),
    **_group(SAFE, "reads binaries", "nm objdump readelf size"),
    **_group(SAFE, "does nothing but set an exit status", "true false : test [ break continue"),
    **_group(SAFE, "prints numbers or words", "seq yes factor expr jot"),
    **_group(SAFE, "waits", "sleep wait"),
    **_group(SAFE, "prints user identity", "id whoami groups logname users who w last lastlog"),
    **_group(SAFE, "prints system information", "uname arch nproc uptime free lscpu lsblk"),
    **_group(SAFE, "prints system information", "lsmod lspci lsusb lsof vmstat iostat getconf"),
    **_group(SAFE, "prints network state", "netstat ss arp"),
    **_group(SAFE, "prints block devices", "blkid"),
    **_group(SAFE, "prints system information", "htop btop atop mpstat pidstat sensors"),
    **_group(SAFE, "only clears the terminal", "clear"),
    **_group(SAFE, "is a calculator", "bc"),
    **_group(SAFE, "prints system information", "locale tty printenv cal hostid"),
    **_group(SAFE, "lists processes", "ps pgrep pstree top pidof"),
    **_group(SAFE, "looks a program up", "which whereis type whatis apropos"),
    **_group(SAFE, "prints shell state", "jobs dirs times caller help"),
    "history": Rule(SAFE, "prints the shell's history", t.history),
    **_group(SAFE, "looks names up", "getent locate mlocate plocate"),
    **_group(SAFE, "queries JSON/text data", "jq gron"),
    **_group(SAFE, "lists a zip archive", "zipinfo"),
    **_group(SAFE, "prints compressed files", "zcat bzcat xzcat zstdcat lz4cat"),
    **_group(SAFE, "counts or describes files", "ncdu_ tokei cloc scc"),
    "env": Rule(SAFE, "alone only prints the environment"),
    "date": Rule(SAFE, "prints the date", f.date),
    "hostname": Rule(SAFE, "prints the machine's name", f.hostname),
    "printf": Rule(SAFE, "formats its arguments", f.printf),
    "sort": Rule(SAFE, "sorts to its output", f.sort),
    "shuf": Rule(SAFE, "shuffles to its output", f.sort),
    "uniq": Rule(SAFE, "filters lines to its output", f.uniq),
    "tee": Rule(SEQ, "writes files", f.tee),
    "sed": Rule(SAFE, "edits a text stream to its output", text.sed),
    **_group(SAFE, "runs a read-only awk program", "awk gawk mawk nawk busybox-awk", text.awk),
    "find": Rule(SAFE, "only lists files (no actions)", text.find),
    "xargs": Rule(SAFE, "passes its input to another command (judged on its own)"),
    "rg": Rule(SAFE, "searches text", t.rg),
    **_group(SAFE, "finds files", "fd fdfind", t.fd),
    **_group(SAFE, "dumps bytes", "xxd", f.second_positional_written),
    "iconv": Rule(SAFE, "converts text to its output", f.iconv),
    "yq": Rule(SAFE, "queries YAML", f.yq),
    "tar": Rule(SEQ, "works on an archive", f.tar),
    "unzip": Rule(SEQ, "extracts files", f.unzip),
    **_group(
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
    **_group(
        COND, "builds code", "make gmake bmake cmake ninja meson scons bazel bazelisk buck", _build
    ),
    **_group(
        COND, "builds code", "mvn mvnw gradle gradlew ant sbt lein ctest xmake just task", _build
    ),
    **_group(
        COND, "compiles code", "gcc g++ cc c++ clang clang++ rustc javac tsc zig ld as nasm", _build
    ),
    **_group(COND, "compiles code", "swift swiftc kotlinc ghc scalac dotnet emcc", _build),
    **_group(
        COND, "runs tests", "pytest py.test tox nox jest mocha vitest karma phpunit rspec", _build
    ),
    **_group(COND, "runs tests or linters", "cucumber ava tap behave coverage pre-commit", _build),
    **_group(COND, "lints code", "mypy flake8 pylint pyright bandit shellcheck hadolint", _build),
    **_group(COND, "lints code", "golangci-lint staticcheck tflint cppcheck clang-tidy", _build),
    "eslint": Rule(COND, "lints code", t.formatter("--fix")),
    "rubocop": Rule(COND, "lints code", t.formatter("-a -A --auto-correct --autocorrect")),
    "prettier": Rule(COND, "formats code to its output", t.formatter("--write -w")),
    **_group(
        COND, "formats code", "black isort", t.formatter("", "--check --diff -c --check-only")
    ),
    **_group(COND, "formats code", "rustfmt", t.formatter("", "--check")),
    **_group(COND, "formats code", "gofmt goimports shfmt", t.formatter("-w")),
    **_group(COND, "formats code", "clang-format autopep8 yapf", t.formatter("-i --in-place")),
    "ruff": Rule(COND, "lints code", t.ruff),
    **_group(COND, "manages Python packages", "pip pip3 pipx uv", _pip),
    **_group(
        COND,
        "manages Python projects",
        "poetry pipenv pdm hatch conda mamba micromamba",
        _runner_pm,
    ),
    **_group(COND, "manages Node packages", "npm pnpm yarn bun", _node_pm),
    **_group(
        COND,
        "runs a package's command",
        "npx pnpx bunx uvx",
        t.runs_target("{program} runs a package"),
    ),
    "cargo": Rule(COND, "builds Rust code", _cargo),
    "go": Rule(COND, "builds Go code", _go),
    "gem": Rule(COND, "manages Ruby gems", _gem),
    "bundle": Rule(COND, "manages Ruby gems", _bundle),
    **_group(COND, "manages PHP/Erlang/Elixir packages", "composer mix rebar3 cabal stack", _build),
    **_group(
        COND,
        "runs a framework command",
        "rails rake flask alembic prisma knex sequelize artisan",
        _build,
    ),
    **_group(
        COND,
        "runs migrations",
        "dbmate goose flyway liquibase diesel sqlx typeorm django-admin",
        _build,
    ),
    **_group(
        COND,
        "runs a program",
        "python python2 python3 pypy pypy3 node nodejs deno ruby perl",
        code.interpreter,
    ),
    **_group(
        COND,
        "runs a program",
        "php lua luajit Rscript R julia tclsh groovy ts-node tsx",
        code.interpreter,
    ),
    **_group(
        COND,
        "runs a program",
        "java jshell elixir erl escript racket guile sbcl pwsh",
        code.interpreter,
    ),
    **_group(
        COND, "runs a shell", "bash sh dash zsh ksh mksh ash fish busybox-sh tcsh csh", code.shell
    ),
    "eval": Rule(DANGER, "runs text as shell code", code.eval_),
    **_group(COND, "uses the network", "ping traceroute tracepath mtr dig nslookup host whois"),
    **_group(COND, "uses the network", "telnet ftp sftp nmap http https xh httpie aria2c"),
    **_group(
        COND, "uses a cloud API", "aws gcloud gsutil az gh glab doctl heroku fly flyctl", t.cloud
    ),
    **_group(COND, "uses a cloud API", "vercel netlify firebase wrangler s3cmd rclone", t.cloud),
    "curl": Rule(COND, "uses the network", t.curl),
    "wget": Rule(SEQ, "downloads into a file", t.wget),
    **_group(COND, "opens network connections", "nc ncat netcat socat", t.netcat),
    **_group(
        COND, "is an interactive pager that can run commands", "less more most pager man info"
    ),
    **_group(
        COND,
        "runs another command",
        "strace ltrace valgrind gdb lldb perf taskset chrt",
        t.runs_target("{program} runs another command"),
    ),
    **_group(
        COND,
        "runs another command",
        "numactl flock parallel entr xvfb-run faketime",
        t.runs_target("{program} runs another command"),
    ),
    **_group(
        COND,
        "runs in the background",
        "nohup setsid screen tmux",
        t.runs_target("{program} lets it outlive the batch"),
    ),
    "watch": Rule(COND, "runs a command repeatedly", t.watch),
    "coproc": Rule(COND, "starts a background process", t.coproc),
    **_group(COND, "resumes a background job", "fg bg"),
    **_group(COND, "is an interpreter with shell escapes", "dc"),
    **_group(
        COND, "queries a database", "psql mysql sqlite3 mongo mongosh redis-cli clickhouse-client"
    ),
    "ldd": Rule(COND, "may run the binary it inspects"),
    # --- file changes and session state: sequential ---------------------------------------------
    "rm": Rule(SEQ, "deletes files", f.rm),
    **_group(SEQ, "deletes", "rmdir unlink", f.writes_positionals("deletes")),
    **_group(SEQ, "moves files", "mv rename", f.writes_positionals("moves", takes="tS")),
    **_group(SEQ, "copies files", "cp install", f.writes_positionals("copies into", True, "tSmgo")),
    "ln": Rule(SEQ, "creates links", f.writes_positionals("creates a link", True, "tS")),
    **_group(
        SEQ, "creates files", "touch mkdir mkfifo", f.writes_positionals("creates", takes="mdtr")
    ),
    **_group(SEQ, "changes permissions", "chmod chown chgrp", f.chmod),
    **_group(SEQ, "writes files", "patch split csplit mktemp dos2unix unix2dos setfacl fallocate"),
    **_group(SEQ, "edits files", "vim vi nvim nano emacs ed ex pico joe micro"),
    **_group(
        SEQ,
        "copies files over the network",
        "scp",
        f.writes_positionals("copies into", True, "PiloSF"),
    ),
    "rsync": Rule(SEQ, "copies files", t.rsync),
    **_group(SEQ, "creates archives", "zip ar cpio rar"),
    **_group(SEQ, "creates or extracts archives", "7z 7za", t.seven_zip),
    **_group(
        SEQ,
        "changes a running service",
        "systemctl service rc-service supervisorctl pm2",
        t.service_manager,
    ),
    **_group(SEQ, "reloads a server", "nginx apachectl apache2ctl launchctl"),
    "cd": Rule(SEQ, "changes the working directory (shell session state)"),
    **_group(SEQ, "changes the directory stack (shell session state)", "pushd popd"),
    **_group(SEQ, "runs a file in the current shell (session state)", "source .", code.source),
    "export": Rule(
        SEQ, "changes the environment (shell session state)", t.session_builtin(True, "-p")
    ),
    "set": Rule(SEQ, "changes shell options (shell session state)", t.session_builtin(True)),
    "alias": Rule(SEQ, "defines aliases (shell session state)", t.session_builtin(True, "-p")),
    "shopt": Rule(
        SEQ, "changes shell options (shell session state)", t.session_builtin(True, "-p")
    ),
    "trap": Rule(
        SEQ, "sets signal handlers (shell session state)", t.session_builtin(True, "-p -l")
    ),
    "umask": Rule(
        SEQ, "changes the file mode mask (shell session state)", t.session_builtin(True, "-S -p")
    ),
    "ulimit": Rule(
        SEQ,
        "changes resource limits (shell session state)",
        t.session_builtin(True, "-a -n -u -f -s -t -v"),
    ),
    "hash": Rule(
        SEQ, "changes the command cache (shell session state)", t.session_builtin(True, "-l -t")
    ),
    **_group(
        SEQ,
        "changes variables (shell session state)",
        "unset read readarray mapfile let getopts shift",
        None,
    ),
    **_group(
        SEQ,
        "changes variables (shell session state)",
        "declare typeset local readonly",
        t.session_builtin(True, "-p -f -F"),
    ),
    **_group(
        SEQ,
        "changes the shell (shell session state)",
        "unalias enable complete bind exit return logout",
    ),
    # --- system changes: dangerous ----------------------------------------------------------------
    **_group(DANGER, "writes raw devices", "dd mkswap blkdiscard hdparm losetup cryptsetup mdadm"),
    **_group(
        DANGER,
        "partitions or formats disks",
        "fdisk sfdisk cfdisk gdisk sgdisk parted wipefs partprobe",
    ),
    **_group(
        DANGER,
        "formats a filesystem",
        "mkfs mke2fs mkfs.ext4 mkfs.ext3 mkfs.xfs mkfs.vfat mkfs.btrfs mkfs.fat",
    ),
    **_group(DANGER, "destroys data", "shred truncate srm wipe rimraf"),
    **_group(
        DANGER,
        "changes system packages",
        "apt apt-get aptitude yum dnf zypper apk snap flatpak",
        _system_pm,
    ),
    **_group(DANGER, "checks and repairs filesystems", "fsck e2fsck xfs_repair tune2fs resize2fs"),
    "busybox": Rule(COND, "runs an applet", t.runs_target("busybox runs an applet", SAFE)),
    "apt-cache": Rule(SAFE, "only queries the package database"),
    "pacman": Rule(DANGER, "changes system packages", _pacman),
    "dpkg": Rule(DANGER, "changes system packages", _dpkg),
    "rpm": Rule(
        DANGER,
        "changes system packages",
        f.only_flags(
            "-q -qa -qi -ql -qf --query -V",
            "rpm -q only queries",
            (DANGER, "rpm changes system packages"),
        ),
    ),
    "brew": Rule(DANGER, "changes system packages", _brew),
    **_group(DANGER, "changes the firewall", "iptables ip6tables nft ufw firewall-cmd"),
    **_group(DANGER, "signals other processes", "kill killall pkill skill xkill", f.kill),
    **_group(DANGER, "powers the machine off", "reboot shutdown halt poweroff init telinit"),
    **_group(
        DANGER,
        "changes mounts",
        "mount umount swapon swapoff",
        f.only_flags("", "mount alone only lists mounts", (DANGER, "changes mounts")),
    ),
    **_group(
        DANGER, "runs as another user", "sudo su doas pkexec runuser sg run0 chroot unshare nsenter"
    ),
    "crontab": Rule(
        DANGER,
        "changes scheduled jobs",
        f.only_flags("-l", "crontab -l only lists", (DANGER, "crontab changes scheduled jobs")),
    ),
    **_group(DANGER, "schedules jobs", "at batch atrm systemd-run"),
    **_group(
        DANGER,
        "changes users",
        "useradd userdel usermod groupadd groupdel groupmod passwd chpasswd",
    ),
    **_group(
        DANGER,
        "changes users",
        "adduser deluser addgroup delgroup visudo vipw chsh chfn chage gpasswd",
    ),
    "sysctl": Rule(DANGER, "changes kernel parameters", f.sysctl),
    **_group(DANGER, "changes the kernel", "modprobe insmod rmmod kexec"),
    **_group(
        DANGER,
        "controls containers (the Docker socket is root)",
        "docker podman nerdctl ctr crictl kubectl helm",
    ),
    **_group(
        DANGER, "controls containers or VMs", "docker-compose minikube kind k3s lxc virsh vagrant"
    ),
    **_group(
        DANGER,
        "changes the system",
        "setcap update-alternatives ldconfig grub-install update-grub efibootmgr",
    ),
    **_group(
        DANGER,
        "changes the system",
        "hwclock timedatectl hostnamectl loginctl nvram diskutil chattr",
    ),
    "ip": Rule(DANGER, "changes network configuration", f.ip),
    "ifconfig": Rule(DANGER, "changes network configuration", f.ifconfig),
    **_group(DANGER, "runs commands on another machine", "ssh mosh"),
    **_group(DANGER, "changes real infrastructure", "terraform tofu pulumi", _infra),
    **_group(DANGER, "changes remote machines", "ansible ansible-playbook salt"),
    "journalctl": Rule(SAFE, "reads the system journal", f.journalctl),
    "dmesg": Rule(SAFE, "reads the kernel log", f.dmesg),
}
