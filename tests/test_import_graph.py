"""Each module of meshagent/ and connectors/ stands above what it imports: no import circles,
and no stage importing a stage above it.

The graph is read from the source (AST), with every import counted: at the top of a module,
inside a function (a lazy import) and under ``TYPE_CHECKING``, since each says that one module
depends on another. The circles known today are listed in ``KNOWN_CIRCLES``, each to be removed
by the issue that untangles it (#23); the test fails on any other circle, and on a known one that
has grown or is gone (so that the list is kept honest). The stages are the folders of
``meshagent/`` (and its few base modules) and ``connectors/``, in the order of ``LAYERS``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import connectors
import meshagent

PACKAGE = Path(meshagent.__file__).parent
CONNECTORS = Path(connectors.__file__).parent

#: Circles allowed in meshagent/ (issue 23 untangled the last three: none is).
KNOWN_CIRCLES: list[frozenset[str]] = []

#: Modules that must not import each other's private names (``_name``), issue 20.
NO_PRIVATE_CROSSING = (
    "runtime.agent_loop",
    "runtime.model_calls",
    "runtime.state",
    "runtime.runner",
)

#: The stages from the top down, as README's "Where things live" shows them: a module imports
#: from its own stage and the stages below, never from one above nor from another stage of its
#: own row. A stage is a folder of meshagent/ (or one of its base modules), or connectors/.
LAYERS: list[tuple[str, ...]] = [
    ("cli", "testing"),
    ("fleet",),
    ("slack", "dashboard"),
    ("runtime",),
    ("approvals", "connectors"),
    ("agentfile",),
    ("models", "mcp", "ledger", "sandbox"),
    ("config",),
    ("actions", "masking", "figures"),
    ("exceptions",),
]

#: Above every stage: the package's own door (its lazy public names) and ``python -m meshagent``.
ENTRANCES = ("meshagent", "meshagent.__main__")


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
    assert "connectors.slack" in graph and "meshagent.runtime.runner" in graph
    found = circles(graph)
    new = [c for c in found if not any(c <= known for known in KNOWN_CIRCLES)]
    assert not new, "import circles: " + "; ".join(" -> ".join(a_cycle(graph, c)) for c in new)
    gone = [known for known in KNOWN_CIRCLES if known not in found]
    assert not gone, f"circles gone or shrunk, remove them from KNOWN_CIRCLES: {gone}"


def stage_of(module: str) -> str:
    """The stage a module belongs to: ``connectors``, or the folder or base module of meshagent."""
    parts = module.split(".")
    return parts[0] if parts[0] == "connectors" or len(parts) == 1 else parts[1]


def upward_imports(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """Every import of a stage by one that is not above it, as ``importer -> imported``."""
    row = {stage: n for n, stages in enumerate(LAYERS) for stage in stages} | {"meshagent": -1}
    found = []
    for module, imported in sorted(graph.items()):
        if module in ENTRANCES:
            continue
        for other in sorted(imported):
            if other == "meshagent" and imported[other] <= {"__version__"}:
                continue  # the version, which the root reads from the installed metadata
            mine, theirs = stage_of(module), stage_of(other)
            if mine != theirs and row[mine] >= row[theirs]:
                found.append(f"{module} ({mine}) -> {other} ({theirs})")
    return found


def test_every_stage_has_its_place():
    graph = import_graph(PACKAGE, CONNECTORS)
    stages = {stage_of(module) for module in graph if module not in ENTRANCES}
    placed = {stage for row in LAYERS for stage in row}
    assert stages - placed == set(), "place these in LAYERS (and README's table)"
    assert placed - stages == set(), "stages in LAYERS that are gone"


def test_no_stage_imports_one_above_it_or_beside_it():
    graph = import_graph(PACKAGE, CONNECTORS)
    assert upward_imports(graph) == []


def test_the_layer_check_finds_an_import_upward():
    """The checker itself: the ledger reading the agent file's loader is caught."""
    graph = {
        "meshagent.ledger.cli": {"meshagent.agentfile.loader": {"scan_agents"}},
        "meshagent.agentfile.loader": {"meshagent.mcp.lock": set()},
        "meshagent.slack.app": {"meshagent.dashboard.app": set()},
        "meshagent": {"meshagent.cli.main": set()},
    }
    assert upward_imports(graph) == [
        "meshagent.ledger.cli (ledger) -> meshagent.agentfile.loader (agentfile)",
        "meshagent.slack.app (slack) -> meshagent.dashboard.app (dashboard)",
    ]


def test_every_folder_says_what_it_holds():
    """Each package's ``__init__`` opens with a one-line summary of its stage."""
    for package in (PACKAGE, CONNECTORS):
        for init in package.rglob("__init__.py"):
            if "migrations" in init.parts:
                continue
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc and doc.splitlines()[0].strip(), f"{init} has no summary line"


def test_the_runtime_stands_above_its_parts():
    graph = import_graph(PACKAGE)
    runtime, loop, calls, state = (
        f"meshagent.runtime.{name}" for name in ("runner", "agent_loop", "model_calls", "state")
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


def readme_table() -> list[list[str]]:
    """The first column of README's "Where things live" table: the paths each row names."""
    text = (PACKAGE.parent / "README.md").read_text()
    table = text.split("### Where things live", 1)[1].split("\n\n|", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in ("|" + table).splitlines() if line.startswith("|")][2:]
    firsts = [row.split("|")[1] for row in rows]
    found = []
    for cell in firsts:
        names = re.findall(r"`([^`]+)`", cell)
        base = names[0].rsplit("/", 1)[0] if "/" in names[0].rstrip("/") else ""
        found.append([n if "/" in n else f"{base}/{n}" for n in names])
    return found


def stage_of_path(path: str) -> str:
    """``meshagent/ledger/`` -> ledger, ``meshagent/actions.py`` -> actions, ``connectors/``."""
    parts = path.rstrip("/").removesuffix(".py").split("/")
    return parts[0] if parts[0] == "connectors" else parts[1]


def test_readme_shows_every_stage_top_down():
    """README's table names every stage, each path exists, and its rows run top-down."""
    rows = readme_table()
    for paths in rows:
        for path in paths:
            assert (PACKAGE.parent / path).exists(), f"README names {path}, which is not there"
    row = {stage: n for n, stages in enumerate(LAYERS) for stage in stages}
    order = [row[stage_of_path(path)] for paths in rows for path in paths]
    assert order == sorted(order), "README's table is not top-down in the order of LAYERS"
    named = {stage_of_path(path) for paths in rows for path in paths}
    assert named == set(row), f"stages README's table leaves out: {set(row) - named}"
