"""The architecture diagram's parsing and grouping of `pulumi stack graph` output, on a
small graph shaped like the engine's (tests/engine/test_diagram.py runs the engine), and
that the committed SVG was rendered from the committed DOT."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
from collections.abc import Mapping

import pytest

from stacks.diagram import (
    DOT_PATH,
    SVG_PATH,
    DiagramError,
    architecture_dot,
    parse_pulumi_dot,
    render_svg,
    svg_dot_hash,
    svg_with_hash,
)

NS = "agent-platform:namespace:PlatformNamespace"
REDIS = "agent-platform:redis:Redis"
SECRETS = "agent-platform:secrets:PlatformSecrets"
# name -> (type chain, parent name or None)
RESOURCES = {
    "p-s": ("pulumi:pulumi:Stack", None),
    "render": ("pulumi:providers:kubernetes", "p-s"),
    "agents": (NS, "p-s"),
    "agents-ns": (f"{NS}$kubernetes:core/v1:Namespace", "agents"),
    "deny": (f"{NS}$kubernetes:networking.k8s.io/v1:NetworkPolicy", "agents"),
    "queue": (REDIS, "p-s"),
    "queue-statefulset": (f"{REDIS}$kubernetes:apps/v1:StatefulSet", "queue"),
    "queue-auth": (f"{REDIS}$kubernetes:core/v1:Secret", "queue"),
    "app-secrets": (SECRETS, "p-s"),
    "app-secrets-app": (f"{SECRETS}$kubernetes:core/v1:Secret", "app-secrets"),
    "agent-app": ("agent-platform:image:AppImage", "p-s"),
}
# (needed, needing, properties)
DEPENDENCIES = [
    ("agents-ns", "deny", "metadata"),
    ("queue-auth", "queue-statefulset", "spec"),
    ("app-secrets-app", "queue-statefulset", "spec"),
    ("render", "agents-ns", ""),
    # `depends_on` the namespace component: each of its children to the other
    # components and to each of their children.
    *[
        (member, needing, "")
        for member in ("agents-ns", "deny")
        for needing in ("queue", "queue-statefulset", "queue-auth")
    ],
]


def _pulumi_dot(
    seed: int | None = None, resources: Mapping[str, tuple[str, str | None]] = RESOURCES
) -> str:
    """The graph as `pulumi stack graph` writes it; with a seed, its resources numbered
    and its lines ordered differently (the engine promises neither)."""
    names = list(resources)
    if seed is not None:
        random.Random(seed).shuffle(names)
    ids = {name: f"Resource{i}" for i, name in enumerate(names)}
    lines = []
    for name in names:
        chain, parent = resources[name]
        lines.append(
            f'    {ids[name]} [label="urn:pulumi:local-render::agent-platform::{chain}::{name}"];'
        )
        if parent:
            lines.append(f'    {ids[name]} -> {ids[parent]} [color = "parent"];')
    for needed, needing, properties in DEPENDENCIES:
        label = f', label = "{properties}"' if properties else ""
        lines.append(f'    {ids[needed]} -> {ids[needing]} [color = "dependency"{label}];')
    if seed is not None:
        random.Random(seed).shuffle(lines)
    return "strict digraph {\n" + "\n".join(lines) + "\n}\n"


def _edges(dot: str) -> set[str]:
    """Each drawn edge as `needed -> needing [attributes]`, by resource name."""
    found = set()
    for line in dot.splitlines():
        edge = re.match(r'\s*"[^"]*::([^"]+)" -> "[^"]*::([^"]+)"( \[.*\])?;$', line)
        if edge:
            found.add(f"{edge[1]} -> {edge[2]}{edge[3] or ''}")
    return found


def _cluster_ids(dot: str) -> dict[str, str]:
    labels = re.findall(r"subgraph (cluster_\d+) \{\n\s*label=\"([^\"]+)\"", dot)
    return {label: cluster for cluster, label in labels}


def test_groups_by_component_and_draws_each_dependency_once() -> None:
    dot = architecture_dot(parse_pulumi_dot(_pulumi_dot()), "t")
    clusters = _cluster_ids(dot)
    assert set(clusters) == {
        "PlatformNamespace agents",
        "Redis queue",
        "PlatformSecrets app-secrets",
    }
    namespace, redis = clusters["PlatformNamespace agents"], clusters["Redis queue"]
    assert _edges(dot) == {
        'agents-ns -> deny [label="metadata"]',
        'queue-auth -> queue-statefulset [label="spec"]',
        'app-secrets-app -> queue-statefulset [label="spec"]',
        # What every member of the namespace's box gives the whole Redis box: one edge,
        # box to box, instead of two members times three.
        f"agents-ns -> queue-statefulset [ltail={namespace}, lhead={redis}]",
    }


def test_leaves_out_the_stack_and_providers_and_draws_an_empty_component_as_a_node() -> None:
    dot = architecture_dot(parse_pulumi_dot(_pulumi_dot()), "t")
    assert "pulumi:pulumi:Stack" not in dot
    assert "pulumi:providers:" not in dot
    assert '"agent-platform:image:AppImage::agent-app" [label="AppImage\\nagent-app"' in dot
    assert "shape=box3d" in dot
    node = re.search(r'"[^"]*::queue-auth" \[label="([^"]+)"\]', dot)
    assert node is not None
    assert node[1] == "Secret\\nqueue-auth"


def test_the_output_does_not_depend_on_the_engines_numbering_or_order() -> None:
    expected = architecture_dot(parse_pulumi_dot(_pulumi_dot()), "t")
    for seed in range(5):
        assert architecture_dot(parse_pulumi_dot(_pulumi_dot(seed)), "t") == expected


def test_a_new_resource_changes_the_output() -> None:
    before = architecture_dot(parse_pulumi_dot(_pulumi_dot()), "t")
    more = {
        **RESOURCES,
        "queue-pdb": (f"{REDIS}$kubernetes:policy/v1:PodDisruptionBudget", "queue"),
    }
    after = architecture_dot(parse_pulumi_dot(_pulumi_dot(resources=more)), "t")
    assert after != before
    assert "PodDisruptionBudget\\nqueue-pdb" in after


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("strict digraph {\n  Resource0 [shape=box];\n}\n", "line 2: not a node or edge"),
        (
            'strict digraph {\n  Resource0 [label="urn:pulumi:s::p::a:b:C::x"];\n'
            '  Resource0 -> Resource1 [color = "parent"];\n}\n',
            "line 3: edge to Resource1, which has no node line",
        ),
        (
            'strict digraph {\n  Resource0 [label="urn:pulumi:s::p::a:b:C::x"];\n'
            '  Resource0 -> Resource0 [color = "#246C60"];\n}\n',
            "line 3: edge colour '#246C60' is neither kind asked for",
        ),
        ('strict digraph {\n  Resource0 [label="not-a-urn"];\n}\n', "line 2: 'not-a-urn'"),
    ],
)
def test_unexpected_input_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(DiagramError, match=re.escape(message)):
        parse_pulumi_dot(text)


def test_a_graph_with_nothing_to_draw_is_refused() -> None:
    with pytest.raises(DiagramError, match="no resource to draw"):
        architecture_dot(parse_pulumi_dot("strict digraph {\n}\n"), "t")


def test_the_svg_carries_the_hash_of_the_dot_it_was_rendered_from() -> None:
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's `dot` is missing: scripts/bootstrap installs it")
    dot = architecture_dot(parse_pulumi_dot(_pulumi_dot()), "t")
    svg = render_svg(dot)
    assert svg.startswith("<?xml")
    assert svg_dot_hash(svg) == hashlib.sha256(dot.encode()).hexdigest()
    assert ">Redis queue</text>" in svg
    assert ">StatefulSet</text>" in svg
    assert svg_dot_hash("<svg/>") is None
    assert svg_dot_hash(svg_with_hash("<svg/>", dot)) == svg_dot_hash(svg)
    with pytest.raises(DiagramError, match="dot -Tsvg failed"):
        render_svg("digraph {")


def test_the_committed_svg_was_rendered_from_the_committed_dot() -> None:
    dot = DOT_PATH.read_text()
    assert svg_dot_hash(SVG_PATH.read_text()) == hashlib.sha256(dot.encode()).hexdigest(), (
        "docs/architecture.svg was not rendered from docs/architecture.dot: run `make diagram`"
    )
