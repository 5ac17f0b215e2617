"""The connection pool, used from trio: asyncpg on a dedicated asyncio thread.

:func:`open_database` starts an asyncio event loop in a daemon thread (see
:mod:`server.storage.asyncio_thread`), opens an asyncpg pool on it, and yields
a :class:`Database`. Everything that talks to PostgreSQL goes through it:

- :meth:`Database.run` hands an asyncio coroutine function ``fn(conn, *args)``
  to the loop with a pooled connection: one thread hop for any amount of SQL.
  This is the hot-path primitive; the storage modules build on it.
- :meth:`Database.run_in_transaction` does the same inside a transaction.
- :meth:`Database.execute`, ``fetch``, ``fetchrow``, ``fetchval``: one statement,
  one hop.
- :meth:`Database.transaction` is a transaction held open across trio code,
  one hop per statement.
- :meth:`Database.listen` receives ``NOTIFY`` payloads.
- :meth:`Database.session` holds one connection of its own open for session
  state that must live exactly as long as this process's interest in it (the
  outbox's advisory lock).

Pooled connections are not reset when they go back to the pool (asyncpg's
default reset costs a round trip per call): a function given to ``run`` must
not leave session state behind - no ``SET`` without ``LOCAL``, no session
advisory locks, no ``LISTEN``. An open transaction is always rolled back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import trio

from server.storage.asyncio_thread import AsyncioThread, DatabaseClosed

log = logging.getLogger("scenic.storage.database")

T = TypeVar("T")

#: how long closing a connection, a rollback or closing the pool may take
CLEANUP_TIMEOUT_S = 5.0

__all__ = [
    "Database",
    "DatabaseClosed",
    "DedicatedSession",
    "ListenConnectionLost",
    "Tx",
    "open_database",
]


class ListenConnectionLost(ConnectionError):
    """The connection a :meth:`Database.listen` used was lost; notifications may be missed."""


@asynccontextmanager
async def open_database(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 8,
    connect_timeout_s: float = 10.0,
    acquire_timeout_s: float = 10.0,
) -> AsyncIterator[Database]:
    """Open a pool of ``min_size``..``max_size`` connections to ``dsn`` and yield a Database.

    The database belongs to the trio run that opened it. On exit the pool is
    closed (connections still busy get ``CLEANUP_TIMEOUT_S``, then are
    terminated) and the loop thread stops, even when the exit is a
    cancellation. Raises what asyncpg raises when the server cannot be
    reached or refuses us (``OSError``, ``asyncpg.PostgresError``,
    ``TimeoutError``).
    """
    thread = AsyncioThread(name="scenic-db")
    try:
        pool = await thread.call(_create_pool(dsn, min_size, max_size, connect_timeout_s))
        database = Database(thread, pool, dsn, acquire_timeout_s, connect_timeout_s)
        try:
            yield database
        finally:
            database._closed = True
            with trio.CancelScope(shield=True):
                await thread.call(_close_pool(pool))
    finally:
        await thread.stop()


class Database:
    """A pool of PostgreSQL connections usable from trio tasks.

    Obtain one from :func:`open_database`; use it only inside that trio run.
    Every method may raise what asyncpg raises (``asyncpg.PostgresError``
    subclasses for errors PostgreSQL reports, ``asyncpg.InterfaceError``,
    ``OSError``), ``TimeoutError`` when no pooled connection frees up within
    ``acquire_timeout_s``, and :class:`DatabaseClosed` after the pool closed.
    Cancellation works everywhere: the statement in flight is cancelled and
    the trio task gets :exc:`trio.Cancelled` at once; whether work already
    sent took effect is then unknown, except inside :meth:`transaction`,
    which rolls back.
    """

    def __init__(
        self,
        thread: AsyncioThread,
        pool: asyncpg.Pool,
        dsn: str,
        acquire_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self._thread = thread
        self._pool = pool
        self._dsn = dsn
        self._acquire_timeout_s = acquire_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._closed = False

    async def _call(self, coro: Awaitable[T]) -> T:
        if self._closed:
            coro.close()  # type: ignore[attr-defined]
            raise DatabaseClosed("the database is closed")
        return await self._thread.call(coro)  # type: ignore[arg-type]

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(conn, *args)`` on the database loop with a pooled connection.

        ``fn`` is an *asyncio* coroutine function: it runs in the database
        thread, may await any asyncpg call on ``conn`` (and nothing trio), and
        its result or exception comes back here. One thread hop in all, so put
        everything one step needs into one ``fn``. If the trio task is
        cancelled, ``fn`` is cancelled too (it sees ``asyncio.CancelledError``)
        and the connection goes back to the pool.
        """
        return await self._call(self._with_connection(fn, args))

    async def run_in_transaction(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Like :meth:`run`, inside ``async with conn.transaction()``.

        Commits when ``fn`` returns, rolls back when it raises or is
        cancelled. A cancellation that arrives during the COMMIT leaves the
        outcome unknown; use :meth:`transaction` where that matters.
        """
        return await self._call(self._with_connection(_in_transaction, (fn, args)))

    async def _with_connection(self, fn: Callable[..., Awaitable[T]], args: Sequence[Any]) -> T:
        async with self._pool.acquire(timeout=self._acquire_timeout_s) as conn:
            return await fn(conn, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement and return its status tag (such as ``"INSERT 0 1"``)."""
        return await self._call(self._pool.execute(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query and return all its rows."""
        return await self._call(self._pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run one query and return its first row, or ``None`` when there is none."""
        return await self._call(self._pool.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any, column: int = 0) -> Any:
        """Run one query and return one value of its first row (``None`` without rows)."""
        return await self._call(self._pool.fetchval(sql, *args, column=column))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction on one pooled connection, held open while the block runs.

        ``async with db.transaction() as tx: await tx.execute(...)`` commits
        when the block finishes and rolls back when it raises - a
        cancellation included. Each statement is one thread hop; prefer
        :meth:`run_in_transaction` on hot paths. The COMMIT itself is shielded
        from cancellation, so once the block has finished its outcome is
        known: committed, or an exception (a deferred constraint, a lost
        connection). The rollback is shielded too and bounded by
        ``CLEANUP_TIMEOUT_S``; if it fails the connection is closed, which
        rolls back as well. The ``Tx`` serves one task at a time.
        """
        conn, xact = await self._call_keeping(
            self._begin(), lambda begun: self._rollback_and_release(*begun)
        )
        tx = Tx(self, conn)
        try:
            yield tx
        except BaseException:
            tx._open = False
            with trio.CancelScope(shield=True):
                await self._thread.call(self._rollback_and_release(conn, xact))
            raise
        tx._open = False
        with trio.CancelScope(shield=True):
            await self._thread.call(self._commit_and_release(conn, xact))

    async def _call_keeping(self, coro: Any, discard: Callable[[Any], Awaitable[None]]) -> Any:
        """Like ``_call`` for a coroutine that returns a resource: ``discard`` it if cancelled."""
        if self._closed:
            coro.close()
            raise DatabaseClosed("the database is closed")
        return await self._thread.call(coro, discard=discard)

    async def _begin(self) -> tuple[Any, Any]:
        conn = await self._pool.acquire(timeout=self._acquire_timeout_s)
        try:
            xact = conn.transaction()
            await xact.start()
        except BaseException:
            await self._pool.release(conn, timeout=CLEANUP_TIMEOUT_S)
            raise
        return conn, xact

    async def _commit_and_release(self, conn: Any, xact: Any) -> None:
        try:
            await xact.commit()
        finally:
            await self._pool.release(conn, timeout=CLEANUP_TIMEOUT_S)

    async def _rollback_and_release(self, conn: Any, xact: Any) -> None:
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT_S):
                await xact.rollback()
        except BaseException as exc:  # the server rolls back when the connection goes
            log.warning("database.rollback_failed", extra={"error": repr(exc)})
            conn.terminate()
        finally:
            await self._pool.release(conn, timeout=CLEANUP_TIMEOUT_S)

    @asynccontextmanager
    async def listen(
        self, channel: str, *, buffer: int = 256
    ) -> AsyncIterator[trio.MemoryReceiveChannel[str]]:
        """Receive the payloads of ``NOTIFY channel`` while the block runs.

        Listens on a dedicated connection (not a pooled one). Payloads arrive
        in order on a memory channel holding up to ``buffer`` of them; when
        the reader falls further behind, newer payloads are dropped and a
        warning is logged. Notifications sent while no ``listen`` is active
        are not seen (that is how PostgreSQL works). If the connection is
        lost, the channel ends and leaving the block raises
        :class:`ListenConnectionLost` (unless the block raised already).
        """
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[str](buffer)
        lost = False

        def deliver(payload: str) -> None:  # trio thread
            try:
                send.send_nowait(payload)
            except trio.WouldBlock:
                log.warning("database.notify_dropped", extra={"channel": channel})
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        def connection_lost() -> None:  # trio thread
            nonlocal lost
            lost = True
            send.close()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:  # asyncio
            _run_sync_soon(token, deliver, payload)

        def on_terminate(_conn: Any) -> None:  # asyncio
            _run_sync_soon(token, connection_lost)

        conn = await self._call_keeping(
            self._listen_connect(channel, on_notify, on_terminate), _close_connection
        )
        try:
            with receive:
                yield receive
        finally:
            send.close()
            with trio.CancelScope(shield=True):
                await self._thread.call(_listen_close(conn, channel, on_notify, on_terminate))
        if lost:
            raise ListenConnectionLost(f"lost the connection listening on {channel!r}")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[DedicatedSession]:
        """A connection of its own, open while the block runs, closed after.

        Raises what asyncpg raises when it cannot connect. Leaving the block
        closes the connection, which ends its session state.
        """
        token = trio.lowlevel.current_trio_token()
        lost = trio.Event()

        def on_terminate(_conn: Any) -> None:  # asyncio
            _run_sync_soon(token, lost.set)

        conn = await self._call_keeping(self._session_connect(on_terminate), _close_connection)
        try:
            yield DedicatedSession(self, conn, lost)
        finally:
            with trio.CancelScope(shield=True):
                await self._thread.call(_session_close(conn, on_terminate))

    async def _session_connect(self, on_terminate: Callable[..., None]) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout_s,
            server_settings={"application_name": "scenic-gate"},
        )
        conn.add_termination_listener(on_terminate)
        return conn

    async def _listen_connect(
        self, channel: str, on_notify: Callable[..., None], on_terminate: Callable[..., None]
    ) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout_s)
        try:
            await conn.add_listener(channel, on_notify)
        except BaseException:
            await _close_connection(conn)
            raise
        conn.add_termination_listener(on_terminate)
        return conn


class DedicatedSession:
    """One connection of its own (not pooled), held while a :meth:`Database.session` block runs.

    Session state set on it (an advisory lock, a ``SET``) lives exactly as
    long as the connection: PostgreSQL drops it when the connection ends,
    whether we close it or this process dies. ``lost`` is set when the
    connection is lost; the block should then end and open a new session.
    """

    def __init__(self, database: Database, conn: asyncpg.Connection, lost: trio.Event) -> None:
        self._database = database
        self._conn = conn
        self.lost = lost

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(conn, *args)`` on this session's connection (see :meth:`Database.run`)."""
        return await self._database._call(fn(self._conn, *args))


class Tx:
    """The statements of one open :meth:`Database.transaction`, one thread hop each.

    Every method raises ``RuntimeError`` once the transaction has ended, and
    what :class:`Database` methods raise. After a statement fails, PostgreSQL
    refuses further statements until the block ends (and rolls back).
    """

    def __init__(self, database: Database, conn: asyncpg.Connection) -> None:
        self._database = database
        self._conn = conn
        self._open = True

    async def _call(self, coro: Awaitable[T]) -> T:
        if not self._open:
            coro.close()  # type: ignore[attr-defined]
            raise RuntimeError("the transaction has ended")
        return await self._database._call(coro)

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement in the transaction and return its status tag."""
        return await self._call(self._conn.execute(sql, *args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per argument tuple, in one round trip."""
        return await self._call(self._conn.executemany(sql, list(args)))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query in the transaction and return all its rows."""
        return await self._call(self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """Run one query in the transaction and return its first row, or ``None``."""
        return await self._call(self._conn.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: Any, column: int = 0) -> Any:
        """Run one query in the transaction and return one value of its first row."""
        return await self._call(self._conn.fetchval(sql, *args, column=column))


async def _in_transaction(
    conn: asyncpg.Connection, fn: Callable[..., Awaitable[T]], args: Any
) -> T:
    async with conn.transaction():
        return await fn(conn, *args)


async def _create_pool(
    dsn: str, min_size: int, max_size: int, connect_timeout_s: float
) -> asyncpg.Pool:
    # Built on the loop: asyncpg's Pool looks up the running event loop when constructed.
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout_s,
        reset=_keep_session,
        server_settings={"application_name": "scenic-gate"},
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset hook: nothing beyond the rollback asyncpg always does."""


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), CLEANUP_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError):
        log.warning("database.pool_close_timeout", extra={"timeout_s": CLEANUP_TIMEOUT_S})
        pool.terminate()


async def _close_connection(conn: asyncpg.Connection) -> None:
    try:
        await conn.close(timeout=CLEANUP_TIMEOUT_S)
    except Exception:
        conn.terminate()


async def _listen_close(
    conn: asyncpg.Connection,
    channel: str,
    on_notify: Callable[..., None],
    on_terminate: Callable[..., None],
) -> None:
    conn.remove_termination_listener(on_terminate)
    if not conn.is_closed():
        try:
            await asyncio.wait_for(conn.remove_listener(channel, on_notify), CLEANUP_TIMEOUT_S)
        except Exception:
            pass  # closing the connection unlistens anyway
    await _close_connection(conn)


async def _session_close(conn: asyncpg.Connection, on_terminate: Callable[..., None]) -> None:
    conn.remove_termination_listener(on_terminate)
    await _close_connection(conn)


def _run_sync_soon(token: trio.lowlevel.TrioToken, fn: Callable[..., None], *args: Any) -> None:
    try:
        token.run_sync_soon(fn, *args)
    except trio.RunFinishedError:
        pass
