"""Shared test helpers: a real server on a loopback port against the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import attrs
import trio

from server.app import run_server
from server.auth import hash_token, new_token
from server.config import ServerConfig
from server.ops import OpTable
from server.storage import devices
from server.storage.database import Database


@attrs.frozen
class RunningServer:
    """A server started by :func:`running_server`."""

    url: str
    port: int
    tokens: Mapping[str, str]
    config: ServerConfig
    shutdown: trio.Event


@asynccontextmanager
async def running_server(
    dsn: str,
    db: Database,
    device_roles: Mapping[str, str],
    *,
    ops: OpTable | None = None,
    **config_overrides,
) -> AsyncIterator[RunningServer]:
    """Register ``device_roles`` ({id: role}), run a server on a free port, stop it on exit."""
    tokens = {}
    for device_id, role in device_roles.items():
        tokens[device_id] = new_token()
        await devices.add_device(db, device_id, role, hash_token(tokens[device_id]))
    config = ServerConfig(
        host="127.0.0.1",
        port=0,
        dsn=dsn,
        shutdown_grace_s=5.0,
        hello_timeout_s=5.0,
        db_pool_min=1,
        db_pool_max=4,
        **config_overrides,
    )
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            lambda task_status: run_server(
                config, shutdown=shutdown, ops=ops, task_status=task_status
            )
        )
        try:
            yield RunningServer(f"ws://127.0.0.1:{info.port}", info.port, tokens, config, shutdown)
        finally:
            shutdown.set()
