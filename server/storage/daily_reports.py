"""SQL of the daily report: the rows one business date's morning report is made of, plain.

Each function takes an asyncpg connection (run it through
:meth:`Database.run`) and the UTC bounds ``[start, end)`` of the site's
local day, and returns frozen rows with no arithmetic beyond what SQL
selects; :mod:`server.daily_report` turns them into the figures. The
deposits' rows are the rental report's own (:mod:`server.storage.rental_reports`),
read in the same snapshot.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
import attrs

from server.storage.rental_reports import (
    EntryRow,
    HoldRow,
    holds_touching,
    receivable_balance,
    rental_entries,
)


@attrs.frozen
class SaleRow:
    """A ticket order captured within the day: who sold it, how it was paid, for how much."""

    order_id: str
    device_id: str
    channel: str
    amount_fen: int
    paid_at: datetime


@attrs.frozen
class TicketRow:
    """A ticket of an order captured within the day, at its price."""

    order_id: str
    product_id: str
    price_fen: int


@attrs.frozen
class RefundRow:
    """A refund of an order's payment asked within the day, and what became of it."""

    out_refund_no: str
    order_id: str
    channel: str
    amount_fen: int
    reason: str
    staff: bool
    requested_at: datetime
    confirmed_at: datetime | None
    failed_at: datetime | None


@attrs.frozen
class PassageRow:
    """A scan within the day whose visitor walked through (``passed``), in recording order."""

    gate_id: str
    zone: str
    direction: str
    at: datetime


@attrs.frozen
class GateScanRow:
    """One gate's scans within the day: all of them, the refused, the grants not walked."""

    gate_id: str
    zone: str
    scans: int
    refused: int
    not_passed: int


async def sales_of_day(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[SaleRow]:
    """Every ticket order captured within ``[start, end)``, with its capturing channel.

    Compensation orders (a rental's charges beyond its deposit) are not
    ticket sales: they settle the rentals' receivable.
    """
    rows = await conn.fetch(
        """select o.order_id, o.device_id, c.channel, c.amount_fen, o.paid_at
             from orders o
             join payment_confirmations c on c.order_id = o.order_id and c.captured
            where o.purpose = 'tickets' and o.paid_at >= $1 and o.paid_at < $2
            order by o.paid_at, o.order_id""",
        start,
        end,
    )
    return [SaleRow(**dict(row)) for row in rows]


async def tickets_of_sales(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[TicketRow]:
    """The tickets of the orders :func:`sales_of_day` lists, whatever became of them since."""
    rows = await conn.fetch(
        """select t.order_id, t.product_id, t.price_fen
             from tickets t join orders o on o.order_id = t.order_id
            where o.purpose = 'tickets' and o.paid_at >= $1 and o.paid_at < $2
            order by t.order_id, t.ticket_id""",
        start,
        end,
    )
    return [TicketRow(**dict(row)) for row in rows]


async def refunds_of_day(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[RefundRow]:
    """Every refund of an order's payment asked within ``[start, end)``, in order.

    The rentals' own refunds (deposit releases) are in ``rental_refunds``,
    counted by the deposit figures instead.
    """
    rows = await conn.fetch(
        """select out_refund_no, order_id, channel, amount_fen, reason, staff, requested_at,
                  confirmed_at, failed_at
             from refunds where requested_at >= $1 and requested_at < $2
            order by requested_at, out_refund_no""",
        start,
        end,
    )
    return [RefundRow(**dict(row)) for row in rows]


async def passages_of_day(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[PassageRow]:
    """Every passage (``passed`` true) of a scan made within ``[start, end)``, in time order.

    Ordered by the scan's time, then by the order the server recorded the
    scans in, so passages at one instant keep their arrival order. A grant
    reported not passed, or not settled yet, is no passage.
    """
    rows = await conn.fetch(
        """select gate_id, zone, direction, at from scans
            where passed and at >= $1 and at < $2
            order by at, scan_pk""",
        start,
        end,
    )
    return [PassageRow(**dict(row)) for row in rows]


async def gate_scans_of_day(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[GateScanRow]:
    """Per gate (and zone), the scans made within ``[start, end)``, by gate id."""
    rows = await conn.fetch(
        """select gate_id, zone, count(*) as scans,
                  count(*) filter (where not granted) as refused,
                  count(*) filter (where granted and passed is false) as not_passed
             from scans where at >= $1 and at < $2
            group by gate_id, zone
            order by gate_id, zone""",
        start,
        end,
    )
    return [GateScanRow(**dict(row)) for row in rows]


async def reconciliation_of(conn: asyncpg.Connection, business_date: date) -> dict[str, Any] | None:
    """The summary of the stored reconciliation of ``business_date``, or ``None`` before any run.

    The one place the report reads reconciliation from (``recon_runs`` and
    ``recon_differences``, migration 0008; docs/reconciliation.md): the
    channels run, the lines of each channel's latest run, the date's
    differences by status, and when the latest run finished - a plain map
    of text, integers and epoch seconds, which the report shows as it is.
    """
    runs = await conn.fetch(
        """select distinct on (channel) channel, lines, finished_at
             from recon_runs where bill_date = $1 order by channel, run_id desc""",
        business_date,
    )
    if not runs:
        return None
    counts = dict(
        await conn.fetch(
            "select status, count(*) from recon_differences where bill_date = $1 group by status",
            business_date,
        )
    )
    return {
        "channels": " ".join(r["channel"] for r in runs),
        "lines": sum(r["lines"] for r in runs),
        **{status: counts.get(status, 0) for status in ("open", "waiting", "fixed", "resolved")},
        "last_run_at": max(r["finished_at"] for r in runs).timestamp(),
    }


@attrs.frozen
class DailyRows:
    """Everything one business date's daily report reads, as plain rows."""

    sales: tuple[SaleRow, ...]
    tickets: tuple[TicketRow, ...]
    refunds: tuple[RefundRow, ...]
    passages: tuple[PassageRow, ...]
    gate_scans: tuple[GateScanRow, ...]
    holds: tuple[HoldRow, ...]
    rental_entries: tuple[EntryRow, ...]
    receivable_end_fen: int
    reconciliation: dict[str, Any] | None


async def daily_rows(
    conn: asyncpg.Connection,
    business_date: date,
    start: datetime,
    end: datetime,
    receivable_account: str,
) -> DailyRows:
    """Every row of the daily report of ``business_date`` (local day ``[start, end)`` in UTC).

    Read in one repeatable-read, read-only transaction, so the parts agree.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return DailyRows(
            tuple(await sales_of_day(conn, start, end)),
            tuple(await tickets_of_sales(conn, start, end)),
            tuple(await refunds_of_day(conn, start, end)),
            tuple(await passages_of_day(conn, start, end)),
            tuple(await gate_scans_of_day(conn, start, end)),
            tuple(await holds_touching(conn, start, end)),
            tuple(await rental_entries(conn, start, end)),
            await receivable_balance(conn, receivable_account, end),
            await reconciliation_of(conn, business_date),
        )
