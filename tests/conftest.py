"""Fixtures: a real PostgreSQL for the session, a fresh migrated database for each test.

The session's cluster is ``SCENIC_TEST_DSN`` when set, else an embedded one
started in a temporary directory and stopped at the end. Migrations run once
into a template database; each test gets ``CREATE DATABASE ... TEMPLATE`` of
it (a file copy, tens of milliseconds) and it is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import trio
from hypothesis import HealthCheck, settings

from server.storage.database import Database, open_database
from server.storage.embedded import EmbeddedPostgres
from server.storage.migrations import apply_migrations

_numbers = itertools.count()

# A loaded 2-core CI machine makes generation slow now and then; that is not a failure.
settings.register_profile("scenic", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("scenic")


def _with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` instead (keeps the query, e.g. a socket host)."""
    base, _, query = dsn.partition("?")
    scheme_host = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{scheme_host}/{name}" + (f"?{query}" if query else "")


def _admin(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_server_dsn(tmp_path_factory) -> Iterator[str]:
    """A DSN of the session's PostgreSQL cluster (its maintenance database)."""
    given = os.environ.get("SCENIC_TEST_DSN")
    if given:
        yield given
        return
    cluster = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def template_database(pg_server_dsn) -> Iterator[str]:
    """The name of a database holding every migration, to copy per test."""
    name = f"scenic_template_{os.getpid()}"
    _admin(pg_server_dsn, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")

    async def migrate() -> None:
        async with open_database(_with_database(pg_server_dsn, name), min_size=1, max_size=1) as db:
            await apply_migrations(db)

    trio.run(migrate)
    yield name
    _admin(pg_server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def dsn(pg_server_dsn, template_database) -> Iterator[str]:
    """A DSN of a fresh, migrated database of this test's own."""
    name = f"scenic_test_{os.getpid()}_{next(_numbers)}"
    _admin(pg_server_dsn, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield _with_database(pg_server_dsn, name)
    _admin(pg_server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db(dsn) -> AsyncIterator[Database]:
    """A connection pool on this test's database."""
    async with open_database(dsn, min_size=1, max_size=4) as database:
        yield database
