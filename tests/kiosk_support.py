"""A ``scenic serve --demo`` process for the screens' tests, and helpers to drive a pilot.

The server runs in its own process on a free loopback port against the
test's database (so the textual App's asyncio loop and the server's trio
loop never share a thread); :meth:`DemoServer.restart` stops it and starts
it again on the same port, as a server that fell over and came back.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from clients.client import Client, connect
from loadtest.local_server import register_devices, scenic_command, stop_process, wait_for_listening
from server.workers import free_port


class DemoServer:
    """``scenic serve --demo --dsn DSN`` on a fixed free port, with devices registered."""

    def __init__(
        self, dsn: str, workdir: Path, devices: dict[str, str], env: dict[str, str] | None = None
    ) -> None:
        self.dsn, self.workdir = dsn, workdir
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SCENIC_CHANNEL_KEYS": str(workdir / "channel_keys.json")}
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.start()
        self.tokens = register_devices(dsn, devices)

    def start(self) -> None:
        """Start the server process and wait until it listens."""
        self.starts += 1
        log_path = self.workdir / f"server-{self.starts}.log"
        with open(log_path, "w") as log_file:
            self.process = subprocess.Popen(
                scenic_command("serve", "--dsn", self.dsn, "--port", str(self.port), "--demo"),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_for_listening(log_path, self.process, time.perf_counter() + 90)

    def stop(self) -> None:
        """Stop the server process (SIGTERM)."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def restart(self) -> None:
        """Stop the server and start it again on the same port."""
        self.stop()
        self.start()


async def until(pilot: Any, predicate: Callable[[], bool], within: float = 20.0) -> None:
    """Let the App run until ``predicate()`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {predicate.__doc__ or predicate}")
        await pilot.pause(0.05)


def screen_text(app: Any) -> str:
    """Everything the App shows as text: title, body, status bar and keys (not the QR)."""
    parts = []
    for widget_id in ("#title", "#body", "#status", "#keys"):
        parts.append(str(app.query_one(widget_id).render()))
    return "\n".join(parts)


async def as_device(url: str, device: str, token: str, op: str, **args: Any) -> dict:
    """One request from another device, on its own connection and its own trio run (a thread)."""

    async def call() -> dict:
        client: Client
        async with connect(url, device, token) as client:
            return await client.request(op, **args)

    return await asyncio.to_thread(trio.run, call)
