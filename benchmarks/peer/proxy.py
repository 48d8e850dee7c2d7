"""LiteLLM's proxy as the peer: one process, no database, no master key, in front of the
same devllm as the app, with its in-memory ("local") response cache."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from agent_app.loopback import free_port, wait_http

# Routed to devllm as an OpenAI-compatible model named as the app's calls name it.
MODEL = "medium"


def config(devllm_url: str) -> str:
    """The proxy's config (YAML is a superset of JSON). `cache_params.type: local` is
    LiteLLM's in-process cache: no Redis, no database; a call is cached only when the
    request asks for it (`caching: true`), so one proxy serves both measurements."""
    return json.dumps(
        {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": f"{devllm_url}/v1",
                        "api_key": "dev-llm-key",
                    },
                }
            ],
            "litellm_settings": {
                "cache": True,
                "cache_params": {"type": "local", "mode": "default_off"},
                "telemetry": False,
            },
        }
    )


def start(
    python: Path, devllm_url: str, workdir: Path, cpu: int
) -> tuple[subprocess.Popen[bytes], str]:
    """The proxy pinned to `cpu`, and its base URL once it answers."""
    path = workdir / "litellm.yaml"
    path.write_text(config(devllm_url))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "DATABASE"))}
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_TELEMETRY": "False",
            "NO_DOCS": "True",
            # No master key, as the issue measured it (a local-only proxy).
            "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        }
    )
    argv = [
        "taskset",
        "-c",
        str(cpu),
        str(python),
        "-m",
        "litellm.proxy.proxy_cli",
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    with (workdir / "litellm.log").open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health/liveliness", proc, timeout=120)
    return proc, url
