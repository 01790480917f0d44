"""The rule table, second half: programs that change files, shell state or the system. No I/O.

Sequential: file changes in the workspace and shared state (services, shell
session); dangerous: destruction, privilege, system-wide changes.
"""

from __future__ import annotations

from sandbox.judge.rules import code
from sandbox.judge.rules import flags as f
from sandbox.judge.rules import tools as t
from sandbox.judge.rules.flags import COND, DANGER, SAFE, SEQ
from sandbox.judge.rules.rule import Rule, group

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


_apt_cache = t.by_subcommand(
    "policy show showpkg showsrc search depends rdepends madison stats dump dumpavail unmet "
    "pkgnames dotty xvcg",
    (SEQ, "rebuilds the package cache"),
)

CHANGES: dict[str, Rule] = {
    # --- file changes and session state: sequential ---------------------------------------------
    "rm": Rule(SEQ, "deletes files", f.rm),
    **group(SEQ, "deletes", "rmdir unlink", f.writes_positionals("deletes")),
    **group(SEQ, "moves files", "mv rename", f.writes_positionals("moves", takes="tS")),
    **group(SEQ, "copies files", "cp install", f.writes_positionals("copies into", True, "tSmgo")),
    "ln": Rule(SEQ, "creates links", f.writes_positionals("creates a link", True, "tS")),
    **group(
        SEQ, "creates files", "touch mkdir mkfifo", f.writes_positionals("creates", takes="mdtr")
    ),
    **group(SEQ, "changes permissions", "chmod chown chgrp", f.chmod),
    **group(SEQ, "writes files", "patch split csplit mktemp dos2unix unix2dos setfacl fallocate"),
    **group(SEQ, "edits files", "vim vi nvim nano emacs ed ex pico joe micro"),
    **group(
        SEQ,
        "copies files over the network",
        "scp",
        f.writes_positionals("copies into", True, "PiloSF"),
    ),
    "rsync": Rule(SEQ, "copies files", t.rsync),
    **group(SEQ, "creates archives", "zip ar cpio rar"),
    **group(SEQ, "creates or extracts archives", "7z 7za", t.seven_zip),
    **group(
        SEQ,
        "changes a running service",
        "systemctl service rc-service supervisorctl pm2",
        t.service_manager,
    ),
    **group(SEQ, "reloads a server", "nginx apachectl apache2ctl launchctl"),
    "cd": Rule(SEQ, "changes the working directory (shell session state)"),
    **group(SEQ, "changes the directory stack (shell session state)", "pushd popd"),
    **group(SEQ, "runs a file in the current shell (session state)", "source .", code.source),
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
    **group(
        SEQ,
        "changes variables (shell session state)",
        "unset read readarray mapfile let getopts shift",
        None,
    ),
    **group(
        SEQ,
        "changes variables (shell session state)",
        "declare typeset local readonly",
        t.session_builtin(True, "-p -f -F"),
    ),
    **group(
        SEQ,
        "changes the shell (shell session state)",
        "unalias enable complete bind exit return logout",
    ),
    # --- system changes: dangerous ----------------------------------------------------------------
    **group(DANGER, "writes raw devices", "dd mkswap blkdiscard hdparm losetup cryptsetup mdadm"),
    **group(
        DANGER,
        "partitions or formats disks",
        "fdisk sfdisk cfdisk gdisk sgdisk parted wipefs partprobe",
    ),
    **group(
        DANGER,
        "formats a filesystem",
        "mkfs mke2fs mkfs.ext4 mkfs.ext3 mkfs.xfs mkfs.vfat mkfs.btrfs mkfs.fat",
    ),
    **group(DANGER, "destroys data", "shred truncate srm wipe rimraf"),
    **group(
        DANGER,
        "changes system packages",
        "apt apt-get aptitude yum dnf zypper apk snap flatpak",
        _system_pm,
    ),
    **group(DANGER, "checks and repairs filesystems", "fsck e2fsck xfs_repair tune2fs resize2fs"),
    "busybox": Rule(COND, "runs an applet", t.runs_target("busybox runs an applet", SAFE)),
    "apt-cache": Rule(SAFE, "only queries the package database", _apt_cache),
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
    **group(DANGER, "changes the firewall", "iptables ip6tables nft ufw firewall-cmd"),
    **group(DANGER, "signals other processes", "kill killall pkill skill xkill", f.kill),
    **group(DANGER, "powers the machine off", "reboot shutdown halt poweroff init telinit"),
    **group(
        DANGER,
        "changes mounts",
        "mount umount swapon swapoff",
        f.only_flags("", "mount alone only lists mounts", (DANGER, "changes mounts")),
    ),
    **group(
        DANGER, "runs as another user", "sudo su doas pkexec runuser sg run0 chroot unshare nsenter"
    ),
    "crontab": Rule(
        DANGER,
        "changes scheduled jobs",
        f.only_flags("-l", "crontab -l only lists", (DANGER, "crontab changes scheduled jobs")),
    ),
    **group(DANGER, "schedules jobs", "at batch atrm systemd-run"),
    **group(
        DANGER,
        "changes users",
        "useradd userdel usermod groupadd groupdel groupmod passwd chpasswd",
    ),
    **group(
        DANGER,
        "changes users",
        "adduser deluser addgroup delgroup visudo vipw chsh chfn chage gpasswd",
    ),
    "sysctl": Rule(DANGER, "changes kernel parameters", f.sysctl),
    **group(DANGER, "changes the kernel", "modprobe insmod rmmod kexec"),
    **group(
        DANGER,
        "controls containers (the Docker socket is root)",
        "docker podman nerdctl ctr crictl kubectl helm",
    ),
    **group(
        DANGER, "controls containers or VMs", "docker-compose minikube kind k3s lxc virsh vagrant"
    ),
    **group(
        DANGER,
        "changes the system",
        "setcap update-alternatives ldconfig grub-install update-grub efibootmgr",
    ),
    **group(
        DANGER,
        "changes the system",
        "hwclock timedatectl hostnamectl loginctl nvram diskutil chattr",
    ),
    "ip": Rule(DANGER, "changes network configuration", f.ip),
    "ifconfig": Rule(DANGER, "changes network configuration", f.ifconfig),
    **group(DANGER, "runs commands on another machine", "ssh mosh"),
    **group(DANGER, "changes real infrastructure", "terraform tofu pulumi", _infra),
    **group(DANGER, "changes remote machines", "ansible ansible-playbook salt"),
    "journalctl": Rule(SAFE, "reads the system journal", f.journalctl),
    "dmesg": Rule(SAFE, "reads the kernel log", f.dmesg),
}
