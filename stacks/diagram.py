"""The architecture diagram (docs/architecture.svg), drawn from the engine's own graph of
the `local` stack, so that the picture cannot drift from the program.

`python -m stacks.diagram` (`make diagram`):
1. runs `scripts/pulumi-local up` in render mode into a throwaway directory (its own
   state, passphrase, stack file and rendered manifests; never the checkout's stack,
   state or build/). Render mode, because `pulumi stack graph` reads a deployment's
   state, only `up` writes one, and render mode is the one `up` of the local program
   that needs no cluster: the same program with the same config, whose Kubernetes
   provider writes YAML instead of calling an API server. It registers every object
   `make up` deploys except the local control plane's own scaffolding (its simulated
   nodes and one volume per claim), which is not part of the platform;
2. runs `pulumi stack graph` on it, with parent and dependency edges told apart by the
   edge colours this module asks for;
3. parses that DOT (`parse_pulumi_dot`) and groups it (`architecture_dot`): one Graphviz
   cluster per ComponentResource (type `agent-platform:...`, nested as the components
   are), each node labelled with its short type and name, dependency edges pointing
   from what is needed to what needs it. The stack, the providers and the parent edges
   are left out (the clusters show parenthood). A dependency that a whole component
   inherits (`depends_on` a component reaches all its children) is drawn once, to the
   component's box, instead of once per child; when every member of a component
   depends on the same thing, one edge leaves the component's box. Everything is
   sorted, so the same program gives the same bytes;
4. writes that as docs/architecture.dot and renders docs/architecture.svg with
   Graphviz's `dot -Tsvg`, with the DOT's sha256 in a comment of the SVG, so a test
   can tell the SVG was rendered from the committed DOT without depending on the bytes
   Graphviz writes.

tests/engine/test_diagram.py regenerates the DOT from the engine and compares it with
the committed one (CI fails with "run make diagram" when the program changed).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DOT_PATH = REPO / "docs" / "architecture.dot"
SVG_PATH = REPO / "docs" / "architecture.svg"

# `pulumi stack graph` marks an edge's kind only by its colour; these are the colours
# this module asks for, so that parsing does not depend on the engine's defaults.
PARENT_EDGE = "parent"
DEPENDENCY_EDGE = "dependency"
COMPONENT_PREFIX = "agent-platform:"
STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_PREFIX = "pulumi:providers:"
SVG_HASH_PREFIX = "architecture.dot sha256:"

_NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"\];$')
_EDGE = re.compile(r'^\s*(\w+) -> (\w+) \[color = "([^"]*)"(?:, label = "((?:[^"\\]|\\.)*)")?\];$')
_FRAME = re.compile(r"^\s*(strict digraph \{|\})?\s*$")


class DiagramError(Exception):
    """Input the diagram cannot be made from; the message names what and where."""


@dataclass(frozen=True, order=True)
class Resource:
    """One resource of the graph, by its URN without the stack: `<type chain>::<name>`,
    the type chain being the parents' types and its own, joined by `$`."""

    key: str

    @property
    def type(self) -> str:
        return self.key.split("::", 1)[0].rsplit("$", 1)[-1]

    @property
    def name(self) -> str:
        return self.key.split("::", 1)[1]

    @property
    def is_component(self) -> bool:
        return self.type.startswith(COMPONENT_PREFIX)

    @property
    def is_shown(self) -> bool:
        return self.type != STACK_TYPE and not self.type.startswith(PROVIDER_PREFIX)

    @property
    def short_type(self) -> str:
        """`kubernetes:apps/v1:Deployment` -> `Deployment`."""
        return self.type.rsplit(":", 1)[-1]


@dataclass
class Graph:
    """What `pulumi stack graph` says: each resource's parent, and which resource needs
    which (`dependencies[needed]` = what needs it, with the properties it flows into)."""

    parents: dict[Resource, Resource | None] = field(default_factory=dict)
    dependencies: dict[tuple[Resource, Resource], set[str]] = field(default_factory=dict)


def _resource(urn: str, line_number: int) -> Resource:
    # urn:pulumi:<stack>::<project>::<type chain>::<name>
    parts = urn.split("::", 3)
    if len(parts) != 4 or not parts[0].startswith("urn:pulumi:"):
        raise DiagramError(f"line {line_number}: {urn!r} is not a Pulumi URN")
    return Resource(f"{parts[2]}::{parts[3]}")


def parse_pulumi_dot(text: str) -> Graph:
    """Parses the DOT `pulumi stack graph` writes, with its edges coloured PARENT_EDGE
    and DEPENDENCY_EDGE."""
    ids: dict[str, Resource] = {}
    edges: list[tuple[int, str, str, str, str | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if node := _NODE.match(line):
            ids[node[1]] = _resource(node[2].replace('\\"', '"'), number)
        elif edge := _EDGE.match(line):
            edges.append((number, edge[1], edge[2], edge[3], edge[4]))
        elif not _FRAME.match(line):
            raise DiagramError(f"line {number}: not a node or edge of `pulumi stack graph`: {line}")
    graph = Graph(parents=dict.fromkeys(ids.values()))
    for number, source, target, color, label in edges:
        for end in (source, target):
            if end not in ids:
                raise DiagramError(f"line {number}: edge to {end}, which has no node line")
        if color == PARENT_EDGE:
            graph.parents[ids[source]] = ids[target]
        elif color == DEPENDENCY_EDGE:
            properties = {p.strip() for p in (label or "").split(",") if p.strip()}
            graph.dependencies.setdefault((ids[source], ids[target]), set()).update(properties)
        else:
            raise DiagramError(f"line {number}: edge colour {color!r} is neither kind asked for")
    return graph


def _quote(text: str) -> str:
    """A DOT string; a newline in it is a centred line break."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@dataclass
class _Layout:
    """The graph as drawn: shown resources, each inside its nearest shown component."""

    graph: Graph
    clusters: dict[Resource, str] = field(default_factory=dict)  # component -> cluster id
    inside: dict[Resource | None, list[Resource]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shown = sorted(r for r in self.graph.parents if r.is_shown)
        children: dict[Resource | None, list[Resource]] = defaultdict(list)
        for resource in shown:
            children[self.container(resource)].append(resource)
        self.inside = dict(children)
        # A component with nothing shown inside is drawn as a node, not an empty box.
        for resource in shown:
            if resource.is_component and resource in self.inside:
                self.clusters[resource] = f"cluster_{len(self.clusters)}"

    def container(self, resource: Resource) -> Resource | None:
        parent = self.graph.parents.get(resource)
        while parent is not None and not (parent.is_shown and parent.is_component):
            parent = self.graph.parents.get(parent)
        return parent

    def ancestors(self, resource: Resource) -> list[Resource]:
        found = []
        parent = self.container(resource)
        while parent is not None:
            found.append(parent)
            parent = self.container(parent)
        return found

    def members(self, component: Resource) -> list[Resource]:
        """The nodes drawn inside a component's box, at any depth."""
        found: list[Resource] = []
        for child in self.inside.get(component, []):
            found += self.members(child) if child in self.clusters else [child]
        return found

    def anchor(self, resource: Resource) -> str:
        """The node an edge to or from this box or node is drawn to (Graphviz draws
        edges between nodes; lhead/ltail clip them at a cluster's border)."""
        return _quote(self.members(resource)[0].key if resource in self.clusters else resource.key)


def _drawn_edges(layout: _Layout) -> dict[tuple[Resource, Resource], set[str]]:
    shown = {
        pair: props
        for pair, props in layout.graph.dependencies.items()
        if pair[0].is_shown and pair[1].is_shown
    }
    # A child depending on its own component, or the reverse, is parenthood, not a wire.
    shown = {
        (a, b): props
        for (a, b), props in shown.items()
        if a != b and a not in layout.ancestors(b) and b not in layout.ancestors(a)
    }
    # Inherited: X -> Y is implied when X -> a component around Y is drawn.
    edges = {
        (a, b): props
        for (a, b), props in shown.items()
        if not any((a, outer) in shown for outer in layout.ancestors(b))
    }
    # Shared: when every node in a component's box needs the same thing, one edge leaves
    # the box. Outermost components first, so the widest box that qualifies takes it.
    for component in sorted(layout.clusters, key=lambda c: (len(layout.ancestors(c)), c)):
        members = layout.members(component)
        if len(members) < 2:
            continue
        targets = {b for (a, b) in edges if a == members[0]}
        for target in sorted(targets):
            if target == component or component in layout.ancestors(target):
                continue
            if all((m, target) in edges for m in members):
                edges[(component, target)] = set().union(
                    *(edges.pop((member, target)) for member in members)
                )
    return edges


def architecture_dot(graph: Graph, title: str) -> str:
    """The grouped, byte-stable DOT of a parsed `pulumi stack graph`."""
    layout = _Layout(graph)
    if not layout.inside:
        raise DiagramError("the graph has no resource to draw (was the stack deployed?)")
    lines = [
        "digraph architecture {",
        f"  graph [label={_quote(title)}, labelloc=t, fontsize=18, fontname=Helvetica,",
        "         rankdir=LR, compound=true, newrank=true, nodesep=0.25, ranksep=0.6];",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica,',
        "        fontsize=10];",
        '  edge [color="#246C60", arrowsize=0.6, fontname=Helvetica, fontsize=8,',
        '        fontcolor="#246C60"];',
    ]

    def emit(container: Resource | None, indent: str) -> None:
        for resource in layout.inside.get(container, []):
            if resource in layout.clusters:
                lines.append(f"{indent}subgraph {layout.clusters[resource]} {{")
                lines.append(
                    f"{indent}  label={_quote(f'{resource.short_type} {resource.name}')};"
                    ' style="rounded,filled"; fillcolor="#EEF3F8"; color="#7A8FA6";'
                    " fontsize=12;"
                )
                emit(resource, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                label = _quote(f"{resource.short_type}\n{resource.name}")
                style = ', shape=box3d, fillcolor="#EEF3F8"' if resource.is_component else ""
                lines.append(f"{indent}{_quote(resource.key)} [label={label}{style}];")

    emit(None, "  ")
    for (source, target), properties in sorted(_drawn_edges(layout).items()):
        attributes = []
        if source in layout.clusters:
            attributes.append(f"ltail={layout.clusters[source]}")
        if target in layout.clusters:
            attributes.append(f"lhead={layout.clusters[target]}")
        if properties:
            attributes.append(f"label={_quote(', '.join(sorted(properties)))}")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {layout.anchor(source)} -> {layout.anchor(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg_with_hash(svg: str, dot: str) -> str:
    """The SVG Graphviz rendered, with the DOT's sha256 in a comment after its XML
    declaration."""
    comment = f"<!-- {SVG_HASH_PREFIX} {hashlib.sha256(dot.encode()).hexdigest()} -->\n"
    head, newline, rest = svg.partition("\n")
    if head.startswith("<?xml"):
        return head + newline + comment + rest
    return comment + svg


def svg_dot_hash(svg: str) -> str | None:
    """The DOT sha256 an SVG says it was rendered from, if any."""
    found = re.search(rf"<!-- {re.escape(SVG_HASH_PREFIX)} ([0-9a-f]{{64}}) -->", svg)
    return found[1] if found else None


def render_svg(dot: str) -> str:
    """The SVG Graphviz's `dot` draws of a DOT text, with the text's hash in it."""
    graphviz = shutil.which("dot")
    if graphviz is None:
        raise DiagramError("Graphviz's `dot` is not installed: scripts/bootstrap installs it")
    result = subprocess.run(  # noqa: S603 - Graphviz, fixed arguments, the DOT on stdin
        [graphviz, "-Tsvg"], input=dot, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise DiagramError(f"dot -Tsvg failed: {result.stderr.strip()}")
    return svg_with_hash(result.stdout, dot)


def _run(command: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our own scripts/pulumi-local, fixed arguments
        command, cwd=REPO, env=dict(env), capture_output=True, text=True, check=False, timeout=900
    )
    if result.returncode != 0:
        raise DiagramError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def engine_graph(stack_file: Path = REPO / "Pulumi.local.yaml") -> str:
    """`pulumi stack graph` of the local program, after an `up` in render mode into a
    throwaway directory."""
    with tempfile.TemporaryDirectory(prefix="agent-platform-diagram-") as scratch:
        work = Path(scratch)
        document = yaml.safe_load(stack_file.read_text())
        local = dict(document["config"].get("agent-platform:local") or {})
        local["renderDirectory"] = str(work / "build" / "manifests")
        local["secretsDirectory"] = str(work / "build" / "secrets")
        document["config"]["agent-platform:local"] = local
        (work / "Pulumi.local.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        env = {
            **os.environ,
            "AGENT_PLATFORM_STATE": str(work / "state"),
            "AGENT_PLATFORM_STACK_FILE": str(work / "Pulumi.local.yaml"),
            "AGENT_PLATFORM_LOCAL_TARGET": "render",
        }
        local_script = str(REPO / "scripts" / "pulumi-local")
        _run([local_script, "up"], env)
        graph_file = work / "graph.dot"
        _run(
            [
                local_script,
                "pulumi",
                "stack",
                "graph",
                str(graph_file),
                "--stack",
                "local-render",
                "--non-interactive",
                "--color",
                "never",
                "--parent-edge-color",
                PARENT_EDGE,
                "--dependency-edge-color",
                DEPENDENCY_EDGE,
            ],
            env,
        )
        return graph_file.read_text()


TITLE = (
    "agent-platform: the local stack as the Pulumi engine registers it\n"
    "(boxes: components; arrows: from what a resource needs to the resource,"
    " labelled with the properties it flows into)"
)


def generate(stack_file: Path = REPO / "Pulumi.local.yaml") -> str:
    """The grouped DOT of the local program, from the engine."""
    return architecture_dot(parse_pulumi_dot(engine_graph(stack_file)), TITLE)


def write(dot: str, dot_path: Path = DOT_PATH, svg_path: Path = SVG_PATH) -> None:
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(dot)
    svg_path.write_text(render_svg(dot))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--from-graph",
        type=Path,
        help="group this `pulumi stack graph` output (coloured as this module asks) "
        "instead of running the engine",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.from_graph:
            dot = architecture_dot(parse_pulumi_dot(args.from_graph.read_text()), TITLE)
        else:
            dot = generate()
        write(dot)
    except DiagramError as error:
        print(f"diagram: {error}", file=sys.stderr)
        return 1
    print(f"diagram: wrote {DOT_PATH.relative_to(REPO)} and {SVG_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
