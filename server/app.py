"""The server process: storage, actors, the websocket listener, graceful shutdown.

:func:`run_server` brings the pieces up in order (embedded PostgreSQL if no
DSN, the pool, migrations, group commit, the actor registry, the listener),
reports where it listens through ``task_status``, serves until ``shutdown`` is
set, then takes them down in reverse: stop accepting, let in-flight requests
finish within ``shutdown_grace_s``, drain the actors, close the pool, stop the
embedded cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

import attrs
import trio
from trio_websocket import WebSocketRequest, WebSocketServer

from actors.runtime import ActorFactory, Registry, open_registry
from server.auth import token_matches
from server.config import ServerConfig
from server.errors import BadCredentials
from server.handlers import build_op_table
from server.ops import OpTable
from server.session import CLOSE_GOING_AWAY, CLOSE_REVOKED, Session
from server.storage import devices
from server.storage.database import Database, open_database
from server.storage.embedded import EmbeddedPostgres
from server.storage.group_commit import GroupCommitter, open_group_committer
from server.storage.migrations import apply_migrations

log = logging.getLogger("scenic.server")

SUBPROTOCOL = "scenic.v1"
#: hard cap of one websocket message; past ``max_frame_bytes`` and below this we
#: answer ``too_large`` and keep the connection, above it the connection closes
HARD_MESSAGE_CAP = 1024 * 1024


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class SessionIndex:
    """The authenticated sessions, by device id (a device may hold several connections)."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[Session]] = {}

    def add(self, session: Session) -> None:
        """Index ``session`` under its device id."""
        self._by_device.setdefault(session.device_id, set()).add(session)

    def discard(self, session: Session) -> None:
        """Forget ``session``; nothing happens if it was never indexed."""
        sessions = self._by_device.get(session.device_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._by_device[session.device_id]

    def of_device(self, device_id: str) -> list[Session]:
        """The open sessions of ``device_id``."""
        return list(self._by_device.get(device_id, ()))

    def __iter__(self) -> Iterator[Session]:
        return iter([s for sessions in self._by_device.values() for s in sessions])

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._by_device.values())


@attrs.define
class Services:
    """What op handlers reach through their context: storage, actors, sessions, clock."""

    config: ServerConfig
    db: Database
    committer: GroupCommitter
    registry: Registry
    ops: OpTable
    sessions: SessionIndex
    clock: Callable[[], datetime] = utc_now
    shutting_down: bool = False

    async def authenticate(self, device_id: str, token: str) -> devices.DeviceRecord:
        """The device ``device_id`` if ``token`` is its current token.

        Raises :class:`BadCredentials` for an unknown or revoked device or a
        wrong token, with one message for all three so a prober learns nothing.
        """
        device = await devices.get_device(self.db, device_id)
        if device is None or device.revoked_at is not None:
            raise BadCredentials("unknown device, revoked device or wrong token")
        if not token_matches(token, device.token_hash):
            raise BadCredentials("unknown device, revoked device or wrong token")
        return device


@attrs.frozen
class ServerInfo:
    """Where a started server listens and which database it uses."""

    host: str
    port: int
    dsn: str
    embedded: bool


def actor_factories() -> Mapping[str, ActorFactory]:
    """The entity actor kinds this server hosts, by kind name."""
    return {}


async def run_server(
    config: ServerConfig,
    *,
    shutdown: trio.Event,
    ops: OpTable | None = None,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until ``shutdown`` is set, then shut down gracefully.

    ``ops`` replaces the standard op table (tests add ops of their own).
    Calls ``task_status.started(ServerInfo)`` once it listens. Raises if the
    database cannot be reached or the port cannot be bound.
    """
    embedded = None
    dsn = config.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir)
        dsn = await trio.to_thread.run_sync(embedded.start)
    try:
        async with open_database(
            dsn, min_size=config.db_pool_min, max_size=config.db_pool_max
        ) as db:
            applied = await apply_migrations(db)
            if applied:
                log.info("migrations.applied", extra={"migrations": applied})
            async with (
                open_group_committer(
                    db, max_delay_s=config.commit_delay_s, max_batch=config.commit_max_batch
                ) as committer,
                open_registry(
                    actor_factories(),
                    mailbox_size=config.mailbox_size,
                    idle_after_s=config.actor_idle_s,
                    drain_timeout_s=config.shutdown_grace_s,
                ) as registry,
            ):
                services = Services(
                    config, db, committer, registry, ops or build_op_table(), SessionIndex()
                )
                info = await _serve(services, dsn, embedded is not None, shutdown, task_status)
                log.info("server.stopped", extra={"port": info.port})
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)


async def _serve(
    services: Services,
    dsn: str,
    embedded: bool,
    shutdown: trio.Event,
    task_status: trio.TaskStatus[ServerInfo],
) -> ServerInfo:
    config = services.config

    async def handle(request: WebSocketRequest) -> None:
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(
                400, body=f"offer the websocket subprotocol {SUBPROTOCOL}".encode()
            )
            return
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        session = Session(ws, services)
        if services.shutting_down:
            session.drain(0)
        await session.serve()

    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as background:
            listeners = await trio.open_tcp_listeners(config.port, host=config.host)
            port = listeners[0].socket.getsockname()[1]
            server = WebSocketServer(
                handle,
                listeners,
                handler_nursery=connections,
                max_message_size=max(HARD_MESSAGE_CAP, config.max_frame_bytes * 2),
            )
            listening = trio.CancelScope()

            async def listen() -> None:
                with listening:
                    await server.run()

            background.start_soon(listen)
            background.start_soon(_close_revoked_devices, services)
            info = ServerInfo(config.host, port, _redact(dsn), embedded)
            log.info(
                "server.listening",
                extra={
                    "url": f"ws://{config.host}:{port}",
                    "database": "embedded" if embedded else "external",
                    "dsn": info.dsn,
                    "data_dir": str(config.data_dir) if embedded else None,
                },
            )
            task_status.started(info)
            await shutdown.wait()
            log.info("server.draining", extra={"connections": len(services.sessions)})
            services.shutting_down = True
            listening.cancel()
            for session in services.sessions:
                session.drain(config.shutdown_grace_s)
            background.cancel_scope.cancel()
        # Connections still in their handshake or before hello are not indexed yet.
        connections.cancel_scope.deadline = trio.current_time() + config.shutdown_grace_s + 2
    return info


async def _close_revoked_devices(services: Services) -> None:
    """Close the connections of devices revoked by ``scenic device revoke``, at once."""
    async with services.db.listen(devices.REVOKED_CHANNEL) as notices:
        async for device_id in notices:
            for session in services.sessions.of_device(device_id):
                log.warning("device.revoked_closed", extra={"revoked_device": device_id})
                session.close_soon(CLOSE_REVOKED, "device revoked")


def _redact(dsn: str) -> str:
    """``dsn`` with any password replaced, fit for a log line."""
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else dsn


__all__ = ["CLOSE_GOING_AWAY", "ServerInfo", "Services", "run_server"]
