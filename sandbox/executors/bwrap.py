"""bubblewrap's view of the host for a read-only local job.

    bwrap --ro-bind / /  --dev /dev  --proc /proc  --ro-bind /proc/sys /proc/sys
          --tmpfs /tmp  --tmpfs /run  --tmpfs DATA  --ro-bind WS WS
          --unshare-pid --unshare-ipc --unshare-uts [--unshare-net]
          --die-with-parent --new-session --cap-drop ALL --chdir WS -- bash -c ...

- The host and the workspace are read-only; /tmp is private; /run (the Docker
  socket, /var/run links to it, and other daemons' sockets) and bashfleet's
  data folder are covered by empty tmpfs (a workspace inside the data folder
  is bound back on top). No network unless the job allows it.
- bashfleet runs as root here, and bwrap run by root keeps every capability:
  ``--cap-drop ALL``, or a command could simply remount the workspace rw.
- uid 0 without capabilities can still write most of /proc/sys (sysctl writes
  are checked against the file mode only), and bwrap does not cover /proc/sys
  when it runs as root: it is bound read-only explicitly. --unshare-uts keeps
  even a missed sysctl (hostname) inside the sandbox.
- A pid namespace: bashfleet's processes are invisible (they cannot be signalled),
  and bwrap's init leaves when the command's shell does, which makes the kernel
  kill everything else in the namespace. ``--die-with-parent`` chains a kill of
  the outer bwrap to that init.
- The workspace stays owned by, and read as, the same uid as bashfleet: running
  commands as another uid would change what they may read, so it is not done.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

ALWAYS_HIDDEN = (Path("/run"),)


class BwrapView:
    def __init__(self, binary: str, hidden: list[Path]) -> None:
        self.binary = binary
        self.hidden = [*hidden, *ALWAYS_HIDDEN]

    def argv(
        self, workspace: Path, *, read_only: bool, network: bool, status_fd: int | None = None
    ) -> list[str]:
        """The bwrap command line up to and including ``--``."""
        argv = [self.binary, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        argv += ["--ro-bind", "/proc/sys", "/proc/sys", "--tmpfs", "/tmp"]
        hidden = [h.resolve() for h in self.hidden if h.is_dir()]
        # a folder holding the workspace is covered first, then the workspace bound back
        argv += [a for h in hidden if workspace.is_relative_to(h) for a in ("--tmpfs", str(h))]
        argv += ["--ro-bind" if read_only else "--bind", str(workspace), str(workspace)]
        argv += [a for h in hidden if not workspace.is_relative_to(h) for a in ("--tmpfs", str(h))]
        argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent"]
        argv += [] if network else ["--unshare-net"]
        if status_fd is not None:  # {"exit-code": N} is written there only if the sandbox came up
            argv += ["--json-status-fd", str(status_fd)]
        argv += ["--new-session", "--cap-drop", "ALL", "--chdir", str(workspace), "--"]
        return argv

    def self_test(self) -> str | None:
        """None if a sandbox can be made here, else what went wrong."""
        ws = Path(tempfile.mkdtemp(prefix="bashfleet-probe-"))
        try:
            argv = [*self.argv(ws, read_only=True, network=False), "true"]
            done = subprocess.run(argv, capture_output=True, timeout=10, env={}, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            return f"self-test failed: {e}"
        finally:
            ws.rmdir()
        if done.returncode != 0:
            return f"self-test failed: {done.stderr.decode(errors='replace').strip()}"
        return None


def came_up(status: bytes) -> bool:
    """Did bwrap's --json-status-fd report an exit code (i.e. the sandbox was made)?"""
    return b'"exit-code"' in status
