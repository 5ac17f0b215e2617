"""Shared test helpers: a real server on a loopback port against the test database."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from pathlib import Path

import attrs
import trio

from actors.channels import QR_CHANNELS
from server.app import run_server, utc_now
from server.auth import hash_token, new_token
from server.channels.keys import load_or_create_channel_keys
from server.channels.notifier import NotifyPolicy
from server.channels.setup import ChannelSet, build_channels
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
    channels: ChannelSet
    #: the merchant keys the channels sign notifications with
    channel_keys: Mapping[str, bytes]


@asynccontextmanager
async def running_server(
    dsn: str,
    db: Database,
    device_roles: Mapping[str, str],
    *,
    ops: OpTable | None = None,
    clock: Callable[[], datetime] = utc_now,
    notify_policy: NotifyPolicy | None = None,
    port: int = 0,
    channels: ChannelSet | None = None,
    **config_overrides,
) -> AsyncIterator[RunningServer]:
    """Register ``device_roles`` ({id: role}), run a server on a free port, stop it on exit.

    The server sells the demo park and simulates WeChat Pay and Alipay
    in-process, with merchant keys in a temporary directory: the same keys
    for every server on one test database (they are drawn from the DSN), as
    servers sharing a database must have. ``channels`` (another server's
    :attr:`RunningServer.channels`) makes this server use the same simulated
    channels' books, as servers in front of one real channel do.
    """
    tokens = {}
    for device_id, role in device_roles.items():
        tokens[device_id] = new_token()
        await devices.add_device(db, device_id, role, hash_token(tokens[device_id]))
    keys_dir = Path(tempfile.mkdtemp(prefix="scenic-test-keys-"))
    if "channel_keys" not in config_overrides:
        config_overrides["channel_keys"] = keys_dir / "channel_keys.json"
        keys = {name: hashlib.sha256(f"{dsn}|{name}".encode()).hexdigest() for name in QR_CHANNELS}
        config_overrides["channel_keys"].write_text(json.dumps(keys))
    config_overrides.setdefault("demo", True)
    config = ServerConfig(
        host="127.0.0.1",
        port=port,
        dsn=dsn,
        data_dir=keys_dir,
        shutdown_grace_s=5.0,
        hello_timeout_s=5.0,
        db_pool_min=1,
        db_pool_max=4,
        **config_overrides,
    )
    shutdown = trio.Event()
    channels = channels or build_channels(config, clock, notify_policy)
    try:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(
                partial(
                    run_server,
                    config,
                    shutdown=shutdown,
                    ops=ops,
                    clock=clock,
                    channels=channels,
                )
            )
            try:
                yield RunningServer(
                    f"ws://127.0.0.1:{info.port}",
                    info.port,
                    tokens,
                    config,
                    shutdown,
                    channels,
                    load_or_create_channel_keys(config.channel_keys_path),
                )
            finally:
                shutdown.set()
    finally:
        shutil.rmtree(keys_dir, ignore_errors=True)
