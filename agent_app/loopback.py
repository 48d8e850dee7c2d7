"""The app's processes side by side on 127.0.0.1, as its tests, fault campaign and load
benchmark run them: a free port, waiting until a process answers, stopping it, and the
command line of a throwaway redis-server."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    """Until `url` answers below 500; fails at once if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout}s")


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `grace_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def redis_server_command(
    port: int, password: str, workdir: Path, *, appendonly: bool = False
) -> list[str]:
    """Loopback only, with a password; no snapshots, and the append-only file (every write
    fsynced) only when asked for, so that a restart keeps what was acknowledged."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run scripts/bootstrap")
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
    )
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        *persistence,
        "--requirepass",
        password,
        "--dir",
        str(workdir),
    ]
