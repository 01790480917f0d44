"""Build the default sandbox image locally, with no container registry.

    build_image(tag, method="auto")   -> the tag; skipped when the tag exists (unless force)
    build_profile(profile)            -> the tag of a named recipe (``base`` or ``dev``)
    image_present(tag)                -> bool, for `bashfleet doctor`
    default_image(setting=None)       -> BASHFLEET_IMAGE, a per-workspace setting, or the default

Methods:
- ``debootstrap``: a Debian ``minbase`` root filesystem (bash, coreutils, grep, sed,
  findutils, util-linux, plus procps) from the apt mirror this machine is already
  configured with (/etc/apt/sources.list or /etc/apt/sources.list.d/*.sources),
  imported with ``docker import``. About 25 s on 2 cores.
- ``busybox``: busybox-static applets plus the host's own bash and its libraries;
  a few seconds, for machines where debootstrap cannot run.
``auto`` picks debootstrap when it is present or can be installed, else busybox.

Profiles (``bashfleet image build --profile NAME``): ``base`` is the default image above;
``dev`` (``bashfleet-dev:latest``) is a toolchain image from the same Debian suite: git,
make, gcc, python3 with venv and pip, nodejs and npm, curl, unzip, jq, ca-certificates.
Its recipe (suite, sorted package list, version) is hashed into a label; a build is
skipped when an image with the same recipe exists.

Both add an unprivileged ``sandbox`` user (uid/gid ``SANDBOX_UID``). This module talks
to the engine through the ``docker`` command line, never the ``docker`` package
(sandbox/executors/docker.py is the only importer of that).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from sandbox.errors import ExecutorError

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "bashfleet-sandbox:latest"
SANDBOX_UID = 1000  # the image's unprivileged user; used for root-owned workspaces
# minbase already has bash, coreutils, grep, sed, findutils; python3 runs the local pool's
# warm sandbox (spawner) on the image itself, and users expect it in a sandbox
EXTRA_PACKAGES = ("procps", "python3")
# what a bashfleet-built image is made of; an older build of the default tag is rebuilt
IMAGE_VERSION = "2"
VERSION_LABEL = "bashfleet.image"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROFILE_LABEL = "bashfleet.profile"
RECIPE_LABEL = "bashfleet.recipe"
DEV_IMAGE = "bashfleet-dev:latest"
# build-essential without g++ and dpkg-dev: a C toolchain is gcc, the libc headers and make
DEV_PACKAGES = tuple(
    sorted(
        {
            *EXTRA_PACKAGES,
            "ca-certificates",
            "curl",
            "gcc",
            "git",
            "jq",
            "libc6-dev",
            "make",
            "nodejs",
            "npm",
            "python3-pip",
            "python3-venv",
            "unzip",
        }
    )
)
PROFILES = {"base": (DEFAULT_IMAGE, EXTRA_PACKAGES), "dev": (DEV_IMAGE, DEV_PACKAGES)}


def default_image(setting: str | None = None) -> str:
    """The image to use: a per-workspace setting, else BASHFLEET_IMAGE, else the default."""
    return setting or os.environ.get("BASHFLEET_IMAGE") or DEFAULT_IMAGE


def image_present(tag: str = DEFAULT_IMAGE) -> bool:
    """True when the engine has ``tag``; False when it does not or the engine is unreachable."""
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def build_profile(profile: str, *, tag: str | None = None, force: bool = False) -> str:
    """Build a named recipe (``PROFILES``); ``base`` is ``build_image`` unchanged."""
    if profile not in PROFILES:
        raise ValueError(f"unknown image profile {profile!r}: one of {', '.join(PROFILES)}")
    default_tag, packages = PROFILES[profile]
    tag = tag or default_tag
    if profile == "base":
        return build_image(tag, force=force)
    if shutil.which("docker") is None:
        raise ExecutorError(
            "the docker command is missing; run scripts/docker-up", executor="docker"
        )
    _mirror, suite = apt_mirror()
    recipe = recipe_id(suite, packages)
    if not force and _label(tag, RECIPE_LABEL) == recipe:
        return tag
    if not _ensure_tool("debootstrap", "debootstrap"):
        raise ExecutorError("debootstrap is missing and cannot be installed", executor="docker")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bashfleet-rootfs-") as tmp:
        root = Path(tmp) / "root"
        _debootstrap(root, EXTRA_PACKAGES)  # (debootstrap's own resolver cannot take npm)
        _apt_install(root, tuple(p for p in packages if p not in EXTRA_PACKAGES))
        _add_sandbox_user(root)
        _import(root, tag, {PROFILE_LABEL: profile, RECIPE_LABEL: recipe})
    log.info("built %s (profile %s) in %.1fs", tag, profile, time.monotonic() - started)
    return tag


def recipe_id(suite: str, packages: tuple[str, ...]) -> str:
    """What a profile image is built from, as a short hash: same recipe, same id."""
    text = "\n".join([IMAGE_VERSION, suite, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_image(tag: str = DEFAULT_IMAGE, *, method: str = "auto", force: bool = False) -> str:
    """Build the sandbox image as ``tag`` unless it exists already; returns the tag."""
    if method not in ("auto", "debootstrap", "busybox"):
        raise ValueError(f"unknown image build method {method!r}")
    if shutil.which("docker") is None:
        raise ExecutorError(
            "the docker command is missing; run scripts/docker-up", executor="docker"
        )
    if not force and image_present(tag) and not _outdated(tag):
        return tag
    if method == "auto":
        method = "debootstrap" if _ensure_tool("debootstrap", "debootstrap") else "busybox"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bashfleet-rootfs-") as tmp:
        root = Path(tmp) / "root"
        if method == "debootstrap":
            _debootstrap(root)
        else:
            _busybox_rootfs(root)
        _add_sandbox_user(root)
        _import(root, tag)
    log.info("built %s with %s in %.1fs", tag, method, time.monotonic() - started)
    return tag


# -- debootstrap ----------------------------------------------------------------------------


def apt_mirror(etc: Path = Path("/etc")) -> tuple[str, str]:
    """(mirror URL, suite) of the main Debian archive this machine's apt uses."""
    suite = _os_codename(etc / "os-release")
    for uri, suites in _apt_sources(etc / "apt"):
        if "security" in uri:
            continue
        if suite in suites or (not suite and suites):
            return uri, suite or suites[0]
    raise ExecutorError(
        "no Debian apt mirror configured in /etc/apt (needed to build the sandbox image); "
        "use method='busybox' or BASHFLEET_IMAGE=<an image with bash>",
        executor="docker",
        retryable=False,
    )


def _os_codename(os_release: Path) -> str:
    try:
        text = os_release.read_text()
    except OSError:
        return ""
    found = re.search(r"^VERSION_CODENAME=\"?([\w-]+)\"?$", text, re.M)
    return found.group(1) if found else ""


def _apt_sources(apt: Path) -> list[tuple[str, list[str]]]:
    """(uri, suites) pairs from one-line .list files and deb822 .sources files, in apt's order."""
    found: list[tuple[str, list[str]]] = []
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        for line in _read_lines(path):
            parts = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(parts) >= 3 and parts[0] == "deb":
                found.append((parts[1], [parts[2]]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", "\n".join(_read_lines(path))):
            fields = dict(
                (key.strip().lower(), value.strip())
                for key, _, value in (
                    line.partition(":") for line in stanza.splitlines() if not line.startswith("#")
                )
            )
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                suites = fields.get("suites", "").split()
                found.extend((uri, suites) for uri in fields.get("uris", "").split())
    return found


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def build_debian_image(
    tag: str, packages: tuple[str, ...], files: dict[str, tuple[str, int]] | None = None
) -> str:
    """A Debian minbase image with ``packages`` and extra ``files`` ({path: (text, mode)}),
    built with no registry. Used for local base images (the Dockerfile's BASE_IMAGE and a
    PostgreSQL image for the compose test) on machines that cannot pull."""
    if image_present(tag):
        return tag
    if not _ensure_tool("debootstrap", "debootstrap"):
        raise ExecutorError("debootstrap is missing and cannot be installed", executor="docker")
    with tempfile.TemporaryDirectory(prefix="bashfleet-rootfs-") as tmp:
        root = Path(tmp) / "root"
        _debootstrap(root, packages)
        for rel, (text, mode) in (files or {}).items():
            path = root / rel.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        _import(root, tag)
    return tag


def _debootstrap(root: Path, packages: tuple[str, ...] = EXTRA_PACKAGES) -> None:
    mirror, suite = apt_mirror()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        suite,
        str(root),
        mirror,
    ]
    _run(cmd, "debootstrap")
    # Package caches and lists are useless in a sandbox and half its size.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(root / junk, ignore_errors=True)


def _apt_install(root: Path, packages: tuple[str, ...]) -> None:
    """``apt-get install --no-install-recommends`` in the new root (chroot, as root), from
    the suite debootstrap configured there; then the same clean-up as ``_debootstrap``."""
    resolv = root / "etc" / "resolv.conf"
    with contextlib.suppress(OSError):
        resolv.unlink()
    shutil.copyfile("/etc/resolv.conf", resolv)
    proc = root / "proc"
    proc.mkdir(exist_ok=True)
    _run(["mount", "-t", "proc", "proc", str(proc)], "mount /proc")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": PATH_ENV, "LANG": "C.UTF-8"}
    try:
        _run(["chroot", str(root), "apt-get", "update", "-qq"], "apt-get update", env)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        _run(["chroot", str(root), *install], "apt-get install", env)
        _run(["chroot", str(root), "apt-get", "clean"], "apt-get clean", env)
    finally:
        subprocess.run(["umount", "-l", str(proc)], capture_output=True, check=False)
    resolv.write_text("")  # Docker provides its own
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        shutil.rmtree(root / junk, ignore_errors=True)


# -- busybox + host bash ----------------------------------------------------------------------


def _busybox_rootfs(root: Path) -> None:
    if not _ensure_tool("busybox", "busybox-static"):
        raise ExecutorError("busybox is missing and cannot be installed", executor="docker")
    busybox, bash = shutil.which("busybox"), shutil.which("bash")
    assert busybox and bash
    bin_dir = root / "usr" / "bin"
    for d in ("bin", "lib", "lib64"):
        (root / "usr" / d).mkdir(parents=True)
    for link, target in (
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ):
        (root / link).symlink_to(target)
    (root / "usr" / "sbin").symlink_to("bin")
    shutil.copy2(busybox, bin_dir / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet not in ("bash", "busybox"):
            (bin_dir / applet).symlink_to("busybox")
    shutil.copy2(bash, bin_dir / "bash")
    _copy_libraries(bash, root)
    for d in ("etc", "tmp", "workspace", "proc", "sys", "dev"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")


def _copy_libraries(binary: str, root: Path) -> None:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for lib in re.findall(r"(/\S+)", out):
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), dest)


# -- shared ----------------------------------------------------------------------------------


def _add_sandbox_user(root: Path) -> None:
    passwd, group = root / "etc" / "passwd", root / "etc" / "group"
    if ":1000:" not in passwd.read_text():
        with passwd.open("a") as f:
            f.write(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/tmp:/bin/bash\n")
        with group.open("a") as f:
            f.write(f"sandbox:x:{SANDBOX_UID}:\n")
    (root / "workspace").mkdir(exist_ok=True)


def _import(root: Path, tag: str, labels: dict[str, str] | None = None) -> None:
    tar = subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "--exclude=./dev/*", "-c", "."],
        stdout=subprocess.PIPE,
    )
    changes = ['CMD ["/bin/bash"]', f"ENV PATH={PATH_ENV}", "WORKDIR /workspace"]
    changes.append(f"LABEL {VERSION_LABEL}={IMAGE_VERSION}")
    changes.extend(f"LABEL {key}={value}" for key, value in sorted((labels or {}).items()))
    cmd = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", tag]
    try:
        done = subprocess.run(cmd, stdin=tar.stdout, capture_output=True, text=True, check=False)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise ExecutorError(f"docker import failed: {done.stderr.strip()}", executor="docker")


def _outdated(tag: str) -> bool:
    """The default image, built by an older bashfleet (other tags are the user's own)."""
    if tag != DEFAULT_IMAGE:
        return False
    value = _label(tag, VERSION_LABEL)
    return value is not None and value != IMAGE_VERSION


def _label(tag: str, key: str) -> str | None:
    """A label of a local image ("" when it has none); None when there is no such image."""
    label = f'{{{{index .Config.Labels "{key}"}}}}'
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", label, "--", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip().replace("<no value>", "") if done.returncode == 0 else None


def _ensure_tool(command: str, package: str) -> bool:
    """True when ``command`` exists, installing ``package`` from apt first if root and needed."""
    if shutil.which(command):
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s from apt", package)
    subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package], capture_output=True, check=False, env=env
    )
    return shutil.which(command) is not None


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise ExecutorError(f"{what} failed (exit {done.returncode}):\n{tail}", executor="docker")
