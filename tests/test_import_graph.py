"""Each module of meshagent/ and connectors/ stands above what it imports: no import circles.

The graph is read from the source (AST), with every import counted: at the top of a module,
inside a function (a lazy import) and under ``TYPE_CHECKING``, since each says that one module
depends on another. The circles known today are listed in ``KNOWN_CIRCLES``, each to be removed
by the issue that untangles it (#23); the test fails on any other circle, and on a known one that
has grown or is gone (so that the list is kept honest).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import connectors
import meshagent

PACKAGE = Path(meshagent.__file__).parent
CONNECTORS = Path(connectors.__file__).parent

#: Circles allowed in meshagent/ (issue 23 untangled the last three: none is).
KNOWN_CIRCLES: list[frozenset[str]] = []

#: Modules that must not import each other's private names (``_name``), issue 20.
NO_PRIVATE_CROSSING = ("agent_loop", "model_calls", "run_state", "runtime")


def module_names(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name)."""
    found = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: Iterable[str]) -> dict[str, set[str]]:
    """The modules of ``modules`` that ``name`` imports, each with the names it takes from it."""
    known = set(modules)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:  # from meshagent.ledger import records: the module
                    found.setdefault(full, set())
                elif base in known:
                    found.setdefault(base, set()).add(alias.name)
    found.pop(name, None)
    return found


def import_graph(*packages: Path) -> dict[str, dict[str, set[str]]]:
    """Who imports whom among the modules of ``packages`` (an import between them counts)."""
    modules = {name: path for package in packages for name, path in module_names(package).items()}
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, dict[str, set[str]]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.add(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle(graph: dict[str, dict[str, set[str]]], component: frozenset[str]) -> list[str]:
    """One path around ``component``, to show which imports to cut."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        step = min(other for other in graph[path[-1]] if other in component)
        if step in seen:
            return [*path[path.index(step) :], step]
        path.append(step)
        seen.add(step)


def test_no_import_circles_but_the_known_ones():
    graph = import_graph(PACKAGE, CONNECTORS)
    assert "connectors.slack" in graph and "meshagent.runtime" in graph
    found = circles(graph)
    new = [c for c in found if not any(c <= known for known in KNOWN_CIRCLES)]
    assert not new, "import circles: " + "; ".join(" -> ".join(a_cycle(graph, c)) for c in new)
    gone = [known for known in KNOWN_CIRCLES if known not in found]
    assert not gone, f"circles gone or shrunk, remove them from KNOWN_CIRCLES: {gone}"


def test_the_runtime_stands_above_its_parts():
    graph = import_graph(PACKAGE)
    runtime, loop, calls, state = (
        f"meshagent.{name}" for name in ("runtime", "agent_loop", "model_calls", "run_state")
    )
    assert runtime not in graph[loop] and runtime not in graph[calls]
    assert loop not in graph[calls]
    assert not {runtime, loop, calls} & set(graph[state])
    for name in NO_PRIVATE_CROSSING:
        for other, names in graph[f"meshagent.{name}"].items():
            private = sorted(n for n in names if n.startswith("_"))
            assert not private, f"meshagent.{name} imports private {private} from {other}"


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The checker itself: a circle made by a lazy or TYPE_CHECKING import is found."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import _C\n"
    )
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")
    graph = import_graph(package)
    assert graph["pkg.sub.b"] == {"pkg.c": {"_C"}}
    assert circles(graph) == [frozenset({"pkg.a", "pkg.sub.b", "pkg.c"})]
    assert a_cycle(graph, circles(graph)[0]) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
