"""What a bashfleet container looks like: profiles, specs, create arguments, in-container scripts.

No I/O here except ``os.stat`` of the workspace (its owner is the container's user).

Every container is locked down the same way (DESIGN.md, "Isolation"); a ``Profile`` sets its
size. ``conditional`` and ``sequential`` share the "batch" profile because they share the
batch's container; ``dangerous`` gets the strictest one and never the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sandbox.executors import egress
from sandbox.executors.environment import BASE_ENV, HOSTNAME, command_environment
from sandbox.image import SANDBOX_UID
from sandbox.model import CommandClass, Job

LABEL_COMMAND = "bashfleet.command"  # "" on shared containers: they hold running-marker files
LABEL_INSTANCE = "bashfleet.instance"
LABEL_BATCH = "bashfleet.batch"
LABEL_ROLE = "bashfleet.role"  # "batch" (warm, per batch) or "single" (one dangerous command)
MARKER_DIR = "/tmp"  # /tmp/.bashfleet-<job id>.pgid exists while a command runs


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    memory_bytes: int
    pids: int
    cpus: float
    tmpfs_bytes: int
    network_allowed: bool
    single_use: bool  # a fresh container per command (else one shared per batch)


BATCH = Profile(
    "batch",
    memory_bytes=4 << 30,
    pids=1024,
    cpus=float(os.cpu_count() or 1),
    tmpfs_bytes=512 << 20,
    network_allowed=True,
    single_use=False,
)
DANGEROUS = Profile(
    "dangerous",
    memory_bytes=512 << 20,
    pids=128,
    cpus=1.0,
    tmpfs_bytes=64 << 20,
    network_allowed=False,
    single_use=True,
)
DEFAULT_PROFILES = {
    CommandClass.SAFE: BATCH,  # safe commands normally run locally; if sent here, batch profile
    CommandClass.CONDITIONAL: BATCH,
    CommandClass.SEQUENTIAL: BATCH,
    CommandClass.DANGEROUS: DANGEROUS,
}


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything that makes two containers interchangeable; the key of warm and pool maps."""

    image: str
    role: str  # "batch" | "single"
    batch_id: str  # "" for single-use containers, which any batch of the workspace may take
    workspace: str
    read_only: bool
    network: bool
    user: str
    memory_bytes: int
    pids: int
    cpus: float
    tmpfs_bytes: int


def workspace_user(workspace: str) -> str:
    """``uid:gid`` owning the workspace, so that created files belong to its owner.

    A root-owned workspace is never run as root: it gets the image's unprivileged
    ``sandbox`` user (SANDBOX_UID), which can write there only if the permissions let it.
    Workspaces should belong to a non-root user (see the module docs of docker.py).
    """
    st = os.stat(workspace)
    if st.st_uid == 0:
        return f"{SANDBOX_UID}:{SANDBOX_UID}"
    return f"{st.st_uid}:{st.st_gid}"


def spec_for(job: Job, image: str, profile: Profile) -> ContainerSpec:
    """The container a job runs in (``image``: the executor's default when the job names
    none). Single-use containers honour the job's tighter limits, and so does a batch
    container for a job whose limits are its workspace's (``Job.sized``)."""
    single = profile.single_use
    limits = job.limits
    memory, pids, tmpfs = profile.memory_bytes, profile.pids, profile.tmpfs_bytes
    cpus = profile.cpus
    if single or job.sized:
        memory = min(memory, limits.memory_bytes or memory)
        pids = min(pids, limits.pids or pids)
        tmpfs = min(tmpfs, limits.tmpfs_bytes or tmpfs)
        cpus = min(cpus, limits.cpus or cpus)
    return ContainerSpec(
        image=job.image or image,
        role="single" if single else "batch",
        batch_id="" if single else job.batch_id,
        workspace=os.path.realpath(job.workspace),
        read_only=job.read_only,
        network=job.network and profile.network_allowed,
        user=workspace_user(str(job.workspace)),
        memory_bytes=memory,
        pids=pids,
        cpus=cpus,
        tmpfs_bytes=tmpfs,
    )


def create_kwargs(spec: ContainerSpec, instance_id: str, batch_id: str) -> dict[str, Any]:
    """Arguments of ``client.containers.create`` for a locked-down idle container."""
    return {
        "image": spec.image,
        # The idle process; commands arrive by exec. init=True reaps orphans and forwards signals.
        "command": ["sleep", "infinity"],
        "init": True,
        "detach": True,
        "user": spec.user,
        "working_dir": "/workspace",
        "environment": dict(BASE_ENV),
        "hostname": HOSTNAME,
        # egress: the one bridge network that reaches out but never the host (egress.py)
        "network_mode": egress.NETWORK if spec.network else "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={spec.tmpfs_bytes},mode=1777"},
        "volumes": {
            spec.workspace: {"bind": "/workspace", "mode": "ro" if spec.read_only else "rw"}
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "pids_limit": spec.pids,
        "mem_limit": spec.memory_bytes,
        "memswap_limit": spec.memory_bytes,  # == mem_limit: no swap
        "nano_cpus": int(spec.cpus * 1e9),
        "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        "labels": {
            LABEL_COMMAND: "",
            LABEL_INSTANCE: instance_id,
            LABEL_BATCH: batch_id,
            LABEL_ROLE: spec.role,
        },
    }


# Runs the command in its own session (so its whole tree is one process group), records the
# group in a marker file, enforces the timeout inside the container (it holds even if
# bashfleet dies), applies per-process rlimits, and kills whatever the command left behind.
_WRAPPER = r"""
id=$1 t=$2 lim=$3 cmd=$4 f="{dir}/.bashfleet-$1.pgid"
exec 3>&2 2>/dev/null  # bash's own "Killed" notices about the wrapper are not the command's
setsid -w bash -c 'echo $$ > "$0"; ulimit $1 2>/dev/null
  export SHLVL=0  # the command sees SHLVL=1, as in the local pool: the wrappers do not count
  if [ "$2" = 0 ]; then exec bash -c "$3"; else exec timeout -s KILL "$2" bash -c "$3"; fi' \
  "$f" "$lim" "$t" "$cmd" 2>&3 3>&-
rc=$?
read -r pg < "$f" 2>/dev/null && kill -KILL -- "-$pg" 2>/dev/null
rm -f "$f"
exit $rc
""".replace("{dir}", MARKER_DIR)

# Kills a command's tree from a second exec using bash builtins only (no fork: it must work
# even when a fork bomb holds every pid): its process group, and anything carrying its marker.
_KILLER = r"""
id=$1 pg= f="{dir}/.bashfleet-$1.pgid"
read -r pg < "$f" 2>/dev/null
for round in 1 2 3; do
  [ -n "$pg" ] && kill -KILL -- "-$pg" 2>/dev/null
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = $$ ] && continue
    mapfile -d '' -t envs < "$d/environ" 2>/dev/null || continue
    for e in "${envs[@]}"; do
      [ "$e" = "BASHFLEET_JOB=$id" ] && { kill -KILL "$p" 2>/dev/null; break; }
    done
  done
done
""".replace("{dir}", MARKER_DIR)

# Prints cumulative cgroup counters (v1 and v2 paths): "max N" (forks refused by pids_limit)
# and "oom_kill N" (processes killed by the memory limit).
_PROBE = r"""
for f in /sys/fs/cgroup/pids/pids.events /sys/fs/cgroup/pids.events \
         /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
  [ -r "$f" ] || continue
  while read -r k v; do
    case $k in max|oom_kill) echo "$k $v";; esac
  done < "$f"
done
"""

# Lists the ids of commands still running in a container (for orphan recovery).
_RUNNING = r"""
for f in {dir}/.bashfleet-*.pgid; do
  [ -e "$f" ] || continue
  f=${f#{dir}/.bashfleet-}; echo "${f%.pgid}"
done
""".replace("{dir}", MARKER_DIR)


def exec_command(job: Job) -> list[str]:
    timeout = 0.0 if job.timeout_s is None else max(job.timeout_s, 0.01)
    return ["bash", "-c", _WRAPPER, "bashfleet", job.id, f"{timeout:g}", _ulimits(job), job.command]


def exec_environment(job: Job) -> dict[str, str]:
    return command_environment(job.env, job.id)


def killer_command(job_id: str) -> list[str]:
    return ["bash", "-c", _KILLER, "bashfleet", job_id]


def probe_command() -> list[str]:
    return ["bash", "-c", _PROBE]


def running_command() -> list[str]:
    return ["bash", "-c", _RUNNING]


def parse_counters(text: str) -> dict[str, int]:
    counters: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            counters[key] = int(value)
    return counters


def _ulimits(job: Job) -> str:
    """``ulimit`` options (bash builtin, all on one call) for the per-process limits."""
    limits, opts = job.limits, ["-c 0"]
    if limits.cpu_s:
        opts.append(f"-t {limits.cpu_s}")
    if limits.file_size_bytes:
        opts.append(f"-f {max(1, limits.file_size_bytes // 1024)}")
    if limits.open_files:
        opts.append(f"-n {limits.open_files}")
    return " ".join(opts)
