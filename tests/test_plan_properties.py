"""Property tests: the plan orders every conflicting pair, checked by brute force."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.judge.effects import EVERYTHING, LOCAL_RESOURCES, Effects, effects, overlaps
from sandbox.judge.parse import parse
from sandbox.judge.plan import Plan, build_plan
from sandbox.model import EdgeKind

FILES = ["a", "b", "a/x", "a/y", "a/x/deep", "b/z", "out/r.txt", "/tmp/t", "~/h", "../sib"]
DIRS = ["a", "b", "out", "a/x", "."]


def _path() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(FILES),
        st.sampled_from(DIRS).map(lambda d: f"{d}/*.txt"),
        st.sampled_from(DIRS).map(lambda d: f'"{d}/$v"'),
        st.just("$f"),
    )


def _command() -> st.SearchStrategy[str]:
    p = _path()
    return st.one_of(
        p.map(lambda x: f"echo hi > {x}"),
        p.map(lambda x: f"echo hi >> {x}"),
        st.tuples(p, p).map(lambda t: f"cat {t[0]} {t[1]}"),
        st.tuples(p, p).map(lambda t: f"cp {t[0]} {t[1]}"),
        st.tuples(p, p).map(lambda t: f"mv {t[0]} {t[1]}"),
        p.map(lambda x: f"rm -rf {x}"),
        p.map(lambda x: f"sed -i s/a/b/ {x}"),
        st.tuples(p, p).map(lambda t: f"sort -o {t[0]} {t[1]}"),
        st.sampled_from(DIRS).map(lambda d: f"mkdir -p {d}/new"),
        st.sampled_from(DIRS).map(lambda d: f"ls {d}"),
        p.map(lambda x: f"grep -r foo {x}"),
        p.map(lambda x: f"wc -l < {x}"),
        st.sampled_from(
            ["make", "python run.py", "curl -s u", "kill 1", "ps", "git status", "git add ."]
        ),
        st.sampled_from(["rm -rf /", "cat /etc/passwd", "ls /", "cd a && cat x > y"]),
    )


def _conflict(a: Effects, b: Effects) -> bool:
    for w in a.writes:
        if any(overlaps(w, x) for x in b.reads | b.writes):
            return True
    for w in b.writes:
        if any(overlaps(w, x) for x in a.reads):
            return True
    ra, rb = a.resources - LOCAL_RESOURCES, b.resources - LOCAL_RESOURCES
    wa, wb = a.resource_writes - LOCAL_RESOURCES, b.resource_writes - LOCAL_RESOURCES
    if (wa & rb) or (wb & ra):
        return True
    # "/" is the whole machine: it overlaps every resource too
    if (EVERYTHING in a.writes and rb) or (EVERYTHING in b.writes and ra):
        return True
    return bool((EVERYTHING in a.reads and wb) or (EVERYTHING in b.reads and wa))


def _uses(a: Effects, b: Effects) -> bool:
    """``b`` reads something ``a`` writes (read-after-write), by brute force."""
    if any(overlaps(w, r) for w in a.writes for r in b.reads):
        return True
    wa, rb = a.resource_writes - LOCAL_RESOURCES, b.resource_reads - LOCAL_RESOURCES
    return bool((wa & rb) or (EVERYTHING in a.writes and rb) or (EVERYTHING in b.reads and wa))


def _reachable(plan: Plan) -> list[set[int]]:
    """ancestors[j] = every node j depends on, directly or not."""
    ancestors: list[set[int]] = []
    for node in plan.nodes:
        acc: set[int] = set()
        for i in node.needs:
            acc.add(i)
            acc |= ancestors[i]
        ancestors.append(acc)
    return ancestors


def _check(plan: Plan) -> None:
    for edge in plan.edges:
        assert edge.before < edge.after
        before, after = plan.nodes[edge.before].effects, plan.nodes[edge.after].effects
        raw = _uses(before, after)
        assert (edge.kind is EdgeKind.RAW) == raw, (edge, before, after)
        assert (edge.path != "") == raw
    for node in plan.nodes:
        assert len(set(node.needs)) == len(node.needs)
        assert node.level == 1 + max((plan.nodes[i].level for i in node.needs), default=-1)
    ancestors = _reachable(plan)
    effs = [node.effects for node in plan.nodes]
    for j in range(len(effs)):
        for i in range(j):
            if _conflict(effs[i], effs[j]):
                assert i in ancestors[j], (
                    f"#{i + 1} {plan.nodes[i].statement.text!r} and "
                    f"#{j + 1} {plan.nodes[j].statement.text!r} conflict but are not ordered"
                )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_command(), min_size=1, max_size=30))
def test_every_conflicting_pair_is_ordered(commands: list[str]) -> None:
    statements = parse("\n".join(commands))
    assert len(statements) == len(commands)
    plan = build_plan(statements)
    _check(plan)
    for e, node in zip([effects(s) for s in statements], plan.nodes, strict=True):
        assert e == node.effects


@settings(max_examples=200, deadline=None)
@given(st.lists(_command(), min_size=2, max_size=20), st.data())
def test_explicit_needs_are_edges(commands: list[str], data: st.DataObject) -> None:
    n = len(commands)
    needs: dict[int, list[int]] = {}
    for j in range(1, n):
        needs[j] = data.draw(st.lists(st.integers(0, j - 1), max_size=3), label=f"needs {j}")
    plan = build_plan(parse("\n".join(commands)), needs=needs)
    _check(plan)
    for j, befores in needs.items():
        for i in befores:
            assert i in plan.nodes[j].needs
            assert j in plan.dependents(i)


@settings(max_examples=100, deadline=None)
@given(st.lists(_command(), min_size=1, max_size=25))
def test_critical_path_is_a_chain_of_edges(commands: list[str]) -> None:
    plan = build_plan(parse("\n".join(commands)))
    path, total = plan.critical_path()
    assert total == len(path) == len(plan.levels)
    for before, after in itertools.pairwise(path):
        assert before in plan.nodes[after].needs
