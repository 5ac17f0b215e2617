"""Entry rules as pure functions: a ticket, a gate, a direction, a moment in; a verdict out.

:func:`decide_scan` says whether a scanned ticket may pass a gate and what
its state becomes; :func:`give_back` undoes an entry the visitor never walked
through. No I/O, no clock: the local date and time come in a
:class:`ScanMoment`. The reasons are stable codes the gate shows and logs:

``ok`` ``forged`` ``unknown`` ``not_today`` ``wrong_slot`` ``used_up``
``refunded`` ``passback`` ``wrong_gate`` ``gate_closed``

Exits are generous: a genuine ticket may always leave (safety first), and
leaving clears its "inside" flag so anti-passback lets it in again.

When several refusals apply, one wins, in this order (docs/gates.md):
``gate_closed`` (a locked gate refuses everything), then free passage
(grants everything, forged codes included), ``forged`` (decided from the
code's tag before these rules run), ``unknown``, an exit (granted),
``refunded``, ``wrong_gate``, ``not_today``, ``wrong_slot``, ``passback``,
``used_up``. So a ticket still inside with no entries left gets
``passback``: it must leave first, and gets ``used_up`` after.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

import attrs

REASONS = (
    "ok",
    "forged",
    "unknown",
    "not_today",
    "wrong_slot",
    "used_up",
    "refunded",
    "passback",
    "wrong_gate",
    "gate_closed",
)
MODES = ("normal", "locked", "free")
DIRECTIONS = ("entry", "exit")

#: what the gate's display shows for each reason: (Chinese, English)
DISPLAY = {
    "ok": ("欢迎光临", "Welcome"),
    "forged": ("无效票码", "Invalid code"),
    "unknown": ("查无此票", "Unknown ticket"),
    "not_today": ("非当日票", "Not valid today"),
    "wrong_slot": ("不在入园时段", "Outside time slot"),
    "used_up": ("票已使用", "Already used"),
    "refunded": ("票已退", "Ticket refunded"),
    "passback": ("请先出园", "Exit first"),
    "wrong_gate": ("请走其他闸机", "Use another gate"),
    "gate_closed": ("闸机关闭", "Gate closed"),
}
#: entry is allowed this long before a time slot starts
EARLY_ENTRY = timedelta(minutes=30)


@attrs.frozen
class TicketState:
    """What the rules know of one ticket, and its use so far."""

    ticket_id: str
    order_id: str
    product_id: str
    visit_date: date
    slot: str | None
    entries_allowed: int | None  # None: unlimited on its day
    zones: tuple[str, ...]
    anti_passback: bool
    entries_used: int = 0
    inside: bool = False
    refunded: bool = False
    #: bumped by every stored change: the shell's optimistic lock
    version: int = 0

    @property
    def entries_left(self) -> int | None:
        """Entries still allowed (``None``: unlimited)."""
        if self.entries_allowed is None:
            return None
        return max(self.entries_allowed - self.entries_used, 0)


@attrs.frozen
class GateView:
    """What the rules know of a gate."""

    gate_id: str
    zone: str
    mode: str = "normal"
    #: products this gate admits (``None``: every product admitted to its zone)
    products: frozenset[str] | None = None


@attrs.frozen
class ScanMoment:
    """The site's local date and time of a scan, and the catalog's slot hours."""

    today: date
    local_time: time
    slots: dict[str, tuple[time, time]] = attrs.field(factory=dict)


def moment_at(at: datetime, zone: tzinfo, slots: dict[str, tuple[time, time]]) -> ScanMoment:
    """The :class:`ScanMoment` of ``at`` at a site in time zone ``zone``."""
    local = at.astimezone(zone)
    return ScanMoment(local.date(), local.time().replace(tzinfo=None), slots)


@attrs.frozen
class Verdict:
    """The answer to one scan."""

    granted: bool
    reason: str
    entries_left: int | None
    #: the scan used up an entry (given back if the visitor does not walk through)
    consumed: bool = False

    @property
    def text_zh(self) -> str:
        """The display text in Chinese."""
        return DISPLAY[self.reason][0]

    @property
    def text_en(self) -> str:
        """The display text in English."""
        return DISPLAY[self.reason][1]


def refused(reason: str) -> Verdict:
    """A denial with no ticket to speak of (forged, unknown, gate closed)."""
    return Verdict(False, reason, None)


def decide_scan(
    ticket: TicketState | None, gate: GateView, direction: str, moment: ScanMoment
) -> tuple[Verdict, TicketState | None]:
    """May this ticket pass this gate now, and what is its state afterwards?"""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    if gate.mode == "locked":
        return refused("gate_closed"), ticket
    if ticket is None:
        return (
            (Verdict(True, "ok", None), None)
            if gate.mode == "free"
            else (
                refused("unknown"),
                None,
            )
        )
    if gate.mode == "free":  # emergency: everyone through, nothing consumed
        return Verdict(True, "ok", ticket.entries_left), ticket
    if direction == "exit":
        return Verdict(True, "ok", ticket.entries_left), attrs.evolve(ticket, inside=False)
    reason = _entry_refusal(ticket, gate, moment)
    if reason is not None:
        return Verdict(False, reason, ticket.entries_left), ticket
    after = attrs.evolve(ticket, entries_used=ticket.entries_used + 1, inside=True)
    return Verdict(True, "ok", after.entries_left, consumed=True), after


def _entry_refusal(ticket: TicketState, gate: GateView, moment: ScanMoment) -> str | None:
    if ticket.refunded:
        return "refunded"
    if gate.zone not in ticket.zones or (
        gate.products is not None and ticket.product_id not in gate.products
    ):
        return "wrong_gate"
    if ticket.visit_date != moment.today:
        return "not_today"
    if ticket.slot is not None:
        hours = moment.slots.get(ticket.slot)
        if hours is None or not _within(moment.local_time, *hours):
            return "wrong_slot"
    if ticket.anti_passback and ticket.inside:
        return "passback"
    if ticket.entries_allowed is not None and ticket.entries_used >= ticket.entries_allowed:
        return "used_up"
    return None


def _within(now: time, starts: time, ends: time) -> bool:
    def seconds(moment: time) -> int:
        return moment.hour * 3600 + moment.minute * 60 + moment.second

    opening = max(seconds(starts) - int(EARLY_ENTRY.total_seconds()), 0)
    return opening <= seconds(now) < seconds(ends)


def give_back(ticket: TicketState, was_inside: bool) -> TicketState:
    """The ticket after a granted entry the visitor never walked through."""
    return attrs.evolve(ticket, entries_used=max(ticket.entries_used - 1, 0), inside=was_inside)
