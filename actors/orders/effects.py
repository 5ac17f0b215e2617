"""What the outside world must hear once an order's event is committed: :func:`react`.

:func:`react` turns one committed event into the side effects it asks for,
as frozen values the shell carries out; it decides them all, nowhere else
does. Two kinds:

- **durable** (:data:`DurableEffect`): money work at a channel that must
  happen even if the server dies a moment later: a refund by the route the
  money came (:class:`RequestRefund`), closing a QR payment nobody paid
  (:class:`ClosePayment`). Storage writes them as outbox rows in the same
  transaction as the event; the outbox worker delivers them until the
  channel confirms.
- **after the commit**: pushes to devices (:class:`PushToDevice`: the
  order's kiosk hears ``order.paid``, ``payment.refunded``) and to a role's
  connections on every server process (:class:`PushToRole`: admins hear
  ``refund.failed``), and updates of the gates' warm ticket book
  (:class:`TicketsValidAtGates`, :class:`TicketsVoidAtGates`). Losing one to
  a crash loses nothing: ``order.get`` tells the truth, and a gate reads a
  ticket it does not hold from the database.

The push payloads are built here too (:func:`order_paid_data`,
:func:`refunded_data`, :func:`refund_failed_data`), so a server process that
learns of an event from another one builds the same payload from the
order it loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from actors.orders.events import (
    DuplicatePaymentRefunding,
    Event,
    OrderCancelled,
    OrderExpired,
    RefundConfirmed,
    RefundFailed,
    TicketsIssued,
    TicketsRefunding,
)
from actors.orders.state import NOTIFYING_CHANNELS, IssuedTicket, Order, PaymentRecord


@attrs.frozen
class RequestRefund:
    """Refund ``refund_fen`` of channel transaction ``out_trade_no`` by its channel (durable).

    ``total_fen`` is what the channel collected in that transaction (what
    a refund request states as the payment's total; never a notified amount
    the channel's own query contradicted). Asking twice is harmless: the
    channel knows the refund by ``out_refund_no``.
    """

    order_id: str
    out_refund_no: str
    channel: str
    out_trade_no: str
    refund_fen: int
    total_fen: int
    reason: str
    at: datetime


@attrs.frozen
class ClosePayment:
    """Close QR payment ``out_trade_no`` at its channel, so nobody pays it later (durable)."""

    channel: str
    out_trade_no: str
    at: datetime


@attrs.frozen
class PushToDevice:
    """Tell device ``device_id`` ``event`` with ``data``, wherever it is connected.

    ``notice`` is what another server process needs to build the same push
    from the stored order when the device is connected there (small: it
    travels by NOTIFY).
    """

    device_id: str
    event: str
    data: dict[str, Any]
    notice: dict[str, Any]


@attrs.frozen
class PushToRole:
    """Tell every connection of a device with ``role``, on every server process, ``event``."""

    role: str
    event: str
    #: small: it travels whole to the other processes
    data: dict[str, Any]


@attrs.frozen
class TicketsValidAtGates:
    """Newly issued, unused tickets: the gates may hold them warm for their first scan."""

    order_id: str
    tickets: tuple[IssuedTicket, ...]


@attrs.frozen
class TicketsVoidAtGates:
    """Refunded tickets: the gates drop any warm copy, so the next scan reads them refunded."""

    ticket_ids: tuple[str, ...]


#: effects written to the outbox in the event's transaction
DurableEffect = RequestRefund | ClosePayment
Effect = DurableEffect | PushToDevice | PushToRole | TicketsValidAtGates | TicketsVoidAtGates


def react(before: Order | None, event: Event, after: Order) -> list[Effect]:
    """The side effects ``event`` asks for, once committed (``before``/``after``: the order).

    - tickets issued (a capture): the gates learn them, then the order's
      device hears ``order.paid`` with the tickets and their codes;
    - a duplicate payment: its refund, in full, by its channel;
    - a staff refund: the tickets are void at the gates, and the refund;
    - a cancel or an expiry: every QR payment still open is closed at its
      channel (:func:`payments_to_close`);
    - a refund confirmed: the order's device hears ``payment.refunded``;
    - a refund refused for good: admins hear ``refund.failed``.

    Every other event asks for nothing.
    """
    if isinstance(event, TicketsIssued):
        return [
            TicketsValidAtGates(after.order_id, event.tickets),
            PushToDevice(
                after.device_id, "order.paid", order_paid_data(after), {"order": after.order_id}
            ),
        ]
    if isinstance(event, DuplicatePaymentRefunding):
        return [_refund_request(after, event.out_refund_no, event.at)]
    if isinstance(event, TicketsRefunding):
        return [
            TicketsVoidAtGates(tuple(event.ticket_ids)),
            _refund_request(after, event.out_refund_no, event.at),
        ]
    if isinstance(event, OrderCancelled | OrderExpired):
        return [
            ClosePayment(payment.channel, payment.out_trade_no, event.at)
            for payment in payments_to_close(after)
        ]
    if isinstance(event, RefundConfirmed):
        notice = {"order": after.order_id, "out_refund_no": event.out_refund_no}
        data = refunded_data(after, event.out_refund_no)
        return [PushToDevice(after.device_id, "payment.refunded", data, notice)]
    if isinstance(event, RefundFailed):
        data = refund_failed_data(after, event.out_refund_no)
        return [PushToRole("admin", "refund.failed", data)]
    return []


def payments_to_close(order: Order) -> list[PaymentRecord]:
    """The payments a closed order closes at their channel: its QR attempts nobody paid yet.

    Only channels that confirm by their own notification (WeChat Pay,
    Alipay) hold an open payment a visitor could still pay; a cashier's
    attempt has nothing open at a channel. A QR payment paid after all is
    refunded when its notification comes.
    """
    return [
        payment
        for payment in order.payments.values()
        if payment.state == "started" and payment.channel in NOTIFYING_CHANNELS
    ]


def durable(effects: Iterable[Effect]) -> list[DurableEffect]:
    """The effects of ``effects`` that storage writes to the outbox, in order."""
    return [effect for effect in effects if isinstance(effect, RequestRefund | ClosePayment)]


def _refund_request(order: Order, out_refund_no: str, at: datetime) -> RequestRefund:
    refund = order.refunds[out_refund_no]
    return RequestRefund(
        order.order_id,
        out_refund_no,
        refund.channel,
        refund.out_trade_no,
        refund.amount_fen,
        refund.payment_fen,
        refund.reason,
        at,
    )


def order_paid_data(order: Order) -> dict[str, Any]:
    """The ``order.paid`` event of a captured order."""
    captured = order.payments[order.captured_out_trade_no]
    return {
        "order": order.order_id,
        "out_trade_no": captured.out_trade_no,
        "channel": captured.channel,
        "amount_fen": captured.amount_fen,
        "tickets": [{"ticket": t.ticket_id, "code": t.code} for t in order.tickets],
    }


def refunded_data(order: Order, out_refund_no: str) -> dict[str, Any]:
    """The ``payment.refunded`` event of one of the order's refunds."""
    refund = order.refunds[out_refund_no]
    return {
        "order": order.order_id,
        "out_refund_no": refund.out_refund_no,
        "out_trade_no": refund.out_trade_no,
        "channel": refund.channel,
        "amount_fen": refund.amount_fen,
        "reason": refund.reason,
    }


def refund_failed_data(order: Order, out_refund_no: str) -> dict[str, Any]:
    """The ``refund.failed`` event (to admins) of a refund the channel refused for good."""
    return {**refunded_data(order, out_refund_no), "failure": order.refunds[out_refund_no].failure}
