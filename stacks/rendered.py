"""The `local` stack's rendered manifests (render target) against its state.

- Which resources' files are gone from disk, and the state without them, so that the
  next `pulumi up` renders them again (`missing`).
- A `kustomization.yaml` in each render directory listing the state's files, so that the
  whole directory applies with one `kubectl apply -k DIR`: kustomize orders the objects
  (Namespaces and CRDs before what lives in them), where `kubectl apply -R -f` would
  take the files alphabetically and fail on the Namespace it has not created yet
  (`kustomize`, and `directories` for the cleanup after `destroy`).

In render mode the Kubernetes provider writes each object to a file and its `Read` does
not look at the file, so `pulumi refresh` cannot notice one that was deleted by hand or
by `git clean`; `pulumi up` would report it `unchanged`. `scripts/pulumi-local up` runs
this first: it reads `pulumi stack export`, and when files are missing it writes the
deployment without those resources (and without what depends on them, which the engine
requires of a snapshot) for `pulumi stack import`. The following `up` then creates them,
which writes their files again. Nothing else in the state changes.

A rendered object's file is `<dir>/0-crd/<file>` for a CustomResourceDefinition and
`<dir>/1-manifest/<file>` for anything else, `<file>` being
`<apiVersion with / and : as _>-<kind, lower case>-<namespace or "default">-<name>.yaml`:
the layout the provider documents for `renderYamlToDirectory`.

    pulumi stack export | python -m stacks.rendered missing --cwd DIR --write-pruned FILE
prints one line per missing file and exits 1 when any is missing (FILE then holds the
deployment to import), 0 when every rendered file is there.
    pulumi stack export | python -m stacks.rendered kustomize --cwd DIR
    pulumi stack export | python -m stacks.rendered directories --cwd DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROVIDER_TYPE = "pulumi:providers:kubernetes"
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")

Resource = Mapping[str, Any]


@dataclass(frozen=True)
class RenderedFile:
    urn: str
    path: Path


def _sanitise(text: str) -> str:
    return text.replace("/", "_").replace(":", "_")


def rendered_path(directory: Path, outputs: Mapping[str, Any]) -> Path | None:
    """Where the provider rendered this object, or None if its identity is not plain
    (a secret or missing name)."""
    api_version, kind = outputs.get("apiVersion"), outputs.get("kind")
    metadata = outputs.get("metadata")
    if not (isinstance(api_version, str) and isinstance(kind, str)):
        return None
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        return None
    namespace = metadata.get("namespace") or "default"
    if not isinstance(namespace, str):
        return None
    file = f"{_sanitise(api_version)}-{kind.lower()}-{namespace}-{metadata['name']}.yaml"
    subdirectory = "0-crd" if (api_version, kind) == CRD else "1-manifest"
    return directory / subdirectory / file


def _render_directories(resources: Iterable[Resource], cwd: Path) -> dict[str, Path]:
    """Provider reference (`urn::id`) -> its render directory, for render providers."""
    directories: dict[str, Path] = {}
    for resource in resources:
        if resource.get("type") != PROVIDER_TYPE:
            continue
        directory = (resource.get("inputs") or {}).get("renderYamlToDirectory")
        if isinstance(directory, str) and directory:
            directories[f"{resource['urn']}::{resource['id']}"] = cwd / directory
    return directories


def rendered_files(deployment: Mapping[str, Any], cwd: Path) -> dict[Path, list[RenderedFile]]:
    """Render directory -> the file of each resource the state says is rendered there."""
    resources: list[Resource] = deployment.get("resources") or []
    directories = _render_directories(resources, cwd)
    files: dict[Path, list[RenderedFile]] = {directory: [] for directory in directories.values()}
    for resource in resources:
        directory = directories.get(resource.get("provider", ""))
        if directory is None or resource.get("delete"):
            continue
        path = rendered_path(directory, resource.get("outputs") or {})
        if path is not None:
            files[directory].append(RenderedFile(resource["urn"], path))
    return files


def missing_renders(deployment: Mapping[str, Any], cwd: Path) -> list[RenderedFile]:
    """Every resource of a render provider whose file is not on disk."""
    return [
        item
        for items in rendered_files(deployment, cwd).values()
        for item in items
        if not item.path.exists()
    ]


def kustomization(directory: Path, files: Iterable[Path]) -> str:
    """A kustomization listing these files of the directory, in a stable order."""
    lines = ["apiVersion: kustomize.config.k8s.io/v1beta1", "kind: Kustomization", "resources:"]
    lines += [f"- {path.relative_to(directory).as_posix()}" for path in sorted(files)]
    return "\n".join(lines) + "\n"


def _depends_on(resource: Resource, urns: set[str]) -> bool:
    referenced = {resource.get("parent"), resource.get("deletedWith")}
    referenced.update(resource.get("dependencies") or [])
    for dependencies in (resource.get("propertyDependencies") or {}).values():
        referenced.update(dependencies)
    provider = resource.get("provider")
    if isinstance(provider, str):
        referenced.add(provider.rsplit("::", 1)[0])
    return bool(referenced & urns)


def without(deployment: Mapping[str, Any], urns: Iterable[str]) -> dict[str, Any]:
    """The deployment with these resources and everything that depends on them removed.
    Resources are in dependency order, so one pass collects the dependents."""
    removed = set(urns)
    kept: list[Resource] = []
    for resource in deployment.get("resources") or []:
        if resource["urn"] in removed or _depends_on(resource, removed):
            removed.add(resource["urn"])
        else:
            kept.append(resource)
    return {**deployment, "resources": kept}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.rendered", description=__doc__)
    parser.add_argument("command", choices=("missing", "kustomize", "directories"))
    parser.add_argument("--cwd", type=Path, required=True, help="the program's directory")
    parser.add_argument("--write-pruned", type=Path, help="missing: where to write the export")
    args = parser.parse_args(argv)
    exported = json.load(sys.stdin)
    deployment = exported.get("deployment") or {}
    if args.command == "directories":
        for directory in rendered_files(deployment, args.cwd):
            print(directory)
        return 0
    if args.command == "kustomize":
        for directory, items in rendered_files(deployment, args.cwd).items():
            if items:
                text = kustomization(directory, (item.path for item in items))
                (directory / "kustomization.yaml").write_text(text)
        return 0
    missing = missing_renders(deployment, args.cwd)
    for item in missing:
        print(f"missing {item.path} ({item.urn})")
    if missing and args.write_pruned is not None:
        pruned = without(deployment, (item.urn for item in missing))
        args.write_pruned.write_text(json.dumps({**exported, "deployment": pruned}))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
