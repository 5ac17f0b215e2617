"""The gate agent's own judgement when the server cannot be reached: pure, no I/O.

Offline, the agent checks a code's Ed25519 signature with the site's public
keys (from the last ``gate.config``), then applies the same entry rules as
the server (:func:`actors.tickets.rules.decide_scan`) to what it knows
locally: the entitlement in the code and the admissions this gate made
itself. So one gate never admits a ticket beyond its entitlement; two
offline gates may each admit a single-entry ticket once, which the server
flags as a conflict when the journals are merged.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from actors.tickets.codes import ForgedCode, verify_offline
from actors.tickets.rules import (
    GateView,
    ScanMoment,
    TicketState,
    Verdict,
    decide_scan,
    moment_at,
    refused,
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
    """What this gate admitted offline, per ticket: entries used and whether inside."""

    used: dict[str, int] = attrs.field(factory=dict)
    inside: set[str] = attrs.field(factory=set)

    def admitted(self, ticket_id: str, direction: str) -> None:
        """Note a granted passage."""
        if direction == "entry":
            self.used[ticket_id] = self.used.get(ticket_id, 0) + 1
            self.inside.add(ticket_id)
        else:
            self.inside.discard(ticket_id)

    def given_back(self, ticket_id: str, direction: str, consumed: bool) -> None:
        """Undo a granted passage the visitor is known not to have made.

        Only for a known outcome (TIMEOUT, or a turnstile that refused to
        open): a passage whose outcome is unknown counts as made. An exit
        nobody made leaves the visitor inside, so the ticket's next entry
        still needs an exit first.
        """
        if direction == "entry":
            if consumed:
                self.used[ticket_id] = max(self.used.get(ticket_id, 1) - 1, 0)
                self.inside.discard(ticket_id)
        else:
            self.inside.add(ticket_id)


def local_moment(snapshot: GateSnapshot, at: datetime) -> ScanMoment:
    """The site's local date and time at ``at``."""
    return moment_at(at, ZoneInfo(snapshot.timezone), snapshot.slots)


def decide_offline(
    code: str, snapshot: GateSnapshot, use: LocalUse, direction: str, at: datetime
) -> tuple[Verdict, str | None]:
    """The offline verdict on ``code`` and the ticket id it names (``None`` if forged)."""
    gate = GateView(snapshot.gate_id, snapshot.zone, snapshot.mode, snapshot.products_allowed)
    if gate.mode == "free":
        return Verdict(True, "ok", None), None
    if gate.mode == "locked":
        return refused("gate_closed"), None
    try:
        entitlement = verify_offline(code, snapshot.public_keys)
    except ForgedCode:
        return refused("forged"), None
    product = snapshot.products.get(entitlement.product_id)
    if product is None:
        return refused("unknown"), entitlement.ticket_id
    zones, anti_passback = product
    ticket = TicketState(
        entitlement.ticket_id,
        "",
        entitlement.product_id,
        entitlement.visit_date,
        entitlement.slot,
        entitlement.entries,
        zones,
        anti_passback,
        use.used.get(entitlement.ticket_id, 0),
        entitlement.ticket_id in use.inside,
    )
    verdict, _ = decide_scan(ticket, gate, direction, local_moment(snapshot, at))
    return verdict, entitlement.ticket_id
