"""What a rental is: its lines, its units, its payments and its deposit hold, as frozen values.

:class:`Rental` is everything the rules need to know about one rental; only
:func:`~actors.rentals.domain.evolve` makes a new one from an event. Its
deposit is a :class:`Hold`, a two-phase transfer: made once (pending), then
resolved once (:class:`Resolution`: a part posted as charges, the rest
voided back to the visitor, or voided whole). The records inside the rental
(:class:`PaymentRecord`, :class:`FreezeRecord`, :class:`ConversionRecord`,
:class:`UnfreezeRecord`, :class:`RefundRecord`) are what it knows of each
piece of money work at a channel. Nothing here reads a clock or touches I/O.
"""

from __future__ import annotations

import enum
from datetime import datetime, time

import attrs

from actors.catalog import RentalItem
from actors.channels import QR_CHANNELS, Channel

CHANNELS = tuple(Channel)
#: channels confirmed by their own notification; the others by a cashier
NOTIFYING_CHANNELS = QR_CHANNELS
#: channels that offer a pre-authorisation (a freeze of funds): Alipay's fund authorisation
PREAUTH_CHANNELS = (Channel.ALIPAY,)


class RentalStatus(enum.Enum):
    """Where a rental is in its life."""

    #: made, units reserved, nothing collected yet
    PENDING = "pending"
    #: the deposit is held (paid or frozen) and the voucher issued; not picked up
    HELD = "held"
    #: picked up; some units are still out
    OUT = "out"
    #: every unit back (or declared lost) and the hold resolved once
    SETTLED = "settled"
    #: abandoned before pickup; everything back
    CANCELLED = "cancelled"
    #: unpaid past its hold; its units are free again
    EXPIRED = "expired"
    #: an operator kept the whole hold
    FORFEITED = "forfeited"


#: the statuses in which a rental is over
CLOSED = frozenset(
    {
        RentalStatus.SETTLED,
        RentalStatus.CANCELLED,
        RentalStatus.EXPIRED,
        RentalStatus.FORFEITED,
    }
)


class DepositRoute(enum.Enum):
    """How the deposit is held at the channel."""

    #: a real payment into the deposit pool; the unused rest is refunded by the same route
    PAY = "pay"
    #: a channel's pre-authorisation: funds frozen, a part converted into a payment, the rest
    #: unfrozen
    PREAUTH = "preauth"


class Condition(enum.Enum):
    """How a unit comes back."""

    OK = "ok"
    DAMAGED = "damaged"
    LOST = "lost"


class UnitState(enum.Enum):
    """A unit's runtime state (the catalog lists units; the server knows their state)."""

    AVAILABLE = "available"
    OUT = "out"
    MAINTENANCE = "maintenance"
    LOST = "lost"


class ResolutionKind(enum.Enum):
    """How a deposit hold was resolved."""

    #: at the last return: the charges posted (at most the hold), the rest voided
    SETTLED = "settled"
    #: cancelled before pickup: voided whole
    CANCELLED = "cancelled"
    #: an operator kept it: posted whole
    FORFEITED = "forfeited"
    #: the channel's pre-authorisation lapsed unconverted: voided whole by the channel
    LAPSED = "lapsed"


@attrs.frozen
class RentalLine:
    """An item type, how many units, and what of their usage a bundle ticket covers.

    ``item`` is the catalog's item type as it was when the rental was made
    (its deposit, pricing and penalties do not move under a rental);
    ``covered`` units' usage is the ticket's; ``prepaid_unit_fen`` is the
    usage one unit pays in advance (0 when its rule is paid at return).
    """

    item: RentalItem
    quantity: int
    covered: int = 0
    prepaid_unit_fen: int = 0

    @property
    def deposit_fen(self) -> int:
        """The line's deposit: every unit's, covered or not."""
        return self.quantity * self.item.deposit_fen

    @property
    def prepaid_fen(self) -> int:
        """The usage the line pays in advance: its uncovered units'."""
        return (self.quantity - self.covered) * self.prepaid_unit_fen


@attrs.frozen
class UnitOnRental:
    """A unit handed out on this rental, and how and when it came back (``None``: still out)."""

    unit_id: str
    label: str
    item_id: str
    back_at: datetime | None = None
    condition: Condition | None = None


@attrs.frozen
class UnitCharge:
    """What one unit's rental costs at settlement.

    ``usage_fen`` is its pricing rule's usage; when ``covered`` a bundle
    ticket pays it and it is not charged. The penalties are always charged.
    """

    unit_id: str
    item_id: str
    usage_fen: int
    covered: bool
    late_fen: int
    damage_fen: int
    lost_fen: int

    @property
    def total_fen(self) -> int:
        """What this unit is charged: its uncovered usage and its penalties."""
        usage = 0 if self.covered else self.usage_fen
        return usage + self.late_fen + self.damage_fen + self.lost_fen


@attrs.frozen
class Split:
    """How charges meet what the hold secured (:func:`actors.rentals.settlement.split`).

    ``kept_fen = min(charges_fen, paid_fen)`` is posted, ``released_fen =
    paid_fen - kept_fen`` goes back to the visitor, ``compensation_fen =
    charges_fen - kept_fen`` is owed beyond the hold. So ``charges_fen +
    released_fen == paid_fen + compensation_fen``, and at most one of
    ``released_fen`` and ``compensation_fen`` is not zero.
    """

    paid_fen: int
    charges_fen: int
    kept_fen: int
    released_fen: int
    compensation_fen: int


@attrs.frozen
class PaymentRecord:
    """One payment attempt (the pay route): as in an order.

    ``state``: ``started``, ``captured`` (it holds the deposit),
    ``refunding`` (a duplicate, to be given back in full), ``refunded``,
    ``refund_failed``.
    """

    out_trade_no: str
    channel: str
    amount_fen: int
    started_at: datetime
    channel_txn_id: str | None = None
    state: str = "started"
    collected_fen: int | None = None


@attrs.frozen
class FreezeRecord:
    """One pre-authorisation attempt: a freeze asked under ``out_order_no`` + ``out_request_no``.

    ``expires_at`` is when the freeze lapses at its channel (no later than
    the channel allows). ``state``: ``started`` (asked), ``frozen`` (it
    holds the deposit), ``releasing`` (a duplicate, to be unfrozen whole),
    ``released`` (the duplicate's unfreeze confirmed), ``cancelled`` (the
    rental closed before the channel confirmed it; the request is
    cancelled at the channel).
    """

    out_order_no: str
    out_request_no: str
    channel: str
    amount_fen: int
    started_at: datetime
    expires_at: datetime
    auth_no: str | None = None
    state: str = "started"


@attrs.frozen
class ConversionRecord:
    """A part of a freeze converted into a payment under ``out_trade_no``; the rest unfrozen.

    ``whole``: the freeze was converted whole before it could lapse (the
    money then enters the deposit pool, and the release is a refund);
    otherwise this is the settlement's conversion of the posted part, with
    ``unfreeze_rest_fen`` unfrozen in the same call.
    """

    out_trade_no: str
    amount_fen: int
    unfreeze_rest_fen: int
    whole: bool
    at: datetime
    channel_txn_id: str | None = None
    confirmed: bool = False


@attrs.frozen
class UnfreezeRecord:
    """An unfreeze of ``amount_fen`` of freeze ``out_order_no`` under ``out_request_no``."""

    out_request_no: str
    out_order_no: str
    auth_no: str
    channel: str
    amount_fen: int
    reason: str
    confirmed: bool = False


@attrs.frozen
class RefundRecord:
    """One refund: which payment, how much, why, and whether the channel confirmed it.

    ``awaiting_conversion``: the refund gives back part of a whole
    conversion the channel has not confirmed yet; it is asked for once the
    conversion is confirmed.
    """

    out_refund_no: str
    out_trade_no: str
    channel: str
    amount_fen: int
    reason: str
    channel_txn_id: str | None = None
    #: what the channel collected in that transaction (a refund's ``total_fen``)
    payment_fen: int = 0
    confirmed: bool = False
    failure: str | None = None
    awaiting_conversion: bool = False

    @property
    def state(self) -> str:
        """``waiting`` (not asked yet), ``pending``, ``confirmed`` or ``failed``."""
        if self.confirmed:
            return "confirmed"
        if self.failure is not None:
            return "failed"
        return "waiting" if self.awaiting_conversion else "pending"


@attrs.frozen
class Release:
    """How a resolved hold's money moves at its channel (each part absent when zero).

    - ``refund_*``: refund of the voided part of a payment (the pay route,
      or a freeze converted whole); ``refund_deferred`` when that
      conversion is not confirmed yet;
    - ``convert_*``: the posted part of a freeze converted into a payment,
      the rest (``unfreeze_rest_fen``) unfrozen in the same call;
    - ``unfreeze_*``: the whole freeze unfrozen (nothing posted).
    """

    refund_no: str | None = None
    refund_fen: int = 0
    refund_deferred: bool = False
    convert_trade_no: str | None = None
    convert_fen: int = 0
    unfreeze_rest_fen: int = 0
    unfreeze_request_no: str | None = None
    unfreeze_fen: int = 0


@attrs.frozen
class Resolution:
    """The hold's one resolution: ``posted_fen`` kept as charges, ``voided_fen`` released.

    ``posted_fen + voided_fen`` is what the hold secured; ``release`` says
    what the channel must do to carry it out.
    """

    kind: ResolutionKind
    posted_fen: int
    voided_fen: int
    at: datetime
    release: Release = Release()


@attrs.frozen
class Hold:
    """The deposit (with any prepaid usage) as a two-phase transfer: pending, then resolved once.

    On the pay route it is the captured payment ``out_trade_no``; on the
    pre-authorisation route the freeze ``out_order_no`` with the channel's
    ``auth_no``, lapsing at ``expires_at`` unless converted (whole, by
    ``convert_by``) first.
    """

    route: DepositRoute
    channel: str
    deposit_fen: int
    prepaid_fen: int
    held_at: datetime
    out_trade_no: str | None = None
    channel_txn_id: str | None = None
    out_order_no: str | None = None
    auth_no: str | None = None
    expires_at: datetime | None = None
    convert_by: datetime | None = None
    conversion: ConversionRecord | None = None
    resolution: Resolution | None = None

    @property
    def amount_fen(self) -> int:
        """What was held: the deposit plus the prepaid usage."""
        return self.deposit_fen + self.prepaid_fen

    @property
    def secured_fen(self) -> int:
        """What the hold can still give: all of it, or nothing once the freeze lapsed."""
        lapsed = self.resolution is not None and self.resolution.kind is ResolutionKind.LAPSED
        return 0 if lapsed else self.amount_fen

    @property
    def pooled(self) -> bool:
        """True when the money sits in the deposit pool (the ledger): paid, or converted whole."""
        if self.route is DepositRoute.PAY:
            return True
        conversion = self.conversion
        return conversion is not None and conversion.whole and conversion.confirmed

    @property
    def frozen(self) -> bool:
        """True while a pre-authorisation holds the money at the channel, unconverted."""
        return (
            self.route is DepositRoute.PREAUTH
            and self.conversion is None
            and self.resolution is None
        )

    @property
    def may_lapse(self) -> bool:
        """True while the freeze can still lapse at its channel: unresolved, nothing converted.

        A conversion asked but not confirmed does not count: while the
        channel refuses it (busy) the freeze's timeout can pass, and then
        the channel let the money go.
        """
        conversion = self.conversion
        return (
            self.route is DepositRoute.PREAUTH
            and self.resolution is None
            and (conversion is None or not conversion.confirmed)
        )


@attrs.frozen
class Rental:
    """Everything the rules need to know about one rental."""

    rental_id: str
    device_id: str
    client_key: str
    lines: tuple[RentalLine, ...]
    #: rental days booked (the due time is on the last one)
    days: int
    #: the site's time zone and closing time, as when the rental was made
    timezone: str
    due_back: time
    created_at: datetime
    #: an unpaid rental holds its units until then
    hold_until: datetime
    status: RentalStatus
    #: the ticket whose bundle covers some usage, or ``None``
    bundle_ticket_id: str | None = None
    payments: dict[str, PaymentRecord] = attrs.field(factory=dict)
    freezes: dict[str, FreezeRecord] = attrs.field(factory=dict)
    #: (channel, channel transaction or auth number) of every confirmed payment or freeze
    confirmed_txns: frozenset[tuple[str, str]] = frozenset()
    hold: Hold | None = None
    #: the signed voucher code, once the deposit is held
    voucher: str | None = None
    units: tuple[UnitOnRental, ...] = ()
    picked_up_at: datetime | None = None
    #: the due time set at pickup, and the current one (an operator may extend it)
    first_due_at: datetime | None = None
    due_at: datetime | None = None
    overdue: bool = False
    refunds: dict[str, RefundRecord] = attrs.field(factory=dict)
    unfreezes: dict[str, UnfreezeRecord] = attrs.field(factory=dict)
    #: what the settlement charged, unit by unit, and how that met the hold
    charges: tuple[UnitCharge, ...] = ()
    split: Split | None = None
    compensation_order_id: str | None = None
    forfeit_reason: str | None = None
    #: how many commands have changed the stored rental: the shell's optimistic lock
    version: int = 0

    @property
    def deposit_fen(self) -> int:
        """The deposit due: every unit's."""
        return sum(line.deposit_fen for line in self.lines)

    @property
    def prepaid_fen(self) -> int:
        """The usage paid in advance with the deposit."""
        return sum(line.prepaid_fen for line in self.lines)

    @property
    def amount_due_fen(self) -> int:
        """What collecting the deposit collects (or freezes): deposit plus prepaid usage."""
        return self.deposit_fen + self.prepaid_fen

    @property
    def unit_count(self) -> int:
        """How many units the rental holds."""
        return sum(line.quantity for line in self.lines)

    @property
    def units_out(self) -> tuple[UnitOnRental, ...]:
        """The units handed out and not back yet."""
        return tuple(unit for unit in self.units if unit.back_at is None)

    def line_of(self, item_id: str) -> RentalLine | None:
        """The rental's line of item type ``item_id``, or ``None``."""
        return next((line for line in self.lines if line.item.item_id == item_id), None)


def settlement_in_flight(rental: Rental) -> bool:
    """True while the hold is resolved but its channel has not confirmed the money's moves.

    That is a refund of the release asked (or waiting for a conversion) and
    neither confirmed nor refused for good, a conversion not confirmed, or
    an unfreeze not confirmed.
    """
    hold = rental.hold
    if hold is None or hold.resolution is None:
        return False
    release = hold.resolution.release
    refund = rental.refunds.get(release.refund_no) if release.refund_no else None
    if refund is not None and refund.state in ("waiting", "pending"):
        return True
    if hold.conversion is not None and not hold.conversion.confirmed:
        return True
    if release.unfreeze_request_no is not None:
        return not rental.unfreezes[release.unfreeze_request_no].confirmed
    return False
