"""The ticket and gate shells' storage: their interfaces implemented on PostgreSQL.

:class:`TicketRecords` is the :class:`~actors.tickets.actor.TicketStore` and
:class:`GateRecords` the :class:`~actors.gates.actor.GateStore`: events in,
rows out. A scan's events become one ``scans`` row (:func:`scan_row`), the
ticket's new use a :class:`~server.storage.tickets.TicketChange` checked
against the version it was decided on; the hot writes (scans, passages) go
through group commit's bulk writers, :data:`~server.storage.tickets.SCAN_WRITER`
and :data:`~server.storage.tickets.PASSAGE_WRITER`; the rare ones (an offline
conflict with its scan, a give-back, a mode) as one write each in a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from actors.gates.domain import ModeSet, RecordPassage
from actors.tickets.domain import (
    EntryGivenBack,
    Event,
    OfflineConflict,
    ScanGranted,
    ScanRefused,
)
from actors.tickets.rules import TicketState, Verdict
from server.storage.database import Database
from server.storage.group_commit import GroupCommitter
from server.storage.tickets import (
    PASSAGE_WRITER,
    SCAN_WRITER,
    ScanRecord,
    TicketChange,
    TicketRecord,
    give_back_entry,
    load_ticket,
    record_scan_and_conflict,
    set_gate_mode,
    stored_verdict,
)


def scan_row(events: Sequence[Event]) -> tuple[ScanRecord, OfflineConflict | None]:
    """The ``scans`` row of a scan's events, and the offline conflict to store with it."""
    scanned = conflict = None
    for event in events:
        if isinstance(event, ScanGranted | ScanRefused):
            scanned = event
        elif isinstance(event, OfflineConflict):
            conflict = event
    if scanned is None:
        raise ValueError("no scan among these events")
    scan, verdict, offline = scanned.scan, scanned.verdict, scanned.offline
    record = ScanRecord(
        scan.gate.gate_id,
        scan.scan_id,
        scanned.ticket_id,
        scan.gate.zone,
        scan.direction,
        scan.at,
        scan.recorded_at,
        verdict.granted,
        verdict.reason,
        verdict.entries_left,
        verdict.consumed,
        offline=offline is not None,
        passed=None if offline is None else offline.passed,
        code_hint=scan.code_hint,
    )
    return record, conflict


def _change(ticket: TicketState) -> TicketChange:
    return TicketChange(ticket.ticket_id, ticket.entries_used, ticket.inside, ticket.version)


async def _stored_verdict(db: Database, gate_id: str, scan_id: str) -> Verdict:
    stored = await db.run(stored_verdict, gate_id, scan_id)
    return Verdict(stored.granted, stored.reason, stored.entries_left, stored.consumed)


async def _record_with_conflict(
    committer: GroupCommitter, record: ScanRecord, conflict: OfflineConflict
) -> bool:
    return await committer.submit(
        partial(record_scan_and_conflict, scan=record, kind=conflict.kind, detail=conflict.detail)
    )


class TicketRecords:
    """The ticket shell's storage (:class:`~actors.tickets.actor.TicketStore`)."""

    def __init__(
        self,
        db: Database,
        committer: GroupCommitter,
        state_of: Callable[[TicketRecord], TicketState],
    ) -> None:
        self._db = db
        self._committer = committer
        #: a stored ticket with its product's facts from the catalog
        self._state_of = state_of

    async def load(self, ticket_id: str) -> TicketState | None:
        """The ticket as stored, with its product's facts, or ``None``."""
        record = await self._db.run(load_ticket, ticket_id)
        return None if record is None else self._state_of(record)

    async def commit_scan(self, events: Sequence[Event], changed: TicketState | None) -> int | None:
        """Record the scan (and the ticket's change); see the interface."""
        record, conflict = scan_row(events)
        if conflict is None:
            change = None if changed is None else _change(changed)
            return await self._committer.submit_bulk(SCAN_WRITER, (record, change))
        # Rare (merging an offline journal): the conflict row goes in the same write;
        # the ticket is left as it was, so there is no change to record.
        if changed is not None:
            raise ValueError("an offline conflict leaves the ticket as it was")
        return 0 if await _record_with_conflict(self._committer, record, conflict) else None

    async def commit_give_back(self, event: EntryGivenBack, changed: TicketState) -> int | None:
        """Settle the scan as not passed and restore the ticket; see the interface."""
        write = partial(
            give_back_entry,
            gate_id=event.gate_id,
            scan_id=event.scan_id,
            change=_change(changed),
            at=event.at,
        )
        return await self._committer.submit(write)

    async def stored_verdict(self, gate_id: str, scan_id: str) -> Verdict:
        """The verdict first recorded for this gate's scan."""
        return await _stored_verdict(self._db, gate_id, scan_id)


class GateRecords:
    """The gate shell's storage (:class:`~actors.gates.actor.GateStore`)."""

    def __init__(self, db: Database, committer: GroupCommitter) -> None:
        self._db = db
        self._committer = committer

    async def store_mode(self, event: ModeSet) -> None:
        """Store the gate's mode."""
        await self._committer.submit(
            partial(set_gate_mode, gate_id=event.gate_id, mode=event.mode, by=event.by, at=event.at)
        )

    async def record_passage(self, effect: RecordPassage) -> tuple[str, str] | None:
        """Settle a passage; the scan's ``(zone, direction)``, or ``None``."""
        item = (effect.gate_id, effect.scan_id, effect.passed, effect.at)
        return await self._committer.submit_bulk(PASSAGE_WRITER, item)

    async def record_forged_scan(self, events: Sequence[Event]) -> bool:
        """Record a forged code's scan (and its conflict); False for a scan id seen before."""
        record, conflict = scan_row(events)
        if conflict is None:
            return await self._committer.submit_bulk(SCAN_WRITER, (record, None)) is not None
        return await _record_with_conflict(self._committer, record, conflict)

    async def stored_verdict(self, gate_id: str, scan_id: str) -> Verdict:
        """The verdict first recorded for this gate's scan."""
        return await _stored_verdict(self._db, gate_id, scan_id)
