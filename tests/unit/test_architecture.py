"""The house rules of the code base (docs/architecture.md), checked on the source itself.

- No import cycle among the project's modules (lazy, function-level imports included).
- Only the application room (``engine/app/``, the composition root and the run's plan)
  imports ``cognition`` or ``tui``; the loop, store and execution rooms never do.
- The TUI imports only the standard-library modules of the engine (schema, the reader, the
  read-only connect, the lock probe, the steering writes, progress, direction, text): it
  never loads the engine's runtime.
- No SQL is run outside ``engine/store/`` but by the cognition base on its own tables.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

PACKAGES = ("engine", "cognition", "tui", "domains")
TUI_MAY_IMPORT = {
    "engine",  # the packages themselves: a docstring each
    "engine.store",
    "engine.direction",
    "engine.text",
    "engine.store.lock",
    "engine.store.progress",
    "engine.store.reader",
    "engine.store.readonly",
    "engine.store.running",
    "engine.store.schema",
    "engine.store.standing",
    "engine.store.steer",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] not in PACKAGES or "__pycache__" in rel.parts:
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> set[str]:
    """Project modules ``path`` imports, anywhere in the file."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES and (found := _resolve(name)):
                targets.add(found)
    return targets


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_check_finds_a_cycle() -> None:
    GRAPH["engine.text"].add("engine.direction")
    GRAPH["engine.direction"].add("engine.text")
    try:
        assert _cycles() == [["engine.direction", "engine.text"]]
    finally:
        GRAPH["engine.text"].discard("engine.direction")
        GRAPH["engine.direction"].discard("engine.text")


def test_only_the_app_room_wires_cognition_and_the_tui() -> None:
    outside = {
        name: sorted(t for t in targets if t.split(".")[0] in ("cognition", "tui"))
        for name, targets in GRAPH.items()
        if name.startswith("engine.") and not name.startswith("engine.app")
    }
    assert {k: v for k, v in outside.items() if v} == {}


def test_the_tui_never_loads_the_engine_runtime() -> None:
    used = {
        target
        for name, targets in GRAPH.items()
        if name.startswith("tui")
        for target in targets
        if target.startswith("engine")
    }
    assert used <= TUI_MAY_IMPORT, used - TUI_MAY_IMPORT
    for name in TUI_MAY_IMPORT:  # and those import nothing heavier themselves
        assert {t for t in GRAPH[name] if t.startswith("engine")} <= TUI_MAY_IMPORT, name


SQL = re.compile(r"\.(execute|executemany|query)\(\s*f?[\"'](SELECT|INSERT|UPDATE|DELETE|WITH)")


def test_no_sql_outside_the_store_but_the_cognition_tables() -> None:
    offenders = [
        name
        for name, path in MODULES.items()
        if SQL.search(path.read_text()) and not name.startswith(("engine.store", "cognition"))
    ]
    assert offenders == []
