"""Text -> judged statements -> plan -> scheduler batch. Pure (no I/O).

This is the left half of the flow in DESIGN.md, glued together once so the
CLI, the service and the benchmarks all judge a script the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import InputError
from sandbox.failure import errexit, policy_for
from sandbox.judge.classify import Verdict, classify
from sandbox.judge.effects import LOCAL_RESOURCES, Effects, effects
from sandbox.judge.parse import Statement, parse
from sandbox.judge.plan import Plan, build_plan
from sandbox.model import EdgeKind, FailurePolicy, Limits
from sandbox.scheduler import BatchSpec, CommandSpec
from sandbox.workspace_env import WorkspaceEnvironment

MAX_SCRIPT_BYTES = 1 << 20  # the portal's default; the CLI allows more
MAX_STATEMENTS = 5000
MAX_STATEMENT_BYTES = 128 << 10  # Linux's limit for one argument (MAX_ARG_STRLEN)


@dataclass(frozen=True, slots=True)
class Judged:
    statement: Statement
    verdict: Verdict
    effects: Effects


@dataclass(frozen=True, slots=True)
class Judgement:
    judged: tuple[Judged, ...]
    plan: Plan


def script_text(script: str | None, commands: list[str] | None) -> str:
    """The script of a submission given as ``script`` (text) or ``commands`` (one per item)."""
    if (script is None) == (commands is None):
        raise InputError("give exactly one of `script` (text) or `commands` (a list of strings)")
    if script is not None:
        if not isinstance(script, str):
            raise InputError("`script` must be a string")
        return script
    assert commands is not None
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        raise InputError("`commands` must be a list of strings")
    if not commands:
        raise InputError("`commands` is empty: give at least one command")
    for i, c in enumerate(commands):
        if not c.strip():
            raise InputError(f"commands[{i}] is empty")
        if "\n" in c.strip():
            raise InputError(f"commands[{i}] spans several lines; use `script` for that")
    return "\n".join(commands) + "\n"


def check_script(
    text: str, *, max_bytes: int = MAX_SCRIPT_BYTES, max_statements: int = MAX_STATEMENTS
) -> None:
    """Raise InputError with what to fix, before anything is parsed or stored."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InputError(f"the script is {size} bytes; the limit is {max_bytes} bytes")
    if "\x00" in text:
        raise InputError("the script contains a NUL byte; bash cannot run it")
    if not text.strip():
        raise InputError("the script is empty: give at least one command")


def judge(
    text: str,
    *,
    needs: Mapping[int, Iterable[int]] | None = None,
    max_statements: int | None = MAX_STATEMENTS,
) -> Judgement:
    statements = parse(text, max_statements=max_statements)
    if not statements:
        raise InputError("the script has no commands (only blank lines or comments)")
    if max_statements is not None and len(statements) > max_statements:
        raise InputError(
            f"the script has {len(statements)} statements; the limit is {max_statements}"
        )
    for s in statements:
        size = len(s.text.encode("utf-8", "surrogatepass"))
        if size > MAX_STATEMENT_BYTES:
            raise InputError(
                f"statement #{s.index + 1} (line {s.line}) is {size} bytes; the limit is "
                f"{MAX_STATEMENT_BYTES} bytes for one command (Linux's limit for one argument)"
            )
    return judge_statements(statements, needs=needs)


def judge_statements(
    statements: list[Statement], *, needs: Mapping[int, Iterable[int]] | None = None
) -> Judgement:
    judged = tuple(Judged(s, classify(s), effects(s)) for s in statements)
    plan = build_plan(statements, classes=[j.verdict.cls for j in judged], needs=needs)
    return Judgement(judged, plan)


def batch_spec(
    judgement: Judgement,
    workspace: Path,
    *,
    batch_id: str = "",
    priority: int = 5,
    timeout_s: float | None = None,
    retries: int = 0,
    allow_network: bool = False,
    limits: Limits | None = None,
    command_ids: list[str] | None = None,
    on_failure: FailurePolicy | str | None = None,
    deadline_s: float | None = None,
    environment: WorkspaceEnvironment | None = None,
) -> BatchSpec:
    """``environment``: the workspace's image, network, variables, secrets and per-class
    limits (``workspace_env``); when given, its network replaces ``allow_network``.

    ``on_failure`` None: ``halt`` for a script that starts with ``set -e``, else the default.

    A script that starts with ``set -e`` and runs under ``halt`` also runs in script order,
    one command after the other: that is what ``set -e`` means in bash (``false`` stops the
    script before ``echo after`` can print), and a parallel ``halt`` would let a later
    command without an edge start beside the failing one."""
    edges = {(e.before, e.after): e for e in judgement.plan.edges}
    policy = failure_policy(judgement, on_failure)
    first = judgement.judged[0].statement.text if judgement.judged else ""
    serial = policy is FailurePolicy.HALT and errexit(first)
    commands = []
    for j, node in zip(judgement.judged, judgement.plan.nodes, strict=True):
        i = node.index
        needs = list(node.needs)
        reasons = [edges[n, i].reason for n in needs]
        kinds = [edges[n, i].kind for n in needs]
        paths = [edges[n, i].path for n in needs]
        if serial and i > 0 and i - 1 not in needs:
            needs.append(i - 1)
            reasons.append(f"set -e: runs after #{i}, as bash would")
            kinds.append(EdgeKind.NEEDS)
            paths.append("")
        commands.append(
            CommandSpec(
                index=i,
                command=j.statement.text,
                cls=j.verdict.cls,
                reasons=j.verdict.reasons,
                reads=tuple(sorted(j.effects.reads)),
                writes=tuple(sorted(j.effects.writes)),
                resources=tuple(sorted(_lockable(j.effects))),
                needs=tuple(needs),
                needs_reasons=tuple(reasons),
                needs_kinds=tuple(kinds),
                needs_paths=tuple(paths),
                id=command_ids[i] if command_ids else "",
            )
        )
    return BatchSpec(
        commands=tuple(commands),
        workspace=workspace,
        id=batch_id,
        priority=priority,
        timeout_s=timeout_s,
        retries=retries,
        allow_network=environment.allow_network if environment else allow_network,
        limits=limits or Limits(),
        on_failure=policy,
        deadline_s=deadline_s,
        environment=environment,
    )


def failure_policy(judgement: Judgement, requested: FailurePolicy | str | None) -> FailurePolicy:
    """The request's ``on_failure``, or ``halt`` when the script starts with ``set -e``."""
    first = judgement.judged[0].statement.text if judgement.judged else None
    return policy_for(requested, first)


def _lockable(e: Effects) -> set[str]:
    # Using the network is not a conflict, nor is a statement's own shell state (variables,
    # functions: each command runs in a bash of its own); everything else a command touches is.
    return {r for r in e.resources if r != "network" and r not in LOCAL_RESOURCES}


def judgement_json(j: Judgement) -> dict[str, Any]:
    """The judgement as JSON: the API's `/classify` answer and the MCP `classify` tool's."""
    return {
        "statements": [
            {
                "index": x.statement.index,
                "line": x.statement.line,
                "command": x.statement.text,
                "class": x.verdict.cls.value,
                "reasons": list(x.verdict.reasons),
                "reads": sorted(x.effects.reads),
                "writes": sorted(x.effects.writes),
                "needs": list(node.needs),
                "level": node.level,
            }
            for x, node in zip(j.judged, j.plan.nodes, strict=True)
        ],
        "edges": [
            {"before": e.before, "after": e.after, "reason": e.reason, "kind": e.kind.value}
            for e in j.plan.edges
        ],
        "levels": [list(level) for level in j.plan.levels],
    }
