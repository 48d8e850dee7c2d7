"""The import graph the architecture promises: dependencies point one way.

Every import counts, at module level or inside a function (an import hidden in a
function is still a dependency, only a later one). `stacks/` composes `components/`, never
the reverse; and no module, directly or through others, imports itself.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "stacks", "policies", "costing", "agent_app", "benchmarks", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imported(path: Path, module: str, known: set[str]) -> Iterator[str]:
    """First-party modules this file imports, resolved to the deepest known module."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            parts = name.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            if parts:
                yield ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    # In tests, `from app.appkit import ...` names tests/app/appkit.py (pytest's rootdir
    # puts tests/ on the path).
    aliases = {name.removeprefix("tests."): name for name in known if name.startswith("tests.")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = set()
        for target in _imported(path, module, known | set(aliases)):
            edges.add(aliases.get(target, target))
        edges.discard(module)
        graph[module] = edges
    return graph


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "stacks.components" not in graph
    assert "components.redis" in graph["stacks.program"]


def test_components_never_import_stacks() -> None:
    upward = {
        module: sorted(t for t in targets if t.split(".")[0] == "stacks")
        for module, targets in _graph().items()
        if module.split(".")[0] == "components"
    }
    assert {m: t for m, t in upward.items() if t} == {}


# The cost model is shared by the program and the pack, so it may import neither; it may
# read the components' pure value modules (quantities), which import nothing of ours.
@pytest.mark.parametrize(("lower", "upper"), [("costing", "stacks"), ("costing", "policies")])
def test_the_cost_model_depends_on_neither_the_program_nor_the_pack(lower: str, upper: str) -> None:
    upward = {
        module: sorted(t for t in targets if t.split(".")[0] == upper)
        for module, targets in _graph().items()
        if module.split(".")[0] == lower
    }
    assert {m: t for m, t in upward.items() if t} == {}


def test_no_module_imports_itself_through_others() -> None:
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as cycle:
        pytest.fail(f"import cycle: {' -> '.join(cycle.args[1])}")
