"""Plain values shared by the engine's modules: classes, statuses, jobs, outcomes.

No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class CommandClass(StrEnum):
    """How risky a command is, in increasing order."""

    SAFE = "safe"
    CONDITIONAL = "conditional"
    SEQUENTIAL = "sequential"
    DANGEROUS = "dangerous"

    @property
    def rank(self) -> int:
        return _CLASS_RANK[self]

    @classmethod
    def worst(cls, *classes: CommandClass) -> CommandClass:
        return max(classes, key=lambda c: c.rank, default=cls.SAFE)


_CLASS_RANK = {
    CommandClass.SAFE: 0,
    CommandClass.CONDITIONAL: 1,
    CommandClass.SEQUENTIAL: 2,
    CommandClass.DANGEROUS: 3,
}


class Status(StrEnum):
    """A command's (or a batch's) lifecycle state. See DESIGN.md, "Statuses"."""

    PENDING = "pending"  # waiting for dependencies
    QUEUED = "queued"  # ready, waiting for a slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # an upstream command failed
    INTERRUPTED = "interrupted"  # the server died while it ran
    REFUSED = "refused"  # policy, or no isolation available
    OOM_KILLED = "oom_killed"
    AWAITING_APPROVAL = "awaiting_approval"  # its workspace wants a person to approve it
    REJECTED = "rejected"  # a person said no, or nobody approved it in time

    @property
    def final(self) -> bool:
        return self not in (
            Status.PENDING,
            Status.QUEUED,
            Status.RUNNING,
            Status.AWAITING_APPROVAL,
        )

    @property
    def ok(self) -> bool:
        return self is Status.SUCCEEDED


class EdgeKind(StrEnum):
    """Why a command waits for an earlier one (an edge of the plan)."""

    RAW = "raw"  # it reads what the earlier one writes: it uses its result
    WAR = "war"  # it writes what the earlier one reads: it only has to wait
    WAW = "waw"  # both write the same thing: it only has to wait (the last write wins)
    NEEDS = "needs"  # an explicit dependency given with the batch

    @property
    def uses_result(self) -> bool:
        """A failure upstream of such an edge skips the dependent (``skip_dependents``)."""
        return self in (EdgeKind.RAW, EdgeKind.NEEDS)


class FailurePolicy(StrEnum):
    """What a failed command does to the rest of its batch (DESIGN.md, "The guarantee")."""

    SKIP_DEPENDENTS = "skip_dependents"  # skip what reads its writes or needs it
    CONTINUE = "continue"  # skip nothing (bash without set -e)
    HALT = "halt"  # start nothing later in script order (bash with set -e)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits for one command. None means "no limit"."""

    cpu_s: int | None = 600  # CPU seconds
    memory_bytes: int | None = 2 << 30  # address space (local) / cgroup memory (docker)
    file_size_bytes: int | None = 1 << 30  # largest file a command may write
    open_files: int | None = 1024
    pids: int | None = 256  # processes/threads (docker pids_limit; a local job's pids cgroup)
    cpus: float | None = None  # docker nano_cpus
    tmpfs_bytes: int | None = 64 << 20  # docker /tmp size
    # space the workspace's filesystem may lose while one container command runs (a total
    # across files; file_size_bytes caps each file): a disk filler is stopped at it
    disk_bytes: int | None = 10 << 30


DEFAULT_OUTPUT_CAP = 10 << 20  # per stream, then a marker


@dataclass(frozen=True, slots=True)
class Job:
    """One command handed to an executor."""

    id: str
    command: str
    cls: CommandClass
    workspace: Path
    batch_id: str = ""
    index: int = 0
    timeout_s: float | None = None
    limits: Limits = field(default_factory=Limits)
    env: tuple[tuple[str, str], ...] = ()  # extra environment, on top of the allowlist
    read_only: bool = False  # the workspace is mounted read-only (safe commands)
    network: bool = False  # may use the network (docker: only when the workspace allows it)
    output_cap: int = DEFAULT_OUTPUT_CAP
    image: str = ""  # the workspace's image; "" for the executor's default
    # the limits are the workspace's own (WorkspaceEnvironment.limits): a batch container
    # is sized by them too (memory, pids, cpus, /tmp), not only a dangerous command's
    sized: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a job. A non-zero exit is a status, never an exception."""

    status: Status
    exit_code: int | None = None
    signal: int | None = None
    started_at: float = 0.0  # time.time()
    ended_at: float = 0.0
    error: str | None = None  # infrastructure or limit message shown to the user
    truncated: bool = False  # output went past the cap
    # a read-only job that failed after a write was refused ("Read-only file system"):
    # the judgement was wrong, not the command (the scheduler runs it again, writable)
    wrote_read_only: bool = False

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)
