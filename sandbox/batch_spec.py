"""What a batch is, as the scheduler takes it: ``BatchSpec`` and its ``CommandSpec``s, their
checks, and the per-class limits and rules (``MAX_LIMITS``, ``default_limits``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from sandbox.errors import InputError
from sandbox.model import (
    DEFAULT_OUTPUT_CAP,
    CommandClass,
    EdgeKind,
    FailurePolicy,
    Limits,
    Status,
)
from sandbox.workspace_env import WorkspaceEnvironment

# DESIGN.md defaults: the maxima.
MAX_LIMITS = {
    CommandClass.SAFE: 16,
    CommandClass.CONDITIONAL: 8,
    CommandClass.SEQUENTIAL: 1,  # per workspace
    CommandClass.DANGEROUS: 1,  # and exclusive in its workspace
}
NOT_IDEMPOTENT = (CommandClass.SEQUENTIAL, CommandClass.DANGEROUS)
NETWORKED = (CommandClass.CONDITIONAL, CommandClass.SEQUENTIAL)  # in a workspace with network
RETRYABLE = (Status.FAILED, Status.TIMED_OUT)


def default_limits(jobs: int | None = None) -> dict[CommandClass, int]:
    """Per-class slots: DESIGN.md maxima capped by cores and available memory.

    Safe commands get 8 slots per core (16 from 2 cores on): they are read-only and
    mostly wait on the disk, a pipe or the clock, and an agent fires its 8-16 reads at
    once; a CPU-bound burst time-slices and takes as long as two waves would. Load is
    the autoscaler's to answer (the portal's safe pool shrinks above 85% CPU).
    An explicit ``jobs`` (``--jobs N``) is the user's word for how much runs at
    once; it caps every class instead of the core count.
    """
    cores = os.cpu_count() or 1
    avail_gb = psutil.virtual_memory().available / (1 << 30)
    if jobs is not None:
        safe = conditional = max(1, jobs)
    else:
        safe = max(2, 8 * cores)
        conditional = max(1, cores)
    conditional = min(conditional, max(1, int(avail_gb / 0.5)))
    return {
        CommandClass.SAFE: min(MAX_LIMITS[CommandClass.SAFE], safe),
        CommandClass.CONDITIONAL: min(MAX_LIMITS[CommandClass.CONDITIONAL], conditional),
        CommandClass.SEQUENTIAL: 1,
        CommandClass.DANGEROUS: 1,
    }


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command of a batch, as planned."""

    index: int
    command: str
    cls: CommandClass
    reasons: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    needs: tuple[int, ...] = ()
    needs_reasons: tuple[str, ...] = ()  # aligned with needs: "#3 writes out/a.txt"
    # aligned with needs; without kinds every need is EdgeKind.NEEDS (uses its result)
    needs_kinds: tuple[EdgeKind, ...] = ()
    needs_paths: tuple[str, ...] = ()  # for a RAW edge: the path it reads of the other's writes
    id: str = ""
    approval: bool = False  # waits, ``awaiting_approval``, until a person approves it


@dataclass(frozen=True, slots=True)
class BatchSpec:
    commands: tuple[CommandSpec, ...]
    workspace: Path
    id: str = ""
    priority: int = 5  # the user's 1..10
    timeout_s: float | None = None
    retries: int = 0  # opt-in; never applied to sequential/dangerous
    allow_network: bool = False
    limits: Limits = field(default_factory=Limits)
    output_cap: int = DEFAULT_OUTPUT_CAP
    env: tuple[tuple[str, str], ...] = ()
    on_failure: FailurePolicy = FailurePolicy.SKIP_DEPENDENTS
    deadline_s: float | None = None  # for the whole batch, from its submission
    # the workspace's image, variables, secrets (redacted from output) and per-class limits
    environment: WorkspaceEnvironment | None = None
    # an approval not given within this many seconds ends the command ``rejected``
    approval_ttl_s: float | None = None


def _links(spec: CommandSpec) -> dict[int, tuple[EdgeKind, str]]:
    """Each need of a command with its edge kind and path (plain needs: EdgeKind.NEEDS)."""
    out: dict[int, tuple[EdgeKind, str]] = {}
    for i, n in enumerate(spec.needs):
        kind = spec.needs_kinds[i] if i < len(spec.needs_kinds) else EdgeKind.NEEDS
        path = spec.needs_paths[i] if i < len(spec.needs_paths) else ""
        if n not in out or kind.uses_result:
            out[n] = (EdgeKind(kind), path)
    return out


def _validate(spec: BatchSpec) -> None:
    indices = [c.index for c in spec.commands]
    if sorted(indices) != list(range(len(indices))):
        raise InputError("command indices must be 0..n-1, each once")
    if spec.deadline_s is not None and not spec.deadline_s > 0:
        raise InputError("deadline_s must be more than 0 seconds")
    for c in spec.commands:
        for name, aligned in (("needs_kinds", c.needs_kinds), ("needs_paths", c.needs_paths)):
            if aligned and len(aligned) != len(c.needs):
                raise InputError(f"command #{c.index + 1}: {name} must match needs one to one")
        for n in c.needs:
            if not 0 <= n < c.index:
                raise InputError(
                    f"command #{c.index + 1} needs #{n + 1}: "
                    "a command may only wait for earlier ones"
                )
