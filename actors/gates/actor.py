"""GateActor: one per gate; the passages it waits for after each grant, its mode, forged codes.

The actor feeds each command through the pure :func:`~actors.gates.domain.decide`,
stores what must be stored first (a mode; the scan of a forged code, through
group commit), evolves the gate, hands what
:func:`~actors.gates.domain.react` asks for to its :class:`GateOutside`, and
replies. A passage report or timeout is answered with a :class:`Settlement`
instead: :func:`settle` writes it down in the caller's task, outside the gate
actor, so one gate's passages commit concurrently instead of queueing behind
each other (a non-passage gives the entry back through the ticket's own
actor). Pending passages live in memory only (see docs/gates.md).

The shell knows no database and no server: :class:`GateStore` and
:class:`GateOutside` are the interfaces it needs, implemented in server/.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from actors.gates.domain import (
    Command,
    Event,
    ExpectPassage,
    Gate,
    GiveBackEntry,
    ModeSet,
    Passage,
    PassageTimedOut,
    RecordPassage,
    ScanForgedCode,
    SetMode,
    decide,
    evolve,
    react,
)
from actors.tickets.actor import AfterCommit, ScanOutcome
from actors.tickets.domain import CountPassage, JournalEntry, conflict_of, verdict_of
from actors.tickets.rules import Verdict

log = logging.getLogger("scenic.actors.gate")


class GateStore(Protocol):
    """What the gate shell needs from storage; server/storage/ticket_store.py implements it."""

    async def store_mode(self, event: ModeSet) -> None:
        """Store the gate's mode (who set it, and when)."""

    async def record_passage(self, effect: RecordPassage) -> tuple[str, str] | None:
        """Settle a granted scan's passage through group commit.

        Returns the scan's ``(zone, direction)``, or ``None`` when the scan is
        unknown, was refused, or its passage was settled before.
        """

    async def record_forged_scan(self, events: Sequence[Event]) -> bool:
        """Record the scan of a forged code (and its conflict, in the same write).

        Returns False when this gate sent this scan id before (nothing is written).
        """

    async def stored_verdict(self, gate_id: str, scan_id: str) -> Verdict:
        """The verdict first recorded for this gate's scan ``scan_id``."""


class GateOutside(AfterCommit, Protocol):
    """The world around the gate shell: the effects sink, and the tickets' actors."""

    async def give_back(self, effect: GiveBackEntry) -> None:
        """Give a ticket's entry back through that ticket's actor, and wait for it."""


@attrs.frozen
class GateEnvironment:
    """What gate actors share: their storage and the world around them."""

    store: GateStore
    outside: GateOutside


@attrs.frozen
class Settlement:
    """How a granted scan ended; :func:`settle` carries it out outside the actor."""

    gate_id: str
    scan_id: str
    #: what settles it: none when a timeout found the passage reported already
    effects: tuple[RecordPassage | GiveBackEntry, ...]


class GateActor:
    """Owns one gate's pending passages, its mode changes and its forged-code scans."""

    def __init__(self, gate_id: str, env: GateEnvironment) -> None:
        self.gate_id = gate_id
        self.env = env
        self.gate = Gate(gate_id)

    async def load(self) -> None:
        """Nothing to read: pending passages do not outlive the process (see docs/gates.md)."""

    async def handle(self, command: Command) -> Any:
        """Handle one gate command; what must be stored is stored before the reply.

        Replies: ``{}`` for an expected passage; a :class:`Settlement` (for
        :func:`settle`) for a report or timeout; ``{"gate", "mode"}`` for a
        mode; a :class:`~actors.tickets.actor.ScanOutcome` for a forged code.
        """
        events = decide(self.gate, command)
        if isinstance(command, SetMode):
            (event,) = events
            await self.env.store.store_mode(event)
        elif isinstance(command, ScanForgedCode) and not await self.env.store.record_forged_scan(
            events
        ):  # this gate sent this scan id before: its first verdict stands
            forged = command.command
            scan = forged.scan if isinstance(forged, JournalEntry) else forged
            verdict = await self.env.store.stored_verdict(self.gate_id, scan.scan_id)
            return ScanOutcome(verdict, None, repeated=True)
        effects = []
        for event in events:
            self.gate = evolve(self.gate, event)
            effects.extend(react(self.gate, event))
        settling = tuple(e for e in effects if isinstance(e, RecordPassage | GiveBackEntry))
        now = [e for e in effects if not isinstance(e, RecordPassage | GiveBackEntry)]
        if now:
            self.env.outside.carry_out(now)
        if isinstance(command, ExpectPassage):
            return {}
        if isinstance(command, Passage | PassageTimedOut):
            return Settlement(self.gate_id, command.scan_id, settling)
        if isinstance(command, SetMode):
            log.info("gate.mode", extra={"gate": self.gate_id, "mode": command.mode})
            return {"gate": self.gate_id, "mode": command.mode}
        conflict = conflict_of(events)
        return ScanOutcome(
            verdict_of(events), None, conflict=None if conflict is None else conflict.kind
        )


async def settle(env: GateEnvironment, settlement: Settlement) -> dict[str, Any]:
    """Record a passage (counting occupancy) or give the entry back; the ``gate.passage`` reply.

    Runs in the caller's task, not in the gate's actor, so one gate's
    passages commit concurrently instead of queueing behind each other.
    """
    recorded = False
    for effect in settlement.effects:
        if isinstance(effect, GiveBackEntry):
            await env.outside.give_back(effect)
            recorded = True
            continue
        where = await env.store.record_passage(effect)
        recorded = where is not None
        if where is not None and effect.passed:
            env.outside.carry_out([CountPassage(*where)])
    return {"scan_id": settlement.scan_id, "recorded": recorded}
