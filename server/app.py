"""The server process: storage, actors, the websocket listener, graceful shutdown.

:func:`run_server` brings the pieces up in order (embedded PostgreSQL if no
DSN, the pool, migrations, group commit, the site: catalog, ticket keys,
payment channels and warm tickets, the actor registry, the selling and gate
workers, the listener),
reports where it listens through ``task_status``, serves until ``shutdown`` is
set, then takes them down in reverse: stop accepting, let in-flight requests
finish within ``shutdown_grace_s``, drain the actors, close the pool, stop the
embedded cluster.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime

import attrs
import trio
from trio_websocket import WebSocketConnection

from actors.catalog import Catalog
from actors.runtime import ActorFactory, Registry, open_registry
from server import fanout
from server.auth import token_matches
from server.config import ServerConfig
from server.errors import BadCredentials, ScenicError
from server.expiry import ExpiryWatcher
from server.gates import GateDesk
from server.handlers import build_op_table
from server.listener import WebsocketListener, open_listeners
from server.ops import OpTable
from server.outbox import OutboxWorker
from server.selling import (
    ChannelSet,
    TicketKeyring,
    build_channels,
    business_date,
    load_site,
    order_actor_factory,
    run_selling,
)
from server.session import CLOSE_GOING_AWAY, CLOSE_REVOKED, Session
from server.startup import redact_dsn
from server.storage import devices
from server.storage import orders as order_queries
from server.storage.database import Database, open_database
from server.storage.embedded import EmbeddedPostgres
from server.storage.group_commit import GroupCommitter, open_group_committer
from server.storage.migrations import apply_migrations

log = logging.getLogger("scenic.server")

SUBPROTOCOL = "scenic.v1"
#: hard cap of one websocket message; past ``max_frame_bytes`` and below this we
#: answer ``too_large`` and keep the connection, above it the connection closes
HARD_MESSAGE_CAP = 1024 * 1024
#: payment attempts whose order this process remembers without asking the database
PAYMENT_CACHE_SIZE = 200_000


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
    """What op handlers reach through their context: storage, actors, sessions, clock.

    Built in stages as the server starts (the registry, the site and the
    workers come after the database), so some fields start as ``None``.
    """

    config: ServerConfig
    db: Database
    committer: GroupCommitter
    ops: OpTable
    sessions: SessionIndex
    clock: Callable[[], datetime] = utc_now
    registry: Registry | None = None
    channels: ChannelSet = attrs.field(factory=lambda: ChannelSet({}))
    catalog: Catalog | None = None
    keyring: TicketKeyring | None = None
    expiry: ExpiryWatcher | None = None
    outbox: OutboxWorker | None = None
    gates: GateDesk | None = None
    #: runs fire-and-forget work (event pushes) in the server's background nursery
    spawn: Callable[..., None] | None = None
    #: tells this server's notices to the others from theirs (server/fanout.py)
    instance_id: str = attrs.field(factory=lambda: secrets.token_hex(6))
    #: out_trade_no -> (order id, amount asked) of payments started here, oldest first
    payment_orders: dict[str, order_queries.PaymentAttempt] = attrs.field(factory=dict)
    shutting_down: bool = False

    def current_catalog(self) -> Catalog:
        """The catalog on sale; raises ``no_catalog`` before one is loaded."""
        if self.catalog is None:
            raise ScenicError(
                "no catalog is loaded: run scenic catalog load FILE (or serve --demo)",
                code="no_catalog",
            )
        return self.catalog

    def ticket_id_of_code(self, code: str) -> str:
        """The ticket a genuine code names; raises ``forged`` otherwise."""
        return self.keyring.ticket_id_of(code)

    def business_date(self, moment: datetime) -> date:
        """The site's local date at ``moment``."""
        return business_date(self.catalog, moment)

    def push_to_role(self, role: str, event: str, data: dict, *, local: bool = True) -> None:
        """Send ``event`` to every open connection of a device with ``role``, without waiting.

        With ``local`` false the other server processes sharing the database
        push it to theirs too (``data`` must then be small: it travels by NOTIFY).
        """
        if self.spawn is None:
            return
        for session in list(self.sessions):
            if session.role == role:
                self.spawn(session.push, event, data)
        if not local:
            fanout.publish(self, {"kind": event, "role": role, "data": data})

    def remember_payment(self, out_trade_no: str, order_id: str, amount_fen: int) -> None:
        """Note a payment attempt started here: its order and the amount asked (saves a lookup)."""
        if len(self.payment_orders) >= PAYMENT_CACHE_SIZE:
            self.payment_orders.pop(next(iter(self.payment_orders)))
        self.payment_orders[out_trade_no] = order_queries.PaymentAttempt(order_id, amount_fen)

    async def payment_attempt(self, out_trade_no: str) -> order_queries.PaymentAttempt | None:
        """The order and amount asked of attempt ``out_trade_no`` (remembered, or from storage)."""
        attempt = self.payment_orders.get(out_trade_no)
        if attempt is None:
            attempt = await self.db.run(order_queries.payment_attempt, out_trade_no)
        return attempt

    def push_to_device(
        self,
        device_id: str,
        event: str,
        data: dict,
        *,
        local: bool = False,
        notice: dict | None = None,
    ) -> None:
        """Send ``event`` to every open connection of ``device_id``, without waiting.

        When the device has no connection here and ``local`` is false, the
        other server processes sharing the database are told with ``notice``
        (see :mod:`server.fanout`; without a notice, nothing more is done).
        """
        sessions = self.sessions.of_device(device_id)
        for session in sessions:
            if self.spawn is not None:
                self.spawn(session.push, event, data)
        if not sessions and not local and notice is not None:
            fanout.publish(self, {"kind": event, "device": device_id, **notice})

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


def actor_factories(services: Services) -> Mapping[str, ActorFactory]:
    """The entity actor kinds this server hosts, by kind name."""
    return {
        "order": order_actor_factory(services),
        "ticket": services.gates.ticket_factory(),
        "gate": services.gates.gate_factory(),
    }


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
        async with open_database(
            dsn, min_size=config.db_pool_min, max_size=config.db_pool_max
        ) as db:
            applied = await apply_migrations(db)
            if applied:
                log.info("migrations.applied", extra={"migrations": applied})
            async with open_group_committer(
                db, max_delay_s=config.commit_delay_s, max_batch=config.commit_max_batch
            ) as committer:
                services = Services(
                    config, db, committer, ops or build_op_table(), SessionIndex(), clock
                )
                services.channels = channels or build_channels(config, clock)
                services.gates = GateDesk(services)
                await load_site(services)
                await services.gates.load()
                async with open_registry(
                    actor_factories(services),
                    mailbox_size=config.mailbox_size,
                    idle_after_s=config.actor_idle_s,
                    # a ticket's state lives in the ticket book, not in its actor:
                    # ticket actors run in the asker's task
                    inline_kinds=frozenset({"ticket"}),
                    drain_timeout_s=config.shutdown_grace_s,
                ) as registry:
                    services.registry = registry
                    async with trio.open_nursery() as background:
                        services.spawn = background.start_soon
                        await background.start(run_selling, services)
                        info = await _serve(
                            services, dsn, embedded is not None, shutdown, task_status
                        )
                        background.cancel_scope.cancel()
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

    async def on_connection(ws: WebSocketConnection) -> None:
        session = Session(ws, services)
        if services.shutting_down:
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
        async with trio.open_nursery() as background:
            background.start_soon(listener.run, connections)
            background.start_soon(_close_revoked_devices, services)
            background.start_soon(fanout.listen, services)
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
            services.shutting_down = True
            listener.stop()  # and closes the connections still in their handshake
            for session in services.sessions:
                session.drain(config.shutdown_grace_s)
            background.cancel_scope.cancel()
        # Connections past their handshake but before hello are not indexed yet.
        connections.cancel_scope.deadline = trio.current_time() + config.shutdown_grace_s + 2
    return info


async def _close_revoked_devices(services: Services) -> None:
    """Close the connections of devices revoked by ``scenic device revoke``, at once."""
    async with services.db.listen(devices.REVOKED_CHANNEL) as notices:
        async for device_id in notices:
            for session in services.sessions.of_device(device_id):
                log.warning("device.revoked_closed", extra={"revoked_device": device_id})
                session.close_soon(CLOSE_REVOKED, "device revoked")


__all__ = ["CLOSE_GOING_AWAY", "ServerInfo", "Services", "run_server"]
