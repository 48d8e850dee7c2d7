"""stacks.rendered: which rendered files are gone, and the state without them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.rendered import main, missing_renders, rendered_path, without

PREFIX = "urn:pulumi:local::agent-platform::"
RENDER = f"{PREFIX}pulumi:providers:kubernetes::local-render"
CONTEXT = f"{PREFIX}pulumi:providers:kubernetes::cluster"


def _object(
    name: str, kind: str, api_version: str = "v1", namespace: str | None = "agents", **extra: Any
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "urn": f"{PREFIX}kubernetes:{api_version}:{kind}::{name}",
        "type": f"kubernetes:{api_version}:{kind}",
        "provider": f"{RENDER}::p1",
        "outputs": {"apiVersion": api_version, "kind": kind, "metadata": metadata},
        **extra,
    }


def _deployment(tmp_path: Path) -> dict[str, Any]:
    namespace = _object("agents", "Namespace", namespace=None)
    return {
        "resources": [
            {"urn": RENDER, "id": "p1", "type": "pulumi:providers:kubernetes",
             "inputs": {"renderYamlToDirectory": "build/manifests"}},
            {"urn": CONTEXT, "id": "p2", "type": "pulumi:providers:kubernetes",
             "inputs": {"context": "kind-dev"}},
            namespace,
            _object("api", "Deployment", "apps/v1", dependencies=[namespace["urn"]]),
            _object("api", "Service"),
            {**_object("elsewhere", "ConfigMap"), "provider": f"{CONTEXT}::p2"},
        ]
    }  # fmt: skip


def _render(tmp_path: Path, *files: str) -> None:
    for file in files:
        path = tmp_path / "build" / "manifests" / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("kind: x\n")


def test_the_provider_layout_names_each_file(tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "scaledobjects.keda.sh"},
    }
    assert rendered_path(tmp_path, crd) == (
        tmp_path / "0-crd" / "apiextensions.k8s.io_v1-customresourcedefinition-default-"
        "scaledobjects.keda.sh.yaml"
    )
    deployment = _object("api", "Deployment", "apps/v1")["outputs"]
    assert rendered_path(tmp_path, deployment) == (
        tmp_path / "1-manifest" / "apps_v1-deployment-agents-api.yaml"
    )
    assert rendered_path(tmp_path, {"apiVersion": "v1", "kind": "Secret", "metadata": "x"}) is None


def test_nothing_is_missing_when_every_file_is_there(tmp_path: Path) -> None:
    _render(
        tmp_path,
        "1-manifest/v1-namespace-default-agents.yaml",
        "1-manifest/apps_v1-deployment-agents-api.yaml",
        "1-manifest/v1-service-agents-api.yaml",
    )
    assert missing_renders(_deployment(tmp_path), tmp_path) == []


def test_a_lost_file_is_found_and_its_dependents_leave_the_state_with_it(
    tmp_path: Path,
) -> None:
    _render(
        tmp_path,
        "1-manifest/apps_v1-deployment-agents-api.yaml",
        "1-manifest/v1-service-agents-api.yaml",
    )
    deployment = _deployment(tmp_path)
    missing = missing_renders(deployment, tmp_path)
    # The ConfigMap of the context provider is never looked for on disk.
    assert [m.urn for m in missing] == [f"{PREFIX}kubernetes:v1:Namespace::agents"]
    assert (
        missing[0].path == tmp_path / "build/manifests/1-manifest/v1-namespace-default-agents.yaml"
    )
    kept = [r["urn"] for r in without(deployment, [missing[0].urn])["resources"]]
    assert kept == [
        RENDER,
        CONTEXT,
        f"{PREFIX}kubernetes:v1:Service::api",
        f"{PREFIX}kubernetes:v1:ConfigMap::elsewhere",
    ]


def test_the_command_writes_the_pruned_export_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = _deployment(tmp_path)
    exported = {"version": 3, "deployment": deployment}
    pruned = tmp_path / "pruned.json"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(exported)))
    assert main(["missing", "--cwd", str(tmp_path), "--write-pruned", str(pruned)]) == 1
    assert capsys.readouterr().out.count("missing ") == 3
    written = json.loads(pruned.read_text())
    assert written["version"] == 3
    assert [r["urn"] for r in written["deployment"]["resources"]] == [
        RENDER,
        CONTEXT,
        deployment["resources"][-1]["urn"],
    ]


def test_each_render_directory_gets_a_kustomization_of_the_states_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = {"version": 3, "deployment": _deployment(tmp_path)}
    (tmp_path / "build" / "manifests").mkdir(parents=True)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(exported)))
    assert main(["kustomize", "--cwd", str(tmp_path)]) == 0
    written = (tmp_path / "build" / "manifests" / "kustomization.yaml").read_text()
    assert written.splitlines() == [
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        "- 1-manifest/apps_v1-deployment-agents-api.yaml",
        "- 1-manifest/v1-namespace-default-agents.yaml",
        "- 1-manifest/v1-service-agents-api.yaml",
    ]
