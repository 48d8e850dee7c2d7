"""The import graph the architecture promises: dependencies point one way.

Every import counts, at module level or inside a function (an import hidden in a
function is still a dependency, only a later one). `stacks/` composes `components/`, never
the reverse; and no module, directly or through others, imports itself.
"""

from __future__ import annotations

import ast
import graphlib
import re
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
# read the components' pure value modules (quantities, billable parts), which import
# nothing of ours.
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


# What the engine runs uses the Pulumi SDKs' public API only: no private module
# (`pulumi._types`, `pulumi_kubernetes._utilities`), not the SDK's own wire format
# (`pulumi.runtime.rpc`), and not the stack transformations that transforms superseded.
_PRIVATE = re.compile(r"^pulumi\w*(\.\w+)*\._|^pulumi\.runtime\.rpc(\.|$)")
_SUPERSEDED = {"register_stack_transformation", "ResourceTransformationArgs", "transformations"}


def _sdk_uses(path: Path) -> Iterator[str]:
    """Every dotted Pulumi name a module imports or reads, with import aliases undone."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                yield f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts: list[str] = []
            value: ast.expr = node
            while isinstance(value, ast.Attribute):
                parts.insert(0, value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in aliases:
                yield ".".join([aliases[value.id], *parts])
        elif isinstance(node, ast.keyword) and node.arg in _SUPERSEDED:
            yield f"keyword {node.arg}"


def test_the_program_uses_only_the_public_pulumi_api() -> None:
    graph = _graph()
    program = {"stacks.program"}
    frontier = ["stacks.program"]
    while frontier:
        for target in graph[frontier.pop()] - program:
            program.add(target)
            frontier.append(target)
    modules = _modules()
    found = {
        f"{module}: {name}"
        for module in sorted(program)
        for name in _sdk_uses(modules[module])
        if _PRIVATE.match(name) or name.rsplit(".", 1)[-1].removeprefix("keyword ") in _SUPERSEDED
    }
    assert sorted(found) == []
