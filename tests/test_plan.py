"""build_plan(): edges from conflicting effects, explicit needs, levels. Plain tables."""

from __future__ import annotations

import pytest

from sandbox.errors import InputError
from sandbox.judge.parse import parse
from sandbox.judge.plan import Plan, build_plan
from sandbox.model import CommandClass, EdgeKind


def _plan(script: str, **kwargs: object) -> Plan:
    return build_plan(parse(script), **kwargs)  # type: ignore[arg-type]


def _pairs(plan: Plan) -> set[tuple[int, int]]:
    return {(e.before + 1, e.after + 1) for e in plan.edges}  # 1-based, like the reasons


# script (one statement a line), expected edges as 1-based (before, after)
EDGES = [
    ("echo a > x\ncat x", {(1, 2)}),
    ("cat x\necho a > x", {(1, 2)}),
    ("echo a > x\necho b > x", {(1, 2)}),
    ("cat x\ncat x", set()),
    ("echo a > x\necho b > y", set()),
    ("echo a > a/x\nls a", {(1, 2)}),
    ("echo a > a/x\necho b > a/y\nrm -rf a", {(1, 3), (2, 3)}),
    ("rm -rf a\necho a > a/x\necho b > a/y", {(1, 2), (1, 3)}),
    ("echo a > ab\ncat a", set()),
    ("cat a/x\ncat a/y\nrm -rf a", {(1, 3), (2, 3)}),
    ("ls a\necho a > a/x\necho b > a/y", {(1, 2), (1, 3)}),
    ("make\ncat x\ncat y", {(1, 2), (1, 3)}),
    ("cat x\ncat y\nmake", {(1, 3), (2, 3)}),
    ("echo a > x\nmake\ncat x", {(1, 2), (2, 3)}),
    ("python a.py\ncat /etc/hosts", {(1, 2)}),
    ("echo x > /tmp/a\ncat /tmp/a\ncat a", {(1, 2)}),
    ("cat src/*.py\nsed -i s/a/b/ src/m.py", {(1, 2)}),
    ("sed -i s/a/b/ $f\ncat docs/x", {(1, 2)}),
    ("curl -s a\ncurl -s b", set()),
    ("curl -s a\ncurl -X POST -d x b", {(1, 2)}),
    ("ps\nkill 1\nps", {(1, 2), (2, 3)}),
    ("git status\ngit status", set()),
    ("git status\ngit add .\ngit status", {(1, 2), (2, 3)}),
    ("export A=1\nexport B=2", set()),
    ("rm -rf /\ncurl -s x\nls", {(1, 2), (1, 3)}),
    ("ls /\nkill 1", {(1, 2)}),
    ("cat ~/.bashrc\necho x >> ~/.bashrc\ncat .bashrc", {(1, 2)}),
]


@pytest.mark.parametrize(("script", "edges"), EDGES)
def test_edges(script: str, edges: set[tuple[int, int]]) -> None:
    assert _pairs(_plan(script)) == edges


# script, (before, after) 1-based, the reason
REASONS = [
    ("echo a > out/a.txt\ncat out/a.txt", (1, 2), "#1 writes out/a.txt, which #2 reads"),
    ("echo a > out/a.txt\nls out", (1, 2), "#1 writes out/a.txt, which overlaps out that #2 reads"),
    ("cat x\nrm x", (1, 2), "#1 reads x, which #2 writes"),
    ("ps\nkill 1", (1, 2), "#1 uses processes, which #2 changes"),
    ("cat a\ncat b", (1, 2), "#2 needs #1 (explicit)"),
]


@pytest.mark.parametrize(("script", "pair", "reason"), REASONS)
def test_reasons_name_the_path(script: str, pair: tuple[int, int], reason: str) -> None:
    plan = _plan(script, needs={1: [0]})
    by_pair = {(e.before + 1, e.after + 1): e.reason for e in plan.edges}
    assert by_pair[pair] == reason


@pytest.mark.parametrize(
    ("needs", "message"),
    [
        ({1: [1]}, "#2 cannot wait for itself"),
        ({1: [2]}, "#2 cannot wait for a later command (#3)"),
        ({0: [5]}, "#1 waits for #6, which does not exist"),
        ({0: [-1]}, "#1 waits for #0, which does not exist"),
        ({3: [0]}, "there is no command #4"),
    ],
)
def test_bad_needs(needs: dict[int, list[int]], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _plan("cat a\ncat b\ncat c", needs=needs)


def test_needs_add_edges_without_duplicates() -> None:
    plan = _plan("echo a > x\ncat x\ncat y", needs={2: [0, 0, 1], 1: [0]})
    assert [n.needs for n in plan.nodes] == [(), (0,), (0, 1)]
    assert plan.dependents(0) == (1, 2)
    assert plan.dependents(2) == ()


def test_levels_and_classes() -> None:
    classes = [CommandClass.SAFE, CommandClass.SEQUENTIAL, CommandClass.SAFE, CommandClass.SAFE]
    plan = _plan("cat a\nrm a\ncat b\ncat a", classes=classes)
    assert plan.levels == ((0, 2), (1,), (3,))
    assert [n.level for n in plan.nodes] == [0, 1, 0, 2]
    assert [n.cls for n in plan.nodes] == classes
    assert _plan("cat a").nodes[0].cls is CommandClass.CONDITIONAL


def test_classes_must_match() -> None:
    with pytest.raises(InputError, match="classes has 1 entries for 2 statements"):
        _plan("cat a\ncat b", classes=[CommandClass.SAFE])


@pytest.mark.parametrize(
    ("script", "durations", "path", "total"),
    [
        ("", None, (), 0.0),
        ("cat a", None, (0,), 1.0),
        ("echo > a\ncat a\necho > b\ncat b\nsed -i s/x/y/ b", None, (2, 3, 4), 3.0),
        ("echo > a\ncat a\necho > b\ncat b", {0: 5.0, 1: 1.0, 2: 1.0, 3: 1.0}, (0, 1), 6.0),
        ("echo > a\ncat a\necho > b\ncat b", {2: 0.5, 3: 9.0}, (2, 3), 9.5),
    ],
)
def test_critical_path(
    script: str, durations: dict[int, float] | None, path: tuple[int, ...], total: float
) -> None:
    assert _plan(script).critical_path(durations) == (path, total)


def test_plan_is_fast_and_linear_on_a_large_batch() -> None:
    script = "\n".join(
        f"echo {i} > out/{i % 97}.txt" if i % 3 else f"cat out/{i % 89}.txt" for i in range(3000)
    )
    plan = _plan(script + "\nmake\nls")
    assert len(plan.nodes) == 3002
    assert len(plan.edges) < 4 * len(plan.nodes)
    assert plan.nodes[-1].needs == (3000,)


# two statements, the kind of the edge between them, and the path the second reads
KINDS = [
    ("echo a > x\ncat x", EdgeKind.RAW, "x"),
    ("cat x\necho a > x", EdgeKind.WAR, ""),
    ("echo a > x\necho b > x", EdgeKind.WAW, ""),
    ("echo a > x\necho b >> x", EdgeKind.WAW, ""),
    ("echo a > x\nsed -i s/a/b/ x", EdgeKind.RAW, "x"),  # a read inside its own write
    ("echo a > a/x\nls a", EdgeKind.RAW, "a"),
    ("ls a\necho a > a/x", EdgeKind.WAR, ""),
    ("mkdir out && echo hi > out/a.txt\ncat out/a.txt", EdgeKind.RAW, "out/a.txt"),
    ("ls -la\nmkdir out", EdgeKind.WAR, ""),
]


@pytest.mark.parametrize(("script", "kind", "path"), KINDS)
def test_edge_kinds(script: str, kind: EdgeKind, path: str) -> None:
    [edge] = _plan(script).edges
    assert (edge.kind, edge.path) == (kind, path)


def test_an_explicit_need_without_a_conflict_is_a_needs_edge() -> None:
    [edge] = _plan("echo a > x\necho b > y", needs={1: [0]}).edges
    assert (edge.kind, edge.path) == (EdgeKind.NEEDS, "")
    [edge] = _plan("echo a > x\ncat x", needs={1: [0]}).edges
    assert edge.kind is EdgeKind.RAW  # what it reads says more than the need
