"""An asyncio event loop in a thread of its own, and trio tasks awaiting coroutines on it.

asyncpg needs asyncio; the server runs trio. Rather than bridging every call
through ``trio.to_thread`` (a thread hop each way, plus a worker thread per
call) or ``trio_asyncio`` (which patches asyncio's event loop policy for the
whole process, so it must never be imported here), one asyncio loop runs for
good in a daemon thread, and a trio task hands it a coroutine and sleeps until
the loop's done-callback wakes it through the trio token. A call costs one
``call_soon_threadsafe`` one way and one ``run_sync_soon`` back: measured on
the 2-core development machine, about 1,760 ``select 1`` a second one at a time
and 2,570 with eight in flight, against 900 for trio-asyncio.

Cancellation: when the trio task is cancelled, the asyncio task is cancelled
too and (by default) the trio task raises :exc:`trio.Cancelled` at once,
without waiting for the loop; a completion that arrives later is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import outcome
import trio

log = logging.getLogger("scenic.storage.database")

T = TypeVar("T")

#: how long stopping the loop waits for its last tasks to finish
STOP_TIMEOUT_S = 5.0


class DatabaseClosed(RuntimeError):
    """The database's event loop has stopped; nothing more can run on it."""


class AsyncioThread:
    """One asyncio event loop running in a daemon thread, owned by one trio run.

    Create it inside the trio run whose tasks will call :meth:`call` (it
    captures that run's token), and :meth:`stop` it before the run ends.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_log_loop_error)
        self._trio_token = trio.lowlevel.current_trio_token()
        self._stopped = False
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Let calls abandoned by cancelled trio tasks finish their own cleanup.
            leftovers = asyncio.all_tasks(self.loop)
            if leftovers:
                self.loop.run_until_complete(asyncio.wait(leftovers, timeout=STOP_TIMEOUT_S))
                for task in leftovers:
                    task.cancel()  # their trio callers then raise DatabaseClosed
                self.loop.run_until_complete(asyncio.wait(leftovers, timeout=1.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    async def call(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Run ``coro`` on the loop and return its result (or raise its exception).

        If the calling trio task is cancelled, the asyncio task is cancelled.
        Without ``discard`` the call raises :exc:`trio.Cancelled` at once; any
        late result is dropped, so use this only when ``coro`` cleans up after
        itself when cancelled. With ``discard`` (for a coroutine that hands
        back a resource, such as a connection in a transaction), the call
        waits for the asyncio task to settle; if it produced a result anyway,
        ``discard(result)`` runs on the loop before :exc:`trio.Cancelled` is
        raised, so the resource is never lost.

        A call made in an already cancelled scope does not start ``coro``.
        Raises :class:`DatabaseClosed` once the loop has stopped.
        """
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            coro.close()
            raise
        if self._stopped:
            coro.close()
            raise DatabaseClosed("the database is closed")
        pending = _Call(self.loop, self._trio_token, coro, waits_on_cancel=discard is not None)
        self.loop.call_soon_threadsafe(pending.start)
        await trio.lowlevel.wait_task_rescheduled(pending.abort)
        task = pending.asyncio_task
        assert task is not None
        if pending.raise_cancel is not None:  # cancelled in waiting mode
            if discard is not None and not task.cancelled() and task.exception() is None:
                with trio.CancelScope(shield=True):
                    await self.call(discard(task.result()))
            pending.raise_cancel()
        if task.cancelled():
            raise DatabaseClosed("the database closed while the call was running")
        return task.result()

    async def stop(self) -> None:
        """Stop the loop and wait (shielded, bounded) for its thread to end.

        Idempotent. Tasks still running on the loop get ``STOP_TIMEOUT_S`` to
        finish.
        """
        if self._stopped:
            return
        self._stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._thread.join, STOP_TIMEOUT_S * 2)
        if self._thread.is_alive():
            log.error("database.loop_thread_stuck", extra={"thread": self._thread.name})


class _Call:
    """One coroutine handed from a trio task to the asyncio loop.

    ``start`` and ``finished`` run in the asyncio thread; ``wake`` and
    ``abort`` run in the trio thread, so ``waiting`` needs no lock.
    """

    __slots__ = (
        "asyncio_task",
        "coro",
        "loop",
        "raise_cancel",
        "trio_task",
        "trio_token",
        "waiting",
        "waits_on_cancel",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        trio_token: trio.lowlevel.TrioToken,
        coro: Coroutine[Any, Any, Any],
        *,
        waits_on_cancel: bool,
    ) -> None:
        self.loop = loop
        self.trio_token = trio_token
        self.coro = coro
        self.trio_task = trio.lowlevel.current_task()
        self.asyncio_task: asyncio.Task[Any] | None = None
        self.waiting = True
        self.waits_on_cancel = waits_on_cancel
        self.raise_cancel: Callable[[], Any] | None = None

    def start(self) -> None:
        self.asyncio_task = self.loop.create_task(self.coro)
        self.asyncio_task.add_done_callback(self.finished)

    def finished(self, _task: asyncio.Task[Any]) -> None:
        try:
            self.trio_token.run_sync_soon(self.wake)
        except trio.RunFinishedError:
            pass  # the trio run is gone; nobody waits for this result

    def wake(self) -> None:
        if self.waiting:
            self.waiting = False
            trio.lowlevel.reschedule(self.trio_task, outcome.Value(None))

    def abort(self, raise_cancel: Callable[[], Any]) -> trio.lowlevel.Abort:
        # start() runs before this cancel in the loop: call_soon_threadsafe is FIFO.
        try:
            self.loop.call_soon_threadsafe(self._cancel)
        except RuntimeError:
            pass  # the loop is closed: the task has already finished or been cancelled
        if self.waits_on_cancel:
            self.raise_cancel = raise_cancel
            return trio.lowlevel.Abort.FAILED
        self.waiting = False
        return trio.lowlevel.Abort.SUCCEEDED

    def _cancel(self) -> None:
        if self.asyncio_task is not None:
            self.asyncio_task.cancel()


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.error(
        "database.asyncio_error",
        extra={"detail": context.get("message"), "error": repr(context.get("exception"))},
    )
