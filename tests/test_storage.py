"""Storage against a real PostgreSQL: migrations, devices, transactions, group commit, NOTIFY."""

from __future__ import annotations

import asyncpg
import pytest
import trio
import trio.testing

from server.auth import hash_token
from server.errors import BadRequest, ScenicError
from server.storage import devices
from server.storage.group_commit import open_group_committer
from server.storage.migrations import apply_migrations, migration_files


async def test_migrations_run_twice_apply_nothing_the_second_time(db):
    # The fixture database is migrated already: a second run applies nothing.
    assert await apply_migrations(db) == []
    recorded = [r["name"] for r in await db.fetch("SELECT name FROM schema_migrations ORDER BY 1")]
    assert recorded == [name for name, _ in migration_files()]


async def test_migrations_apply_in_order_on_an_empty_database(db):
    await db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    first = await apply_migrations(db)
    assert first == [name for name, _ in migration_files()]
    assert await apply_migrations(db) == []
    assert await db.fetchval("SELECT count(*) FROM devices") == 0


async def test_concurrent_migrators_apply_each_migration_once(db):
    await db.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    applied = []

    async def migrate():
        applied.extend(await apply_migrations(db))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(migrate)
    assert sorted(applied) == [name for name, _ in migration_files()]


async def test_devices_add_list_revoke(db):
    await devices.add_device(db, "kiosk-01", "kiosk", hash_token("t1"))
    await devices.add_device(db, "gate-01", "gate", hash_token("t2"))
    assert [d.device_id for d in await devices.list_devices(db)] == ["gate-01", "kiosk-01"]
    with pytest.raises(ScenicError) as twice:
        await devices.add_device(db, "kiosk-01", "kiosk", hash_token("t3"))
    assert twice.value.code == "device_exists"
    assert await devices.revoke_device(db, "kiosk-01")
    assert not await devices.revoke_device(db, "kiosk-01")
    assert not await devices.revoke_device(db, "nobody")
    assert (await devices.get_device(db, "kiosk-01")).revoked_at is not None


@pytest.mark.parametrize(
    ("device_id", "role"), [("bad id", "kiosk"), ("k1", "wizard"), ("", "gate")]
)
async def test_devices_with_bad_ids_or_roles_are_refused(db, device_id, role):
    with pytest.raises(BadRequest):
        await devices.add_device(db, device_id, role, hash_token("t"))


async def test_revoking_notifies_listeners_after_commit(db):
    async with db.listen(devices.REVOKED_CHANNEL) as notices:
        await devices.add_device(db, "k1", "kiosk", hash_token("t"))
        await devices.revoke_device(db, "k1")
        with trio.fail_after(5):
            assert await notices.receive() == "k1"


async def test_a_transaction_commits_or_rolls_back_as_a_whole(db):
    await db.execute("CREATE TABLE t (n int PRIMARY KEY)")
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (1)")
        await tx.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (3)")
            await tx.execute("INSERT INTO t VALUES (1)")
    with trio.move_on_after(0.2):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (4)")
            await trio.sleep_forever()
    assert [r["n"] for r in await db.fetch("SELECT n FROM t ORDER BY n")] == [1, 2]


async def test_group_commit_batches_writes_and_answers_each_after_commit(db):
    await db.execute("CREATE TABLE t (n int PRIMARY KEY)")
    answers = {}

    def insert(n):
        async def write(conn):
            await conn.execute("INSERT INTO t VALUES ($1)", n)
            return n * 10

        return write

    async def submit(committer, n):
        answers[n] = await committer.submit(insert(n))
        # Committed by the time the answer comes: another connection sees it.
        assert await db.fetchval("SELECT n FROM t WHERE n = $1", n) == n

    async with open_group_committer(db, max_delay_s=0.05, max_batch=100) as committer:
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(submit, committer, n)
        stats = committer.stats()
    assert answers == {n: n * 10 for n in range(50)}
    assert stats.writes == 50
    assert stats.batches < 10  # 50 writes arriving together share a few commits
    assert stats.largest_batch > 5


async def test_one_failing_write_does_not_sink_its_batch(db):
    await db.execute("CREATE TABLE t (n int PRIMARY KEY CHECK (n <> 13))")
    results = {}

    def insert(n):
        async def write(conn):
            await conn.execute("INSERT INTO t VALUES ($1)", n)
            return n

        return write

    async def submit(committer, n):
        try:
            results[n] = await committer.submit(insert(n))
        except asyncpg.CheckViolationError:
            results[n] = "refused"

    async with open_group_committer(db, max_delay_s=0.05, max_batch=100) as committer:
        async with trio.open_nursery() as nursery:
            for n in range(10, 20):
                nursery.start_soon(submit, committer, n)
        assert committer.stats().failed_batches >= 1
    assert results == {n: ("refused" if n == 13 else n) for n in range(10, 20)}
    stored = [r["n"] for r in await db.fetch("SELECT n FROM t ORDER BY n")]
    assert stored == [n for n in range(10, 20) if n != 13]


async def test_writes_submitted_before_close_are_committed(db):
    await db.execute("CREATE TABLE t (n int)")

    async def write(conn):
        await conn.execute("INSERT INTO t VALUES (1)")

    async with trio.open_nursery() as nursery:
        async with open_group_committer(db, max_delay_s=1.0, max_batch=100) as committer:
            for _ in range(5):
                nursery.start_soon(committer.submit, write)
            await trio.testing.wait_all_tasks_blocked()
    assert await db.fetchval("SELECT count(*) FROM t") == 5


async def test_servers_starting_together_agree_on_the_first_site_key(db):
    from server.storage import site

    seen = []

    async def start():
        keys = await db.run(site.ticket_keys)
        seen.append(tuple(k.key_id for k in keys if k.retired_at is None))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(start)
    assert len(set(seen)) == 1 and len(seen[0]) == 1


async def test_a_write_that_meets_a_deadlock_is_run_again_not_failed(db):
    """Two batches lock two rows in opposite orders: PostgreSQL kills one as a deadlock;
    its write is run again once the other committed, and both waiters get their answer."""
    import asyncio

    await db.execute("CREATE TABLE t (k text PRIMARY KEY, v int NOT NULL)")
    await db.execute("INSERT INTO t VALUES ('a', 0), ('b', 0)")
    first_rows_locked = None
    attempts = {"x": 0, "y": 0}

    def crossing(name, first, second):
        async def write(conn):
            nonlocal first_rows_locked
            if first_rows_locked is None:  # made on the database's own event loop
                first_rows_locked = asyncio.Barrier(2)
            attempts[name] += 1
            await conn.execute("UPDATE t SET v = v + 1 WHERE k = $1", first)
            if attempts[name] == 1:
                async with asyncio.timeout(10):
                    await first_rows_locked.wait()
            await conn.execute("UPDATE t SET v = v + 1 WHERE k = $1", second)
            return name

        return write

    async with open_group_committer(db, max_delay_s=0.001, max_batch=1) as committer:
        async with trio.open_nursery() as nursery:
            results = []

            async def submit(write):
                results.append(await committer.submit(write))

            nursery.start_soon(submit, crossing("x", "a", "b"))
            nursery.start_soon(submit, crossing("y", "b", "a"))
    assert sorted(results) == ["x", "y"]
    assert max(attempts.values()) >= 2  # one of them met the deadlock and ran again
    assert {r["k"]: r["v"] for r in await db.fetch("SELECT k, v FROM t")} == {"a": 2, "b": 2}
