"""The order as a pure state machine: :func:`decide` and :func:`evolve`, no I/O.

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

A new order's lines are checked and priced against the catalog the command
carries; staff refunds of unused tickets, the channel's confirmation of
refunds and its final refusal of one (a refund that can never succeed is
marked failed, never retried for ever) go through the same machine.
:func:`decide` says what a command means for the current state (raising
:class:`OrderRefused` when it must not happen); :func:`evolve` applies an
event. Neither reads a clock or draws a random number: times, new ids and
outside facts come in with the command.

The order's pure core, of which this module is the front:

- :mod:`actors.orders.state`: the order and its records;
- :mod:`actors.orders.commands`: what can be asked, with the facts it carries;
- :mod:`actors.orders.events`: what happened;
- :mod:`actors.orders.rules`: the named rules :func:`decide` applies, each once;
- :mod:`actors.orders.effects`: :func:`~actors.orders.effects.react`, the side
  effects a committed event asks for, as data;
- :mod:`actors.orders.postings`: the ledger lines of each money event.

Every name of state, commands, events and rules is importable from here.
"""

from __future__ import annotations

import attrs

from actors.orders.commands import (
    CancelOrder,
    Command,
    ConfirmPayment,
    ConfirmRefund,
    CreateOrder,
    CreatePaymentOrder,
    ExpireOrder,
    FailRefund,
    LineRequest,
    RefundTickets,
    StartPayment,
    TicketFacts,
    visit_starts,
)
from actors.orders.events import (
    DuplicatePaymentRefunding,
    Event,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    PaymentCaptured,
    PaymentStarted,
    RefundConfirmed,
    RefundFailed,
    TicketsIssued,
    TicketsRefunding,
)
from actors.orders.rules import (
    MAX_TICKETS_PER_ORDER,
    OrderRefused,
    capture_refusal,
    order_line,
    refund_refusal,
    used_ticket_refused,
)
from actors.orders.state import (
    CHANNELS,
    NOTIFYING_CHANNELS,
    IssuedTicket,
    Order,
    OrderLine,
    OrderStatus,
    PaymentRecord,
    Purpose,
    RefundReason,
    RefundRecord,
    net_collected_fen,
)

__all__ = [
    "CHANNELS",
    "MAX_TICKETS_PER_ORDER",
    "NOTIFYING_CHANNELS",
    "CancelOrder",
    "Command",
    "ConfirmPayment",
    "ConfirmRefund",
    "CreateOrder",
    "CreatePaymentOrder",
    "DuplicatePaymentRefunding",
    "Event",
    "ExpireOrder",
    "FailRefund",
    "IssuedTicket",
    "LineRequest",
    "Order",
    "OrderCancelled",
    "OrderCreated",
    "OrderExpired",
    "OrderLine",
    "OrderRefused",
    "OrderStatus",
    "PaymentCaptured",
    "PaymentRecord",
    "PaymentStarted",
    "Purpose",
    "RefundConfirmed",
    "RefundFailed",
    "RefundReason",
    "RefundRecord",
    "RefundTickets",
    "StartPayment",
    "TicketFacts",
    "TicketsIssued",
    "TicketsRefunding",
    "capture_refusal",
    "decide",
    "decide_payment",
    "evolve",
    "net_collected_fen",
    "order_line",
    "refund_refusal",
    "used_ticket_refused",
    "visit_starts",
]


def decide(order: Order | None, command: Command) -> list[Event]:
    """What ``command`` means for ``order`` (``None`` before creation).

    Returns the events to persist (possibly none, for a replay). Raises
    :class:`OrderRefused` with a stable code when the command must not
    happen: ``order_exists``, ``not_found``, ``bad_request`` (among them the
    line rules of :func:`~actors.orders.rules.order_line`),
    ``order_not_pending``, ``channel_mismatch``, ``unknown_payment``,
    ``ticket_not_refundable``, ``ticket_used`` (the refund rules of
    :func:`~actors.orders.rules.refund_refusal`), ``unknown_refund``,
    ``refund_settled``.
    """
    if isinstance(command, CreateOrder):
        return _decide_create(order, command)
    if isinstance(command, CreatePaymentOrder):
        return _decide_create_payment_order(order, command)
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
    lines = tuple(order_line(command.catalog, line, command.today) for line in command.requested)
    if not lines:
        raise OrderRefused("an order needs at least one line", code="bad_request")
    if sum(line.quantity for line in lines) > MAX_TICKETS_PER_ORDER:
        raise OrderRefused(f"at most {MAX_TICKETS_PER_ORDER} tickets per order", code="bad_request")
    if any(line.quantity < 1 or line.unit_price_fen < 0 for line in lines):
        raise OrderRefused("quantities must be positive", code="bad_request")
    if command.expires_at <= command.at:
        raise OrderRefused("an order must expire after it is made", code="bad_request")
    total = sum(line.amount_fen for line in lines)
    return [
        OrderCreated(
            command.order_id,
            command.device_id,
            command.client_key,
            lines,
            total,
            command.at,
            command.expires_at,
        )
    ]


def _decide_create_payment_order(order: Order | None, command: CreatePaymentOrder) -> list[Event]:
    if order is not None:
        raise OrderRefused("an order with this id exists", code="order_exists")
    if command.purpose is Purpose.TICKETS:
        raise OrderRefused("a ticket order has lines", code="bad_request")
    if command.total_fen < 1:
        raise OrderRefused("an order of one amount asks for 1 fen or more", code="bad_request")
    if command.expires_at <= command.at:
        raise OrderRefused("an order must expire after it is made", code="bad_request")
    return [
        OrderCreated(
            command.order_id,
            command.device_id,
            command.client_key,
            (),
            command.total_fen,
            command.at,
            command.expires_at,
            command.purpose,
            command.rental_id,
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
    reason = capture_refusal(order, paid)
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
    facts = {fact.ticket_id: fact for fact in command.facts}
    refused = refund_refusal(order, command.ticket_ids, facts, command.at)
    if refused is not None:
        raise refused
    price_of = {ticket.ticket_id: ticket.price_fen for ticket in order.tickets}
    captured = order.payments[order.captured_out_trade_no]
    return [
        TicketsRefunding(
            order.order_id,
            tuple(command.ticket_ids),
            captured.out_trade_no,
            captured.channel,
            sum(price_of[ticket_id] for ticket_id in command.ticket_ids),
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
            purpose=event.purpose,
            rental_id=event.rental_id,
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
