"""SQL of the site: the catalog on sale, the ticket-code keys, pending orders to expire.

Asyncio coroutine functions taking an asyncpg connection, run through
:meth:`Database.run` in the database thread.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime

import asyncpg

from server.catalog.model import WHOLE_DAY, Catalog

#: NOTIFY channel telling running servers that ``scenic catalog load`` stored a new catalog
CATALOG_CHANNEL = "scenic_catalog_changed"


async def load_catalog_source(conn: asyncpg.Connection) -> str | None:
    """The TOML text of the catalog on sale, or ``None`` before one was loaded."""
    return await conn.fetchval("SELECT source FROM catalog")


async def store_catalog(
    conn: asyncpg.Connection, source: str, catalog: Catalog, today: date
) -> list[tuple[date, str, int, int]]:
    """Put ``catalog`` on sale and apply its capacity to dates already selling.

    Dates from ``today`` on whose new capacity is below what is already
    reserved keep their reservations (nobody loses a ticket) and are returned
    as ``(date, slot, capacity, reserved)`` so the operator sees them. Running
    servers are told through :data:`CATALOG_CHANNEL` at commit.
    """
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO catalog (source, loaded_at) VALUES ($1, now())
               ON CONFLICT (singleton) DO UPDATE SET source = $1, loaded_at = now()""",
            source,
        )
        rows = await conn.fetch(
            "SELECT visit_date, slot, reserved FROM capacity WHERE visit_date >= $1 FOR UPDATE",
            today,
        )
        overbooked = []
        for row in rows:
            limit = catalog.capacity_of(row["visit_date"], row["slot"] or WHOLE_DAY)
            if limit < row["reserved"]:
                overbooked.append((row["visit_date"], row["slot"], limit, row["reserved"]))
                limit = row["reserved"]
            await conn.execute(
                "UPDATE capacity SET capacity = $3 WHERE visit_date = $1 AND slot = $2",
                row["visit_date"],
                row["slot"],
                limit,
            )
        await conn.execute("SELECT pg_notify($1, 'reload')", CATALOG_CHANNEL)
    return overbooked


async def ticket_keys(conn: asyncpg.Connection) -> tuple[str, dict[str, bytes]]:
    """The key new codes are made with, and every key codes may carry.

    Creates the site's first key when there is none (concurrent starters
    agree on one: the insert is keyed and the newest unretired key wins).
    """
    rows = await conn.fetch("SELECT key_id, secret, retired_at FROM site_keys ORDER BY created_at")
    if not any(row["retired_at"] is None for row in rows):
        await conn.execute(
            "INSERT INTO site_keys (key_id, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            "k" + secrets.token_hex(2),
            secrets.token_bytes(32),
        )
        rows = await conn.fetch(
            "SELECT key_id, secret, retired_at FROM site_keys ORDER BY created_at"
        )
    current = [row["key_id"] for row in rows if row["retired_at"] is None][-1]
    return current, {row["key_id"]: bytes(row["secret"]) for row in rows}


async def pending_orders(conn: asyncpg.Connection) -> list[tuple[datetime, str]]:
    """Every pending order as ``(expires_at, order_id)``, soonest first."""
    rows = await conn.fetch(
        "SELECT expires_at, order_id FROM orders WHERE status = 'pending' ORDER BY expires_at"
    )
    return [(row["expires_at"], row["order_id"]) for row in rows]
