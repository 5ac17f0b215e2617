"""The gate as a pure state machine: passages it waits for, modes, forged codes, occupancy.

A grant opens the turnstile; the gate then reports whether the visitor
walked through. A gate's state (:class:`Gate`) is the grants whose passage it
waits for. Its commands: expect the passage of a grant
(:class:`ExpectPassage`), the turnstile's report (:class:`Passage`), nobody
reported it in time (:class:`PassageTimedOut`), an admin sets the mode
(:class:`SetMode`), and a scan of a code this site did not make
(:class:`ScanForgedCode`: it names no ticket, so the gate records it).
:func:`decide` says what happened, :func:`evolve` applies it, :func:`react`
says what the outside must do once it is committed, as data:

- a passage reported, or nobody reported it in time, is recorded as walked
  through (:class:`RecordPassage`) and counts toward its zone's occupancy: an
  entry wrongly kept costs a word with staff, one wrongly given back admits
  a second person;
- a reported non-passage gives the entry back to the ticket, through the
  ticket's own actor (:class:`GiveBackEntry`), or, for a grant that used no
  ticket, is recorded as not passed;
- a mode is stored, then announced (:class:`AnnounceMode`): kept where every
  scan reads it, pushed to the gate, told to the other server processes.

The mode every scan is judged by is not in :class:`Gate`: each scan reads it
where the server keeps it, without a round trip through this gate's actor,
and carries it in its :class:`~actors.tickets.rules.GateView`; the rule of
what a mode does is :func:`~actors.tickets.rules.verdict_by_mode`.

Occupancy is a pure value per zone (:class:`Occupancy`, :func:`counted`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs

from actors.tickets import domain as tickets
from actors.tickets.domain import GiveBack, JournalEntry, ScanTicket
from actors.tickets.rules import MODES, verdict_without_ticket

# --- commands ------------------------------------------------------------


@attrs.frozen
class ExpectPassage:
    """A scan was granted: wait for the visitor to walk through, until ``deadline``."""

    scan_id: str
    #: the ticket whose entry a non-passage gives back (``None``: the grant used no ticket)
    ticket_id: str | None
    direction: str
    consumed: bool
    was_inside: bool
    deadline: float  # trio time


@attrs.frozen
class Passage:
    """The turnstile reports whether the visitor of ``scan_id`` walked through."""

    scan_id: str
    passed: bool
    at: datetime


@attrs.frozen
class PassageTimedOut:
    """Nobody reported the passage of ``scan_id`` in time."""

    scan_id: str
    at: datetime


@attrs.frozen
class SetMode:
    """An admin sets the gate's mode (one of :data:`~actors.tickets.rules.MODES`)."""

    mode: str
    by: str
    at: datetime


@attrs.frozen
class ScanForgedCode:
    """A scan (online, or a journal entry) of a code this site did not make."""

    command: ScanTicket | JournalEntry
    #: what is wrong with the code (kept with a conflict)
    why: str


Command = ExpectPassage | Passage | PassageTimedOut | SetMode | ScanForgedCode

# --- events --------------------------------------------------------------


@attrs.frozen
class PassageExpected:
    """The gate waits for the passage of a grant."""

    gate_id: str
    expected: ExpectPassage


@attrs.frozen
class PassageSettled:
    """How a granted scan ended: walked through (``passed``) or not."""

    gate_id: str
    scan_id: str
    passed: bool
    at: datetime
    #: what the grant was, if this gate still knew (not after a restart)
    expected: ExpectPassage | None
    #: nobody reported the passage in time: it counts as walked through
    timed_out: bool = False


@attrs.frozen
class ModeSet:
    """The gate's mode is now ``mode``."""

    gate_id: str
    mode: str
    by: str
    at: datetime


Event = PassageExpected | PassageSettled | ModeSet | tickets.Event

# --- effects -------------------------------------------------------------


@attrs.frozen
class WatchPassage:
    """Time out the passage of ``scan_id`` at trio time ``deadline``."""

    gate_id: str
    scan_id: str
    deadline: float


@attrs.frozen
class RecordPassage:
    """Record the passage of ``scan_id`` (then count it, when it passed)."""

    gate_id: str
    scan_id: str
    passed: bool
    at: datetime


@attrs.frozen
class GiveBackEntry:
    """Give the entry of a grant nobody walked through back, through the ticket's actor."""

    ticket_id: str
    command: GiveBack


@attrs.frozen
class AnnounceMode:
    """Keep the gate's new mode where scans read it, push it to the gate, tell the others."""

    gate_id: str
    mode: str


Effect = WatchPassage | RecordPassage | GiveBackEntry | AnnounceMode | tickets.Effect

# --- state ---------------------------------------------------------------


@attrs.frozen
class Gate:
    """One gate: the grants whose passage it waits for, by scan id."""

    gate_id: str
    pending: Mapping[str, ExpectPassage] = attrs.field(factory=dict)


def decide(gate: Gate, command: Command) -> list[Event]:
    """What ``command`` means for this gate.

    A report settles a passage whether or not the gate still waits for it
    (storage knows whether it was settled before); a timeout settles only a
    passage still awaited. Raises ``ValueError`` for a mode that is not one
    of :data:`~actors.tickets.rules.MODES`.
    """
    if isinstance(command, ExpectPassage):
        return [PassageExpected(gate.gate_id, command)]
    if isinstance(command, Passage):
        expected = gate.pending.get(command.scan_id)
        return [PassageSettled(gate.gate_id, command.scan_id, command.passed, command.at, expected)]
    if isinstance(command, PassageTimedOut):
        expected = gate.pending.get(command.scan_id)
        if expected is None:  # reported in time: nothing left to settle
            return []
        walked = PassageSettled(gate.gate_id, command.scan_id, True, command.at, expected, True)
        return [walked]
    if isinstance(command, SetMode):
        if command.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        return [ModeSet(gate.gate_id, command.mode, command.by, command.at)]
    if isinstance(command, ScanForgedCode):
        return _decide_forged(command)
    raise TypeError(f"not a gate command: {command!r}")


def _decide_forged(forged: ScanForgedCode) -> list[Event]:
    command = forged.command
    if isinstance(command, ScanTicket):
        verdict = verdict_without_ticket(command.gate.mode, "forged")
        return tickets.scan_events(command, None, None, verdict)
    verdict, conflict = tickets.merge_offline_forged(command.decision)
    return tickets.scan_events(command.scan, command.decision, None, verdict, conflict, forged.why)


def evolve(gate: Gate, event: Event) -> Gate:
    """The gate after ``event``."""
    if isinstance(event, PassageExpected):
        pending = {**gate.pending, event.expected.scan_id: event.expected}
        return attrs.evolve(gate, pending=pending)
    if isinstance(event, PassageSettled) and event.scan_id in gate.pending:
        pending = dict(gate.pending)
        del pending[event.scan_id]
        return attrs.evolve(gate, pending=pending)
    return gate


def react(gate: Gate, event: Event) -> list[Effect]:
    """What the outside world must do once ``event`` is committed (see the module docstring)."""
    if isinstance(event, PassageExpected):
        return [WatchPassage(gate.gate_id, event.expected.scan_id, event.expected.deadline)]
    if isinstance(event, PassageSettled):
        return [_settlement(event)]
    if isinstance(event, ModeSet):
        return [AnnounceMode(event.gate_id, event.mode)]
    if isinstance(event, tickets.ScanGranted | tickets.OfflineConflict):
        return tickets.react(None, event)
    return []


def _settlement(settled: PassageSettled) -> RecordPassage | GiveBackEntry:
    expected = settled.expected
    if not settled.passed and expected is not None and expected.ticket_id is not None:
        give_back = GiveBack(
            settled.gate_id, settled.scan_id, expected.consumed, expected.was_inside, settled.at
        )
        return GiveBackEntry(expected.ticket_id, give_back)
    return RecordPassage(settled.gate_id, settled.scan_id, settled.passed, settled.at)


# --- occupancy -------------------------------------------------------------


@attrs.frozen
class Occupancy:
    """Passages into and out of one zone today."""

    entries: int = 0
    exits: int = 0

    @property
    def inside(self) -> int:
        """Visitors in the zone now (never below zero)."""
        return max(self.entries - self.exits, 0)


def counted(occupancy: Occupancy, direction: str) -> Occupancy:
    """The zone's occupancy after a visitor walked through in ``direction``."""
    if direction == "entry":
        return Occupancy(occupancy.entries + 1, occupancy.exits)
    return Occupancy(occupancy.entries, occupancy.exits + 1)
