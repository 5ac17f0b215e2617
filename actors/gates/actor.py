"""GateActor: one per gate; its mode, and the passages it waits for after each grant.

A grant opens the turnstile; the gate then reports whether the visitor
walked through (``gate.passage``). The gate actor keeps each granted scan
until that report or until ``passage_timeout_s`` passes, and hands back a
:class:`Settlement`: a passage (reported, or nobody reported it in time: an
entry wrongly kept costs a word with staff, one wrongly given back admits a
second person) counts toward the zone's occupancy; a reported non-passage
gives the entry back to the ticket through the ticket's own actor
(:func:`settle` does both, outside the gate actor). Mode changes
(normal, locked, free passage) are stored, then pushed to the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

import attrs

from actors.tickets.actor import GiveBack
from server.storage.tickets import PASSAGE_WRITER, set_gate_mode

log = logging.getLogger("scenic.actors.gate")


@attrs.frozen
class ExpectPassage:
    """A scan was granted: wait for the visitor to walk through."""

    scan_id: str
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
    """An admin sets the gate's mode."""

    mode: str
    by: str
    at: datetime


@attrs.frozen
class GateEnvironment:
    """What gate actors share."""

    run: Callable[..., Awaitable]  # Database.run
    submit: Callable[..., Awaitable]  # GroupCommitter.submit
    submit_bulk: Callable[..., Awaitable]  # GroupCommitter.submit_bulk
    #: ask a ticket's actor: (ticket_id, command) -> reply
    ask_ticket: Callable[[str, Any], Awaitable[Any]]
    #: a passage happened: (zone, direction)
    passed: Callable[[str, str], None]
    #: call PassageTimedOut for (gate_id, scan_id) at the trio time given
    watch: Callable[[str, str, float], None]
    #: the gate's mode changed: store it in memory and tell the gate
    mode_changed: Callable[[str, str], None]


class GateActor:
    """Owns one gate's mode changes and its pending passages."""

    def __init__(self, gate_id: str, env: GateEnvironment) -> None:
        self.gate_id = gate_id
        self.env = env
        self.pending: dict[str, ExpectPassage] = {}

    async def load(self) -> None:
        """Nothing to read: pending passages do not outlive the process (see docs/gates.md)."""

    async def handle(self, command: Any) -> Any:
        """Handle one gate command: in memory, except a mode change, which is stored first.

        A passage report or timeout returns a :class:`Settlement` for :func:`settle`.
        """
        if isinstance(command, ExpectPassage):
            self.pending[command.scan_id] = command
            self.env.watch(self.gate_id, command.scan_id, command.deadline)
            return {}
        if isinstance(command, Passage | PassageTimedOut):
            passed = isinstance(command, Passage) and command.passed
            return self._settle(command.scan_id, passed, command.at)
        if isinstance(command, SetMode):
            await self.env.submit(
                partial(_store_mode, self.gate_id, command.mode, command.by, command.at)
            )
            self.env.mode_changed(self.gate_id, command.mode)
            log.info("gate.mode", extra={"gate": self.gate_id, "mode": command.mode})
            return {"gate": self.gate_id, "mode": command.mode}
        raise TypeError(f"not a gate command: {command!r}")

    def _settle(self, scan_id: str, passed: bool, at: datetime) -> Settlement:
        return Settlement(self.gate_id, scan_id, passed, at, self.pending.pop(scan_id, None))


@attrs.frozen
class Settlement:
    """How a granted scan ended; :func:`settle` writes it down outside the actor."""

    gate_id: str
    scan_id: str
    passed: bool
    at: datetime
    #: what the grant was, if this process still knew (not after a restart)
    expected: ExpectPassage | None


async def settle(env: GateEnvironment, settlement: Settlement) -> dict[str, Any]:
    """Record a passage (counting occupancy) or give the entry back.

    Runs in the caller's task, not in the gate's actor, so one gate's
    passages commit concurrently instead of queueing behind each other.
    """
    gate_id, scan_id, at = settlement.gate_id, settlement.scan_id, settlement.at
    expected = settlement.expected
    if settlement.passed:
        settled = await env.submit_bulk(PASSAGE_WRITER, (gate_id, scan_id, True, at))
        if settled is not None:
            env.passed(*settled)
        return {"scan_id": scan_id, "recorded": settled is not None}
    if expected is not None and expected.ticket_id is not None:
        await env.ask_ticket(
            expected.ticket_id,
            GiveBack(gate_id, scan_id, expected.consumed, expected.was_inside, at),
        )
        return {"scan_id": scan_id, "recorded": True}
    settled = await env.submit_bulk(PASSAGE_WRITER, (gate_id, scan_id, False, at))
    return {"scan_id": scan_id, "recorded": settled is not None}


async def _store_mode(gate_id: str, mode: str, by: str, at: datetime, conn) -> None:
    await set_gate_mode(conn, gate_id, mode, by, at)
