"""What an order is: its lines, payments, refunds and tickets, as frozen values.

:class:`Order` is everything the rules need to know about one order; only
:func:`~actors.orders.domain.evolve` makes a new one from an event. The
records inside it (:class:`PaymentRecord`, :class:`RefundRecord`,
:class:`IssuedTicket`) are what the order knows of each payment attempt,
refund and ticket. Nothing here reads a clock or touches I/O.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import attrs

from actors.channels import QR_CHANNELS, Channel

CHANNELS = tuple(Channel)
#: channels confirmed by their own notification (QR payments); the others by a cashier
NOTIFYING_CHANNELS = QR_CHANNELS


class OrderStatus(enum.Enum):
    """Where an order is in its life."""

    PENDING = "pending"
    PAID = "paid"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RefundReason(enum.Enum):
    """Why money goes back."""

    ALREADY_PAID = "already_paid"
    ORDER_EXPIRED = "order_expired"
    ORDER_CANCELLED = "order_cancelled"
    AMOUNT_MISMATCH = "amount_mismatch"
    STAFF = "staff"


class Purpose(enum.Enum):
    """What an order's money is for, which decides where its capture is booked.

    ``tickets``: an order of ticket lines (ticket revenue). ``compensation``:
    one amount and no lines, what a returned rental's charges came to beyond
    the deposit its visitor had paid (it settles the rental's receivable).
    """

    TICKETS = "tickets"
    COMPENSATION = "compensation"


@attrs.frozen
class OrderLine:
    """A product, how many, and for which visit date and time slot, at its unit price."""

    product_id: str
    quantity: int
    visit_date: date
    slot: str | None
    unit_price_fen: int
    #: entries each ticket of this line allows on its day (None: unlimited)
    entries_allowed: int | None = 1

    @property
    def amount_fen(self) -> int:
        """The line's total in fen."""
        return self.quantity * self.unit_price_fen


@attrs.frozen
class IssuedTicket:
    """One admission: a ticket id, what it is for, and its entries."""

    ticket_id: str
    product_id: str
    visit_date: date
    slot: str | None
    entries_allowed: int | None  # None: unlimited on its day
    price_fen: int
    #: what the ticket's QR holds; the shell makes it (keys are not the rules' business)
    code: str | None = None


@attrs.frozen
class PaymentRecord:
    """What the order knows of one payment attempt.

    ``amount_fen`` is what was asked (the order's total when the attempt
    started); ``collected_fen`` what the channel collected under it (``None``
    until it confirmed a payment). ``state``: ``started``, ``captured`` (it
    pays the order), ``refunding`` (to be given back in full), ``refunded``
    (the channel confirmed that refund), ``refund_failed`` (the channel
    refused that refund for good). ``notified_fen`` is set only when a
    notification claimed another amount than the channel's query showed
    collected: a flag for a person to look at.
    """

    out_trade_no: str
    channel: str
    amount_fen: int
    started_at: datetime
    channel_txn_id: str | None = None
    state: str = "started"
    collected_fen: int | None = None
    notified_fen: int | None = None


@attrs.frozen
class RefundRecord:
    """One refund: which payment, how much, why, and whether the channel confirmed it."""

    out_refund_no: str
    out_trade_no: str
    channel: str
    amount_fen: int
    reason: str
    #: the channel transaction the money goes back to
    channel_txn_id: str | None = None
    #: a staff refund of tickets, as opposed to the refund of a duplicate payment
    staff: bool = False
    confirmed: bool = False
    #: what the channel collected in that transaction (a refund's ``total_fen``)
    payment_fen: int = 0
    #: the channel's final refusal (code: message), or ``None``
    failure: str | None = None

    @property
    def state(self) -> str:
        """``pending`` (asked, not yet confirmed), ``confirmed`` or ``failed``."""
        if self.confirmed:
            return "confirmed"
        return "failed" if self.failure is not None else "pending"


@attrs.frozen
class Order:
    """Everything the rules need to know about one order."""

    order_id: str
    device_id: str
    client_key: str
    lines: tuple[OrderLine, ...]
    total_fen: int
    status: OrderStatus
    created_at: datetime
    expires_at: datetime
    payments: dict[str, PaymentRecord] = attrs.field(factory=dict)
    #: (channel, channel_txn_id) of every confirmed payment, captured or not
    confirmed_txns: frozenset[tuple[str, str]] = frozenset()
    captured_out_trade_no: str | None = None
    tickets: tuple[IssuedTicket, ...] = ()
    void_ticket_ids: frozenset[str] = frozenset()
    refunds: dict[str, RefundRecord] = attrs.field(factory=dict)
    #: every confirmed payment's amount, captured or to be refunded
    received_fen: int = 0
    purpose: Purpose = Purpose.TICKETS
    #: the rental a compensation is for
    rental_id: str | None = None
    #: how many commands have changed the stored order: the shell's optimistic lock
    #: (rules never read it; ``evolve`` keeps it)
    version: int = 0

    @property
    def ticket_count(self) -> int:
        """How many tickets the order's lines entitle once paid."""
        return sum(line.quantity for line in self.lines)


def net_collected_fen(order: Order) -> int:
    """Money kept for this order: captured, less every refund requested against it.

    Duplicates add and refund the same amount, so they net to zero. The
    invariant the audit checks: this equals the order's total less staff
    refunds if the order is paid, and zero otherwise.
    """
    return order.received_fen - sum(refund.amount_fen for refund in order.refunds.values())
