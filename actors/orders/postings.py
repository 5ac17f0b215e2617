"""Ledger postings for order events: every money movement, double-entry, pure.

Each money event becomes a balanced set of :class:`Posting` lines (debits
positive, credits negative, summing to zero). Accounts:

- ``clearing:<channel>``: money held for us by a channel (or in the cash drawer);
- ``revenue:tickets``: ticket sales;
- ``deposits:held``: the deposit pool, a liability: what visitors paid for a
  rental (deposit and usage paid in advance) until the rental settles;
- ``revenue:rentals``: what rentals kept at settlement, and compensations;
- ``refunds:payable``: refunds owed and not yet confirmed by their channel.

A captured payment moves money from the visitor into clearing against revenue;
a duplicate payment goes into clearing against refunds payable; a staff refund
takes revenue back into refunds payable; a confirmed refund pays the payable
out of clearing. A rental's payment goes into the deposit pool, not revenue;
its settlement moves what it keeps to rental revenue and what it releases
to refunds payable.
"""

from __future__ import annotations

import attrs

from actors.orders.events import (
    DuplicatePaymentRefunding,
    Event,
    PaymentCaptured,
    RefundConfirmed,
    RentalSettled,
    TicketsRefunding,
)
from actors.orders.state import Order, Purpose

REVENUE = "revenue:tickets"
DEPOSITS_HELD = "deposits:held"
RENTAL_REVENUE = "revenue:rentals"
REFUNDS_PAYABLE = "refunds:payable"
#: where a captured payment is booked, by what the order's money is for
CAPTURED_INTO = {
    Purpose.TICKETS: REVENUE,
    Purpose.RENTAL: DEPOSITS_HELD,
    Purpose.COMPENSATION: RENTAL_REVENUE,
}


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
    if isinstance(event, RentalSettled):
        return _settlement(event)
    return []


def _settlement(event: RentalSettled) -> list[Posting]:
    """The pool gives up a settled rental's money: kept to revenue, released to refunds payable."""
    memo = "rental settled"
    moved = event.kept_fen + event.released_fen
    if not moved:
        return []
    lines = [Posting(DEPOSITS_HELD, moved, memo)]
    if event.kept_fen:
        lines.append(Posting(RENTAL_REVENUE, -event.kept_fen, memo))
    if event.released_fen:
        lines.append(Posting(REFUNDS_PAYABLE, -event.released_fen, memo))
    return lines


def _pair(debit: str, credit: str, amount_fen: int, memo: str) -> list[Posting]:
    return [Posting(debit, amount_fen, memo), Posting(credit, -amount_fen, memo)]
