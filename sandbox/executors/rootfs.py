"""An image's root filesystem, unpacked once, for the local pool's bubblewrap.

    trees = ImageTrees(trees_dir(data))             # BASHFLEET_ROOTFS, else DATA/rootfs
    tree = trees.tree("bashfleet-sandbox:latest")   # DATA/rootfs/<image id>, unpacked once
    trees.prune()                                   # drop trees of images no longer used

One workspace, one environment: a safe command runs on the same files as a container
of its workspace, so the local pool binds the workspace image's own root filesystem
read-only as ``/``, never the host's. A tree is made with the ``docker`` command line
(this module never imports the ``docker`` package): ``docker create`` of the image
(never started), ``docker export`` piped into ``tar -x`` in a temporary folder beside
the final one, renamed into place only when complete, so a half-unpacked tree is never
used. Trees are named by image id: a retagged image gets a new tree. The id last seen
for each image name is remembered in ``NAME.id`` beside the trees, so a server whose
engine is down keeps using the tree it has.

On the way in, set-user-id and set-group-id bits are cleared (containers run with
``no-new-privileges``, so they never work there either, and a tree in the data folder
must not hand the host's users a privileged binary of some image), device files are
not created, and ``/workspace``, ``/tmp``, ``/proc`` and ``/dev`` are made to exist as
the mount points bubblewrap needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

from sandbox.errors import ExecutorError

log = logging.getLogger(__name__)

MOUNT_POINTS = ("workspace", "tmp", "proc", "dev")
ROOTFS_ENV = "BASHFLEET_ROOTFS"
SPACE_MARGIN = 1.25  # free space wanted before unpacking: the image's size times this


def trees_dir(data: Path) -> Path:
    """Where image trees go: ``BASHFLEET_ROOTFS`` (e.g. a bigger disk than the data
    folder's, or one folder shared by several servers), else ``DATA/rootfs``."""
    setting = os.environ.get(ROOTFS_ENV, "").strip()
    return Path(setting).expanduser() if setting else data / "rootfs"


ID_TTL_S = 5.0  # an image's id is looked up again after this long
EXPORT_TIMEOUT_S = 600.0
STALE_UNPACK_S = 3600  # an unpack container older than this was left by a dead process


class ImageTrees:
    """Unpacked image trees under ``root``, one per image id; thread-safe."""

    def __init__(self, root: Path, *, docker: str | None = None) -> None:
        self.root = root
        self._docker = docker or shutil.which("docker")
        self._lock = threading.Lock()
        self._unpacking: dict[str, threading.Lock] = {}
        self._ids: dict[str, tuple[str, float]] = {}  # image -> (id, when looked up)
        self._containers: set[str] = set()  # created to unpack, not removed yet
        self._swept = False  # stale unpack containers of dead processes (see _sweep)

    def tree(self, image: str) -> Path:
        """The image's unpacked root filesystem, made now if needed (seconds, once)."""
        image_id = self.image_id(image)
        path = self.root / _dir_name(image_id)
        if path.is_dir():
            return path
        with self._lock:
            lock = self._unpacking.setdefault(image_id, threading.Lock())
        with lock:  # one unpack per id; a second caller waits for it
            if not path.is_dir():
                self._unpack(image, image_id, path)
        return path

    def ready(self, image: str) -> bool:
        """True when ``image``'s tree is unpacked and its id known (no engine call)."""
        known = self._ids.get(image)
        return known is not None and (self.root / _dir_name(known[0])).is_dir()

    def image_id(self, image: str) -> str:
        """The image's id (looked up at most every ``ID_TTL_S``); the last known one when
        the engine does not answer; ExecutorError when there is none."""
        now = time.monotonic()
        known = self._ids.get(image)
        if known is not None and now - known[1] < ID_TTL_S:
            return known[0]
        try:
            image_id = self._inspect(image)
        except ExecutorError:
            remembered = self._remembered(image)
            if remembered is None or not (self.root / _dir_name(remembered)).is_dir():
                raise
            image_id = remembered
        self._ids[image] = (image_id, now)
        return image_id

    def prune(self, keep: set[str] | None = None) -> list[Path]:
        """Remove trees (and leftovers of interrupted unpacks) whose image id is not the
        current one of an image in ``keep`` (default: every image name remembered here)."""
        if not self.root.is_dir():
            return []
        stems = (
            {_dir_name(image) for image in keep}
            if keep is not None
            else {p.stem for p in self.root.glob("*.id")}
        )
        wanted = set()
        for stem in stems:
            remembered = self._remembered_by_file(stem)
            if remembered is not None:
                wanted.add(_dir_name(remembered))
        removed = []
        for entry in self.root.iterdir():
            if entry.is_dir() and entry.name not in wanted:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    # -- the engine --------------------------------------------------------------------

    def _inspect(self, image: str) -> str:
        if self._docker is None:
            raise ExecutorError("the docker command line is not installed", executor="local")
        done = subprocess.run(
            [self._docker, "image", "inspect", "--format", "{{.Id}}", "--", image],
            capture_output=True,
            timeout=30,
            check=False,
        )
        image_id = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0 or not image_id.startswith("sha256:"):
            why = done.stderr.decode(errors="replace").strip() or "no such image"
            raise ExecutorError(
                f"cannot find image {image} ({why}); build it with `bashfleet image build`",
                executor="local",
                # no such image: waiting will not make one (an engine that does not answer may)
                retryable="no such image" not in why.lower(),
            )
        return image_id

    def _unpack(self, image: str, image_id: str, path: Path) -> None:
        assert self._docker is not None
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # bubblewrap runs as the workspace's user: it must reach it
        started = time.monotonic()
        partial = self.root / f".partial-{path.name}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o755)
        self._check_space(image_id)
        if not self._swept:  # once per process, beside the unpack (a prune may be slow)
            self._swept = True
            threading.Thread(target=self._sweep, name="rootfs-sweep", daemon=True).start()
        container = self._create(image_id)
        try:
            self._export(container, partial)
            _sanitize(partial)
            try:
                os.rename(partial, path)
            except OSError:
                if not path.is_dir():  # another server unpacked the same id meanwhile: use it
                    raise
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            self._remove(container)
        self._remember(image, image_id)
        took = time.monotonic() - started
        log.info("unpacked %s (%s) in %.1f s", image, image_id[:19], took)

    def _check_space(self, image_id: str) -> None:
        """Never fill the data folder's disk with a tree: refuse when it would not fit."""
        assert self._docker is not None
        done = subprocess.run(
            [self._docker, "image", "inspect", "--format", "{{.Size}}", image_id],
            capture_output=True,
            timeout=30,
            check=False,
        )
        try:
            size = int(done.stdout.strip())
        except ValueError:
            return
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if free < size * SPACE_MARGIN:
            raise ExecutorError(
                f"not enough space in {self.root} to unpack the image ({size >> 20} MiB, "
                f"{free >> 20} MiB free); free some or set {ROOTFS_ENV} to a bigger disk",
                executor="local",
            )

    def close(self) -> None:
        """Remove the containers of unpacks still under way (their unpack then fails)."""
        with self._lock:
            containers = list(self._containers)
        for container in containers:
            self._remove(container)

    def _remove(self, container: str) -> None:
        assert self._docker is not None
        subprocess.run(
            [self._docker, "rm", "-f", container], capture_output=True, timeout=60, check=False
        )
        with self._lock:
            self._containers.discard(container)

    def _sweep(self) -> None:
        """Unpack containers left by a process killed mid-unpack (never started, labelled,
        older than any unpack may take) are removed; failures only cost a leftover."""
        assert self._docker is not None
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [self._docker, "container", "prune", "--force", "--filter",
                 "label=bashfleet.rootfs=1", "--filter", f"until={STALE_UNPACK_S}s"],
                capture_output=True,
                timeout=60,
                check=False,
            )  # fmt: skip

    def _create(self, image_id: str) -> str:
        assert self._docker is not None
        done = subprocess.run(
            [self._docker, "create", "--label", "bashfleet.rootfs=1", image_id, "true"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()
            raise ExecutorError(f"cannot create a container to unpack: {why}", executor="local")
        container = done.stdout.decode().strip()
        with self._lock:
            self._containers.add(container)
        return container

    def _export(self, container: str, into: Path) -> None:
        assert self._docker is not None
        tar = ["tar", "-x", "-C", str(into), "--exclude=./dev/*", "--exclude=dev/*"]
        if os.geteuid() == 0:
            tar.append("--same-owner")
        export = subprocess.Popen(
            [self._docker, "export", container], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert export.stdout is not None
        try:
            unpack = subprocess.run(
                tar, stdin=export.stdout, capture_output=True, timeout=EXPORT_TIMEOUT_S, check=False
            )
        finally:
            export.stdout.close()
            export_err = export.stderr.read() if export.stderr else b""
            export.wait(timeout=60)
        if export.returncode != 0 or unpack.returncode != 0:
            why = (export_err or unpack.stderr).decode(errors="replace").strip()[-500:]
            raise ExecutorError(f"cannot unpack the image: {why}", executor="local")

    # -- the id files ------------------------------------------------------------------

    def _id_file(self, image: str) -> Path:
        return self.root / f"{_dir_name(image)}.id"

    def _remember(self, image: str, image_id: str) -> None:
        tmp = self.root / f".{_dir_name(image)}.id.tmp"
        tmp.write_text(f"{image}\n{image_id}\n")
        os.replace(tmp, self._id_file(image))

    def _remembered(self, image: str) -> str | None:
        return self._remembered_by_file(_dir_name(image))

    def _remembered_by_file(self, stem: str) -> str | None:
        try:
            lines = (self.root / f"{stem}.id").read_text().splitlines()
        except OSError:
            return None
        return lines[1] if len(lines) == 2 and lines[1].startswith("sha256:") else None


def _dir_name(text: str) -> str:
    """A file name for an image id or name: the id's hex, or a hash of a name."""
    if text.startswith("sha256:") and text[7:].isalnum():
        return text[7:]
    return "image-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _sanitize(tree: Path) -> None:
    """No set-id bits, no device files; the mount points bubblewrap binds over exist."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in filenames + dirnames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                os.unlink(full)
            elif not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(full, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
    for name in MOUNT_POINTS:
        point = tree / name
        if point.is_symlink() or (point.exists() and not point.is_dir()):
            point.unlink()
        point.mkdir(mode=0o755, exist_ok=True)
