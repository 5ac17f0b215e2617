"""The rule every owner of money shares: which confirmed payment collects what is due.

An order (its total) and a rental (its deposit and prepaid usage) are each
collected once. The first payment confirmed of exactly what is due, while
it is still awaited and paid no later than its deadline, collects it; any
other confirmed payment is given back whole, for one of the reasons of
:class:`NotCollected`. Each owner names the reasons in its own words
(``order_expired``, ``rental_expired``) and keeps its own records; the rule
is this one function.
"""

from __future__ import annotations

import enum
from datetime import datetime


class NotCollected(enum.Enum):
    """Why a confirmed payment is given back instead of collecting what is due."""

    ALREADY_PAID = "already_paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    AMOUNT_MISMATCH = "amount_mismatch"


def collection_refusal(
    *,
    collected: bool,
    cancelled: bool,
    expired: bool,
    paid_at: datetime,
    deadline: datetime,
    amount_fen: int,
    due_fen: int,
) -> NotCollected | None:
    """Why a payment of ``amount_fen`` at ``paid_at`` does not collect ``due_fen``, or ``None``.

    ``collected``: something collected it already; ``cancelled`` / ``expired``:
    it is no longer awaited; ``deadline``: the last moment a payment may be
    made. The first reason that applies is given, in that order.
    """
    if collected:
        return NotCollected.ALREADY_PAID
    if cancelled:
        return NotCollected.CANCELLED
    if expired or paid_at > deadline:
        return NotCollected.EXPIRED
    if amount_fen != due_fen:
        return NotCollected.AMOUNT_MISMATCH
    return None
