"""Statements -> a dependency DAG whose edges come from conflicting effects.

No I/O here. Statement ``j`` depends on an earlier ``i`` (directly or through
other edges) whenever one of them writes a path or a resource that the other
reads or writes; see DESIGN.md, "The guarantee". Explicit ``needs`` add edges.

Each edge has a kind (``EdgeKind``): read-after-write when the later statement
reads something the earlier one writes (it uses its result: under
``skip_dependents`` a failure upstream skips it), write-after-read or
write-after-write when it only has to wait, or ``needs``. The kind looks at every
read of the later statement, also one inside its own write (``sed -i f`` reads f).

The conflict index
------------------
Comparing every pair would be quadratic, so conflicts are found in a trie of
path components (resources are leaves named ``"\\0name"`` under the root; the
root itself is ``/``, everything). Each node keeps

- ``writer``: the latest statement that wrote exactly this node;
- ``readers``: statements that read exactly this node;
- ``sub_writers`` / ``sub_readers``: a summary of the live accesses strictly
  below it, so that a write to ``.`` or ``/`` never walks the subtree.

An access is *live* until a later write at its node or at one of its
ancestors covers it (that write depends on it, so anything depending on the
write is ordered after it). A new access links to:

- the latest writer on its root-to-node path (all writers on one path overlap
  each other, so they form a chain and the latest stands for all);
- the live writers below its node;
- for a write, also the readers on its path and the live readers below it
  that came after that latest path writer.

Entries covered by a path writer are dropped lazily (an index compare) when a
walk meets them, and a write removes the accesses it covers from the
summaries of its ancestors, so each access is stored and removed a bounded
number of times. ``tests/test_plan_properties.py`` checks the result against
a brute-force pairwise comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sandbox.errors import InputError
from sandbox.judge.effects import LOCAL_RESOURCES, Effects, effects, key
from sandbox.judge.parse import Statement
from sandbox.model import CommandClass, EdgeKind

__all__ = ["Access", "ConflictIndex", "Edge", "Plan", "PlanNode", "accesses", "build_plan"]

Entry = tuple[int, str]  # (statement index, path or "\0resource")


@dataclass(frozen=True, slots=True)
class Edge:
    before: int
    after: int
    reason: str  # "#3 writes out/a.txt, which #5 reads" (1-based numbering)
    kind: EdgeKind = EdgeKind.NEEDS
    path: str = ""  # for RAW: what ``after`` reads of ``before``'s writes ("\0name": a resource)


@dataclass(frozen=True, slots=True)
class PlanNode:
    index: int
    statement: Statement
    effects: Effects
    cls: CommandClass
    needs: tuple[int, ...]  # direct predecessors, ascending
    level: int  # longest path from a root (0 = no dependencies)


@dataclass(frozen=True, slots=True)
class Plan:
    nodes: tuple[PlanNode, ...]
    edges: tuple[Edge, ...]
    levels: tuple[tuple[int, ...], ...]
    successors: tuple[tuple[int, ...], ...] = field(default=(), repr=False, compare=False)

    def dependents(self, index: int) -> tuple[int, ...]:
        """Direct successors of a node."""
        return self.successors[index]

    def critical_path(
        self, durations: Mapping[int, float] | None = None
    ) -> tuple[tuple[int, ...], float]:
        """The longest chain by total duration (1.0 per node unless given)."""
        if not self.nodes:
            return (), 0.0
        durations = durations or {}
        total: list[float] = []
        via: list[int] = []
        for node in self.nodes:  # indices are a topological order: edges go forward
            best, pred = 0.0, -1
            for i in node.needs:
                if total[i] > best:
                    best, pred = total[i], i
            total.append(best + float(durations.get(node.index, 1.0)))
            via.append(pred)
        end = max(range(len(total)), key=lambda i: (total[i], -i))
        path = [end]
        while via[path[-1]] >= 0:
            path.append(via[path[-1]])
        return tuple(reversed(path)), total[end]


def build_plan(
    statements: Sequence[Statement],
    *,
    classes: Sequence[CommandClass] | None = None,
    needs: Mapping[int, Iterable[int]] | None = None,
    effects_of: Sequence[Effects] | None = None,
) -> Plan:
    """Order conflicting statements as submitted; everything else may run in parallel.

    ``classes`` default to CONDITIONAL; ``needs`` maps an index to earlier
    indices it must wait for; ``effects_of`` skips recomputing effects.
    """
    n = len(statements)
    for name, given in (("classes", classes), ("effects_of", effects_of)):
        if given is not None and len(given) != n:
            raise InputError(f"{name} has {len(given)} entries for {n} statements")
    explicit = _explicit_needs(needs or {}, n)
    index = ConflictIndex()
    nodes: list[PlanNode] = []
    edges: list[Edge] = []
    successors: list[list[int]] = [[] for _ in range(n)]
    levels: list[list[int]] = []
    labelled: dict[int, tuple[Labelled, Labelled]] = {}  # only statements on an edge

    def of(k: int, e: Effects) -> tuple[Labelled, Labelled]:
        found = labelled.get(k)
        if found is None:
            found = labelled[k] = _labelled(e)
        return found

    for j, stmt in enumerate(statements):
        eff = effects_of[j] if effects_of is not None else effects(stmt)
        links = index.add(j, accesses(eff))
        for i in explicit.get(j, ()):
            links.setdefault(i, f"#{j + 1} needs #{i + 1} (explicit)")
        preds = tuple(sorted(links))
        level = 1 + max((nodes[i].level for i in preds), default=-1)
        for i in preds:
            before, after = of(i, nodes[i].effects), of(j, eff)
            kind, path, written = _kind(i, before, j, after, i in explicit.get(j, ()))
            why = links[i]
            if kind is EdgeKind.RAW and not why.endswith((f"#{j + 1} reads", f"#{j + 1} uses")):
                why = _reason(i, written, True, j, path, False)  # `sed -i f` reads f too
            edges.append(Edge(i, j, why, kind, path))
            successors[i].append(j)
        if level == len(levels):
            levels.append([])
        levels[level].append(j)
        cls = classes[j] if classes is not None else CommandClass.CONDITIONAL
        nodes.append(PlanNode(j, stmt, eff, cls, preds, level))
    return Plan(
        nodes=tuple(nodes),
        edges=tuple(edges),
        levels=tuple(tuple(level) for level in levels),
        successors=tuple(tuple(s) for s in successors),
    )


Labelled = list[tuple[tuple[str, ...], str]]  # (trie key, path or "\0resource")


def _kind(
    i: int,
    before: tuple[Labelled, Labelled],
    j: int,
    after: tuple[Labelled, Labelled],
    explicit: bool,
) -> tuple[EdgeKind, str, str]:
    """(kind, path read, path written): RAW if ``after`` reads anything ``before`` writes.
    ``before``/``after``: a statement's (reads, writes) from ``_labelled``."""
    writes = before[1]
    for k, label in after[0]:
        for w, written in writes:
            if _overlap(k, w):
                return EdgeKind.RAW, label, written
    if explicit:
        return EdgeKind.NEEDS, "", ""
    if any(_overlap(a, b) for a, _ in after[1] for b, _ in writes):
        return EdgeKind.WAW, "", ""
    return EdgeKind.WAR, "", ""


def _labelled(eff: Effects) -> tuple[Labelled, Labelled]:
    """Every read and every write of a statement (also a read inside its own write)."""

    def one(paths: Iterable[str], resources: Iterable[str]) -> Labelled:
        out = [(key(p), p) for p in sorted(paths)]
        out += [(("\0" + r,), "\0" + r) for r in sorted(set(resources) - LOCAL_RESOURCES)]
        return out

    return one(eff.reads, eff.resource_reads), one(eff.writes, eff.resource_writes)


def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return a == b[: len(a)] if len(a) <= len(b) else b == a[: len(b)]


def _explicit_needs(needs: Mapping[int, Iterable[int]], n: int) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for after, befores in needs.items():
        if not isinstance(after, int) or not 0 <= after < n:
            raise InputError(f"needs: there is no command #{_human(after)} (batch has {n})")
        for before in befores:
            if not isinstance(before, int) or not 0 <= before < n:
                raise InputError(
                    f"needs: #{after + 1} waits for #{_human(before)}, which does not exist"
                )
            if before >= after:
                what = "itself" if before == after else f"a later command (#{before + 1})"
                raise InputError(f"needs: #{after + 1} cannot wait for {what}; only earlier ones")
            out.setdefault(after, []).append(before)
    return out


def _human(i: object) -> str:
    return str(i + 1) if isinstance(i, int) else repr(i)


Access = tuple[tuple[str, ...], bool, str]  # (trie key, is a write, label)


def accesses(eff: Effects) -> list[Access]:
    """The trie keys one statement touches; a read inside its own write is dropped."""
    writes: dict[tuple[str, ...], str] = {key(p): p for p in eff.writes}
    for r in eff.resource_writes - LOCAL_RESOURCES:
        writes[("\0" + r,)] = "\0" + r
    out: list[Access] = [(k, True, label) for k, label in writes.items()]
    reads = [(key(p), p) for p in eff.reads]
    reads += [(("\0" + r,), "\0" + r) for r in eff.resource_reads - LOCAL_RESOURCES]
    for k, label in reads:
        if not any(k[:i] in writes for i in range(len(k) + 1)):
            out.append((k, False, label))
    return out


class _Node:
    __slots__ = ("children", "readers", "sub_readers", "sub_writers", "writer")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.writer: Entry | None = None
        self.readers: list[Entry] = []
        self.sub_writers: set[Entry] = set()
        self.sub_readers: set[Entry] = set()


class ConflictIndex:
    """Feed statements in order; get back, for each, the earlier ones it must wait for."""

    def __init__(self) -> None:
        self._root = _Node()

    def add(self, j: int, items: Iterable[Access]) -> dict[int, str]:
        """Record statement ``j``'s accesses; return {earlier index: reason}."""
        walked = [(self._path(k), write, label) for k, write, label in items]
        links: dict[int, str] = {}
        for path, write, label in walked:
            self._link(j, path, write, label, links)
        for path, write, label in sorted(walked, key=lambda item: item[1]):  # reads first
            self._record(j, path, write, label)
        return links

    def _path(self, k: tuple[str, ...]) -> list[_Node]:
        node = self._root
        path = [node]
        for part in k:
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
            path.append(node)
        return path

    def _link(
        self, j: int, path: list[_Node], write: bool, label: str, links: dict[int, str]
    ) -> None:
        latest: Entry | None = None
        cutoffs: list[int] = []  # per node: index of the latest writer on the path so far
        for node in path:
            if node.writer is not None and (latest is None or node.writer[0] > latest[0]):
                latest = node.writer
            cutoffs.append(latest[0] if latest is not None else -1)
        cut = cutoffs[-1]
        if latest is not None:
            _add(links, latest, True, j, write, label)
        last = path[-1]
        _purge(last, cut)
        for entry in last.sub_writers:
            _add(links, entry, True, j, write, label)
        if not write:
            return
        for entry in last.sub_readers:
            _add(links, entry, False, j, write, label)
        for node, node_cut in zip(path, cutoffs, strict=True):
            if node.readers and node.readers[0][0] <= node_cut:
                node.readers = [e for e in node.readers if e[0] > node_cut]
            for entry in node.readers:
                if entry[0] > cut:
                    _add(links, entry, False, j, write, label)

    def _record(self, j: int, path: list[_Node], write: bool, label: str) -> None:
        last = path[-1]
        entry = (j, label)
        if not write:
            last.readers.append(entry)
            for node in path[:-1]:
                node.sub_readers.add(entry)
            return
        covered_w = set(last.sub_writers)
        if last.writer is not None:
            covered_w.add(last.writer)
        covered_r = last.sub_readers.union(last.readers)
        for node in path[:-1]:
            if covered_w:
                node.sub_writers.difference_update(covered_w)
            if covered_r:
                node.sub_readers.difference_update(covered_r)
            node.sub_writers.add(entry)
        last.writer = entry
        last.sub_writers = set()
        last.sub_readers = set()
        last.readers = []


def _purge(node: _Node, cut: int) -> None:
    """Drop summary entries that a later writer on the path already covers."""
    if cut < 0:
        return
    if any(e[0] <= cut for e in node.sub_writers):
        node.sub_writers = {e for e in node.sub_writers if e[0] > cut}
    if any(e[0] <= cut for e in node.sub_readers):
        node.sub_readers = {e for e in node.sub_readers if e[0] > cut}


def _add(links: dict[int, str], entry: Entry, wrote: bool, j: int, write: bool, label: str) -> None:
    i, other = entry
    if i == j or i in links:
        return
    links[i] = _reason(i, other, wrote, j, label, write)


def _reason(i: int, a: str, a_writes: bool, j: int, b: str, b_writes: bool) -> str:
    first = f"#{i + 1} {_verb(a, a_writes)} {a.lstrip(chr(0))}"
    if a == b:
        return f"{first}, which #{j + 1} {_verb(b, b_writes)}"
    return f"{first}, which overlaps {b.lstrip(chr(0))} that #{j + 1} {_verb(b, b_writes)}"


def _verb(label: str, writes: bool) -> str:
    if label.startswith("\0"):
        return "changes" if writes else "uses"
    return "writes" if writes else "reads"
