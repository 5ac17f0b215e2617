"""Ledger postings for order events: every money movement, double-entry, pure.

Each money event becomes a balanced set of :class:`Posting` lines (debits
positive, credits negative, summing to zero). Accounts:

- ``clearing:<channel>``: money held for us by a channel (or in the cash drawer);
- ``revenue:tickets``: ticket sales;
- ``receivable:rentals``: what returned rentals left owed; a compensation
  order's capture settles it (see :mod:`actors.rentals.postings`);
- ``refunds:payable``: refunds owed and not yet confirmed by their channel.

A captured payment moves money from the visitor into clearing against revenue;
a duplicate payment goes into clearing against refunds payable; a staff refund
takes revenue back into refunds payable; a confirmed refund pays the payable
out of clearing.
"""

from __future__ import annotations

import attrs

from actors.orders.events import (
    DuplicatePaymentRefunding,
    Event,
    PaymentCaptured,
    RefundConfirmed,
    TicketsRefunding,
)
from actors.orders.state import Order, Purpose

REVENUE = "revenue:tickets"
REFUNDS_PAYABLE = "refunds:payable"
#: what returned rentals left owed (the rentals' postings debit it at settlement)
RENTALS_RECEIVABLE = "receivable:rentals"
#: where a captured payment is booked, by what the order's money is for
CAPTURED_INTO = {Purpose.TICKETS: REVENUE, Purpose.COMPENSATION: RENTALS_RECEIVABLE}


def clearing(channel: str) -> str:
    """The clearing account of ``channel``."""
    return f"clearing:{channel}"


@attrs.frozen
class Posting:
    """One ledger line: an account and a signed amount (debit > 0, credit < 0)."""

    account: str
    amount_fen: int
    memo: str


def postings_for(order: Order | None, event: Event) -> list[Posting]:
    """The balanced postings ``event`` makes on ``order`` (its state before the event).

    Events that move no money give an empty list.
    """
    if isinstance(event, PaymentCaptured):
        into = CAPTURED_INTO[order.purpose]
        return _pair(clearing(event.channel), into, event.amount_fen, "capture")
    if isinstance(event, DuplicatePaymentRefunding):
        return _pair(clearing(event.channel), REFUNDS_PAYABLE, event.amount_fen, "duplicate")
    if isinstance(event, TicketsRefunding):
        return _pair(REVENUE, REFUNDS_PAYABLE, event.amount_fen, "staff refund")
    if isinstance(event, RefundConfirmed):
        refund = order.refunds[event.out_refund_no]
        return _pair(REFUNDS_PAYABLE, clearing(refund.channel), refund.amount_fen, "refund paid")
    return []


def _pair(debit: str, credit: str, amount_fen: int, memo: str) -> list[Posting]:
    return [Posting(debit, amount_fen, memo), Posting(credit, -amount_fen, memo)]
