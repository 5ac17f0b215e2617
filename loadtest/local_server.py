"""Start a throwaway ``scenic serve`` process on loopback for a benchmark or load test.

The server runs in a separate process (so the load generator does not share its
event loop) with its own embedded PostgreSQL in a temporary data directory, on
a free loopback port. :func:`local_server` registers the devices the caller
asks for, waits for the ``server.listening`` log line, and stops the process it
started (SIGTERM, then SIGKILL after a bound) and removes the directory on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs


@attrs.frozen
class LocalServer:
    """A running local server: its URL, data dir, device tokens and start-up time."""

    url: str
    data_dir: Path
    tokens: Mapping[str, str]
    seconds_to_listen: float
    pid: int


def scenic_command(*args: str) -> list[str]:
    """The argv that runs ``scenic ARGS`` with this interpreter."""
    return [sys.executable, "-m", "server.cli", *args]


def add_device(data_dir: Path, device_id: str, role: str, *, dsn: str | None = None) -> str:
    """Register ``device_id`` with ``role`` through the CLI and return its token."""
    where = ["--dsn", dsn] if dsn else ["--data-dir", str(data_dir)]
    done = subprocess.run(
        scenic_command("device", "add", device_id, "--role", role, *where),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def local_server(
    devices: Mapping[str, str],
    *,
    extra_args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 120.0,
) -> Iterator[LocalServer]:
    """Run a fresh server with ``devices`` ({id: role}) registered; yield where it is.

    The server starts first on an empty data directory, so ``seconds_to_listen``
    is a true cold start (initdb included); the devices are added afterwards
    through the CLI, which shares the running embedded cluster.

    Raises ``RuntimeError`` with the server's last log lines if it does not
    listen within ``start_timeout_s``.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="scenic-bench-"))
    process = None
    try:
        log_path = data_dir / "server.log"
        started = time.perf_counter()
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                scenic_command("serve", "--data-dir", str(data_dir), "--port", "0", *extra_args),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        url = wait_for_listening(log_path, process, started + start_timeout_s)
        seconds_to_listen = time.perf_counter() - started
        tokens = {device: add_device(data_dir, device, role) for device, role in devices.items()}
        yield LocalServer(url, data_dir, tokens, seconds_to_listen, process.pid)
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_for_listening(log_path: Path, process: subprocess.Popen, deadline: float) -> str:
    """The URL from the server.listening line of ``log_path``; raise if it never comes."""
    while time.perf_counter() < deadline:
        for line in log_path.read_text().splitlines():
            if '"server.listening"' in line:
                return json.loads(line)["url"]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(log_path.read_text().splitlines()[-20:])
    raise RuntimeError(f"server did not start listening:\n{tail}")


def stop_process(process: subprocess.Popen) -> int:
    """SIGTERM the process we started, SIGKILL it after 30 s; return its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.returncode
