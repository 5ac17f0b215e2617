"""TicketActor: the one owner of a ticket's use; every scan of it passes through here.

When two gates scan the same code in the same millisecond, both scans reach
this actor and are decided one after the other: exactly one is granted. (The
registry runs ticket actors inline: each scan's task takes the ticket's fair
lock in turn, so a gate rush does not spawn a task per ticket.) The actor's
state lives in the :class:`~actors.tickets.book.TicketBook` (today's tickets
are loaded at start, so a scan does not wait on a database read). For each
command the actor feeds the pure :func:`~actors.tickets.domain.decide`,
evolves the ticket, hands the events and the ticket's change to its
:class:`TicketStore` (one group commit), keeps the stored state in the book,
hands what :func:`~actors.tickets.domain.react` asks for to its
:class:`AfterCommit` sink, and only then replies. A second server process's
change makes the write fail its version check (:class:`StaleTicket`); the
actor then reloads the ticket and decides again.

The shell knows no database and no server: :class:`TicketStore` and
:class:`AfterCommit` are the interfaces it needs, implemented in server/.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import attrs

from actors.tickets.book import TicketBook
from actors.tickets.domain import (
    Command,
    Effect,
    EntryGivenBack,
    Event,
    GiveBack,
    JournalEntry,
    ScanTicket,
    conflict_of,
    decide,
    evolve,
    react,
    verdict_of,
)
from actors.tickets.rules import TicketState, Verdict

log = logging.getLogger("scenic.actors.ticket")

#: how many times a scan is decided again on a reloaded ticket after a conflict
MAX_RELOADS = 3


class StaleTicket(Exception):
    """Another server process changed the ticket since it was read: reload and decide again."""


class TicketStore(Protocol):
    """What the ticket shell needs from storage; server/storage/ticket_store.py implements it.

    A write that changes a ticket names the version it was decided on
    (``changed.version``) and raises :class:`StaleTicket` when the stored
    ticket moved past it, writing nothing.
    """

    async def load(self, ticket_id: str) -> TicketState | None:
        """The ticket as stored, with its product's facts, or ``None`` if there is none."""

    async def commit_scan(self, events: Sequence[Event], changed: TicketState | None) -> int | None:
        """Record a scan's events, and the ticket's new use if ``changed``, in one group commit.

        Returns the ticket's new version (0 when the ticket is unchanged), or
        ``None`` when this gate sent this scan id before (nothing is written).
        """

    async def commit_give_back(self, event: EntryGivenBack, changed: TicketState) -> int | None:
        """Settle the scan as not passed and store the ticket's restored use, in one commit.

        Returns the ticket's new version, or ``None`` when the scan's passage
        was already settled (nothing is written).
        """

    async def stored_verdict(self, gate_id: str, scan_id: str) -> Verdict:
        """The verdict first recorded for this gate's scan ``scan_id``."""


class AfterCommit(Protocol):
    """Where a shell hands the effects of its committed events; server/gates.py implements it."""

    def carry_out(self, effects: Sequence[Effect]) -> None:
        """Start the effects (tell a gate, count a passage, flag a conflict) without waiting."""


@attrs.frozen
class ScanOutcome:
    """What a scan came to, as the gate is told."""

    verdict: Verdict
    #: the ticket the code names (``None`` for a forged code)
    ticket_id: str | None
    #: the scan id was recorded before: this is the stored verdict, nothing changed now
    repeated: bool = False
    #: for an offline admission the server would have refused: the reason it would give
    conflict: str | None = None


@attrs.frozen
class TicketEnvironment:
    """What ticket actors share: their storage, the warm book, and the after-commit sink."""

    store: TicketStore
    book: TicketBook
    outside: AfterCommit


class TicketActor:
    """Owns one ticket's use: decides each command, commits it, replies after commit."""

    def __init__(self, ticket_id: str, env: TicketEnvironment) -> None:
        self.ticket_id = ticket_id
        self.env = env

    async def load(self) -> None:
        """Nothing to do: the state lives in the ticket book and is read per command."""

    async def _state(self, fresh: bool) -> TicketState | None:
        state = None if fresh else self.env.book.get(self.ticket_id)
        if state is None:
            state = await self.env.store.load(self.ticket_id)
            if state is not None:
                self.env.book.put(state)
        return state

    async def handle(self, command: Command) -> ScanOutcome | None:
        """Decide and record a scan or a journal entry (a :class:`ScanOutcome`), or give back.

        A :class:`StaleTicket` from storage makes the actor reload the ticket
        and decide again, up to ``MAX_RELOADS`` times; then it is raised.
        """
        for attempt in range(MAX_RELOADS + 1):
            try:
                if isinstance(command, GiveBack):
                    return await self._give_back(command, fresh=attempt > 0)
                return await self._scan(command, fresh=attempt > 0)
            except StaleTicket:
                if attempt == MAX_RELOADS:
                    raise
                log.info("ticket.conflict_reload", extra={"ticket": self.ticket_id})
        raise AssertionError("unreachable")

    async def _scan(self, command: ScanTicket | JournalEntry, fresh: bool) -> ScanOutcome:
        state = await self._state(fresh)
        events = decide(state, command)
        after = state
        for event in events:
            after = evolve(after, event)
        changed = after if after is not state else None  # evolve keeps an unchanged ticket
        version = await self.env.store.commit_scan(events, changed)
        if version is None:  # this gate sent this scan id before
            scan = command if isinstance(command, ScanTicket) else command.scan
            verdict = await self.env.store.stored_verdict(scan.gate.gate_id, scan.scan_id)
            return ScanOutcome(verdict, self.ticket_id, repeated=True)
        if changed is not None:
            self.env.book.put(attrs.evolve(changed, version=version))
        self._after_commit(after, events)
        conflict = conflict_of(events)
        return ScanOutcome(
            verdict_of(events), self.ticket_id, conflict=None if conflict is None else conflict.kind
        )

    async def _give_back(self, command: GiveBack, fresh: bool) -> None:
        state = await self._state(fresh)
        for event in decide(state, command):
            after = evolve(state, event)
            assert isinstance(event, EntryGivenBack) and after is not None
            version = await self.env.store.commit_give_back(event, after)
            if version is not None:
                self.env.book.put(attrs.evolve(after, version=version))
        return None

    def _after_commit(self, after: TicketState | None, events: list[Event]) -> None:
        effects = [effect for event in events for effect in react(after, event)]
        if effects:
            self.env.outside.carry_out(effects)
