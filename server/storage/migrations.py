"""Versioned SQL migrations: ``migrations/NNNN_name.sql``, applied in order, each once.

Each file runs in its own transaction together with its row in
``schema_migrations``, so a migration is either wholly applied and recorded or
not at all. A transaction-scoped advisory lock serialises servers starting
at the same time against one database; running the migrations twice is a
no-op the second time.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

from server.storage.database import Database

#: arbitrary, fixed key of the advisory lock that serialises migrators
MIGRATION_LOCK_KEY = 0x5CE1_1C00
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migration_files() -> list[tuple[str, str]]:
    """The bundled migrations as ``(name, sql)`` pairs, sorted by their number."""
    folder = resources.files("server.storage") / "migrations"
    found = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if _NAME.match(entry.name)
    ]
    found.sort()
    numbers = [name[:4] for name, _ in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


async def apply_migrations(db: Database) -> list[str]:
    """Apply every bundled migration not yet recorded; return the names applied now."""
    applied: list[str] = []
    for name, sql in migration_files():
        if await db.run(_apply_one, name, sql):
            applied.append(name)
    return applied


async def _apply_one(conn: asyncpg.Connection, name: str, sql: str) -> bool:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = $1", name)
        if done:
            return False
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        return True
