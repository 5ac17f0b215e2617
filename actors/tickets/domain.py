"""The ticket as a pure state machine: scans and give-backs in, events out, no I/O.

A ticket's state (:class:`~actors.tickets.rules.TicketState`) is what it
entitles and its use so far. Three commands reach it: a gate scanned it
(:class:`ScanTicket`), an offline gate's journal says what that gate decided
alone (:class:`JournalEntry`), and the visitor of a granted scan did not walk
through (:class:`GiveBack`). :func:`decide` judges a command with the entry
rules of :mod:`actors.tickets.rules` and says what happened
(:class:`ScanGranted`, :class:`ScanRefused`, :class:`OfflineConflict`,
:class:`EntryGivenBack`); :func:`evolve` applies an event to the ticket
through the two rules of its use, :func:`use_after` (a granted scan) and
:func:`give_back` (a passage nobody made); :func:`react` says what the
outside must hear once an event is committed, as data the shell carries out
(:class:`AwaitPassage` at the gate, :class:`CountPassage` for occupancy,
:class:`FlagConflict`). An offline journal is merged by
:func:`merge_offline` (and :func:`merge_offline_forged` for a code this site
did not make): what happened stands, the ticket is never overdrawn, an
admission the server would have refused is a conflict.

The offline gate agent (:mod:`devices.offline`) keeps its own admissions
with the same :func:`use_after` and :func:`give_back`. Neither function nor
:func:`decide` reads a clock: times come in with the command.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from actors.tickets.rules import (
    GateView,
    ScanMoment,
    TicketState,
    Use,
    Verdict,
    judge_scan,
)

# --- commands ------------------------------------------------------------


@attrs.frozen
class ScanTicket:
    """A gate scanned a code naming this ticket (``gate`` carries the gate's mode now)."""

    gate: GateView
    scan_id: str
    direction: str
    at: datetime
    recorded_at: datetime
    moment: ScanMoment
    #: the first characters of the code, kept with the scan
    code_hint: str | None = None


@attrs.frozen
class OfflineDecision:
    """What a gate decided while it could not reach the server, from its journal."""

    granted: bool
    reason: str
    #: whether the visitor walked through (``None``: the gate does not know)
    passed: bool | None


@attrs.frozen
class JournalEntry:
    """An entry of an offline gate's journal: the scan, and what the gate decided alone."""

    scan: ScanTicket
    decision: OfflineDecision


@attrs.frozen
class GiveBack:
    """The visitor of a granted scan did not walk through: restore the ticket."""

    gate_id: str
    scan_id: str
    #: the grant used up an entry
    consumed: bool
    #: whether the ticket was inside before the grant
    was_inside: bool
    at: datetime


Command = ScanTicket | JournalEntry | GiveBack

# --- events --------------------------------------------------------------


@attrs.frozen
class ScanGranted:
    """A scan is granted: its verdict says what it does to the ticket once walked through.

    For a journal entry, ``offline`` is what the gate decided and ``verdict``
    what is recorded (an offline grant nobody walked through uses nothing).
    """

    scan: ScanTicket
    offline: OfflineDecision | None
    #: the ticket, or ``None`` when the code names none (free passage, or a forged code)
    ticket_id: str | None
    verdict: Verdict
    #: whether the ticket was inside before this scan (a give-back restores it)
    was_inside: bool


@attrs.frozen
class ScanRefused:
    """A scan is refused (``verdict.reason`` says why); the ticket is unchanged."""

    scan: ScanTicket
    offline: OfflineDecision | None
    ticket_id: str | None
    verdict: Verdict


@attrs.frozen
class OfflineConflict:
    """An offline gate admitted what the server would have refused; ``kind`` is that reason."""

    gate_id: str
    scan_id: str
    ticket_id: str | None
    kind: str
    #: for people (``gate.conflicts`` shows it)
    detail: str


@attrs.frozen
class EntryGivenBack:
    """A granted passage nobody made: the entry it used is back, and the ticket where it was."""

    ticket_id: str
    gate_id: str
    scan_id: str
    consumed: bool
    was_inside: bool
    at: datetime


Event = ScanGranted | ScanRefused | OfflineConflict | EntryGivenBack

# --- effects -------------------------------------------------------------


@attrs.frozen
class AwaitPassage:
    """Tell the gate to wait for the visitor of this grant to walk through (or not)."""

    gate_id: str
    scan_id: str
    ticket_id: str | None
    direction: str
    consumed: bool
    was_inside: bool


@attrs.frozen
class CountPassage:
    """A visitor walked into (or out of) ``zone``: count it in the zone's occupancy."""

    zone: str
    direction: str


@attrs.frozen
class FlagConflict:
    """Say that an offline admission is a conflict (it is stored with its scan)."""

    gate_id: str
    scan_id: str
    ticket_id: str | None
    kind: str


Effect = AwaitPassage | CountPassage | FlagConflict

# --- the ticket's use ------------------------------------------------------


def use_after(use: Use, verdict: Verdict) -> Use:
    """A ticket's use after a scan with ``verdict`` whose visitor walked through.

    An entry that consumed uses one and is inside; an exit is no longer
    inside; anything else (a refusal, free passage, an offline grant that
    stands without using anything) changes nothing.
    """
    if verdict.consumed:
        return Use(use.entries_used + 1, True)
    if verdict.leaves and use.inside:
        return Use(use.entries_used, False)
    return use


def give_back(use: Use, consumed: bool, was_inside: bool) -> Use:
    """A ticket's use after a granted passage its visitor never made.

    The entry the grant ``consumed`` is back (never below zero), and the
    ticket is where it was before the grant (``was_inside``): an entry
    nobody made leaves the visitor outside, an exit nobody made leaves them
    inside, so anti-passback still asks them to leave before entering again.
    """
    used = use.entries_used - 1 if consumed else use.entries_used
    return Use(max(used, 0), was_inside)


def _with_use(ticket: TicketState, use: Use) -> TicketState:
    if use.entries_used == ticket.entries_used and use.inside == ticket.inside:
        return ticket
    return attrs.evolve(ticket, entries_used=use.entries_used, inside=use.inside)


def decide_scan(
    ticket: TicketState | None, gate: GateView, direction: str, moment: ScanMoment
) -> tuple[Verdict, TicketState | None]:
    """May this ticket pass this gate now, and what is its state once its visitor walked through?

    :func:`~actors.tickets.rules.judge_scan` and :func:`use_after`, as
    :func:`decide` and :func:`evolve` apply them to a scan.
    """
    verdict = judge_scan(ticket, gate, direction, moment)
    if ticket is None:
        return verdict, None
    return verdict, _with_use(ticket, use_after(ticket.use, verdict))


# --- merging an offline journal ----------------------------------------------


def merge_offline(decision: OfflineDecision, judged: Verdict) -> tuple[Verdict, str | None]:
    """What a journal entry for a ticket comes to: the verdict to record, and the conflict.

    ``judged`` is what the server decides for the same scan now (as a gate in
    normal mode). What happened stands and the ticket is never overdrawn: a
    refusal is recorded as the gate gave it; a grant nobody walked through
    (``passed`` false) uses nothing; a grant the server would also make uses
    what it uses; a grant the server would refuse is recorded as granted,
    uses nothing, and is a conflict whose kind is the server's reason.
    """
    if not decision.granted:
        return Verdict(False, decision.reason, judged.entries_left), None
    if decision.passed is False:  # let through, but nobody walked: nothing used
        return Verdict(True, "ok", judged.entries_left), None
    if judged.granted:
        return judged, None
    return Verdict(True, "ok", judged.entries_left), judged.reason


def merge_offline_forged(decision: OfflineDecision) -> tuple[Verdict, str | None]:
    """What a journal entry for a code this site did not make comes to.

    It is recorded as the gate decided. A gate that let a forged code
    through is a conflict (``forged``) whether or not the visitor walked
    through: its offline check accepted a code it should have refused.
    Returns the verdict to record and the conflict, if any.
    """
    if not decision.granted:
        return Verdict(False, decision.reason, None), None
    return Verdict(True, "ok", None), "forged"


def conflict_detail(kind: str, why: str | None = None) -> str:
    """The text a conflict is recorded with (``gate.conflicts`` shows it)."""
    detail = f"admitted offline; the server would have refused: {kind}"
    return detail if why is None else f"{detail} ({why})"


def scan_events(
    scan: ScanTicket,
    offline: OfflineDecision | None,
    ticket: TicketState | None,
    verdict: Verdict,
    conflict: str | None = None,
    why: str | None = None,
) -> list[Event]:
    """The events of a scan with ``verdict`` (and the offline ``conflict``, if any).

    Shared by this module's :func:`decide` and the gate's, which records
    scans of forged codes; ``why`` says what is wrong with such a code.
    """
    ticket_id = None if ticket is None else ticket.ticket_id
    events: list[Event]
    if verdict.granted:
        inside = ticket is not None and ticket.inside
        events = [ScanGranted(scan, offline, ticket_id, verdict, inside)]
    else:
        events = [ScanRefused(scan, offline, ticket_id, verdict)]
    if conflict is not None:
        detail = conflict_detail(conflict, why)
        events.append(OfflineConflict(scan.gate.gate_id, scan.scan_id, ticket_id, conflict, detail))
    return events


def in_normal_mode(gate: GateView) -> GateView:
    """The gate as a journal entry is judged: in normal mode, whatever its mode now.

    The server does not know which mode an offline gate was in, and what
    the gate did is in the entry.
    """
    return gate if gate.mode == "normal" else attrs.evolve(gate, mode="normal")


# --- decide, evolve, react -----------------------------------------------------


def decide(ticket: TicketState | None, command: Command) -> list[Event]:
    """What ``command`` means for this ticket (``None``: the code names no stored ticket).

    A scan is granted or refused by the entry rules; a journal entry is
    merged (:func:`merge_offline`); a give-back of a ticket that does not
    exist is nothing. Raises ``ValueError`` for a direction or mode the
    rules do not know.
    """
    if isinstance(command, ScanTicket):
        verdict = judge_scan(ticket, command.gate, command.direction, command.moment)
        return scan_events(command, None, ticket, verdict)
    if isinstance(command, JournalEntry):
        scan = command.scan
        judged = judge_scan(ticket, in_normal_mode(scan.gate), scan.direction, scan.moment)
        verdict, conflict = merge_offline(command.decision, judged)
        return scan_events(scan, command.decision, ticket, verdict, conflict)
    if isinstance(command, GiveBack):
        if ticket is None:
            return []
        return [
            EntryGivenBack(
                ticket.ticket_id,
                command.gate_id,
                command.scan_id,
                command.consumed,
                command.was_inside,
                command.at,
            )
        ]
    raise TypeError(f"not a ticket command: {command!r}")


def evolve(ticket: TicketState | None, event: Event) -> TicketState | None:
    """The ticket after ``event``; ``ticket`` itself when the event changes nothing.

    Its ``version`` is the shell's to bump once the change is stored.
    """
    if ticket is None:
        return None
    if isinstance(event, ScanGranted):
        return _with_use(ticket, use_after(ticket.use, event.verdict))
    if isinstance(event, EntryGivenBack):
        return _with_use(ticket, give_back(ticket.use, event.consumed, event.was_inside))
    return ticket


def react(ticket: TicketState | None, event: Event) -> list[Effect]:
    """What the outside world must hear once ``event`` is committed.

    An online grant: the gate waits for its passage. A journal's grant whose
    visitor walked through: the zone counts it. A conflict: it is flagged.
    """
    if isinstance(event, ScanGranted):
        return scan_effects(event)
    if isinstance(event, OfflineConflict):
        return [FlagConflict(event.gate_id, event.scan_id, event.ticket_id, event.kind)]
    return []


def scan_effects(event: ScanGranted) -> list[Effect]:
    """The effects of a granted scan (of a ticket, or of a code that names none)."""
    scan = event.scan
    if event.offline is None:
        return [
            AwaitPassage(
                scan.gate.gate_id,
                scan.scan_id,
                event.ticket_id,
                scan.direction,
                event.verdict.consumed,
                event.was_inside,
            )
        ]
    if event.offline.passed:
        return [CountPassage(scan.gate.zone, scan.direction)]
    return []


def verdict_of(events: list[Event]) -> Verdict:
    """The verdict of a scan's events (what the gate is told)."""
    for event in events:
        if isinstance(event, ScanGranted | ScanRefused):
            return event.verdict
    raise ValueError("no scan among these events")


def conflict_of(events: list[Event]) -> OfflineConflict | None:
    """The offline conflict among a scan's events, if any."""
    for event in events:
        if isinstance(event, OfflineConflict):
            return event
    return None
