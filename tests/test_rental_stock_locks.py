"""Two transactions reserving rental stock in opposite item orders do not deadlock.

A group-commit batch writes many rentals in one transaction, so two batches
committing side by side may take the stock rows of two items in opposite
orders. A real PostgreSQL, two connections, the store's own stock write.
"""

from __future__ import annotations

import asyncio

import asyncpg

from server.storage.rentals import _change_stock

LIMITS = {"skis": 5, "boots": 5}


async def _blocked_or_done(conn: asyncpg.Connection, pid: int, done: asyncio.Event) -> None:
    """Wait until the other transaction waits on a lock or has written its first item."""
    for _ in range(500):
        if done.is_set():
            return
        waiting = await conn.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the second transaction neither wrote nor waited")


async def _opposite_orders(dsn: str) -> dict[str, int]:
    setup = await asyncpg.connect(dsn)
    first = await asyncpg.connect(dsn)
    second = await asyncpg.connect(dsn)
    try:
        await setup.executemany(
            "INSERT INTO rental_units (unit_id, item_id, label) VALUES ($1, $2, $3)",
            [(f"{item}-{n}", item, f"L-{item}-{n}") for item in LIMITS for n in range(5)],
        )
        boots_written = asyncio.Event()

        async def boots_then_skis() -> None:
            async with second.transaction():
                await _change_stock(second, {}, {"boots": 1}, LIMITS)
                boots_written.set()
                await _change_stock(second, {}, {"skis": 1}, LIMITS)

        async with first.transaction():
            await _change_stock(first, {}, {"skis": 1}, LIMITS)
            other = asyncio.create_task(boots_then_skis())
            await _blocked_or_done(setup, second.get_server_pid(), boots_written)
            await _change_stock(first, {}, {"boots": 1}, LIMITS)
        await other
        rows = await setup.fetch("SELECT item_id, reserved FROM rental_stock")
        return {row["item_id"]: row["reserved"] for row in rows}
    finally:
        for conn in (setup, first, second):
            await conn.close()


def test_two_batches_reserving_stock_in_opposite_orders_both_commit(dsn):
    assert asyncio.run(_opposite_orders(dsn)) == {"skis": 2, "boots": 2}
