"""The site a server sells and admits to: the catalog on sale and the ticket keys, kept current.

:func:`load_site` checks this server's merchant keys against the ones the
database recorded, reads the catalog on sale (seeding the demo park with
``--demo``) and the ticket keys, and returns a :class:`SiteState`. An
operator changes either with ``scenic catalog load`` or ``scenic keys ...``
while servers run: :func:`follow_catalog` and :func:`follow_keys` hear the
NOTIFY and replace the value whole, so a request sees one catalog and one
keyring from start to end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import trio

from actors.catalog import Catalog, parse_catalog
from server.channels.keys import check_fingerprints, fingerprints, load_or_create_channel_keys
from server.config import ServerConfig
from server.errors import ScenicError
from server.keyring import TicketKeyring
from server.storage import channel_keys
from server.storage import rentals as rental_queries
from server.storage import site as site_queries
from server.storage.database import Database

log = logging.getLogger("scenic.site")


def demo_catalog_source() -> str:
    """The TOML text of the demo park (``scenic serve --demo``)."""
    return (resources.files("server.catalog") / "demo_park.toml").read_text(encoding="utf-8")


def business_date(catalog: Catalog | None, moment: datetime) -> date:
    """The site's local date at ``moment`` (UTC when there is no catalog yet)."""
    if catalog is None:
        return moment.date()
    return moment.astimezone(ZoneInfo(catalog.timezone)).date()


class SiteState:
    """The catalog on sale (``None`` until one is loaded) and the ticket keys, now.

    Both are immutable values; :func:`follow_catalog` and :func:`follow_keys`
    replace them whole when an operator changes them.
    """

    def __init__(self, catalog: Catalog | None, keyring: TicketKeyring) -> None:
        self.catalog = catalog
        self.keyring = keyring

    def current_catalog(self) -> Catalog:
        """The catalog on sale; raises ``no_catalog`` before one is loaded."""
        if self.catalog is None:
            raise ScenicError(
                "no catalog is loaded: run scenic catalog load FILE (or serve --demo)",
                code="no_catalog",
            )
        return self.catalog

    def business_date(self, moment: datetime) -> date:
        """The site's local date at ``moment``."""
        return business_date(self.catalog, moment)

    def ticket_id_of(self, code: str) -> str:
        """The ticket a genuine code names; raises ``forged`` otherwise."""
        return self.keyring.ticket_id_of(code)


async def load_site(db: Database, config: ServerConfig, clock: Callable[[], datetime]) -> SiteState:
    """Check the merchant keys; read the catalog (seeding the demo park) and the ticket keys.

    Raises :class:`~server.channels.keys.BadChannelKeys` when this server's
    merchant keys are not the ones recorded by the first server on the database.
    """
    path = config.channel_keys_path
    ours = fingerprints(load_or_create_channel_keys(path))
    check_fingerprints(path, ours, await db.run(channel_keys.record_or_compare, ours))
    source = await db.run(site_queries.load_catalog_source)
    catalog = None if source is None else parse_catalog(source)
    if catalog is not None:  # a catalog stored before rentals existed lists its units now
        await db.run(rental_queries.store_rental_units, catalog)
    if catalog is None and config.demo:
        source = demo_catalog_source()
        catalog = parse_catalog(source)
        await db.run(site_queries.store_catalog, source, catalog, business_date(catalog, clock()))
        log.info("catalog.demo_loaded", extra={"site": catalog.name_en})
    if catalog is None:
        log.warning("catalog.none", extra={"hint": "scenic catalog load FILE, or serve --demo"})
    return SiteState(catalog, TicketKeyring(tuple(await db.run(site_queries.ticket_keys))))


async def follow_catalog(
    db: Database, site: SiteState, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Put each catalog an operator loads on sale here too, until cancelled.

    Reports ``started`` once it listens.
    """
    async with db.listen(site_queries.CATALOG_CHANNEL) as notices:
        task_status.started()
        async for _ in notices:
            source = await db.run(site_queries.load_catalog_source)
            try:
                site.catalog = parse_catalog(source)
            except ScenicError as exc:  # stored by a newer server version, perhaps
                log.error("catalog.reload_failed", extra={"detail": exc.message})
                continue
            log.info("catalog.reloaded", extra={"site": site.catalog.name_en})


async def follow_keys(
    db: Database, site: SiteState, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Take up the ticket keys an operator rotates or retires, until cancelled.

    Reports ``started`` once it listens.
    """
    async with db.listen(site_queries.KEYS_CHANNEL) as notices:
        task_status.started()
        async for _ in notices:
            site.keyring = TicketKeyring(tuple(await db.run(site_queries.ticket_keys)))
            log.info("keys.reloaded", extra={"current": site.keyring.current.key_id})
