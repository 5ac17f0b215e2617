"""SQL of the site: the catalog on sale, the ticket-code keys, pending orders to expire.

Asyncio coroutine functions taking an asyncpg connection, run through
:meth:`Database.run` in the database thread.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime

import asyncpg
import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.catalog import WHOLE_DAY, Catalog
from server.errors import ScenicError
from server.storage.rentals import store_rental_units

#: NOTIFY channel telling running servers that ``scenic catalog load`` stored a new catalog
CATALOG_CHANNEL = "scenic_catalog_changed"


async def load_catalog_source(conn: asyncpg.Connection) -> str | None:
    """The TOML text of the catalog on sale, or ``None`` before one was loaded."""
    return await conn.fetchval("SELECT source FROM catalog")


async def store_catalog(
    conn: asyncpg.Connection, source: str, catalog: Catalog, today: date
) -> list[tuple[date, str, int, int]]:
    """Put ``catalog`` on sale, apply its capacity to dates already selling, list its units.

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
        await store_rental_units(conn, catalog)
        await conn.execute("SELECT pg_notify($1, 'reload')", CATALOG_CHANNEL)
    return overbooked


#: NOTIFY channel telling running servers that ``scenic keys`` rotated or retired a key
KEYS_CHANNEL = "scenic_keys_changed"
#: advisory lock key serialising the making of the first site key
KEYS_LOCK = 0x5CE1_1C01


@attrs.frozen
class KeyRow:
    """One site key as stored."""

    key_id: str
    secret: bytes
    signing_key: bytes
    created_at: datetime
    retired_at: datetime | None


async def ticket_keys(conn: asyncpg.Connection) -> list[KeyRow]:
    """Every site key, oldest first; makes the first one, and missing signing keys, if needed.

    Servers starting together agree on the first key: it is made under a
    transaction-scoped advisory lock, after looking again.
    """
    rows = await conn.fetch("SELECT * FROM site_keys ORDER BY created_at, key_id")
    if not any(row["retired_at"] is None for row in rows) or any(
        row["signing_key"] is None for row in rows
    ):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", KEYS_LOCK)
            rows = await conn.fetch("SELECT * FROM site_keys ORDER BY created_at, key_id")
            if not any(row["retired_at"] is None for row in rows):
                await add_key(conn)
            for row in rows:
                if row["signing_key"] is None:
                    await conn.execute(
                        "UPDATE site_keys SET signing_key = $2 "
                        "WHERE key_id = $1 AND signing_key IS NULL",
                        row["key_id"],
                        _new_signing_key(),
                    )
        rows = await conn.fetch("SELECT * FROM site_keys ORDER BY created_at, key_id")
    return [
        KeyRow(
            r["key_id"],
            bytes(r["secret"]),
            bytes(r["signing_key"]),
            r["created_at"],
            r["retired_at"],
        )
        for r in rows
    ]


async def add_key(conn: asyncpg.Connection) -> str:
    """Make a new site key (it signs new codes from now on); returns its id."""
    key_id = "k" + secrets.token_hex(2)
    await conn.execute(
        "INSERT INTO site_keys (key_id, secret, signing_key) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        key_id,
        secrets.token_bytes(32),
        _new_signing_key(),
    )
    await conn.execute("SELECT pg_notify($1, 'rotated')", KEYS_CHANNEL)
    return key_id


async def retire_key(conn: asyncpg.Connection, key_id: str) -> bool:
    """Retire a key: codes made with it are refused from now on. False if none was active.

    The newest key cannot be retired (rotate first), so new codes always have a key.
    """
    async with conn.transaction():
        newest = await conn.fetchval(
            "SELECT key_id FROM site_keys WHERE retired_at IS NULL "
            "ORDER BY created_at DESC, key_id DESC LIMIT 1 FOR UPDATE"
        )
        if newest == key_id:
            raise ScenicError(
                f"{key_id} signs new codes; run scenic keys rotate first", code="key_in_use"
            )
        status = await conn.execute(
            "UPDATE site_keys SET retired_at = now() WHERE key_id = $1 AND retired_at IS NULL",
            key_id,
        )
        if status != "UPDATE 1":
            return False
        await conn.execute("SELECT pg_notify($1, 'retired')", KEYS_CHANNEL)
    return True


def _new_signing_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes_raw()


async def pending_orders(conn: asyncpg.Connection) -> list[tuple[datetime, str]]:
    """Every pending order as ``(expires_at, order_id)``, soonest first."""
    rows = await conn.fetch(
        "SELECT expires_at, order_id FROM orders WHERE status = 'pending' ORDER BY expires_at"
    )
    return [(row["expires_at"], row["order_id"]) for row in rows]
