"""The actor runtime: one live actor per key, a bounded mailbox each, one message at a time.

A :class:`Registry` maps a key ``(kind, id)`` to a live actor, spawning it on
first use as a task in the registry's supervising nursery. :meth:`Registry.ask`
puts a command in the actor's mailbox and waits for the reply. Messages to one
key are handled strictly one at a time in arrival order; different keys run
concurrently.

An actor is anything with ``async load()`` (read its state from storage) and
``async handle(command)`` (decide, persist, reply). Failure handling:

- a :class:`~actors.errors.DomainError` raised by ``handle`` is a refusal: it
  goes to the asker unchanged and the actor carries on;
- any other exception is a crash: the asker gets ``internal``, the crash is
  logged, and the actor is replaced by a fresh instance that loads its state
  again before the next message (the server and other actors go on);
- an actor idle for ``idle_after_s`` (at once if its ``vacant`` attribute is
  true, as for an id that names nothing) is passivated (dropped from memory) and
  comes back, loaded from storage, on its next message.

Kinds named in ``inline_kinds`` keep the same guarantees without a task of
their own: the handler runs in the asker's task, under a fair lock per key
(for actors whose state lives elsewhere, such as tickets in the ticket book;
an ask then costs about 14 us instead of about 100 us for a new actor).

On shutdown the registry stops taking asks, lets each actor finish the
messages already in its mailbox within ``drain_timeout_s``, then cancels.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import outcome
import trio

from actors.errors import DomainError, Internal, Overloaded, Timeout

log = logging.getLogger("scenic.actors")

ActorKey = tuple[str, Hashable]


class Actor(Protocol):
    """What the registry needs of an actor."""

    async def load(self) -> None:
        """Read the actor's state from persistent storage."""

    async def handle(self, command: Any) -> Any:
        """Handle one command and return the reply; persist before returning."""


#: builds the actor for an id of its kind; it must not do I/O (``load`` does)
ActorFactory = Callable[[Any], Actor]


@attrs.frozen
class RegistryStats:
    """Counts of a registry since it opened, for monitoring."""

    live_actors: int
    mailbox_depth: int
    spawned: int
    restarts: int
    passivations: int
    live_by_kind: dict[str, int]
    #: commands waiting in mailboxes, by actor kind
    mailbox_by_kind: dict[str, int] = attrs.field(factory=dict)


class _Letter:
    """One command in a mailbox and the slot its reply goes to."""

    __slots__ = ("abandoned", "command", "done", "reply", "told")

    def __init__(self, command: Any) -> None:
        self.command = command
        self.done = trio.Event()
        self.reply: outcome.Outcome | None = None
        self.abandoned = False
        self.told = False


class _Cell:
    """A live actor: its instance and its mailbox."""

    __slots__ = ("actor", "key", "loaded", "receive", "send")

    def __init__(self, key: ActorKey, actor: Actor, mailbox_size: int) -> None:
        self.key = key
        self.actor = actor
        self.loaded = False
        self.send, self.receive = trio.open_memory_channel[_Letter](mailbox_size)


class _InlineCell:
    """An actor of an inline kind: its instance, and the lock its askers take turns on."""

    __slots__ = ("actor", "loaded", "lock", "waiting")

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self.loaded = False
        self.lock = trio.Lock()
        self.waiting = 0


class Registry:
    """Live actors by key.

    Made first and run after (:meth:`running`), so that what the actors need
    (and what needs to ask them) can be built with the registry in hand;
    :func:`open_registry` does both at once. Asked before it runs or after it
    stopped, it answers :class:`Overloaded`.
    """

    def __init__(
        self,
        *,
        mailbox_size: int,
        idle_after_s: float,
        inline_kinds: frozenset[str] = frozenset(),
    ) -> None:
        self._factories: dict[str, ActorFactory] = {}
        self._inline_kinds = frozenset(inline_kinds)
        self._inline: dict[ActorKey, _InlineCell] = {}
        self._nursery: trio.Nursery | None = None
        self._mailbox_size = mailbox_size
        self._idle_after_s = idle_after_s
        self._cells: dict[ActorKey, _Cell] = {}
        self._closing = True  # until running
        self._spawned = 0
        self._restarts = 0
        self._passivations = 0

    @asynccontextmanager
    async def running(
        self, factories: Mapping[str, ActorFactory], *, drain_timeout_s: float
    ) -> AsyncIterator[Registry]:
        """Host actors of the kinds in ``factories`` while the block runs, in a nursery of its own.

        On exit: no new asks, queued messages are handled within
        ``drain_timeout_s``, then whatever is left is cancelled. A registry runs once.
        """
        if self._nursery is not None:
            raise RuntimeError("a registry runs once")
        async with trio.open_nursery() as nursery:
            self._factories = dict(factories)
            self._nursery = nursery
            self._closing = False
            try:
                yield self
            finally:
                self._close()
                nursery.cancel_scope.deadline = trio.current_time() + drain_timeout_s

    async def ask(self, key: ActorKey, command: Any, timeout: float) -> Any:
        """Send ``command`` to the actor of ``key`` and return its reply.

        Raises the actor's :class:`DomainError` refusals unchanged,
        :class:`Internal` when it crashed, :class:`Timeout` when no reply came
        within ``timeout`` seconds (a command not yet started is then skipped;
        one already running completes), :class:`Overloaded` when its mailbox
        is full or the registry is shutting down, and ``KeyError`` for a kind
        without a factory.
        """
        if self._closing:
            raise Overloaded("the actors are not running (the server is starting or stopping)")
        if key[0] in self._inline_kinds:
            return await self._ask_inline(key, command, timeout)
        letter = _Letter(command)
        self._post(key, letter)
        try:
            with trio.fail_after(timeout):
                await letter.done.wait()
        except trio.TooSlowError:
            letter.abandoned = True
            raise Timeout(f"{key[0]} {key[1]} did not answer within {timeout:g}s") from None
        except BaseException:
            letter.abandoned = True
            raise
        assert letter.reply is not None
        return letter.reply.unwrap()

    async def _ask_inline(self, key: ActorKey, command: Any, timeout: float) -> Any:
        """An actor of an inline kind: its handler runs in the asker's task, one at a time.

        The same guarantees as a mailbox (commands for one key one at a time, in
        arrival order: trio's lock is fair; refusals passed on; a crash answers
        ``internal`` and the next command gets a fresh instance), without a task
        per actor: for kinds that keep no state of their own between commands
        (a ticket's state lives in the ticket book), so the cell is dropped as
        soon as nobody waits for it. If the asker is cancelled mid-command the
        command stops there; such actors must tolerate that (their stored
        state stays the truth).
        """
        cell = self._inline.get(key)
        if cell is None:
            cell = _InlineCell(self._factories[key[0]](key[1]))
            self._inline[key] = cell
            self._spawned += 1
        if cell.waiting >= self._mailbox_size:
            raise Overloaded(f"{key[0]} {key[1]} is busy; try again shortly")
        cell.waiting += 1
        try:
            try:
                with trio.fail_after(timeout):
                    await cell.lock.acquire()
            except trio.TooSlowError:
                raise Timeout(f"{key[0]} {key[1]} did not answer within {timeout:g}s") from None
            try:
                reply = await self._deliver(key, cell, command)
            finally:
                cell.lock.release()
        finally:
            cell.waiting -= 1
            if cell.waiting == 0 and self._inline.get(key) is cell:
                del self._inline[key]
        return reply.unwrap()

    def tell(self, key: ActorKey, command: Any) -> None:
        """Put ``command`` in the actor's mailbox and return at once, without a reply.

        For commands whose outcome nobody waits for; a refusal or crash is only
        logged. Raises :class:`Overloaded` when the mailbox is full or the
        registry is shutting down.
        """
        if self._closing:
            raise Overloaded("the actors are not running (the server is starting or stopping)")
        if key[0] in self._inline_kinds:
            raise TypeError(f"{key[0]} actors run inline: ask them")
        letter = _Letter(command)
        letter.told = True
        self._post(key, letter)

    def _post(self, key: ActorKey, letter: _Letter) -> None:
        try:
            self._cell(key).send.send_nowait(letter)
        except trio.WouldBlock:
            raise Overloaded(f"{key[0]} {key[1]} is busy; try again shortly") from None

    def is_live(self, key: ActorKey) -> bool:
        """True while the actor of ``key`` is in memory."""
        return key in self._cells or key in self._inline

    def stats(self) -> RegistryStats:
        """Live actors, queued messages and lifetime counters now."""
        cells = list(self._cells.values())
        inline = Counter(key[0] for key in self._inline)
        return RegistryStats(
            live_actors=len(cells) + len(self._inline),
            mailbox_depth=sum(c.receive.statistics().current_buffer_used for c in cells),
            spawned=self._spawned,
            restarts=self._restarts,
            passivations=self._passivations,
            live_by_kind=dict(Counter(c.key[0] for c in cells) + inline),
            mailbox_by_kind=_depth_by_kind(cells),
        )

    def _cell(self, key: ActorKey) -> _Cell:
        cell = self._cells.get(key)
        if cell is None:
            cell = _Cell(key, self._factories[key[0]](key[1]), self._mailbox_size)
            self._cells[key] = cell
            self._spawned += 1
            assert self._nursery is not None  # ask and tell refuse until running
            self._nursery.start_soon(self._live, cell, name=f"actor {key[0]}:{key[1]}")
        return cell

    async def _live(self, cell: _Cell) -> None:
        """Serve ``cell``'s mailbox until it is idle too long or the registry closes."""
        try:
            while True:
                letter = await self._next_letter(cell)
                if letter is None:
                    return
                try:
                    if not letter.abandoned:
                        letter.reply = await self._deliver(cell.key, cell, letter.command)
                        if letter.told and isinstance(letter.reply, outcome.Error):
                            log.warning(
                                "actor.told_failed",
                                extra={
                                    "actor_kind": cell.key[0],
                                    "actor_id": str(cell.key[1]),
                                    "error": repr(letter.reply.error)[:200],
                                },
                            )
                finally:
                    if letter.reply is None:  # skipped, or cancelled mid-way
                        letter.reply = outcome.Error(Overloaded("the server is shutting down"))
                    letter.done.set()
        finally:
            if self._cells.get(cell.key) is cell:
                del self._cells[cell.key]
            for letter in _drain_now(cell):  # only when cancelled: nobody will serve these
                letter.reply = outcome.Error(Overloaded("the server is shutting down"))
                letter.done.set()

    async def _next_letter(self, cell: _Cell) -> _Letter | None:
        idle_s = self._idle_after_s
        if cell.loaded and getattr(cell.actor, "vacant", False):
            idle_s = 0  # nothing behind this key (an unknown id): do not keep it in memory
        with trio.move_on_after(idle_s):
            try:
                return await cell.receive.receive()
            except trio.EndOfChannel:
                return None
        # Idle. No checkpoint between this check and the removal, so no ask can slip in.
        try:
            return cell.receive.receive_nowait()
        except trio.WouldBlock:
            del self._cells[cell.key]
            cell.send.close()
            self._passivations += 1
            return None
        except trio.EndOfChannel:
            return None

    async def _deliver(
        self, key: ActorKey, cell: _Cell | _InlineCell, command: Any
    ) -> outcome.Outcome:
        """Load if needed and handle ``command``; a crash replaces the actor instance."""
        try:
            if not cell.loaded:
                await cell.actor.load()
                cell.loaded = True
            return outcome.Value(await cell.actor.handle(command))
        except DomainError as refusal:
            return outcome.Error(refusal)
        except Exception:
            log.exception("actor.crashed", extra={"actor_kind": key[0], "actor_id": str(key[1])})
            cell.actor = self._factories[key[0]](key[1])
            cell.loaded = False
            self._restarts += 1
            return outcome.Error(Internal("internal error; the request was not completed"))

    def _close(self) -> None:
        self._closing = True
        for cell in self._cells.values():
            cell.send.close()


def _drain_now(cell: _Cell) -> list[_Letter]:
    letters = []
    while True:
        try:
            letters.append(cell.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return letters


@asynccontextmanager
async def open_registry(
    factories: Mapping[str, ActorFactory],
    *,
    mailbox_size: int,
    idle_after_s: float,
    drain_timeout_s: float,
    inline_kinds: frozenset[str] = frozenset(),
) -> AsyncIterator[Registry]:
    """A registry hosting ``factories``' kinds while the block runs (:meth:`Registry.running`)."""
    registry = Registry(
        mailbox_size=mailbox_size, idle_after_s=idle_after_s, inline_kinds=inline_kinds
    )
    async with registry.running(factories, drain_timeout_s=drain_timeout_s):
        yield registry


def _depth_by_kind(cells: list[_Cell]) -> dict[str, int]:
    """Commands waiting in the mailboxes of ``cells``, summed by actor kind."""
    depth: Counter[str] = Counter()
    for cell in cells:
        depth[cell.key[0]] += cell.receive.statistics().current_buffer_used
    return dict(depth)
