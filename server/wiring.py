"""The server's parts, built once at start in dependency order and frozen: :class:`Services`.

:func:`open_services` builds everything a running server needs, each part
from the parts before it, so nothing is ``None`` waiting to be filled in:

1. the database pool and group commit;
2. the site (merchant keys checked, catalog, ticket keys) and the channels;
3. the actor registry, made before it runs so that what needs to ask actors
   can be built with it in hand;
4. the event pushes, the gates' desk (modes, warm tickets, occupancy,
   timers), the payment-attempt cache, the expiry watcher, the outbox
   worker, the rentals' store and their deadlines;
5. the actors of each entity kind (order, ticket, gate, rental) with their stores
   and after-commit effects, and the registry running them.

On exit the parts close in the reverse order: the actors drain, then the
background pushes stop, then group commit flushes and the pool closes.
Op handlers reach the parts through ``ctx.services``; the server's
long-running tasks (:mod:`server.background`) and its listener
(:mod:`server.app`) get them the same way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

import attrs
import trio

from actors.catalog import Catalog
from actors.orders.actor import OrderActor, OrderEnvironment
from actors.rentals.actor import DepositActor, DepositEnvironment
from actors.rentals.vouchers import make_voucher
from actors.runtime import ActorFactory, Registry
from server.channels.setup import ChannelSet, open_remote_channels
from server.config import ServerConfig
from server.expiry import ExpiryWatcher
from server.fanout import Pushes, SessionIndex
from server.gates import GateDesk
from server.keyring import TicketKeyring
from server.metrics import ServerMetrics
from server.order_effects import OrderEffectRunner
from server.outbox import OutboxWorker
from server.payment_attempts import PaymentAttempts
from server.rental_effects import RentalEffectRunner
from server.rental_timers import RentalTimers, freeze_lapsed_at
from server.site import SiteState, load_site
from server.storage import site as site_queries
from server.storage.database import Database, open_database
from server.storage.group_commit import GroupCommitter, open_group_committer
from server.storage.migrations import apply_migrations
from server.storage.orders import OrderStorage
from server.storage.rentals import RentalStorage

log = logging.getLogger("scenic.server")

#: ticket actors keep their state in the ticket book, so they run in the asker's task
INLINE_KINDS = frozenset({"ticket"})


@attrs.frozen
class Services:
    """What a running server is made of; built once by :func:`open_services`, never changed."""

    config: ServerConfig
    clock: Callable[[], datetime]
    db: Database
    committer: GroupCommitter
    #: the catalog on sale and the ticket keys, kept current
    site: SiteState
    channels: ChannelSet
    sessions: SessionIndex
    #: events to devices, here or through another server process
    pushes: Pushes
    registry: Registry
    #: gate modes, warm tickets, occupancy, passage timers
    gates: GateDesk
    expiry: ExpiryWatcher
    outbox: OutboxWorker
    payments: PaymentAttempts
    #: the rentals' store (the deposit actors', and what ops read)
    rentals: RentalStorage
    #: fires rentals' deadlines: unpaid holds, due times, freeze conversions and lapses
    rental_timers: RentalTimers
    #: starts a task in the server's background nursery (fire and forget, owned)
    spawn: Callable[..., None]
    #: what this server counts for Prometheus (served when --metrics-port is given)
    metrics: ServerMetrics = attrs.field(factory=ServerMetrics)

    @property
    def keyring(self) -> TicketKeyring:
        """The ticket keys now."""
        return self.site.keyring

    def current_catalog(self) -> Catalog:
        """The catalog on sale; raises ``no_catalog`` before one is loaded."""
        return self.site.current_catalog()

    def business_date(self, moment: datetime) -> date:
        """The site's local date at ``moment``."""
        return self.site.business_date(moment)

    def ticket_id_of_code(self, code: str) -> str:
        """The ticket a genuine code names; raises ``forged`` otherwise."""
        return self.site.ticket_id_of(code)

    def push_to_device(self, device_id: str, event: str, data: dict, **how: Any) -> None:
        """Send ``event`` to ``device_id``'s connections (see :meth:`Pushes.to_device`)."""
        self.pushes.to_device(device_id, event, data, **how)

    def push_to_role(self, role: str, event: str, data: dict, **how: Any) -> None:
        """Send ``event`` to the connections of every device with ``role``."""
        self.pushes.to_role(role, event, data, **how)

    async def ask_order(self, order_id: str, command: object) -> Any:
        """Send ``command`` to the order's actor and return its outcome."""
        return await self.registry.ask(("order", order_id), command, self.config.ask_timeout_s)

    async def ask_rental(self, rental_id: str, command: object) -> Any:
        """Send ``command`` to the rental's actor and return its outcome."""
        return await self.registry.ask(("rental", rental_id), command, self.config.ask_timeout_s)


@asynccontextmanager
async def open_services(
    config: ServerConfig,
    dsn: str,
    channels: ChannelSet,
    clock: Callable[[], datetime],
) -> AsyncIterator[Services]:
    """Build the server's parts on the database at ``dsn``; yield them; close them after.

    Raises what the database raises when it cannot be reached, and
    ``bad_channel_keys`` when the merchant keys are not the database's.
    """
    metrics = ServerMetrics()
    async with open_database(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max) as db:
        applied = await apply_migrations(db)
        if applied:
            log.info("migrations.applied", extra={"migrations": applied})
        async with open_group_committer(
            db,
            max_delay_s=config.commit_delay_s,
            max_batch=config.commit_max_batch,
            on_batch=metrics.batch_committed,
        ) as committer:
            site = await load_site(db, config, clock)
            async with open_remote_channels(channels), trio.open_nursery() as background:
                spawn = background.start_soon
                registry = Registry(
                    mailbox_size=config.mailbox_size,
                    idle_after_s=config.actor_idle_s,
                    inline_kinds=INLINE_KINDS,
                )
                sessions = SessionIndex()
                pushes = Pushes(sessions, db, spawn)
                gates = GateDesk(
                    db=db,
                    committer=committer,
                    site=site,
                    clock=clock,
                    pushes=pushes,
                    actors=registry,
                    ask_timeout_s=config.ask_timeout_s,
                    spawn=spawn,
                )

                async def ask_order(order_id: str, command: object) -> Any:
                    return await registry.ask(("order", order_id), command, config.ask_timeout_s)

                async def ask_rental(rental_id: str, command: object) -> Any:
                    return await registry.ask(("rental", rental_id), command, config.ask_timeout_s)

                rentals = RentalStorage(db.run, committer.submit)

                services = Services(
                    config=config,
                    clock=clock,
                    db=db,
                    committer=committer,
                    site=site,
                    channels=channels,
                    sessions=sessions,
                    pushes=pushes,
                    registry=registry,
                    gates=gates,
                    expiry=ExpiryWatcher(
                        clock, ask_order, lambda: db.run(site_queries.pending_orders)
                    ),
                    outbox=OutboxWorker(
                        db,
                        channels.adapters,
                        ask_order,
                        clock,
                        idle_poll_s=config.outbox_poll_s,
                        ask_rental=ask_rental,
                        on_refund_failed=metrics.refund_failed,
                    ),
                    payments=PaymentAttempts(db),
                    rentals=rentals,
                    rental_timers=RentalTimers(
                        clock,
                        ask_rental,
                        rentals.load,
                        rentals.load_open,
                        freeze_lapsed_at(channels.adapters),
                    ),
                    spawn=spawn,
                    metrics=metrics,
                )
                await gates.load()
                async with registry.running(
                    actor_factories(services), drain_timeout_s=config.shutdown_grace_s
                ):
                    yield services
                background.cancel_scope.cancel()  # the pushes still on their way


def actor_factories(services: Services) -> Mapping[str, ActorFactory]:
    """The entity actor kinds this server hosts, by kind name, with their stores and effects."""
    gates = services.gates
    order_env = OrderEnvironment(
        store=OrderStorage(services.db.run, services.committer.submit),
        effects=OrderEffectRunner(
            push_to_device=services.pushes.to_device,
            push_to_role=services.pushes.to_role,
            warm_ticket=lambda record: gates.book.put(gates.state_of(record)),
            forget_tickets=gates.book.forget,
            wake_outbox=services.outbox.kick,
        ),
        code_of=lambda ticket: services.site.keyring.code_of(ticket),
    )
    rental_env = DepositEnvironment(
        store=services.rentals,
        effects=RentalEffectRunner(
            push_to_device=services.pushes.to_device,
            push_to_role=services.pushes.to_role,
            wake_outbox=services.outbox.kick,
        ),
        voucher_of=lambda rental_id: make_voucher(rental_id, services.site.keyring.current),
    )
    return {
        "order": lambda order_id: OrderActor(order_id, order_env),
        "rental": lambda rental_id: DepositActor(rental_id, rental_env),
        "ticket": gates.ticket_factory(),
        "gate": gates.gate_factory(),
    }
