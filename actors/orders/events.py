"""What happened to an order: the events :func:`~actors.orders.domain.decide` returns.

Events are facts, named in the past tense, and the only way an order
changes (:func:`~actors.orders.domain.evolve`). The shell persists each
command's events in one transaction, with their ledger postings
(:mod:`actors.orders.postings`) and durable effects
(:func:`~actors.orders.effects.react`).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from actors.orders.state import IssuedTicket, OrderLine, Purpose, RefundReason


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
    purpose: Purpose = Purpose.TICKETS
    rental_id: str | None = None


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
