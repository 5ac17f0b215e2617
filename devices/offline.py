"""The gate agent's own judgement when the server cannot be reached: pure, no I/O.

Offline, the agent checks a code's Ed25519 signature with the site's public
keys (from the last ``gate.config``), then applies the server's own entry
rules (:func:`actors.tickets.rules.judge_scan`, with the gate's mode first:
:func:`~actors.tickets.rules.verdict_by_mode`) to what it knows locally: the
entitlement in the code and the admissions this gate made itself. Those it
keeps in :class:`LocalUse` with the ticket rules' own state changes
(:func:`actors.tickets.domain.use_after` for a grant,
:func:`~actors.tickets.domain.give_back` for a passage nobody made). So one
gate never admits a ticket beyond its entitlement; two offline gates may
each admit a single-entry ticket once, which the server flags as a conflict
when the journals are merged. Nothing here imports the server.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from actors.tickets.codes import ForgedCode, verify_offline
from actors.tickets.domain import give_back, use_after
from actors.tickets.rules import (
    GateView,
    ScanMoment,
    TicketState,
    Use,
    Verdict,
    judge_scan,
    moment_at,
    verdict_by_mode,
    verdict_without_ticket,
)


@attrs.frozen
class GateSnapshot:
    """What the agent keeps of ``gate.config`` to work offline."""

    gate_id: str
    zone: str
    mode: str
    products_allowed: frozenset[str] | None
    timezone: str
    slots: dict[str, tuple[time, time]]
    #: product id -> (zones, anti_passback)
    products: dict[str, tuple[tuple[str, ...], bool]]
    public_keys: dict[str, bytes]
    passage_timeout_s: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GateSnapshot:
        """Build a snapshot from a ``gate.config`` reply (or its saved JSON form)."""
        keys = {}
        for key in config["keys"]:
            public = key["public_key"]
            keys[key["key_id"]] = bytes.fromhex(public) if isinstance(public, str) else public
        allowed = config.get("products_allowed")
        return cls(
            config["gate"],
            config["zone"],
            config.get("mode", "normal"),
            None if allowed is None else frozenset(allowed),
            config["timezone"],
            {
                s["slot"]: (time.fromisoformat(s["starts"]), time.fromisoformat(s["ends"]))
                for s in config["slots"]
            },
            {p["product"]: (tuple(p["zones"]), p["anti_passback"]) for p in config["products"]},
            keys,
            float(config.get("passage_timeout_s", 15.0)),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form that :meth:`from_config` reads back."""
        return {
            "gate": self.gate_id,
            "zone": self.zone,
            "mode": self.mode,
            "products_allowed": None
            if self.products_allowed is None
            else sorted(self.products_allowed),
            "timezone": self.timezone,
            "slots": [
                {"slot": s, "starts": a.isoformat("minutes"), "ends": b.isoformat("minutes")}
                for s, (a, b) in self.slots.items()
            ],
            "products": [
                {"product": p, "zones": list(z), "anti_passback": ap}
                for p, (z, ap) in self.products.items()
            ],
            "keys": [{"key_id": k, "public_key": v.hex()} for k, v in self.public_keys.items()],
            "passage_timeout_s": self.passage_timeout_s,
        }


@attrs.define
class LocalUse:
    """What this gate admitted, per ticket: the ticket's use as the entry rules left it."""

    tickets: dict[str, Use] = attrs.field(factory=dict)

    def of(self, ticket_id: str) -> Use:
        """The ticket's use as this gate knows it (nothing used, outside, if it never saw it)."""
        return self.tickets.get(ticket_id, Use())

    @property
    def inside(self) -> set[str]:
        """The tickets this gate takes to be inside."""
        return {ticket_id for ticket_id, use in self.tickets.items() if use.inside}

    @property
    def used(self) -> dict[str, int]:
        """Entries used per ticket, as this gate knows them."""
        return {ticket_id: use.entries_used for ticket_id, use in self.tickets.items()}

    def admitted(self, ticket_id: str, verdict: Verdict) -> Use:
        """Note a granted scan: the ticket's use becomes what the server's rules make it.

        Returns the use before, which a give-back restores.
        """
        before = self.of(ticket_id)
        self.tickets[ticket_id] = use_after(before, verdict)
        return before

    def given_back(self, ticket_id: str, consumed: bool, was_inside: bool) -> None:
        """Undo a granted passage the visitor is known not to have made.

        Only for a known outcome (TIMEOUT, or a turnstile that refused to
        open): a passage whose outcome is unknown counts as made. The entry
        the grant ``consumed`` is back and the ticket is where it was
        (``was_inside``): an exit nobody made leaves the visitor inside, so
        the ticket's next entry still needs an exit first.
        """
        self.tickets[ticket_id] = give_back(self.of(ticket_id), consumed, was_inside)


def grant_of(direction: str) -> Verdict:
    """A grant this gate did not judge itself (the server's reply, or read back from the journal).

    As the entry rules grant a ticket in normal mode: an entry uses one, an
    exit leaves. (The server's reply does not say more; free passage, which
    uses nothing, reaches the agent as a grant like any other.)
    """
    return Verdict(True, "ok", None, consumed=direction == "entry", leaves=direction == "exit")


def local_moment(snapshot: GateSnapshot, at: datetime) -> ScanMoment:
    """The site's local date and time at ``at``."""
    return moment_at(at, ZoneInfo(snapshot.timezone), snapshot.slots)


def decide_offline(
    code: str, snapshot: GateSnapshot, use: LocalUse, direction: str, at: datetime
) -> tuple[Verdict, str | None]:
    """The offline verdict on ``code`` and the ticket id it names (``None`` if forged).

    A locked gate or one in free passage decides by its mode alone, without
    checking the signature (and names no ticket); otherwise a code that does
    not verify is ``forged``, one for a product the saved config does not
    know ``unknown``, and any other is judged by the entry rules.
    """
    imposed = verdict_by_mode(snapshot.mode)
    if imposed is not None:
        return imposed, None
    try:
        entitlement = verify_offline(code, snapshot.public_keys)
    except ForgedCode:
        return verdict_without_ticket(snapshot.mode, "forged"), None
    product = snapshot.products.get(entitlement.product_id)
    if product is None:
        return verdict_without_ticket(snapshot.mode, "unknown"), entitlement.ticket_id
    zones, anti_passback = product
    local = use.of(entitlement.ticket_id)
    ticket = TicketState(
        entitlement.ticket_id,
        "",
        entitlement.product_id,
        entitlement.visit_date,
        entitlement.slot,
        entitlement.entries,
        zones,
        anti_passback,
        local.entries_used,
        local.inside,
    )
    gate = GateView(snapshot.gate_id, snapshot.zone, snapshot.mode, snapshot.products_allowed)
    return judge_scan(ticket, gate, direction, local_moment(snapshot, at)), entitlement.ticket_id
