"""Entry rules as pure functions: a ticket, a gate, a direction, a moment in; a verdict out.

The values the rules speak of (:class:`TicketState`, :class:`GateView`,
:class:`ScanMoment`, :class:`Verdict`) and the rules themselves:
:func:`judge_scan` says whether a scanned ticket may pass a gate now;
:func:`verdict_by_mode` is what a gate's mode imposes on every scan, and
:func:`verdict_without_ticket` the verdict for a code that names no ticket.
The server's ticket actor, its gate actor (forged codes) and the offline gate
agent all judge with these. What a verdict does to the ticket (an entry used,
an exit, an entry given back) is in :mod:`actors.tickets.domain`. No I/O, no
clock: the local date and time come in a :class:`ScanMoment`. The reasons are
stable codes the gate shows and logs:

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
class Use:
    """A ticket's use so far: entries used on its day, and whether its visitor is inside."""

    entries_used: int = 0
    inside: bool = False


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

    @property
    def use(self) -> Use:
        """The ticket's use so far (what scans and give-backs change)."""
        return Use(self.entries_used, self.inside)


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
    """The answer to one scan, and what it does to the ticket once its visitor walks through."""

    granted: bool
    reason: str
    entries_left: int | None
    #: the scan uses up an entry (given back if the visitor does not walk through)
    consumed: bool = False
    #: the scan is an exit: the ticket is no longer inside once its visitor walks out
    leaves: bool = False

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


def verdict_by_mode(mode: str, entries_left: int | None = None) -> Verdict | None:
    """What a gate's mode imposes on every scan, whatever the code; ``None`` in normal mode.

    A locked gate refuses everything (``gate_closed``); a gate in free
    passage grants everything, forged codes included, and consumes nothing
    (``entries_left`` is the ticket's, when there is one). Raises
    ``ValueError`` for a mode that is not one of :data:`MODES`.
    """
    if mode == "normal":
        return None
    if mode == "locked":
        return refused("gate_closed")
    if mode == "free":  # emergency: everyone through, nothing consumed
        return Verdict(True, "ok", entries_left)
    raise ValueError(f"mode must be one of {MODES}")


def verdict_without_ticket(mode: str, reason: str) -> Verdict:
    """The verdict on a code that names no ticket: ``reason`` unless the gate's mode says.

    The gate's mode wins over the code (:func:`verdict_by_mode`): locked
    refuses ``gate_closed``, free passage grants; in normal mode the scan is
    refused with ``reason``.
    """
    imposed = verdict_by_mode(mode)
    return refused(reason) if imposed is None else imposed


def judge_scan(
    ticket: TicketState | None, gate: GateView, direction: str, moment: ScanMoment
) -> Verdict:
    """May this ticket (``None``: the code names none) pass this gate now, in this direction?

    The precedence of the module docstring, from the gate's mode down.
    Raises ``ValueError`` for a direction that is not one of :data:`DIRECTIONS`.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    if ticket is None:
        return verdict_without_ticket(gate.mode, "unknown")
    imposed = verdict_by_mode(gate.mode, ticket.entries_left)
    if imposed is not None:
        return imposed
    if direction == "exit":
        return Verdict(True, "ok", ticket.entries_left, leaves=True)
    reason = entry_refusal(ticket, gate, moment)
    if reason is not None:
        return Verdict(False, reason, ticket.entries_left)
    left = None
    if ticket.entries_allowed is not None:
        left = max(ticket.entries_allowed - ticket.entries_used - 1, 0)
    return Verdict(True, "ok", left, consumed=True)


def entry_refusal(ticket: TicketState, gate: GateView, moment: ScanMoment) -> str | None:
    """Why this ticket may not enter at this gate now (in the documented order), or ``None``."""
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
