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

from server.storage.embedded import cluster_dsn


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


def embedded_dsn(data_dir: Path) -> str:
    """The DSN of the embedded cluster a server runs in ``data_dir`` (unix socket)."""
    return cluster_dsn(data_dir)[0]


def register_devices(dsn: str, devices: Mapping[str, str]) -> dict[str, str]:
    """Register (or give new tokens to) ``devices`` ({id: role}); returns their tokens.

    One connection for all of them: a load test may need hundreds of devices.
    """
    import asyncio

    import asyncpg

    from server.auth import hash_token, new_token

    tokens = {device: new_token() for device in devices}

    async def register() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(
                """INSERT INTO devices (device_id, role, token_hash) VALUES ($1, $2, $3)
                   ON CONFLICT (device_id) DO UPDATE SET token_hash = $3, revoked_at = NULL
                    WHERE devices.role = $2""",
                [(d, role, hash_token(tokens[d])) for d, role in devices.items()],
            )
        finally:
            await conn.close()

    asyncio.run(register())
    return tokens


@contextmanager
def local_server(
    devices: Mapping[str, str],
    *,
    extra_args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 120.0,
    catalog: str | None = None,
) -> Iterator[LocalServer]:
    """Run a fresh server with ``devices`` ({id: role}) registered; yield where it is.

    The server starts first on an empty data directory, so ``seconds_to_listen``
    is a true cold start (initdb included); the devices are registered
    afterwards, straight into its database.

    Raises ``RuntimeError`` with the server's last log lines if it does not
    listen within ``start_timeout_s``. ``catalog`` (TOML text) is put on sale
    first (then the cold start is not a true one).
    """
    data_dir = Path(tempfile.mkdtemp(prefix="scenic-bench-"))
    process = None
    try:
        log_path = data_dir / "server.log"
        if catalog is not None:  # on sale before the server starts
            (data_dir / "catalog.toml").write_text(catalog, encoding="utf-8")
            subprocess.run(
                scenic_command(
                    "catalog", "load", str(data_dir / "catalog.toml"), "--data-dir", str(data_dir)
                ),
                check=True,
                capture_output=True,
                timeout=120,
            )
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
        tokens = register_devices(embedded_dsn(data_dir), devices)
        yield LocalServer(url, data_dir, tokens, seconds_to_listen, process.pid)
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def wait_for_listening(
    log_path: Path,
    process: subprocess.Popen,
    deadline: float,
    event: str = "server.listening",
) -> str:
    """The URL of the first ``event`` line in ``log_path`` (a process we started logs it).

    Raises ``RuntimeError`` with the log's last lines if the process exits or
    ``deadline`` (``time.perf_counter()``) passes first.
    """
    while time.perf_counter() < deadline:
        for line in log_path.read_text().splitlines():
            if f'"{event}"' in line:
                return json.loads(line)["url"]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(log_path.read_text().splitlines()[-20:])
    raise RuntimeError(f"no {event} line came:\n{tail}")


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
