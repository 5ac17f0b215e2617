"""The selling side of a running server: catalog, ticket keys, channels, background workers.

:func:`load_site` reads what the database holds for the site (the catalog on
sale, the ticket-code keys); :func:`build_channels` makes the payment channel
adapters (the simulator in-process, or a ``scenic channel-sim`` process);
:func:`run_selling` runs the workers that keep the money promises while the
server serves: the expiry watcher, the outbox worker, the in-process
channels' notifiers, and the catalog reloader.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import date, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import trio

from actors.catalog import Catalog, parse_catalog
from actors.channels import QR_CHANNELS
from actors.orders.actor import OrderActor, OrderEnvironment
from actors.orders.domain import IssuedTicket
from actors.tickets.codes import Entitlement, SiteKey, make_code, ticket_id_of
from server.channels.adapter import ChannelAdapter
from server.channels.keys import check_fingerprints, fingerprints, load_or_create_channel_keys
from server.channels.notifier import Notifier, NotifyPolicy
from server.channels.remote import RemoteChannel
from server.channels.simulator import ChannelSimulator, CounterChannel, SimulatedChannel
from server.config import ServerConfig
from server.errors import ScenicError
from server.expiry import ExpiryWatcher
from server.order_effects import OrderEffectRunner
from server.outbox import OutboxWorker
from server.storage import channel_keys, site
from server.storage.orders import OrderStorage

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("scenic.selling")


def demo_catalog_source() -> str:
    """The TOML text of the demo park (``scenic serve --demo``)."""
    return (resources.files("server.catalog") / "demo_park.toml").read_text(encoding="utf-8")


@attrs.frozen(slots=False)
class TicketKeyring:
    """The site keys: the newest makes new codes; every unretired one is accepted."""

    keys: tuple[site.KeyRow, ...]

    @functools.cached_property
    def current(self) -> SiteKey:
        """The key new codes are made with."""
        row = [k for k in self.keys if k.retired_at is None][-1]
        return SiteKey(row.key_id, row.secret, row.signing_key)

    @functools.cached_property
    def secrets(self) -> dict[str, bytes]:
        """HMAC secrets of the keys still accepted, by key id."""
        return {k.key_id: k.secret for k in self.keys if k.retired_at is None}

    def public_keys(self) -> dict[str, bytes]:
        """Ed25519 public keys of the keys still accepted, for offline gate agents."""
        return {
            k.key_id: SiteKey(k.key_id, k.secret, k.signing_key).public_key
            for k in self.keys
            if k.retired_at is None
        }

    def code_of(self, ticket: IssuedTicket) -> str:
        """The code printed on an issued ticket's QR."""
        entitlement = Entitlement(
            ticket.ticket_id,
            ticket.visit_date,
            ticket.slot,
            ticket.entries_allowed,
            ticket.product_id,
        )
        return make_code(entitlement, self.current)

    def ticket_id_of(self, code: str) -> str:
        """The ticket a genuine ``code`` names; raises ``forged`` otherwise."""
        return ticket_id_of(code, self.secrets)


@attrs.define
class ChannelSet:
    """The payment channels a server uses, by name, and the in-process simulators if any."""

    adapters: dict[str, ChannelAdapter]
    #: the simulators standing in for WeChat Pay and Alipay when they run in-process
    simulators: dict[str, ChannelSimulator] = attrs.field(factory=dict)
    #: how the in-process simulators deliver notifications (duplicates, delays)
    notify_policy: NotifyPolicy = attrs.field(
        factory=lambda: NotifyPolicy(duplicate_rate=0.0, max_delay_s=0.0)
    )
    #: their notifiers, delivering to this server (made by :func:`run_selling`)
    notifiers: dict[str, Notifier] = attrs.field(factory=dict)

    def get(self, name: str) -> ChannelAdapter | None:
        """The adapter of channel ``name``, or ``None``."""
        return self.adapters.get(name)


def build_channels(
    config: ServerConfig,
    clock: Callable[[], datetime],
    policy: NotifyPolicy | None = None,
) -> ChannelSet:
    """The channels ``config`` asks for: a channel-sim process, or the in-process simulator.

    Cash and card are always counter channels. :func:`run_selling` starts the
    in-process simulators' notifiers, delivering to this server.
    """
    keys = load_or_create_channel_keys(config.channel_keys_path)
    adapters: dict[str, ChannelAdapter] = {
        "cash": CounterChannel("cash"),
        "card": CounterChannel("card"),
    }
    channels = ChannelSet(adapters)
    if policy is not None:
        channels.notify_policy = policy
    for name in QR_CHANNELS:
        if config.channel_sim_url:
            adapters[name] = RemoteChannel(name, config.channel_sim_url, keys[name], clock)
            continue
        simulator = ChannelSimulator(name, keys[name], clock)
        channels.simulators[name] = simulator
        adapters[name] = SimulatedChannel(simulator)
    return channels


async def load_site(services: Services) -> None:
    """Check the merchant keys; read the catalog (seeding the demo park) and the ticket keys.

    Raises :class:`~server.channels.keys.BadChannelKeys` when this server's
    merchant keys are not the ones recorded by the first server on the database.
    """
    db = services.db
    path = services.config.channel_keys_path
    ours = fingerprints(load_or_create_channel_keys(path))
    check_fingerprints(path, ours, await db.run(channel_keys.record_or_compare, ours))
    source = await db.run(site.load_catalog_source)
    catalog = None if source is None else parse_catalog(source)
    if catalog is None and services.config.demo:
        source = demo_catalog_source()
        catalog = parse_catalog(source)
        today = business_date(catalog, services.clock())
        await db.run(site.store_catalog, source, catalog, today)
        log.info("catalog.demo_loaded", extra={"site": catalog.name_en})
    services.catalog = catalog
    if services.catalog is None:
        log.warning("catalog.none", extra={"hint": "scenic catalog load FILE, or serve --demo"})
    services.keyring = TicketKeyring(tuple(await db.run(site.ticket_keys)))


def order_environment(services: Services) -> OrderEnvironment:
    """What every order actor of this server shares: its store, its effects, the codes."""
    effects = OrderEffectRunner(
        push_to_device=services.push_to_device,
        push_to_role=services.push_to_role,
        warm_ticket=lambda record: services.gates.book.put(services.gates.state_of(record)),
        forget_tickets=lambda ticket_ids: services.gates.book.forget(ticket_ids),
        wake_outbox=lambda: services.outbox is not None and services.outbox.kick(),
    )
    return OrderEnvironment(
        store=OrderStorage(services.db.run, services.committer.submit),
        effects=effects,
        code_of=lambda ticket: services.keyring.code_of(ticket),
    )


def order_actor_factory(services: Services) -> Callable[[str], OrderActor]:
    """Builds the actor of one order id."""
    env = order_environment(services)
    return lambda order_id: OrderActor(order_id, env)


async def run_selling(
    services: Services, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the selling workers until cancelled; ``started`` once pending orders are loaded."""
    from server.handlers.orders import ask_order, confirm_notification

    async def ask(order_id: str, command: object) -> Any:
        return await ask_order(services, order_id, command)

    async def deliver(fields: dict[str, Any]) -> bool:
        try:
            await confirm_notification(services, fields)
        except ScenicError as exc:
            log.info("notify.not_acknowledged", extra={"code": exc.code, "detail": exc.message})
            return False
        return True

    services.expiry = ExpiryWatcher(
        services.clock, ask, lambda: services.db.run(site.pending_orders)
    )
    services.outbox = OutboxWorker(
        services.db,
        services.channels.adapters,
        ask,
        services.clock,
        idle_poll_s=services.config.outbox_poll_s,
    )
    async with AsyncExitStack() as remotes:
        # Each remote channel owns a nursery: enter them all before the workers' nursery
        # opens, so they close after it (trio nurseries must nest).
        for adapter in services.channels.adapters.values():
            if isinstance(adapter, RemoteChannel):
                await remotes.enter_async_context(adapter)
        async with trio.open_nursery() as workers:
            await _start_workers(services, workers, deliver)
            task_status.started()


async def _start_workers(
    services: Services, workers: trio.Nursery, deliver: Callable[[dict[str, Any]], Any]
) -> None:
    """Start the selling workers in ``workers``; returns once pending orders are loaded."""
    await workers.start(services.expiry.run)
    workers.start_soon(services.outbox.run)
    workers.start_soon(_reload_catalog_on_notice, services)
    workers.start_soon(_reload_keys_on_notice, services)
    workers.start_soon(services.gates.run_timers)
    workers.start_soon(services.gates.push_occupancy)
    channels = services.channels
    for name, simulator in channels.simulators.items():
        notifier = Notifier(deliver, simulator.secret, services.clock, channels.notify_policy)
        channels.notifiers[name] = notifier
        workers.start_soon(notifier.run)


async def _reload_catalog_on_notice(services: Services) -> None:
    async with services.db.listen(site.CATALOG_CHANNEL) as notices:
        async for _ in notices:
            source = await services.db.run(site.load_catalog_source)
            try:
                services.catalog = parse_catalog(source)
            except ScenicError as exc:  # stored by a newer server version, perhaps
                log.error("catalog.reload_failed", extra={"detail": exc.message})
                continue
            log.info("catalog.reloaded", extra={"site": services.catalog.name_en})


async def _reload_keys_on_notice(services: Services) -> None:
    async with services.db.listen(site.KEYS_CHANNEL) as notices:
        async for _ in notices:
            services.keyring = TicketKeyring(tuple(await services.db.run(site.ticket_keys)))
            log.info("keys.reloaded", extra={"current": services.keyring.current.key_id})


def business_date(catalog: Catalog | None, moment: datetime) -> date:
    """The site's local date at ``moment`` (UTC when there is no catalog yet)."""
    if catalog is None:
        return moment.date()
    return moment.astimezone(ZoneInfo(catalog.timezone)).date()
