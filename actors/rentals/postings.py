"""Ledger postings and memos for rental events: every money movement, double-entry, pure.

Each money event becomes a balanced set of ``Posting`` lines (the orders'
own: debits positive, credits negative, summing to zero). Accounts:

- ``clearing:<channel>``: money held for us by a channel (as for orders);
- ``deposits:held``: the deposit pool, a liability: deposits collected and
  not yet resolved. Never revenue;
- ``rentals:prepaid``: usage paid in advance with a deposit, a liability
  until the rental settles (unearned);
- ``revenue:rentals``: rental charges, reached only at settlement (or a
  forfeit);
- ``receivable:rentals``: charges beyond the hold, owed by the visitor (the
  compensation order collects them);
- ``refunds:payable``: refunds owed and not yet confirmed (as for orders).

Pre-authorised money is not ours until converted: a freeze is a
:class:`Memo` on ``preauth:<channel>`` (positive when frozen, negative
when converted, unfrozen or lapsed), never a posting. A freeze converted
whole before settlement enters the pool like a payment; a settlement's
conversion of the kept part goes straight to revenue.
"""

from __future__ import annotations

import attrs

from actors.orders.postings import REFUNDS_PAYABLE, RENTALS_RECEIVABLE, Posting, clearing
from actors.rentals.events import (
    ConversionConfirmed,
    DepositForfeited,
    DepositFrozen,
    DepositPaid,
    DuplicateFreezeReleasing,
    DuplicatePaymentRefunding,
    Event,
    FreezeLapsed,
    RefundConfirmed,
    RentalCancelled,
    RentalSettled,
    UnfreezeConfirmed,
)
from actors.rentals.state import Hold, Rental, Resolution

DEPOSITS_HELD = "deposits:held"
PREPAID = "rentals:prepaid"
REVENUE = "revenue:rentals"
RECEIVABLE = RENTALS_RECEIVABLE


def preauth(channel: str) -> str:
    """The memo account of money frozen at ``channel``."""
    return f"preauth:{channel}"


@attrs.frozen
class Memo:
    """An off-ledger line: money frozen at a channel (> 0) or no longer frozen (< 0)."""

    account: str
    amount_fen: int
    memo: str


def postings_for(rental: Rental | None, event: Event) -> list[Posting]:
    """The balanced postings ``event`` makes on ``rental`` (its state before the event).

    Events that move no money on the ledger give an empty list; zero lines
    are left out.
    """
    if isinstance(event, DepositPaid):
        return _lines(
            (clearing(event.channel), event.deposit_fen + event.prepaid_fen),
            (DEPOSITS_HELD, -event.deposit_fen),
            (PREPAID, -event.prepaid_fen),
            memo="deposit paid",
        )
    if isinstance(event, DuplicatePaymentRefunding):
        return _lines(
            (clearing(event.channel), event.amount_fen),
            (REFUNDS_PAYABLE, -event.amount_fen),
            memo="duplicate deposit",
        )
    if rental is None:
        return []  # a creation moves no money
    if isinstance(event, RentalCancelled | DepositForfeited):
        return _resolution(rental.hold, event.resolution, memo=_MEMOS[type(event)])
    if isinstance(event, RentalSettled):
        lines = _resolution(rental.hold, event.resolution, memo="settlement")
        owed = event.split.compensation_fen
        return lines + _lines((RECEIVABLE, owed), (REVENUE, -owed), memo="compensation")
    if isinstance(event, ConversionConfirmed):
        return _conversion(rental.hold, event.amount_fen)
    if isinstance(event, RefundConfirmed):
        refund = rental.refunds[event.out_refund_no]
        return _lines(
            (REFUNDS_PAYABLE, refund.amount_fen),
            (clearing(refund.channel), -refund.amount_fen),
            memo="refund paid",
        )
    return []


_MEMOS = {RentalCancelled: "cancel", DepositForfeited: "forfeit"}


def _resolution(hold: Hold | None, resolution: Resolution | None, *, memo: str) -> list[Posting]:
    """The pool emptied into revenue (posted) and refunds payable (voided), if pooled."""
    if hold is None or resolution is None or not hold.pooled:
        return []  # frozen money is off-ledger: it is posted when converted
    return _lines(
        (DEPOSITS_HELD, hold.deposit_fen),
        (PREPAID, hold.prepaid_fen),
        (REVENUE, -resolution.posted_fen),
        (REFUNDS_PAYABLE, -resolution.voided_fen),
        memo=memo,
    )


def _conversion(hold: Hold | None, amount_fen: int) -> list[Posting]:
    """A conversion's money arriving: into the pool, or (after the resolution) out of it."""
    assert hold is not None and hold.conversion is not None
    channel = clearing(hold.channel)
    if hold.resolution is None:
        return _lines(
            (channel, amount_fen),
            (DEPOSITS_HELD, -hold.deposit_fen),
            (PREPAID, -hold.prepaid_fen),
            memo="freeze converted",
        )
    kept = min(amount_fen, hold.resolution.posted_fen)
    return _lines(
        (channel, amount_fen),
        (REVENUE, -kept),
        (REFUNDS_PAYABLE, -(amount_fen - kept)),
        memo="freeze converted",
    )


def memos_for(rental: Rental | None, event: Event) -> list[Memo]:
    """The off-ledger memo lines ``event`` makes on ``rental`` (its state before the event).

    Frozen money appears when the channel confirms the freeze and goes when
    the channel confirms it converted (the part converted and the rest it
    unfroze), unfrozen, or let it lapse.
    """
    if isinstance(event, DepositFrozen):
        amount = event.deposit_fen + event.prepaid_fen
        return [Memo(preauth(event.channel), amount, "frozen")]
    if isinstance(event, DuplicateFreezeReleasing):
        return [Memo(preauth(event.channel), event.amount_fen, "duplicate freeze")]
    if rental is None:
        return []
    if isinstance(event, ConversionConfirmed):
        hold = rental.hold
        assert hold is not None
        return [Memo(preauth(hold.channel), -hold.amount_fen, "converted")]
    if isinstance(event, UnfreezeConfirmed):
        unfreeze = rental.unfreezes[event.out_request_no]
        return [Memo(preauth(unfreeze.channel), -unfreeze.amount_fen, "unfrozen")]
    if isinstance(event, FreezeLapsed):
        hold = rental.hold
        assert hold is not None
        return [Memo(preauth(hold.channel), -event.amount_fen, "lapsed")]
    return []


def _lines(*pairs: tuple[str, int], memo: str) -> list[Posting]:
    lines = [Posting(account, amount, memo) for account, amount in pairs if amount]
    if sum(line.amount_fen for line in lines) != 0:
        raise AssertionError(f"unbalanced postings {lines}")
    return lines
