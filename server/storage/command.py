"""The database of one ``scenic`` command (device, catalog, audit, gate-sim, ...).

A command works against the same database as the server: the DSN it is
given, or the embedded cluster in the data directory, which it starts for
the call if no other process runs it (and which stays up while any process
still uses it; see :mod:`server.storage.embedded`). The schema is migrated
first, so a command on a fresh data directory works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from server.config import ServerConfig
from server.startup import check_database
from server.storage.database import Database, open_database
from server.storage.embedded import EmbeddedPostgres
from server.storage.migrations import apply_migrations


@asynccontextmanager
async def command_database(config: ServerConfig) -> AsyncIterator[Database]:
    """A migrated database: the DSN's, or the embedded cluster's (started for the call).

    Raises :class:`~server.startup.StartupError` with one line when the DSN
    cannot be reached, and what the embedded cluster raises when it cannot start.
    """
    embedded = None
    dsn = config.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir)
        dsn = await trio.to_thread.run_sync(embedded.start)
    else:
        await check_database(dsn)
    try:
        async with open_database(dsn, min_size=1, max_size=2) as db:
            await apply_migrations(db)
            yield db
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)
