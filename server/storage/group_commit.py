"""Group commit: many actors' writes batched into one transaction, each answered after it.

An actor hands :meth:`GroupCommitter.submit` an *asyncio* coroutine function
``write(conn)`` holding the SQL of one step. The committer gathers the writes
that arrive within ``max_delay_s`` of the first (at most ``max_batch``), runs
them one after another in a single transaction, and only when COMMIT has
returned wakes each waiter with its own write's result. One commit, one WAL
flush and one thread hop then serve a whole batch.

Writes of one kind can also be *bulk* items (:meth:`GroupCommitter.submit_bulk`):
a :class:`BulkWriter` then writes all of a batch's items of its kind in a few
statements (``unnest`` of arrays) instead of one round trip per item, and
answers each item on its own. Hot paths (gate scans) use this: a batch of
hundreds of scans costs two or three round trips.

One write must not sink its neighbours: when a batch fails (a write raises, or
a deferred constraint fails at COMMIT) it is rolled back and its writes are
run again, each in a transaction of its own, so each waiter gets exactly its
own result or exception. Writes must therefore touch nothing but ``conn``.
A write that alone still meets a deadlock or a serialization failure (two
concurrent batches took the same rows in another order) is run again, up to
:data:`CONFLICT_RETRIES` times with a short random pause: those failures say
nothing about the write itself, so its waiter never sees them.

Several batches may be in flight at once (``max_concurrent``, each on its own
pooled connection): while one commits, the next one fills.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import asyncpg
import attrs
import outcome
import trio

from server.errors import Overloaded
from server.storage.database import Database, DatabaseClosed

log = logging.getLogger("scenic.storage.group_commit")

T = TypeVar("T")
Write = Callable[[asyncpg.Connection], Awaitable[Any]]
#: how often a write alone is run again after a deadlock or serialization failure
CONFLICT_RETRIES = 5
#: PostgreSQL's answers that mean "run it again", not "this write is wrong"
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class BulkWriter(Protocol):
    """Writes many items of one kind at once, inside the batch's transaction.

    ``write_many`` returns one :class:`outcome.Outcome` per item, in order: a
    problem with one item (say, a version check it failed) is an
    ``outcome.Error`` for that item alone, and must leave the transaction
    usable. Raising fails the whole batch, which is then retried item by item.
    """

    async def write_many(self, conn: asyncpg.Connection, items: list[Any]) -> list[outcome.Outcome]:
        """Write ``items``; one outcome each."""
        ...


@attrs.frozen
class BulkItem:
    """One item for a :class:`BulkWriter` (hashable writers group a batch's items)."""

    writer: BulkWriter
    item: Any


@attrs.frozen
class CommitStats:
    """Counters of a :class:`GroupCommitter` since it opened."""

    batches: int
    writes: int
    largest_batch: int
    failed_batches: int
    queued: int
    in_flight_batches: int
    last_commit_ms: float
    #: time spent flushing batches, summed (over ``batches``: the mean commit time)
    commit_ms_total: float
    #: time writes waited in the queue before their batch began, summed
    queued_ms_total: float


class _Waiter:
    __slots__ = ("done", "queued_at", "result", "write")

    def __init__(self, write: Write | BulkItem) -> None:
        self.write = write
        self.queued_at = time.perf_counter()
        self.done = trio.Event()
        self.result: outcome.Outcome | None = None


class GroupCommitter:
    """Batches writes into shared transactions. Obtain one from :func:`open_group_committer`."""

    def __init__(
        self,
        db: Database,
        max_delay_s: float,
        max_batch: int,
        max_concurrent: int,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self._db = db
        #: told (writes, seconds) after each batch, for the metrics
        self._on_batch = on_batch
        self._max_delay_s = max_delay_s
        self._max_batch = max_batch
        self._flush_slots = trio.Semaphore(max_concurrent)
        self._send, self._receive = trio.open_memory_channel[_Waiter](max_batch * 4)
        self._batches = 0
        self._writes = 0
        self._largest = 0
        self._failed = 0
        self._in_flight = 0
        self._last_commit_ms = 0.0
        self._commit_ms_total = 0.0
        self._queued_ms_total = 0.0

    async def submit(self, write: Write) -> Any:
        """Run ``write(conn)`` in the next batch; return its result once the batch committed.

        Raises the write's own exception (its batch neighbours committed
        without it), what asyncpg raises when the commit fails, or
        :class:`Overloaded` once the committer is closing. If the caller is
        cancelled the write may still commit.
        """
        return await self._wait_for(_Waiter(write))

    async def submit_bulk(self, writer: BulkWriter, item: Any) -> Any:
        """Write ``item`` with ``writer`` in the next batch; its result once committed."""
        return await self._wait_for(_Waiter(BulkItem(writer, item)))

    async def _wait_for(self, waiter: _Waiter) -> Any:
        try:
            await self._send.send(waiter)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise Overloaded("the server is shutting down") from None
        await waiter.done.wait()
        assert waiter.result is not None
        return waiter.result.unwrap()

    def stats(self) -> CommitStats:
        """The committer's counters now."""
        return CommitStats(
            batches=self._batches,
            writes=self._writes,
            largest_batch=self._largest,
            failed_batches=self._failed,
            queued=self._receive.statistics().current_buffer_used,
            in_flight_batches=self._in_flight,
            last_commit_ms=round(self._last_commit_ms, 3),
            commit_ms_total=round(self._commit_ms_total, 1),
            queued_ms_total=round(self._queued_ms_total, 1),
        )

    async def _run(self, flushes: trio.Nursery) -> None:
        """Gather batches until the submit side closes, handing each to a flush task."""
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                with trio.move_on_after(self._max_delay_s):
                    try:
                        while len(batch) < self._max_batch:
                            batch.append(await self._receive.receive())
                    except trio.EndOfChannel:
                        pass
                await self._flush_slots.acquire()
                while len(batch) < self._max_batch:  # what arrived while we waited for a slot
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                flushes.start_soon(self._flush, batch)

    async def _flush(self, batch: list[_Waiter]) -> None:
        self._in_flight += 1
        began = time.perf_counter()
        try:
            with trio.CancelScope(shield=True):  # once sent, let the outcome be known
                results, retried = await self._db.run(_commit_batch, [w.write for w in batch])
        except BaseException as exc:  # the pool or loop failed: every waiter learns it
            results = [outcome.Error(_as_exception(exc))] * len(batch)
            retried = True
        finally:
            self._flush_slots.release()
            self._in_flight -= 1
        self._last_commit_ms = (time.perf_counter() - began) * 1000
        self._commit_ms_total += self._last_commit_ms
        self._queued_ms_total += sum(began - w.queued_at for w in batch) * 1000
        self._batches += 1
        self._writes += len(batch)
        self._largest = max(self._largest, len(batch))
        if self._on_batch is not None:
            self._on_batch(len(batch), self._last_commit_ms / 1000)
        if retried:
            self._failed += 1
            log.info("group_commit.batch_retried", extra={"writes": len(batch)})
        for waiter, result in zip(batch, results, strict=True):
            waiter.result = result
            waiter.done.set()


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else DatabaseClosed(repr(exc))


async def _write_all(
    conn: asyncpg.Connection, writes: list[Write | BulkItem]
) -> list[outcome.Outcome]:
    """Every write of a batch, plain ones in order, then each bulk writer's items at once."""
    results: list[outcome.Outcome | None] = [None] * len(writes)
    groups: dict[Any, list[int]] = {}
    for index, write in enumerate(writes):
        if isinstance(write, BulkItem):
            groups.setdefault(write.writer, []).append(index)
        else:
            results[index] = outcome.Value(await write(conn))
    for writer, indexes in groups.items():
        answers = await writer.write_many(conn, [writes[i].item for i in indexes])
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = answer
    return results


async def _commit_batch(
    conn: asyncpg.Connection, writes: list[Write | BulkItem]
) -> tuple[list[outcome.Outcome], bool]:
    """Run ``writes`` in one transaction; on failure, each in its own. (asyncio side.)"""
    try:
        async with conn.transaction():
            results = await _write_all(conn, writes)
        return results, False
    except Exception as exc:
        if len(writes) == 1 and not isinstance(exc, RETRYABLE):
            return [outcome.Error(exc)], False
    alone: list[outcome.Outcome] = []
    for write in writes:
        alone.append(await _commit_alone(conn, write))
    return alone, True


async def _commit_alone(conn: asyncpg.Connection, write: Write | BulkItem) -> outcome.Outcome:
    """One write in a transaction of its own, run again after deadlocks. (asyncio side.)"""
    retries = 0
    while True:
        try:
            async with conn.transaction():
                (result,) = await _write_all(conn, [write])
            return result
        except RETRYABLE as exc:
            retries += 1
            if retries > CONFLICT_RETRIES:
                return outcome.Error(exc)
            log.info("group_commit.conflict_retry", extra={"error": type(exc).__name__})
            await asyncio.sleep(random.uniform(0.001, 0.01) * retries)
        except Exception as exc:
            return outcome.Error(exc)


@asynccontextmanager
async def open_group_committer(
    db: Database,
    *,
    max_delay_s: float,
    max_batch: int,
    max_concurrent: int = 2,
    on_batch: Callable[[int, float], None] | None = None,
) -> AsyncIterator[GroupCommitter]:
    """A committer for ``db``; on exit, writes already submitted are committed first.

    ``on_batch`` is told each batch's size and commit time in seconds.
    """
    committer = GroupCommitter(db, max_delay_s, max_batch, max_concurrent, on_batch)
    async with trio.open_nursery() as flushes:
        flushes.start_soon(committer._run, flushes)
        try:
            yield committer
        finally:
            committer._send.close()
