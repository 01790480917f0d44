"""Resource limits for a local job, set without ``preexec_fn`` (the caller is threaded).

Two spawn-safe ways, cheapest first:

- ``BASH_ENV``: a non-interactive bash sources ``$BASH_ENV`` before it runs a
  ``-c`` string, so the ``ulimit`` script is handed over through an inherited
  pipe (``BASH_ENV=/dev/fd/N``). The limits are set by the very bash that runs
  the command, before any of it runs: no extra exec, and the command text is
  untouched. The script then closes the pipe and unsets ``BASH_ENV``, and if a
  limit cannot be set the command does not run (exit 126).
- ``prlimit(1)`` in front of the argv: one exec more (~0.4 ms per command).

``LocalExecutor`` self-tests the first and falls back to the second. The same
script also moves the shell into its job's pids cgroup (``join``, see ``cgroups``)
before the command can fork.
"""

from __future__ import annotations

import resource

from sandbox.model import Limits

LIMITS_FAILED = "bashfleet: cannot set resource limits"

# resource -> (prlimit option, ulimit flag, ulimit unit in bytes)
_NAMES = {
    resource.RLIMIT_CPU: ("cpu", "t", 1),
    resource.RLIMIT_AS: ("as", "v", 1024),
    resource.RLIMIT_FSIZE: ("fsize", "f", 1024),  # bash counts 1024-byte blocks
    resource.RLIMIT_NOFILE: ("nofile", "n", 1),
}

Pairs = dict[int, tuple[int, int]]  # resource -> (soft, hard)


def wanted(limits: Limits) -> Pairs:
    """The (soft, hard) pairs to set, clamped to what this process may grant."""
    values = {
        resource.RLIMIT_CPU: limits.cpu_s,
        resource.RLIMIT_AS: limits.memory_bytes,
        resource.RLIMIT_FSIZE: limits.file_size_bytes,
        resource.RLIMIT_NOFILE: limits.open_files,
    }
    pairs: Pairs = {}
    for res, value in values.items():
        if value is None:
            continue
        # A soft CPU limit sends SIGXCPU (recognisable); the hard one, a second later, SIGKILL.
        soft, hard = value, value + 1 if res == resource.RLIMIT_CPU else value
        own_hard = resource.getrlimit(res)[1]
        if own_hard != resource.RLIM_INFINITY:  # an unprivileged parent cannot raise it
            soft, hard = min(soft, own_hard), min(hard, own_hard)
        pairs[res] = (soft, hard)
    return pairs


def prlimit_argv(prlimit: str, pairs: Pairs) -> list[str]:
    opts = [f"--{_NAMES[res][0]}={soft}:{hard}" for res, (soft, hard) in pairs.items()]
    return [prlimit, *opts, "--"]


def ulimit_script(pairs: Pairs, fd: int, join: str | None = None) -> bytes:
    """The BASH_ENV script: set the limits (and join the pids cgroup: ``join`` is a
    shell step, ``cgroups.Group.join_step``) or refuse to run, then tidy up."""
    steps = [join] if join else []
    for res, (soft, hard) in pairs.items():
        _, flag, unit = _NAMES[res]
        soft_u, hard_u = max(1, soft // unit), max(1, hard // unit)
        if soft_u == hard_u:
            steps.append(f"ulimit -{flag} {soft_u}")
        else:  # soft first: the new hard must never be below the current soft
            steps.append(f"ulimit -S -{flag} {soft_u} && ulimit -H -{flag} {hard_u}")
    refuse = f"{{ echo '{LIMITS_FAILED}' >&2; exit 126; }}"
    return f"{' && '.join(steps)} || {refuse}\nexec {fd}<&-\nunset BASH_ENV\n".encode()
