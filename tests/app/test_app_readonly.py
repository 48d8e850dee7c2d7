"""The service runs with a read-only root filesystem and only /tmp writable, as the
container does (readOnlyRootFilesystem plus an emptyDir at /tmp)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.appkit import Client, Env, Service, start_service, stop

pytestmark = pytest.mark.redis


def _read_only(writable: Path) -> tuple[str, ...]:
    """A private mount namespace whose root is remounted read-only, with a fresh tmpfs at
    `writable`, where TMPDIR and HOME point (the container's emptyDir at /tmp). The tmpfs
    does not cover /tmp itself: the checkout, and so the venv, may live under /tmp."""
    return (
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"mount --rbind / / && mount -o remount,bind,ro / && mount -t tmpfs tmpfs {writable} "
        '&& cd / && exec "$@"',
        "read-only",
    )


def _read_only_supported(writable: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            *_read_only(writable),
            "sh",
            "-c",
            f"! touch /read-only-probe 2>/dev/null && touch {writable}/ok",
        ],
        capture_output=True,
        check=False,
        timeout=10,
    )
    return probe.returncode == 0


@pytest.fixture
def read_only_stack(
    base_env: Env, tmp_path: Path, clean_redis: redis.Redis
) -> Iterator[tuple[Service, Service]]:
    writable = tmp_path / "writable"
    writable.mkdir()
    if not _read_only_supported(writable):
        pytest.skip("this machine cannot create a mount namespace (unshare -m)")
    env = base_env.with_(task_stream="readonly:tasks")
    # As in the image: HOME and temp files on the one writable mount, no bytecode written.
    env.values.update(
        {"HOME": str(writable), "TMPDIR": str(writable), "PYTHONDONTWRITEBYTECODE": "1"}
    )
    api = start_service(env, "serve", tmp_path, _read_only(writable))
    worker = start_service(env, "worker", tmp_path, _read_only(writable))
    yield api, worker
    stop(worker.proc)
    stop(api.proc)


def test_api_and_worker_work_on_a_read_only_root(
    read_only_stack: tuple[Service, Service],
) -> None:
    api, worker = read_only_stack
    client = Client(api.url, "acme")
    body = client.submit("compute 6 * 9", wait=60).json()
    assert body["status"] == "completed", body
    assert "6 * 9 = 54" in body["result"]
    for service in (api, worker):
        log = service.log.read_text()
        assert "Read-only file system" not in log
        assert "Traceback" not in log
    client.http.close()
