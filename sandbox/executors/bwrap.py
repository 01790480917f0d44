"""bubblewrap's view for a local job: the workspace's image, never the host.

The image view (the server, and ``bashfleet run`` when a Docker engine answers)::

    bwrap --ro-bind TREE /  --dev /dev  --proc /proc  --tmpfs /tmp
          --ro-bind WS /workspace  --unshare-pid --unshare-ipc --unshare-uts
          --hostname sandbox [--unshare-net]  --die-with-parent --new-session
          --cap-drop ALL [--cap-add CAP_SETUID --cap-add CAP_SETGID]
          --chdir /workspace -- [setpriv --reuid U --regid G --clear-groups --] bash -c ...

- ``TREE`` is the workspace image's root filesystem, unpacked once (``rootfs``): the
  same files, tools and ``/etc/passwd`` a container of that workspace sees. No host
  path exists inside: not its ``/etc``, ``/root``, ``/home``, the data folder, other
  workspaces or any socket, whatever ``--data`` or the environment say.
- The workspace is bound read-only at ``/workspace``, where containers have it.
- The job runs as the workspace's owner, the user a container of that workspace runs
  as (``docker_profiles.workspace_user``: uid 1000 for a root-owned workspace), so it
  reads and writes exactly what it could in a container. bwrap runs as bashfleet's own
  user (as root it resolves the tree and workspace whatever their parents' modes, and
  needs no user namespace); inside, every capability is dropped but the two that
  ``setpriv`` *of the image* (or the warm sandbox's server, on the image's python3)
  needs to become that user and to empty the bounding set, and becoming it clears
  them: the command starts with no capability and an empty bounding set, under
  ``no_new_privs``, on a ``nosuid`` tree.
- A pid namespace: bashfleet's processes are invisible (they cannot be signalled),
  and bwrap's init leaves when the command's shell does, which makes the kernel
  kill everything else in the namespace. ``--die-with-parent`` chains a kill of
  the outer bwrap to that init.

The host view (only ``bashfleet run`` on the user's own machine with no Docker engine,
or ``--isolation local``: the CLI may see the host, the server never does)::

    bwrap --ro-bind / /  --dev /dev  --proc /proc  --ro-bind /proc/sys /proc/sys
          --tmpfs /tmp  --tmpfs /run  --tmpfs DATA  --ro-bind WS WS ... --chdir WS

- The host and the workspace are read-only; /run (the Docker socket) and bashfleet's
  data folder are covered by empty tmpfs; the job keeps bashfleet's uid with
  ``--cap-drop ALL`` (and /proc/sys bound read-only: uid 0 without capabilities could
  still write most of it).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.executors.environment import HOSTNAME

ALWAYS_HIDDEN = (Path("/run"),)
# leaves root inside an image that has python3 but no setpriv: argv[1:] = uid gid argv...
_DROP = (
    "import ctypes,os,sys;u,g=int(sys.argv[1]),int(sys.argv[2]);"
    "p=ctypes.CDLL(None).prctl;[p(24,c,0,0,0) for c in range(64)];os.setgroups([]);"
    "os.setresgid(g,g,g);os.setresuid(u,u,u);os.execvp(sys.argv[3],sys.argv[3:])"
)
WORKSPACE = "/workspace"  # where a workspace is, in a container and in the image view


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a job runs as: the workspace's owner (a root-owned one: ``fallback``)."""

    uid: int
    gid: int


def workspace_identity(workspace: Path, fallback: int) -> Identity:
    """The uid:gid a container of ``workspace`` runs as (never root)."""
    st = os.stat(workspace)
    if st.st_uid == 0:
        return Identity(fallback, fallback)
    return Identity(st.st_uid, st.st_gid)


class BwrapView:
    """Builds bwrap command lines; ``tree`` None means the host view (CLI only)."""

    def __init__(self, binary: str, hidden: list[Path]) -> None:
        self.binary = binary
        self.hidden = [*hidden, *ALWAYS_HIDDEN]

    def argv(
        self,
        workspace: Path,
        *,
        tree: Path | None,
        who: Identity | None = None,
        read_only: bool,
        network: bool,
        status_fd: int | None = None,
        tmp_bytes: int | None = None,
    ) -> list[str]:
        """The bwrap command line up to and including ``--``; ``tmp_bytes`` caps the
        private /tmp (a tmpfs: its pages are memory)."""
        # /tmp as in a container: sticky and writable by all (HOME is there)
        size = ["--perms", "1777", *(["--size", str(tmp_bytes)] if tmp_bytes else [])]
        if tree is None:
            argv, inside = self._host_view(workspace, read_only, size), str(workspace)
        else:
            argv, inside = self._image_view(tree, workspace, read_only, size), WORKSPACE
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
        argv += ["--hostname", HOSTNAME] if tree is not None else []
        argv += [] if network else ["--unshare-net"]
        if status_fd is not None:  # {"exit-code": N} is written there only if the sandbox came up
            argv += ["--json-status-fd", str(status_fd)]
        argv += ["--new-session", "--cap-drop", "ALL"]
        if tree is not None and os.geteuid() == 0 and who is not None and who.uid != 0:
            # to leave root, and to empty the bounding set on the way (bwrap leaves it full)
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            argv += ["--cap-add", "CAP_SETPCAP"]
        argv += ["--chdir", inside, "--"]
        return argv

    def drop(self, tree: Path | None, who: Identity | None) -> list[str]:
        """The argv prefix, inside the sandbox, that makes the job ``who`` (nothing for the
        host view, or when bashfleet is not root: bwrap already runs as its own user)."""
        if tree is None or os.geteuid() != 0 or who is None or who.uid == 0:
            return []
        for setpriv in ("usr/bin/setpriv", "bin/setpriv"):
            if (tree / setpriv).is_file():
                ids = [f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups"]
                ids.append("--bounding-set=-all")
                return ["/" + setpriv, *ids, "--"]
        if (tree / "usr/bin/python3").exists():
            return ["/usr/bin/python3", "-I", "-S", "-c", _DROP, str(who.uid), str(who.gid)]
        raise FileNotFoundError("the image has neither setpriv nor python3 to leave root with")

    def _image_view(
        self, tree: Path, workspace: Path, read_only: bool, size: list[str]
    ) -> list[str]:
        argv = [self.binary, "--ro-bind", str(tree), "/", "--dev", "/dev"]
        argv += ["--proc", "/proc", *size, "--tmpfs", "/tmp"]
        argv += ["--ro-bind" if read_only else "--bind", str(workspace), WORKSPACE]
        return argv

    def _host_view(self, workspace: Path, read_only: bool, size: list[str]) -> list[str]:
        argv = [self.binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--ro-bind", "/proc/sys", "/proc/sys", *size, "--tmpfs", "/tmp"]
        hidden = [h.resolve() for h in self.hidden if h.is_dir()]
        # a folder holding the workspace is covered first, then the workspace bound back
        argv += [a for h in hidden if workspace.is_relative_to(h) for a in ("--tmpfs", str(h))]
        argv += ["--ro-bind" if read_only else "--bind", str(workspace), str(workspace)]
        argv += [a for h in hidden if not workspace.is_relative_to(h) for a in ("--tmpfs", str(h))]
        return argv

    def self_test(self, tree: Path | None, fallback_uid: int) -> str | None:
        """None if a sandbox can be made here, else what went wrong."""
        ws = Path(tempfile.mkdtemp(prefix="bashfleet-probe-"))
        try:
            os.chmod(ws, 0o755)
            who = workspace_identity(ws, fallback_uid)
            argv = [*self.argv(ws, tree=tree, who=who, read_only=True, network=False)]
            argv += [*self.drop(tree, who), "/bin/sh", "-c", ":"]
            done = subprocess.run(argv, capture_output=True, timeout=10, env={}, check=False)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            return f"self-test failed: {e}"
        finally:
            ws.rmdir()
        if done.returncode != 0:
            return f"self-test failed: {done.stderr.decode(errors='replace').strip()}"
        return None


def came_up(status: bytes) -> bool:
    """Did bwrap's --json-status-fd report an exit code (i.e. the sandbox was made)?"""
    return b'"exit-code"' in status
