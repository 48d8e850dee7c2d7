"""scripts/pulumi-engine: pins agree, nothing generated is committed, and the built
engine is the pinned one and runs a Python program with the Kubernetes provider."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "pulumi-engine"
ENGINE = ROOT / "tools" / "engine"


def _pin(name: str) -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "infra"
    ]
    for dep in deps:
        m = re.fullmatch(rf"{re.escape(name)}==(\S+)", dep)
        if m:
            return m.group(1)
    raise AssertionError(f"no {name}== pin in pyproject.toml")


def _require(gomod: Path, module: str) -> str:
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod.read_text(), re.M)
    assert m, f"{gomod} does not require {module}"
    return m.group(1)


def _run(*args: str, env: dict[str, str] | None = None, timeout: int = 3600) -> str:
    proc = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_go_pins_match_pyproject() -> None:
    pulumi, k8s = _pin("pulumi"), _pin("pulumi-kubernetes")
    cli = ENGINE / "cli" / "go.mod"
    assert _require(cli, "github.com/pulumi/pulumi/pkg/v3") == f"v{pulumi}"
    assert _require(cli, "github.com/pulumi/pulumi/sdk/v3") == f"v{pulumi}"
    kmod = ENGINE / "kubernetes" / "go.mod"
    assert _require(kmod, "github.com/pulumi/pulumi-kubernetes/sdk/v4") == f"v{k8s}"
    out = _run("versions")
    assert f"pulumi={pulumi}\n" in out
    assert f"kubernetes={k8s}\n" in out


def test_wrapper_modules_are_committed_without_generated_files() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "tools/engine"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for mod in ("cli", "kubernetes"):
        assert f"tools/engine/{mod}/go.mod" in tracked
        assert f"tools/engine/{mod}/go.sum" in tracked
    assert not [f for f in tracked if f.endswith(".json")], "generated schema must not be committed"
    for f in tracked:
        with (ROOT / f).open("rb") as fh:
            assert not fh.read(4).startswith(b"\x7fELF"), f"{f} is a binary"


def _in_engine(project: Path, state: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command in the engine's environment against a fresh file backend."""
    state.mkdir()
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": "engine-smoke",
    }
    return subprocess.run(
        [str(SCRIPT), "exec", "bash", "-c", command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.engine
def test_engine_is_pinned_and_renders_kubernetes_yaml(tmp_path: Path) -> None:
    pulumi, k8s = _pin("pulumi"), _pin("pulumi-kubernetes")
    _run("ensure")
    assert _run("exec", "pulumi", "version").strip() == f"v{pulumi}"
    plugins = _run("exec", "pulumi", "plugin", "ls")
    assert re.search(rf"^kubernetes\s+resource\s+{re.escape(k8s)}\s", plugins, re.M), plugins
    assert re.search(r"^python\s+language\s", plugins, re.M), plugins

    project = tmp_path / "project"
    project.mkdir()
    out_dir = tmp_path / "out"
    (project / "Pulumi.yaml").write_text(
        "name: engine-smoke\n"
        "runtime:\n"
        "  name: python\n"
        "  options:\n"
        "    toolchain: pip\n"
        f"    virtualenv: {ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text(
        "import pulumi\n"
        "import pulumi_kubernetes as k8s\n"
        f"render = k8s.Provider('render', render_yaml_to_directory={str(out_dir)!r})\n"
        "k8s.core.v1.ConfigMap('smoke', metadata={'name': 'smoke'}, data={'k': 'v'},\n"
        "    opts=pulumi.ResourceOptions(provider=render))\n"
    )
    proc = _in_engine(
        project,
        tmp_path / "state",
        "pulumi stack init dev --non-interactive && pulumi up --yes --non-interactive --skip-preview",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rendered = list(out_dir.rglob("*.yaml"))
    assert rendered, f"nothing rendered into {out_dir}"
    assert any("name: smoke" in p.read_text() for p in rendered)


@pytest.mark.engine
def test_engine_runs_a_python_policy_pack(tmp_path: Path) -> None:
    project = tmp_path / "project"
    pack = tmp_path / "pack"
    project.mkdir()
    pack.mkdir()
    venv = ROOT / ".venv"
    (project / "Pulumi.yaml").write_text(
        f"name: engine-policy\nruntime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
    )
    (project / "__main__.py").write_text(
        "import pulumi\n"
        "import pulumi_kubernetes as k8s\n"
        f"render = k8s.Provider('render', render_yaml_to_directory={str(tmp_path / 'out')!r})\n"
        "k8s.core.v1.ConfigMap('flagged', data={'forbidden': 'x'},\n"
        "    opts=pulumi.ResourceOptions(provider=render))\n"
    )
    (pack / "PulumiPolicy.yaml").write_text(
        f"runtime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
    )
    (pack / "__main__.py").write_text(
        "from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy\n"
        "def check(args, report_violation):\n"
        "    if 'forbidden' in (args.props.get('data') or {}):\n"
        "        report_violation('forbidden key present')\n"
        "PolicyPack('engine-smoke-pack', enforcement_level=EnforcementLevel.MANDATORY,\n"
        "    policies=[ResourceValidationPolicy(name='no-forbidden', description='d',\n"
        "        validate=check)])\n"
    )
    proc = _in_engine(
        project,
        tmp_path / "state",
        "pulumi stack init dev --non-interactive && "
        f"pulumi preview --non-interactive --policy-pack {pack}",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "no-forbidden" in out, out
    assert "forbidden key present" in out, out
