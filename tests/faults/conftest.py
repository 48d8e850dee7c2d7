"""Fixtures of the fault campaign, and its summary at the end of the pytest run."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from app.appkit import AGENT_APP, DevLLM, Env, Service, free_port, start_service, stop, wait_http

from faults.campaign import RECORDED
from faults.stack import RedisProcess, WorkerPool


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not RECORDED:
        return
    terminalreporter.section("fault campaign: what was tried and what was lost")
    for entry in RECORDED:
        terminalreporter.write_line(entry.summary())


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[[bool], RedisProcess]]:
    """Each run gets its own redis-server, so killing it disturbs nothing else."""
    started: list[RedisProcess] = []

    def start(appendonly: bool) -> RedisProcess:
        workdir = tmp_path / f"redis-{len(started)}"
        workdir.mkdir()
        server = RedisProcess(free_port(), workdir, appendonly)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def devllm_factory() -> Iterator[Callable[..., DevLLM]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> DevLLM:
        port = free_port()
        proc = subprocess.Popen(
            [AGENT_APP, "devllm", "--host", "127.0.0.1", "--port", str(port), *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc)
        return DevLLM(url)

    yield start
    for proc in started:
        stop(proc)


@pytest.fixture
def api_factory(tmp_path: Path) -> Iterator[Callable[[Env], Service]]:
    started: list[Service] = []

    def start(env: Env) -> Service:
        service = start_service(env, "serve", tmp_path)
        started.append(service)
        return service

    yield start
    for service in started:
        stop(service.proc)


@pytest.fixture
def worker_pool(tmp_path: Path) -> Iterator[Callable[[Env], WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(env: Env) -> WorkerPool:
        pool = WorkerPool(env, tmp_path)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop_all()
