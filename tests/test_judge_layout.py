"""sandbox/judge is a package of its own (issue 14, Build point 6): small modules, imports
only downwards (no cycles), and no I/O (no module that reaches files, processes or the web)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JUDGE = Path(__file__).resolve().parents[1] / "sandbox" / "judge"
MODULES = sorted(JUDGE.rglob("*.py"))
FORBIDDEN = set(
    [
        "os",
        "subprocess",
        "socket",
        "shutil",
        "pathlib",
        "io",
        "tempfile",
        "flask",
        "flask_socketio",
        "docker",
        "sqlalchemy",
        "requests",
        "urllib",
        "webapp",
        "sandbox.store",
        "sandbox.executors",
        "sandbox.service",
        "sandbox.scheduler",
    ]
)


def module_name(path: Path) -> str:
    parts = path.relative_to(JUDGE.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


GRAPH = {module_name(p): imports(p) for p in MODULES}


def test_no_import_cycles() -> None:
    edges = {m: {d for d in deps if d in GRAPH and d != m} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(edges[m]):
            if d.startswith(m + "."):
                continue  # a package importing its own submodule
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(JUDGE)))
def test_small_modules_without_io(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 400, f"{path.name} has {lines} lines"
    bad = {i for i in imports(path) if i.split(".")[0] in FORBIDDEN or i in FORBIDDEN}
    bad |= {i for i in imports(path) for f in FORBIDDEN if i.startswith(f + ".")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_rule_is_written_down() -> None:
    assert "No I/O in this package" in (JUDGE / "__init__.py").read_text(encoding="utf-8")
