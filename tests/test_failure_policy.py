"""on_failure (skip_dependents, continue, halt), `set -e`, and the batch deadline.

The plan's edge kinds decide what a failure skips; bash (only ever inside a throwaway
container, see tests/bash_oracle.py) decides what `continue` and `halt` must give.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.errors import InputError
from sandbox.executors.fake import FakeExecutor, FakeResult
from sandbox.failure import errexit, policy_for
from sandbox.model import EdgeKind, FailurePolicy, Status
from sandbox.pipeline import batch_spec, judge
from sandbox.runner import RunOptions, run_script
from sandbox.scheduler import BatchSpec, CommandSpec, Scheduler
from tests.bash_oracle import BashOracle, bash_oracle, snapshot
from tests.test_run_equivalence import batches

__all__ = ["bash_oracle"]

# One failing command and a dependent of every kind: the plan gives these edges.
SCRIPT = [
    "sort g > f",  # 1: fails (g is missing); reads g, writes f
    "cat f > h",  # 2: reads f           -> RAW on #1
    "echo x > g",  # 3: writes g         -> WAR on #1 (#1 reads g)
    "echo y > f",  # 4: writes f         -> WAW on #1 (and WAR on #2)
    "cat h",  # 5: reads h               -> RAW on #2, so transitively on #1
    "echo z > k",  # 6: no conflict; an explicit `needs` on #1
]
NEEDS = {5: [0]}
P = FailurePolicy


def test_the_plan_gives_each_edge_its_kind() -> None:
    plan = judge("\n".join(SCRIPT), needs=NEEDS).plan
    kinds = {(e.before, e.after): (e.kind, e.path) for e in plan.edges}
    assert kinds == {
        (0, 1): (EdgeKind.RAW, "f"),
        (0, 2): (EdgeKind.WAR, ""),
        (0, 3): (EdgeKind.WAW, ""),
        (1, 3): (EdgeKind.WAR, ""),
        (1, 4): (EdgeKind.RAW, "h"),
        (0, 5): (EdgeKind.NEEDS, ""),
    }


def _fake_run(policy: FailurePolicy | None, text: str, needs: Any = None) -> list[Any]:
    fake = FakeExecutor(
        script={"sort g > f": FakeResult(exit_code=2), "false": FakeResult(exit_code=1)},
        default=FakeResult(duration_s=0.01),
    )
    sched = Scheduler({"fake": fake}, lambda cls: ("fake", None))
    spec = batch_spec(judge(text, needs=needs), Path("/ws"), on_failure=policy)
    bid = sched.submit(spec)
    assert sched.wait(bid, 5)
    out = [(st, reason) for _s, st, _o, _e, reason in sched.result(bid)]
    sched.shutdown()
    return out


S, F, K = Status.SUCCEEDED, Status.FAILED, Status.SKIPPED


@pytest.mark.parametrize(
    ("policy", "want"),
    [
        (P.SKIP_DEPENDENTS, [F, K, S, S, K, K]),
        (P.CONTINUE, [F, S, S, S, S, S]),
        (P.HALT, [F, K, K, K, K, K]),
    ],
)
def test_each_policy_on_raw_war_waw_and_needs_edges(
    policy: FailurePolicy, want: list[Status]
) -> None:
    got = _fake_run(policy, "\n".join(SCRIPT), NEEDS)
    assert [st for st, _ in got] == want


def test_a_skip_names_the_failed_command_and_the_path() -> None:
    got = _fake_run(None, "\n".join(SCRIPT), NEEDS)
    reasons = {i: why for i, (st, why) in enumerate(got) if st is Status.SKIPPED}
    assert reasons == {
        1: "reads f, which #1 failed to write",
        4: "reads h, which #2 did not write (#2 was skipped because #1 failed)",
        5: "needs #1, which failed",
    }
    halted = _fake_run(P.HALT, "\n".join(SCRIPT), NEEDS)
    assert halted[2][1] == "#1 failed, and the batch halts there (on_failure=halt)"


def test_the_git_status_example_runs_to_the_end_by_default() -> None:
    # `git status` outside a repository: a command that fails and reads the whole folder
    text = "ls . | grep -qx .git\nmkdir out && echo hi > out/a.txt\ncat out/a.txt\nls"
    kinds = [e.kind for e in judge(text).plan.edges if e.before == 0]
    assert kinds and all(k is EdgeKind.WAR for k in kinds)
    fake = FakeExecutor(script={"ls . | grep -qx .git": FakeResult(exit_code=1)})
    sched = Scheduler({"fake": fake}, lambda cls: ("fake", None))
    bid = sched.submit(batch_spec(judge(text), Path("/ws")))
    assert sched.wait(bid, 5)
    assert [st for _s, st, *_ in sched.result(bid)] == [F, S, S, S]
    sched.shutdown()


def test_halt_lets_earlier_commands_start_and_running_ones_finish() -> None:
    # #1 runs long; #2 waits for it (in script order before the failure, so it still
    # starts); #3 fails at once; #4 would only have had to wait for #1: it never starts.
    fake = FakeExecutor(
        script={"slow": FakeResult(duration_s=0.3), "bad": FakeResult(exit_code=1)},
    )
    sched = Scheduler({"fake": fake}, lambda cls: ("fake", None))
    ordering = {"needs_kinds": (EdgeKind.WAR,)}
    spec = BatchSpec(
        commands=(
            CommandSpec(index=0, command="slow", cls=_safe()),
            CommandSpec(index=1, command="after-slow", cls=_safe(), needs=(0,), **ordering),  # type: ignore[arg-type]
            CommandSpec(index=2, command="bad", cls=_safe()),
            CommandSpec(index=3, command="late", cls=_safe(), needs=(0,), **ordering),  # type: ignore[arg-type]
        ),
        workspace=Path("/ws"),
        on_failure=P.HALT,
    )
    bid = sched.submit(spec)
    assert sched.wait(bid, 5)
    assert [st for _s, st, *_ in sched.result(bid)] == [S, S, F, K]
    assert sorted(fake.started) == ["after-slow", "bad", "slow"]  # never "late"
    sched.shutdown()


def _safe() -> Any:
    from sandbox.model import CommandClass

    return CommandClass.SAFE


@pytest.mark.parametrize(
    ("statement", "on"),
    [
        ("set -e", True),
        ("set -eu", True),
        ("set -euo pipefail", True),
        ("set -o errexit", True),
        ("set -o pipefail -e", True),
        ("set -Eeux", True),
        ("set -e -o nounset", True),
        ("set -e  # stop at the first error", True),
        ("set -o pipefail", False),
        ("set -u", False),
        ("set -e +e", False),
        ("set -e +o errexit", False),
        ("set -- -e", False),
        ("set x -e", False),
        ("echo set -e", False),
        ("set", False),
        ("set -o", False),
        ("set -e 'unclosed", False),
    ],
)
def test_errexit_forms(statement: str, on: bool) -> None:
    assert errexit(statement) is on


def test_set_e_first_gives_halt_unless_the_request_says_otherwise() -> None:
    assert policy_for(None, "set -euo pipefail") is P.HALT
    assert policy_for(None, "echo hi") is P.SKIP_DEPENDENTS
    assert policy_for("continue", "set -e") is P.CONTINUE
    with pytest.raises(InputError, match="on_failure must be one of"):
        policy_for("stop", "set -e")
    text = "# build\nset -e\nfalse\necho after > a"
    assert batch_spec(judge(text), Path("/ws")).on_failure is P.HALT
    assert batch_spec(judge("false\nset -e"), Path("/ws")).on_failure is P.SKIP_DEPENDENTS


# --- against bash ----------------------------------------------------------------------


def _local(ws: Path, statements: list[str], **opts: Any) -> tuple[int, dict[str, Any]]:
    out, err = io.BytesIO(), io.StringIO()
    options = RunOptions(jobs=8, workspace=ws, isolation="local", json=True, **opts)
    code = run_script("\n".join(statements) + "\n", options, out, err)
    return code, json.loads(out.getvalue().decode().strip().splitlines()[-1])


@pytest.mark.docker
@pytest.mark.parametrize("policy", ["continue", "halt"])
def test_continue_and_halt_give_what_bash_gives(bash_oracle: BashOracle, policy: str) -> None:
    ours, theirs = bash_oracle.workspace(), bash_oracle.workspace()
    script = SCRIPT[:5]  # (the CLI takes no `needs`; #6 would be unordered)
    bash = bash_oracle.run(theirs, script, errexit=policy == "halt")
    _code, summary = _local(ours, script, on_failure=policy)
    commands = summary["commands"]
    ran = [c["status"] != "skipped" for c in commands]
    assert ran == [code is not None for code in bash.codes], commands
    assert [c["exit_code"] for c in commands if c["status"] != "skipped"] == [
        code for code in bash.codes if code is not None
    ]
    assert [c["stdout"] for c in commands] == bash.stdout
    assert snapshot(ours) == snapshot(theirs)


@pytest.mark.docker
def test_a_set_e_script_stops_where_bash_stops(bash_oracle: BashOracle) -> None:
    text = (
        "set -euo pipefail\n"
        "echo one > a.txt\n"
        "cat a.txt\n"
        "grep -q two a.txt\n"  # fails: bash -e stops here
        "echo two >> a.txt\n"
        "cat a.txt > b.txt\n"
        "wc -l a.txt\n"
    )
    ours, theirs = bash_oracle.workspace(), bash_oracle.workspace()
    code, bash_stdout = bash_oracle.script(theirs, text)
    assert code == 1 and bash_stdout == "one\n"
    exit_code, summary = _local(ours, text.splitlines())
    assert exit_code == 1
    assert [c["status"] for c in summary["commands"]] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "failed",
        "skipped",
        "skipped",
        "skipped",
    ]
    assert "".join(c["stdout"] for c in summary["commands"]) == bash_stdout
    assert snapshot(ours) == snapshot(theirs)


@pytest.mark.docker
def test_after_set_e_a_later_independent_command_never_runs(bash_oracle: BashOracle) -> None:
    """The issue's own example: `echo after` has no edge to `false`, yet bash -e never runs
    it. A script that starts with `set -e` runs in script order, so neither do we."""
    text = "set -e\nfalse\necho after\nls\n"
    ours, theirs = bash_oracle.workspace(), bash_oracle.workspace()
    code, bash_stdout = bash_oracle.script(theirs, text)
    assert code == 1 and bash_stdout == ""
    for _ in range(5):  # it raced before: each run must stop there
        exit_code, summary = _local(ours, text.splitlines())
        assert exit_code == 1
        statuses = [c["status"] for c in summary["commands"]]
        assert statuses == ["succeeded", "failed", "skipped", "skipped"], summary
        assert "".join(c["stdout"] for c in summary["commands"]) == bash_stdout


FAILING = ("false", "cat nope.txt", "grep -q zzz a.txt", "sort nope > c.log", "mv nope d.txt")


@st.composite
def failing_batches(draw: st.DrawFn) -> list[str]:
    statements: list[str] = draw(batches())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(statements)))
        statements.insert(at, draw(st.sampled_from(FAILING)))
    return statements


@pytest.mark.docker
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(statements=failing_batches())
def test_continue_equals_bash_when_commands_fail_at_random(
    bash_oracle: BashOracle, statements: list[str]
) -> None:
    ours, theirs = bash_oracle.workspace(), bash_oracle.workspace()
    for ws in (ours, theirs):
        (ws / "a.txt").write_text("lima\nalpha\n")
    bash = bash_oracle.run(theirs, statements)
    _code, summary = _local(ours, statements, on_failure="continue")
    commands = summary["commands"]
    assert [c["exit_code"] for c in commands] == bash.codes, statements
    assert [c["stdout"] for c in commands] == bash.stdout, statements
    assert snapshot(ours) == snapshot(theirs), statements


# --- the deadline ------------------------------------------------------------------------


def test_a_deadline_stops_running_commands_and_cancels_the_rest() -> None:
    fake = FakeExecutor(script={"slow": FakeResult(duration_s=5)})
    sched = Scheduler({"fake": fake}, lambda cls: ("fake", None))
    spec = BatchSpec(
        commands=(
            CommandSpec(index=0, command="quick", cls=_safe()),
            CommandSpec(index=1, command="slow", cls=_safe()),
            CommandSpec(index=2, command="after", cls=_safe(), needs=(1,)),
        ),
        workspace=Path("/ws"),
        deadline_s=0.3,
    )
    t0 = time.monotonic()
    bid = sched.submit(spec)
    assert sched.wait(bid, 5)
    assert time.monotonic() - t0 < 2
    results = sched.result(bid)
    assert [st for _s, st, *_ in results] == [S, Status.TIMED_OUT, Status.CANCELLED]
    assert results[1][4] == "stopped: the batch's deadline (0.3 s) passed"
    assert results[2][4] == "the batch's deadline (0.3 s) passed"
    assert sched.batch_status(bid) is Status.TIMED_OUT
    sched.shutdown()
    with pytest.raises(InputError, match="deadline_s"):
        Scheduler({"fake": fake}, lambda cls: ("fake", None)).submit(
            BatchSpec(commands=(), workspace=Path("/ws"), deadline_s=0)
        )


@pytest.mark.parametrize("policy", list(FailurePolicy))
def test_a_long_chain_of_refused_commands_settles_without_recursion(
    policy: FailurePolicy,
) -> None:
    from sandbox.model import CommandClass

    sched = Scheduler({"fake": FakeExecutor()}, lambda cls: (None, "no Docker"))
    waw = {"needs_kinds": (EdgeKind.WAW,)}
    chain = tuple(
        CommandSpec(index=i, command="x", cls=CommandClass.SEQUENTIAL, needs=(i - 1,), **waw)  # type: ignore[arg-type]
        if i
        else CommandSpec(index=0, command="x", cls=CommandClass.SEQUENTIAL)
        for i in range(3000)
    )
    bid = sched.submit(BatchSpec(commands=chain, workspace=Path("/ws"), on_failure=policy))
    assert sched.wait(bid, 10)
    want = Status.SKIPPED if policy is FailurePolicy.HALT else Status.REFUSED
    assert {st for _s, st, *_ in sched.result(bid)[1:]} == {want}
    sched.shutdown()
