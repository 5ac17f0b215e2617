"""The server process: its parts, its background work, the websocket listener, graceful shutdown.

:func:`run_server` starts the embedded PostgreSQL if it has no DSN, builds
the server's parts (:func:`server.wiring.open_services`: the pool,
migrations, group commit, the site, the channels, the actors), starts its
background work (:mod:`server.background`), and listens. It reports where it
listens through ``task_status``, serves until ``shutdown`` is set, then takes
everything down in reverse: stop accepting, let in-flight requests finish
within ``shutdown_grace_s``, stop the background work, drain the actors,
close the pool, stop the embedded cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import attrs
import trio
from trio_websocket import WebSocketConnection

from server.background import run_background
from server.channels.setup import ChannelSet, build_channels
from server.config import ServerConfig
from server.handlers import build_op_table
from server.listener import WebsocketListener, open_listeners
from server.metrics_http import serve_metrics
from server.ops import OpTable
from server.session import CLOSE_GOING_AWAY, Session
from server.startup import redact_dsn
from server.storage.embedded import EmbeddedPostgres
from server.wiring import Services, open_services

log = logging.getLogger("scenic.server")

SUBPROTOCOL = "scenic.v1"
#: hard cap of one websocket message; past ``max_frame_bytes`` and below this we
#: answer ``too_large`` and keep the connection, above it the connection closes
HARD_MESSAGE_CAP = 1024 * 1024


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@attrs.frozen
class ServerInfo:
    """Where a started server listens and which database it uses."""

    host: str
    port: int
    dsn: str
    embedded: bool


async def run_server(
    config: ServerConfig,
    *,
    shutdown: trio.Event,
    ops: OpTable | None = None,
    clock: Callable[[], datetime] = utc_now,
    channels: ChannelSet | None = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until ``shutdown`` is set, then shut down gracefully.

    ``ops`` replaces the standard op table (tests add ops of their own);
    ``clock`` the wall clock (tests drive it from trio's clock); ``channels``
    the payment channels built from ``config``. Calls
    ``task_status.started(ServerInfo)`` once it listens. Raises if the
    database cannot be reached or the port cannot be bound.
    """
    embedded = None
    dsn = config.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir)
        dsn = await trio.to_thread.run_sync(embedded.start)
    try:
        channels = channels or build_channels(config, clock)
        async with open_services(config, dsn, channels, clock) as services:
            async with trio.open_nursery() as background:
                await background.start(run_background, services)
                if config.metrics_port is not None:
                    await background.start(serve_metrics, services)
                info = await _serve(
                    services,
                    ops or build_op_table(),
                    dsn,
                    embedded is not None,
                    shutdown,
                    task_status,
                )
                background.cancel_scope.cancel()
        log.info("server.stopped", extra={"port": info.port})
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)


async def _serve(
    services: Services,
    ops: OpTable,
    dsn: str,
    embedded: bool,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[ServerInfo],
) -> ServerInfo:
    config = services.config
    draining = False

    async def on_connection(ws: WebSocketConnection) -> None:
        session = Session(ws, services, ops)
        if draining:
            session.drain(0)
        await session.serve()

    listener = WebsocketListener(
        on_connection,
        await open_listeners(config.host, config.port, reuse_port=config.reuse_port),
        subprotocol=SUBPROTOCOL,
        handshake_timeout_s=config.handshake_timeout_s,
        max_message_size=max(HARD_MESSAGE_CAP, config.max_frame_bytes * 2),
    )
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as listening:
            listening.start_soon(listener.run, connections)
            info = ServerInfo(config.host, listener.port, redact_dsn(dsn), embedded)
            log.info(
                "server.listening",
                extra={
                    "url": f"ws://{config.host}:{listener.port}",
                    "database": "embedded" if embedded else "external",
                    "dsn": info.dsn,
                    "data_dir": str(config.data_dir) if embedded else None,
                },
            )
            task_status.started(info)
            await shutdown.wait()
            log.info(
                "server.draining",
                extra={
                    "connections": len(services.sessions),
                    "handshaking": listener.handshaking,
                },
            )
            draining = True
            listener.stop()  # and closes the connections still in their handshake
            for session in services.sessions:
                session.drain(config.shutdown_grace_s)
            listening.cancel_scope.cancel()
        # Connections past their handshake but before hello are not indexed yet.
        connections.cancel_scope.deadline = trio.current_time() + config.shutdown_grace_s + 2
    return info


__all__ = ["CLOSE_GOING_AWAY", "ServerInfo", "Services", "run_server", "utc_now"]
