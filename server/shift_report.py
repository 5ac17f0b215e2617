"""A counter's shift report: what it sold and refunded, by channel, and the cash in its drawer.

Pure: :func:`shift_report` turns the rows :mod:`server.storage.shift` reads
into the figures ``counter.shift`` answers. docs/protocol.md
(``counter.shift``) and docs/counter.md define every figure with a worked
example; the rules in brief:

- a **collection** is one taking of money: a cash or card payment this
  counter recorded (``payment.record``), or a WeChat Pay or Alipay payment of
  an order this counter created (its QR shown on this counter's screen);
- it is **sold** when it paid its order (captured), else a **duplicate**
  (a second payment, a late or wrong one) that the server refunds by itself;
- a **refund** is this counter's when the counter asked it (``order.refund``)
  or when it gives back a duplicate of this counter's;
- the drawer should hold ``float + cash taken - cash refunded``, where cash
  taken is every cash collection (sold or duplicate) and cash refunded every
  cash refund of this counter's that the channel has not refused for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

#: every channel, in the order a shift report lists them
CHANNEL_ORDER = ("cash", "card", "wechat", "alipay")


@attrs.frozen
class CollectionRow:
    """Money this counter took (or had taken by its QR) within the shift."""

    order_id: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    captured: bool
    tickets: int
    received_at: datetime


@attrs.frozen
class ShiftRefundRow:
    """A refund of this counter's asked within the shift."""

    out_refund_no: str
    order_id: str
    channel: str
    amount_fen: int
    reason: str
    staff: bool
    requested_at: datetime
    confirmed_at: datetime | None
    failed_at: datetime | None


def _by_channel(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Count and sum of ``rows`` per channel, every channel listed (zeros too)."""
    out = {c: {"channel": c, "count": 0, "amount_fen": 0} for c in CHANNEL_ORDER}
    for row in rows:
        figures = out[row.channel]
        figures["count"] += 1
        figures["amount_fen"] += row.amount_fen
    return list(out.values())


def _total(rows: list[Any]) -> dict[str, Any]:
    return {
        "count": len(rows),
        "amount_fen": sum(r.amount_fen for r in rows),
        "by_channel": _by_channel(rows),
    }


def cash_in_drawer(float_fen: int, taken_fen: int, refunded_fen: int) -> int:
    """What the drawer should hold: the opening float, plus cash taken, less cash handed back."""
    return float_fen + taken_fen - refunded_fen


def shift_report(
    device_id: str,
    start: datetime,
    end: datetime,
    float_fen: int,
    collections: Iterable[CollectionRow],
    refunds: Iterable[ShiftRefundRow],
) -> dict[str, Any]:
    """The shift report of ``device_id`` over ``[start, end)``, as ``counter.shift`` answers.

    ``collections`` and ``refunds`` are this counter's rows of the shift
    (see the module docstring for which rows are its); nothing else is read.
    """
    collections = list(collections)
    refunds = list(refunds)
    sold = [c for c in collections if c.captured]
    duplicates = [c for c in collections if not c.captured]
    staff = [r for r in refunds if r.staff]
    automatic = [r for r in refunds if not r.staff]
    taken = sum(c.amount_fen for c in collections if c.channel == "cash")
    handed_back = sum(r.amount_fen for r in refunds if r.channel == "cash" and r.failed_at is None)
    return {
        "device": device_id,
        "from": start.timestamp(),
        "to": end.timestamp(),
        "sales": {
            "orders": len(sold),
            "tickets": sum(c.tickets for c in sold),
            "amount_fen": sum(c.amount_fen for c in sold),
            "by_channel": _by_channel(sold),
        },
        "duplicates": _total(duplicates),
        "refunds": {
            **_total(refunds),
            "staff": _total(staff),
            "automatic": _total(automatic),
            "failed": sum(1 for r in refunds if r.failed_at is not None),
            "pending": sum(1 for r in refunds if r.confirmed_at is None and r.failed_at is None),
        },
        "cash": {
            "float_fen": float_fen,
            "taken_fen": taken,
            "refunded_fen": handed_back,
            "in_drawer_fen": cash_in_drawer(float_fen, taken, handed_back),
        },
    }
