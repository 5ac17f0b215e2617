"""The order as a pure state machine: commands in, events out, no I/O.

An order is created pending with a total in fen and an expiry time. Payments
are started against it (each attempt has our own ``out_trade_no``) and
confirmed by their channel. The rules that keep promise one, *an order is
collected once*:

- the first confirmed payment of exactly the total, on a pending order, paid
  before the order expired, **captures** it: the order is paid and its tickets
  are issued;
- the same channel transaction again changes nothing (a replayed
  notification);
- every other confirmed payment (a second channel, a second attempt, late
  after expiry or cancel, the wrong amount) is **recorded and refunded in
  full** by its own channel, with a fresh ``out_refund_no``.

Staff refunds of unused tickets, the channel's confirmation of refunds and
its final refusal of one (a refund that can never succeed is marked failed,
never retried for ever) go through the same machine. :func:`decide` says
what a command means for the current state (raising :class:`OrderRefused`
when it must not happen);
:func:`evolve` applies an event. Neither reads a clock or draws a random
number: times and new ids come in with the command.
"""

from __future__ import annotations

import enum
from datetime import date, datetime

import attrs

from actors.errors import DomainError

CHANNELS = ("wechat", "alipay", "cash", "card")
#: channels confirmed by their own notification; the others by a cashier
NOTIFYING_CHANNELS = ("wechat", "alipay")


class OrderRefused(DomainError):
    """A command the order's rules do not allow; ``code`` says which rule."""


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


# --- commands ------------------------------------------------------------


@attrs.frozen
class CreateOrder:
    """Make a new pending order (its id, lines and expiry chosen by the shell)."""

    order_id: str
    device_id: str
    client_key: str
    lines: tuple[OrderLine, ...]
    at: datetime
    expires_at: datetime


@attrs.frozen
class StartPayment:
    """A kiosk or counter starts paying by ``channel``; ``out_trade_no`` is new."""

    out_trade_no: str
    channel: str
    at: datetime
    #: a cashier already took the money (``payment.record``): the attempt must be
    #: recorded whatever the order's state, so the money can be kept or refunded
    money_taken: bool = False


@attrs.frozen
class ConfirmPayment:
    """The channel (or a cashier) says money arrived for ``out_trade_no``.

    ``ticket_ids`` are fresh ids the shell drew, used only if this payment
    captures the order; ``out_refund_no`` is a fresh refund number, used only
    if it must be refunded.
    """

    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    at: datetime
    ticket_ids: tuple[str, ...]
    out_refund_no: str
    #: what the notification said when the channel's own query said ``amount_fen``
    #: instead (the query decides; the disagreement is kept and flagged)
    notified_fen: int | None = None


@attrs.frozen
class CancelOrder:
    """Staff or the kiosk abandon a pending order."""

    at: datetime


@attrs.frozen
class ExpireOrder:
    """The expiry timer fired."""

    at: datetime


@attrs.frozen
class RefundTickets:
    """Staff refund unused tickets of a paid order (``entries_used`` from the gates)."""

    ticket_ids: tuple[str, ...]
    reason: str
    by_device: str
    out_refund_no: str
    at: datetime


@attrs.frozen
class ConfirmRefund:
    """The channel confirmed a refund."""

    out_refund_no: str
    at: datetime


@attrs.frozen
class FailRefund:
    """The channel refused a refund for good (``failure``: its code and message)."""

    out_refund_no: str
    failure: str
    at: datetime


Command = (
    CreateOrder
    | StartPayment
    | ConfirmPayment
    | CancelOrder
    | ExpireOrder
    | RefundTickets
    | ConfirmRefund
    | FailRefund
)

# --- events --------------------------------------------------------------


@attrs.frozen
class OrderCreated:
    """A pending order exists; capacity for its lines is reserved."""

    order_id: str
    device_id: str
    client_key: str
    lines: tuple[OrderLine, ...]
    total_fen: int
    at: datetime
    expires_at: datetime


@attrs.frozen
class PaymentStarted:
    """An attempt to pay by a channel, under our ``out_trade_no``."""

    order_id: str
    out_trade_no: str
    channel: str
    amount_fen: int
    at: datetime


@attrs.frozen
class PaymentCaptured:
    """The order's one collection: this payment pays the order."""

    order_id: str
    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    at: datetime
    #: the notification's amount when the channel's query disagreed (flagged)
    notified_fen: int | None = None


@attrs.frozen
class TicketsIssued:
    """The tickets a captured order entitles."""

    order_id: str
    tickets: tuple[IssuedTicket, ...]
    at: datetime


@attrs.frozen
class DuplicatePaymentRefunding:
    """A payment that must not be kept: recorded, and refunded in full by its channel."""

    order_id: str
    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    out_refund_no: str
    reason: RefundReason
    at: datetime
    #: the notification's amount when the channel's query disagreed (flagged)
    notified_fen: int | None = None


@attrs.frozen
class OrderCancelled:
    """A pending order was abandoned; its capacity is released."""

    order_id: str
    at: datetime


@attrs.frozen
class OrderExpired:
    """A pending order ran out of time; its capacity is released."""

    order_id: str
    at: datetime


@attrs.frozen
class TicketsRefunding:
    """Staff refund of unused tickets: they are void now, the money goes back by the channel."""

    order_id: str
    ticket_ids: tuple[str, ...]
    out_trade_no: str
    channel: str
    amount_fen: int
    out_refund_no: str
    reason: str
    by_device: str
    at: datetime


@attrs.frozen
class RefundConfirmed:
    """The channel confirmed a refund; the money has left."""

    order_id: str
    out_refund_no: str
    at: datetime


@attrs.frozen
class RefundFailed:
    """The channel refused a refund for good; the money is still owed to the visitor."""

    order_id: str
    out_refund_no: str
    failure: str
    at: datetime


Event = (
    OrderCreated
    | PaymentStarted
    | PaymentCaptured
    | TicketsIssued
    | DuplicatePaymentRefunding
    | OrderCancelled
    | OrderExpired
    | TicketsRefunding
    | RefundConfirmed
    | RefundFailed
)

# --- state ---------------------------------------------------------------


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
    #: how many commands have changed the stored order: the shell's optimistic lock
    #: (rules never read it; ``evolve`` keeps it)
    version: int = 0

    @property
    def ticket_count(self) -> int:
        """How many tickets the order's lines entitle once paid."""
        return sum(line.quantity for line in self.lines)


# --- rules ---------------------------------------------------------------

MAX_TICKETS_PER_ORDER = 200


def decide(order: Order | None, command: Command) -> list[Event]:
    """What ``command`` means for ``order`` (``None`` before creation).

    Returns the events to persist (possibly none, for a replay). Raises
    :class:`OrderRefused` with a stable code when the command must not
    happen: ``order_exists``, ``not_found``, ``bad_request``,
    ``order_not_pending``, ``channel_mismatch``, ``unknown_payment``,
    ``ticket_not_refundable``, ``unknown_refund``, ``refund_settled``.
    """
    if isinstance(command, CreateOrder):
        return _decide_create(order, command)
    if order is None:
        raise OrderRefused("no such order", code="not_found")
    if isinstance(command, StartPayment):
        return _decide_start(order, command)
    if isinstance(command, ConfirmPayment):
        return decide_payment(order, command)
    if isinstance(command, CancelOrder | ExpireOrder):
        return _decide_close(order, command)
    if isinstance(command, RefundTickets):
        return _decide_refund_tickets(order, command)
    if isinstance(command, ConfirmRefund):
        return _decide_confirm_refund(order, command)
    if isinstance(command, FailRefund):
        return _decide_fail_refund(order, command)
    raise TypeError(f"not an order command: {command!r}")


def _decide_create(order: Order | None, command: CreateOrder) -> list[Event]:
    if order is not None:
        raise OrderRefused("an order with this id exists", code="order_exists")
    if not command.lines:
        raise OrderRefused("an order needs at least one line", code="bad_request")
    if sum(line.quantity for line in command.lines) > MAX_TICKETS_PER_ORDER:
        raise OrderRefused(f"at most {MAX_TICKETS_PER_ORDER} tickets per order", code="bad_request")
    if any(line.quantity < 1 or line.unit_price_fen < 0 for line in command.lines):
        raise OrderRefused("quantities must be positive", code="bad_request")
    if command.expires_at <= command.at:
        raise OrderRefused("an order must expire after it is made", code="bad_request")
    total = sum(line.amount_fen for line in command.lines)
    return [
        OrderCreated(
            command.order_id,
            command.device_id,
            command.client_key,
            command.lines,
            total,
            command.at,
            command.expires_at,
        )
    ]


def _decide_start(order: Order, command: StartPayment) -> list[Event]:
    if not command.money_taken:
        if order.status is not OrderStatus.PENDING:
            raise OrderRefused(f"the order is {order.status.value}", code="order_not_pending")
        if command.at >= order.expires_at:
            raise OrderRefused("the order has expired", code="order_not_pending")
    if command.channel not in CHANNELS:
        raise OrderRefused(f"unknown channel {command.channel!r}", code="bad_request")
    if command.out_trade_no in order.payments:
        return []
    return [
        PaymentStarted(
            order.order_id, command.out_trade_no, command.channel, order.total_fen, command.at
        )
    ]


def decide_payment(order: Order, paid: ConfirmPayment) -> list[Event]:
    """Decide what a confirmed payment means for this order.

    Exactly one payment captures an order; any other confirmed payment is a
    duplicate and is refunded by the route it came from.
    """
    if (paid.channel, paid.channel_txn_id) in order.confirmed_txns:
        return []  # a replayed notification changes nothing
    attempt = order.payments.get(paid.out_trade_no)
    if attempt is None:
        raise OrderRefused(f"no payment {paid.out_trade_no} on this order", code="unknown_payment")
    if attempt.channel != paid.channel:
        raise OrderRefused(
            f"payment {paid.out_trade_no} was started for {attempt.channel}",
            code="channel_mismatch",
        )
    if attempt.state != "started":
        # the channel confirmed the same attempt under a second transaction id
        return [_refunding(order, paid, RefundReason.ALREADY_PAID)]
    reason = _why_not_capture(order, paid)
    if reason is not None:
        return [_refunding(order, paid, reason)]
    if len(paid.ticket_ids) != order.ticket_count:
        raise ValueError("the shell must draw one ticket id per admission")
    return [
        PaymentCaptured(
            order.order_id,
            paid.out_trade_no,
            paid.channel,
            paid.channel_txn_id,
            paid.amount_fen,
            paid.paid_at,
            paid.at,
            paid.notified_fen,
        ),
        TicketsIssued(order.order_id, _tickets_for(order, paid.ticket_ids), paid.at),
    ]


def _why_not_capture(order: Order, paid: ConfirmPayment) -> RefundReason | None:
    if order.status is OrderStatus.PAID:
        return RefundReason.ALREADY_PAID
    if order.status is OrderStatus.CANCELLED:
        return RefundReason.ORDER_CANCELLED
    if order.status is OrderStatus.EXPIRED or paid.paid_at > order.expires_at:
        return RefundReason.ORDER_EXPIRED
    if paid.amount_fen != order.total_fen:
        return RefundReason.AMOUNT_MISMATCH
    return None


def _refunding(order: Order, paid: ConfirmPayment, reason: RefundReason) -> Event:
    return DuplicatePaymentRefunding(
        order.order_id,
        paid.out_trade_no,
        paid.channel,
        paid.channel_txn_id,
        paid.amount_fen,
        paid.paid_at,
        paid.out_refund_no,
        reason,
        paid.at,
        paid.notified_fen,
    )


def _tickets_for(order: Order, ticket_ids: tuple[str, ...]) -> tuple[IssuedTicket, ...]:
    ids = iter(ticket_ids)
    return tuple(
        IssuedTicket(
            next(ids),
            line.product_id,
            line.visit_date,
            line.slot,
            line.entries_allowed,
            line.unit_price_fen,
        )
        for line in order.lines
        for _ in range(line.quantity)
    )


def _decide_close(order: Order, command: CancelOrder | ExpireOrder) -> list[Event]:
    if isinstance(command, ExpireOrder):
        if order.status is not OrderStatus.PENDING or command.at < order.expires_at:
            return []  # paid, closed already, or the timer fired early: nothing to do
        return [OrderExpired(order.order_id, command.at)]
    if order.status is OrderStatus.CANCELLED:
        return []
    if order.status is not OrderStatus.PENDING:
        raise OrderRefused(f"the order is {order.status.value}", code="order_not_pending")
    return [OrderCancelled(order.order_id, command.at)]


def _decide_refund_tickets(order: Order, command: RefundTickets) -> list[Event]:
    if order.status is not OrderStatus.PAID or order.captured_out_trade_no is None:
        raise OrderRefused("only a paid order's tickets can be refunded", code="order_not_pending")
    if command.out_refund_no in order.refunds:
        return []
    if not command.ticket_ids or len(set(command.ticket_ids)) != len(command.ticket_ids):
        raise OrderRefused("name each ticket to refund once", code="bad_request")
    by_id = {ticket.ticket_id: ticket for ticket in order.tickets}
    for ticket_id in command.ticket_ids:
        if ticket_id not in by_id:
            raise OrderRefused(f"ticket {ticket_id} is not on this order", code="not_found")
        if ticket_id in order.void_ticket_ids:
            raise OrderRefused(
                f"ticket {ticket_id} is already refunded", code="ticket_not_refundable"
            )
    captured = order.payments[order.captured_out_trade_no]
    amount = sum(by_id[ticket_id].price_fen for ticket_id in command.ticket_ids)
    return [
        TicketsRefunding(
            order.order_id,
            tuple(command.ticket_ids),
            captured.out_trade_no,
            captured.channel,
            amount,
            command.out_refund_no,
            command.reason,
            command.by_device,
            command.at,
        )
    ]


def _decide_confirm_refund(order: Order, command: ConfirmRefund) -> list[Event]:
    refund = order.refunds.get(command.out_refund_no)
    if refund is None:
        raise OrderRefused(f"no refund {command.out_refund_no}", code="unknown_refund")
    if refund.confirmed:
        return []
    return [RefundConfirmed(order.order_id, command.out_refund_no, command.at)]


def _decide_fail_refund(order: Order, command: FailRefund) -> list[Event]:
    refund = order.refunds.get(command.out_refund_no)
    if refund is None:
        raise OrderRefused(f"no refund {command.out_refund_no}", code="unknown_refund")
    if refund.failure is not None:
        return []
    if refund.confirmed:
        raise OrderRefused(
            f"refund {command.out_refund_no} was confirmed by the channel", code="refund_settled"
        )
    return [RefundFailed(order.order_id, command.out_refund_no, command.failure, command.at)]


def evolve(order: Order | None, event: Event) -> Order:
    """The order after ``event``; the only way state changes."""
    if isinstance(event, OrderCreated):
        return Order(
            event.order_id,
            event.device_id,
            event.client_key,
            event.lines,
            event.total_fen,
            OrderStatus.PENDING,
            event.at,
            event.expires_at,
        )
    assert order is not None, "only creation applies to no order"
    if isinstance(event, PaymentStarted):
        record = PaymentRecord(event.out_trade_no, event.channel, event.amount_fen, event.at)
        return attrs.evolve(order, payments={**order.payments, event.out_trade_no: record})
    if isinstance(event, PaymentCaptured):
        record = attrs.evolve(
            order.payments[event.out_trade_no],
            channel_txn_id=event.channel_txn_id,
            state="captured",
            collected_fen=event.amount_fen,
            notified_fen=event.notified_fen,
        )
        return attrs.evolve(
            order,
            status=OrderStatus.PAID,
            payments={**order.payments, event.out_trade_no: record},
            confirmed_txns=order.confirmed_txns | {(event.channel, event.channel_txn_id)},
            captured_out_trade_no=event.out_trade_no,
            received_fen=order.received_fen + event.amount_fen,
        )
    if isinstance(event, TicketsIssued):
        return attrs.evolve(order, tickets=order.tickets + event.tickets)
    if isinstance(event, DuplicatePaymentRefunding):
        refund = RefundRecord(
            event.out_refund_no,
            event.out_trade_no,
            event.channel,
            event.amount_fen,
            event.reason.value,
            event.channel_txn_id,
            payment_fen=event.amount_fen,
        )
        attempt = order.payments[event.out_trade_no]
        collected = (attempt.collected_fen or 0) + event.amount_fen
        notified = event.notified_fen if event.notified_fen is not None else attempt.notified_fen
        if attempt.state == "started":
            record = attrs.evolve(
                attempt,
                channel_txn_id=event.channel_txn_id,
                state="refunding",
                collected_fen=collected,
                notified_fen=notified,
            )
        else:  # the same attempt confirmed under a second transaction id
            record = attrs.evolve(attempt, collected_fen=collected, notified_fen=notified)
        payments = {**order.payments, event.out_trade_no: record}
        return attrs.evolve(
            order,
            payments=payments,
            confirmed_txns=order.confirmed_txns | {(event.channel, event.channel_txn_id)},
            refunds={**order.refunds, event.out_refund_no: refund},
            received_fen=order.received_fen + event.amount_fen,
        )
    if isinstance(event, OrderCancelled):
        return attrs.evolve(order, status=OrderStatus.CANCELLED)
    if isinstance(event, OrderExpired):
        return attrs.evolve(order, status=OrderStatus.EXPIRED)
    if isinstance(event, TicketsRefunding):
        captured = order.payments[event.out_trade_no]
        refund = RefundRecord(
            event.out_refund_no,
            event.out_trade_no,
            event.channel,
            event.amount_fen,
            event.reason,
            captured.channel_txn_id,
            staff=True,
            payment_fen=captured.collected_fen or 0,
        )
        return attrs.evolve(
            order,
            void_ticket_ids=order.void_ticket_ids | set(event.ticket_ids),
            refunds={**order.refunds, event.out_refund_no: refund},
        )
    if isinstance(event, RefundConfirmed):
        refund = attrs.evolve(order.refunds[event.out_refund_no], confirmed=True, failure=None)
        return _with_refund(order, refund, "refunded")
    if isinstance(event, RefundFailed):
        refund = attrs.evolve(order.refunds[event.out_refund_no], failure=event.failure)
        return _with_refund(order, refund, "refund_failed")
    raise TypeError(f"not an order event: {event!r}")


def _with_refund(order: Order, refund: RefundRecord, payment_state: str) -> Order:
    """``order`` with ``refund`` settled; a duplicate's attempt takes ``payment_state``."""
    payments = order.payments
    attempt = payments[refund.out_trade_no]
    if not refund.staff and attempt.state != "captured":
        payments = {**payments, refund.out_trade_no: attrs.evolve(attempt, state=payment_state)}
    return attrs.evolve(
        order, payments=payments, refunds={**order.refunds, refund.out_refund_no: refund}
    )


def net_collected_fen(order: Order) -> int:
    """Money kept for this order: captured, less every refund requested against it.

    Duplicates add and refund the same amount, so they net to zero. The
    invariant the audit checks: this equals the order's total less staff
    refunds if the order is paid, and zero otherwise.
    """
    return order.received_fen - sum(refund.amount_fen for refund in order.refunds.values())
