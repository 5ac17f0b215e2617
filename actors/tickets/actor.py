"""TicketActor: the one owner of a ticket's use; every scan of it passes through here.

When two gates scan the same code in the same millisecond, both scans reach
this actor and are decided one after the other: exactly one is granted. (The
registry runs ticket actors inline: each scan's task takes the ticket's fair
lock in turn, so a gate rush does not spawn a task per ticket.) The actor's
state lives in the server's :class:`TicketBook` (today's tickets are loaded
at start, so a scan does not wait on a database read);
the actor decides with the pure :mod:`actors.tickets.rules`, records the scan
and the ticket's new use in one statement through group commit, and replies
only after the commit. A second server process's change makes the write
fail its version check; the actor then reloads the ticket and decides again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

import attrs

from actors.tickets.rules import GateView, ScanMoment, TicketState, Verdict, decide_scan
from server.storage.tickets import (
    SCAN_WRITER,
    ScanRecord,
    StaleTicket,
    TicketChange,
    TicketRecord,
    give_back_entry,
    load_ticket,
    record_scan_and_conflict,
    stored_verdict,
)

log = logging.getLogger("scenic.actors.ticket")

#: how many times a scan is decided again on a reloaded ticket after a conflict
MAX_RELOADS = 3


@attrs.frozen
class ScanTicket:
    """A gate scanned this ticket (online, or merged from an offline gate's journal)."""

    gate: GateView
    scan_id: str
    direction: str
    at: datetime
    recorded_at: datetime
    moment: ScanMoment
    code_hint: str | None = None
    #: set for an entry of an offline gate's journal: what that gate decided
    offline: OfflineDecision | None = None


@attrs.frozen
class OfflineDecision:
    """What a gate decided while it could not reach the server, from its journal."""

    granted: bool
    reason: str
    passed: bool | None


@attrs.frozen
class GiveBack:
    """The visitor of a granted scan did not walk through: restore the ticket."""

    gate_id: str
    scan_id: str
    consumed: bool
    was_inside: bool
    at: datetime


@attrs.frozen
class ScanOutcome:
    """What a scan came to, as the gate is told."""

    verdict: Verdict
    #: the ticket the code names (``None`` for a forged code)
    ticket_id: str | None
    was_inside: bool = False
    #: the scan id was recorded before: this is the stored verdict, nothing changed now
    repeated: bool = False
    #: for an offline admission the server would have refused: the reason it would give
    conflict: str | None = None


@attrs.frozen
class TicketEnvironment:
    """What ticket actors share."""

    run: Callable[..., Awaitable]  # Database.run
    submit: Callable[..., Awaitable]  # GroupCommitter.submit
    submit_bulk: Callable[..., Awaitable]  # GroupCommitter.submit_bulk
    #: the warm copy of tickets: get(ticket_id) -> TicketState | None, put(state)
    book: TicketBookLike
    #: a stored ticket with its product's facts from the catalog
    state_of: Callable[[TicketRecord], TicketState]


class TicketBookLike:
    """The interface of the server's ticket book (see :class:`server.gates.TicketBook`)."""

    def get(self, ticket_id: str) -> TicketState | None:  # pragma: no cover - interface
        """The warm state of a ticket, or ``None`` if it is not in memory."""
        raise NotImplementedError

    def put(self, state: TicketState) -> None:  # pragma: no cover - interface
        """Keep ``state`` as the ticket's warm state."""
        raise NotImplementedError


class TicketActor:
    """Owns one ticket's use: decides each scan, records it, replies after commit."""

    def __init__(self, ticket_id: str, env: TicketEnvironment) -> None:
        self.ticket_id = ticket_id
        self.env = env

    async def load(self) -> None:
        """Nothing to do: the state lives in the ticket book and is read per command."""

    async def _state(self, fresh: bool = False) -> TicketState | None:
        state = None if fresh else self.env.book.get(self.ticket_id)
        if state is None:
            record = await self.env.run(load_ticket, self.ticket_id)
            if record is None:
                return None
            state = self.env.state_of(record)
            self.env.book.put(state)
        return state

    async def handle(self, command: ScanTicket | GiveBack) -> ScanOutcome | None:
        """Decide and record a scan, or give an entry back."""
        for attempt in range(MAX_RELOADS + 1):
            try:
                if isinstance(command, ScanTicket):
                    return await self._scan(command, fresh=attempt > 0)
                return await self._give_back(command, fresh=attempt > 0)
            except StaleTicket:
                if attempt == MAX_RELOADS:
                    raise
                log.info("ticket.conflict_reload", extra={"ticket": self.ticket_id})
        raise AssertionError("unreachable")

    async def _scan(self, scan: ScanTicket, fresh: bool) -> ScanOutcome:
        state = await self._state(fresh)
        verdict, after = decide_scan(state, scan.gate, scan.direction, scan.moment)
        conflict = None
        if scan.offline is not None:
            verdict, after, conflict = _merge_offline(scan.offline, verdict, state, after)
        record = ScanRecord(
            scan.gate.gate_id,
            scan.scan_id,
            None if state is None else self.ticket_id,
            scan.gate.zone,
            scan.direction,
            scan.at,
            scan.recorded_at,
            verdict.granted,
            verdict.reason,
            verdict.entries_left,
            verdict.consumed,
            offline=scan.offline is not None,
            passed=None if scan.offline is None else scan.offline.passed,
            code_hint=scan.code_hint,
        )
        change = None
        if state is not None and after is not None and after != state:
            change = TicketChange(self.ticket_id, after.entries_used, after.inside, state.version)
        if conflict is None:
            version = await self.env.submit_bulk(SCAN_WRITER, (record, change))
        else:  # rare (merging an offline journal): the conflict row goes in the same write;
            # the ticket is left as it was, so there is no change to record
            version = await self.env.submit(
                partial(_record_conflict, record, conflict, conflict_detail(conflict))
            )
        if version is None:  # this gate sent this scan id before
            stored = await self.env.run(stored_verdict, scan.gate.gate_id, scan.scan_id)
            repeat = Verdict(stored.granted, stored.reason, stored.entries_left, stored.consumed)
            return ScanOutcome(repeat, self.ticket_id, repeated=True)
        if change is not None:
            self.env.book.put(attrs.evolve(after, version=version))
        return ScanOutcome(
            verdict,
            self.ticket_id,
            was_inside=state.inside if state is not None else False,
            conflict=conflict,
        )

    async def _give_back(self, command: GiveBack, fresh: bool) -> None:
        state = await self._state(fresh)
        if state is None:
            return None
        used = max(state.entries_used - (1 if command.consumed else 0), 0)
        change = TicketChange(self.ticket_id, used, command.was_inside, state.version)
        version = await self.env.submit(
            partial(_give_back, command.gate_id, command.scan_id, change, command.at)
        )
        if version is not None:
            self.env.book.put(
                attrs.evolve(state, entries_used=used, inside=command.was_inside, version=version)
            )
        return None


def conflict_detail(kind: str, why: str | None = None) -> str:
    """The text a conflict is recorded with (``gate.conflicts`` shows it)."""
    detail = f"admitted offline; the server would have refused: {kind}"
    return detail if why is None else f"{detail} ({why})"


def _merge_offline(
    offline: OfflineDecision,
    verdict: Verdict,
    state: TicketState | None,
    after: TicketState | None,
) -> tuple[Verdict, TicketState | None, str | None]:
    """What a journal entry changes: what happened stands; the ticket is never overdrawn.

    Returns the verdict to record, the ticket after it, and the reason the
    server would have refused an admission that happened anyway (a conflict).
    """
    if not offline.granted:
        return Verdict(False, offline.reason, verdict.entries_left), state, None
    if offline.passed is False:  # let through, but nobody walked: nothing used
        return Verdict(True, "ok", verdict.entries_left), state, None
    if verdict.granted:
        return verdict, after, None
    return Verdict(True, "ok", verdict.entries_left), state, verdict.reason


def merge_offline_forged(offline: OfflineDecision) -> tuple[Verdict, str | None]:
    """What a journal entry for a code this site did not make comes to.

    It is recorded as the gate decided. A gate that let a forged code
    through is a conflict (``forged``) whether or not the visitor walked
    through: its offline check accepted a code it should have refused.
    Returns the verdict to record and the conflict, if any.
    """
    if not offline.granted:
        return Verdict(False, offline.reason, None), None
    return Verdict(True, "ok", None), "forged"


async def _record_conflict(record: ScanRecord, kind: str, detail: str, conn) -> int | None:
    return 0 if await record_scan_and_conflict(conn, record, kind, detail) else None


async def _give_back(gate_id: str, scan_id: str, change: TicketChange, at: datetime, conn):
    return await give_back_entry(conn, gate_id, scan_id, change, at)
