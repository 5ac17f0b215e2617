"""Run trio inside a textual App: trio's guest mode on the App's asyncio loop.

textual owns the event loop (asyncio). The client library is trio. Rather than
a second loop in a thread, trio runs as a *guest* of asyncio
(:func:`trio.lowlevel.start_guest_run`): its scheduler ticks as asyncio
callbacks on the same thread, so trio tasks and textual handlers never run at
the same instant and may touch the same Python objects.

::

    class Kiosk(TrioApp):
        async def trio_main(self) -> None:          # runs in trio, started on mount
            async with trio.open_nursery() as nursery:
                ...
                self.to_ui(self.show_status, "connected")  # a UI update from trio

        async def on_button_pressed(self) -> None:  # a textual handler (asyncio)
            reply = await self.run_trio(self.link.request, "catalog.list")

``run_trio`` passes positional arguments only: wrap keyword arguments with
``functools.partial(self.link.request, "order.get", order=order_id)``.

The guest run starts when the App mounts and is cancelled and awaited when it
unmounts. An exception escaping :meth:`TrioApp.trio_main` (or a task of the
bridge's nursery) is handed to textual's own unhandled-exception path: the App
exits showing it, and under ``App.run_test`` the pilot re-raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio
from textual.app import App

T = TypeVar("T")

__all__ = ["TrioApp", "TrioBridge", "TrioNotRunning"]


class TrioNotRunning(RuntimeError):
    """:meth:`TrioBridge.run` was called before the guest run started or after it ended."""


class TrioBridge:
    """A trio guest run on the running asyncio loop, with calls both ways.

    ``main`` is the trio coroutine function the run executes (inside a nursery
    that :meth:`run` also spawns into); ``on_error`` receives an exception that
    ended the run, once, on the asyncio side. Use from the asyncio thread only.
    """

    def __init__(
        self,
        main: Callable[[], Awaitable[None]],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._main = main
        self._on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._cancel_scope: trio.CancelScope | None = None
        self._ready = asyncio.Event()
        self._done: asyncio.Future[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        """True from the moment the run is ready for :meth:`run` until it ends."""
        return self._nursery is not None and self._done is not None and not self._done.done()

    async def start(self) -> None:
        """Start the guest run on the current asyncio loop; return once it can take calls."""
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        trio.lowlevel.start_guest_run(
            self._guest,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._loop.call_soon,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=False,
        )
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait([ready, self._done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()

    async def stop(self) -> None:
        """Cancel everything in the trio run and wait until it has ended."""
        if self._done is None:
            return
        self._stopping = True
        if self._token is not None and not self._done.done():
            try:
                self._token.run_sync_soon(self._cancel_scope.cancel)
            except trio.RunFinishedError:
                pass
        await asyncio.shield(self._done)

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the trio coroutine ``fn(*args)`` in the guest run and return its result.

        Call from asyncio (a textual handler or worker). ``fn``'s exception is
        raised here; cancelling the awaiting asyncio task cancels ``fn``; if
        the trio run ends first, this raises :class:`asyncio.CancelledError`.
        Called before the run is up (a handler that runs before the bridge's
        start, such as a subclass's ``on_mount``), it waits for it. Raises
        :class:`TrioNotRunning` once the run has ended.
        """
        if self._done is not None and not self.running:
            await self._wait_ready()
        if self._done is None:
            await self._ready.wait()
        if not self.running:
            raise TrioNotRunning("the trio run is not running")
        loop = self._loop
        future: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        async def call() -> None:
            with scope:
                try:
                    result = await fn(*args)
                except trio.Cancelled:
                    loop.call_soon(_cancel, future)
                    raise
                except BaseException as exc:
                    loop.call_soon(_fail, future, exc)
                    return
                loop.call_soon(_succeed, future, result)
                return
            loop.call_soon(_cancel, future)  # the scope was cancelled from asyncio

        def cancel_in_trio(done: asyncio.Future[T]) -> None:
            if done.cancelled() and self._token is not None:
                try:
                    self._token.run_sync_soon(scope.cancel)
                except trio.RunFinishedError:
                    pass

        future.add_done_callback(cancel_in_trio)
        self._token.run_sync_soon(self._nursery.start_soon, call)
        return await future

    def to_ui(self, fn: Callable[..., Any], *args: Any) -> None:
        """From trio: call ``fn(*args)`` on the asyncio side soon (for UI updates)."""
        self._loop.call_soon_threadsafe(fn, *args)

    async def _guest(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._cancel_scope:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._loop.call_soon(self._ready.set)
                await self._main()
                # main returned: the run stays up for run() calls until stop()
                await trio.sleep_forever()

    def _finished(self, result: outcome.Outcome) -> None:
        self._nursery = None
        error = result.error if isinstance(result, outcome.Error) else None
        if error is not None and not (self._stopping and _only_cancelled(error)):
            self._on_error(error)
        if not self._done.done():
            self._done.set_result(None)


def _only_cancelled(error: BaseException) -> bool:
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in error.exceptions)
    return False


def _succeed(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _cancel(future: asyncio.Future) -> None:
    if not future.done():
        future.cancel()


class TrioApp(App):
    """A textual App with a trio guest run for its whole mounted life.

    Override :meth:`trio_main` (runs in trio, started on mount). From textual
    handlers, ``await self.run_trio(fn, *args)`` runs a trio coroutine and
    returns its result; from trio, ``self.to_ui(fn, *args)`` calls ``fn`` on
    the textual side (where widgets may be changed). An exception escaping
    the trio run ends the App as any unhandled exception does.

    The run is started by this class's ``_on_mount`` and stopped by its
    ``_on_unmount``: a subclass uses ``on_mount`` / ``on_unmount`` (textual
    calls both), and must not define ``_on_mount`` or ``_on_unmount`` itself.
    A subclass's ``on_mount`` runs before the bridge's start; a
    :meth:`run_trio` awaited there waits until the run is up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trio = TrioBridge(self.trio_main, self._trio_failed)

    async def trio_main(self) -> None:
        """The App's trio side; started on mount, cancelled on unmount. Default: nothing."""

    async def run_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run the trio coroutine ``fn(*args)``, return its result (:meth:`TrioBridge.run`)."""
        return await self.trio.run(fn, *args)

    def to_ui(self, fn: Callable[..., Any], *args: Any) -> None:
        """From trio: run ``fn(*args)`` on the textual side soon."""
        self.trio.to_ui(fn, *args)

    async def _on_mount(self, event: Any) -> None:
        await self.trio.start()

    async def _on_unmount(self, event: Any) -> None:
        await self.trio.stop()

    def _trio_failed(self, error: BaseException) -> None:
        # textual's own path for an unhandled exception: exit showing it; run_test re-raises it
        if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        self._handle_exception(error)
