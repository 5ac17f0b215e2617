"""Reconciliation's SQL: the books around a business date, and each run with its differences.

Functions take an asyncpg connection first (``db.run(fn, ...)``). The books
are read from the tables live traffic writes: orders' ``payment_confirmations``,
``payments`` and ``refunds``; rentals' ``rental_confirmations``,
``rental_payments`` and ``rental_refunds`` (migration 0007). A run and its
differences are stored in ``recon_runs`` and ``recon_differences``
(migration 0008): a difference is kept under its stable key, so running a
date again updates it rather than adding a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from actors.reconciliation.model import Collection, Owner, Refund, Started

#: the first key of the advisory locks that serialise runs of one date and channel
RUN_LOCK_SPACE = 0x5EC0


async def lock_run(conn: asyncpg.Connection, bill_date: date, channel: str) -> None:
    """Wait for, then hold (for the session), the lock of ``bill_date``'s runs with ``channel``.

    Two servers on one database (``--workers``) both run the daily
    reconciliation; they take turns per date and channel, so the second sees
    what the first fixed.
    """
    key = bill_date.toordinal() * 8 + sum(channel.encode()) % 8
    await conn.execute("select pg_advisory_lock($1, $2)", RUN_LOCK_SPACE, key)


async def collections(
    conn: asyncpg.Connection, channel: str, low: datetime, high: datetime
) -> list[Collection]:
    """Money ``channel`` confirmed here between ``low`` and ``high``, for orders and rentals."""
    rows = await conn.fetch(
        """select c.out_trade_no, c.channel_txn_id, c.amount_fen, c.paid_at as at,
                  'order' as owner_kind, c.order_id as owner_id,
                  exists (select 1 from refunds r where r.channel = c.channel
                           and r.channel_txn_id = c.channel_txn_id) as refunded
             from payment_confirmations c
            where c.channel = $1 and c.paid_at >= $2 and c.paid_at < $3
           union all
           select c.reference, c.channel_txn_id, c.amount_fen, c.at,
                  'rental', c.rental_id,
                  exists (select 1 from rental_refunds r where r.out_trade_no = c.reference)
             from rental_confirmations c
            where c.channel = $1 and c.kind in ('payment', 'conversion')
              and c.at >= $2 and c.at < $3
           order by 4, 2""",
        channel,
        low,
        high,
    )
    return [
        Collection(
            r["out_trade_no"],
            r["channel_txn_id"],
            r["amount_fen"],
            r["at"],
            Owner(r["owner_kind"], r["owner_id"]),
            r["refunded"],
        )
        for r in rows
    ]


async def started(conn: asyncpg.Connection, out_trade_nos: Sequence[str]) -> dict[str, Started]:
    """The payments among ``out_trade_nos`` that this server started, with their owners."""
    rows = await conn.fetch(
        """select out_trade_no, 'order' as owner_kind, order_id as owner_id
             from payments where out_trade_no = any($1::text[])
           union all
           select out_trade_no, 'rental', rental_id
             from rental_payments where out_trade_no = any($1::text[])""",
        list(out_trade_nos),
    )
    return {
        r["out_trade_no"]: Started(r["out_trade_no"], Owner(r["owner_kind"], r["owner_id"]))
        for r in rows
    }


async def refunds(
    conn: asyncpg.Connection,
    channel: str,
    low: datetime,
    high: datetime,
    out_refund_nos: Sequence[str],
) -> list[Refund]:
    """Refunds by ``channel`` asked or confirmed between ``low`` and ``high``, or named."""
    rows = await conn.fetch(
        """select out_refund_no, out_trade_no, amount_fen, requested_at, confirmed_at,
                  failed_at is not null as failed, 'order' as owner_kind, order_id as owner_id
             from refunds
            where channel = $1 and ((requested_at >= $2 and requested_at < $3)
                  or (confirmed_at >= $2 and confirmed_at < $3)
                  or out_refund_no = any($4::text[]))
           union all
           select out_refund_no, out_trade_no, amount_fen, requested_at, confirmed_at,
                  failure is not null, 'rental', rental_id
             from rental_refunds
            where channel = $1 and ((requested_at >= $2 and requested_at < $3)
                  or (confirmed_at >= $2 and confirmed_at < $3)
                  or out_refund_no = any($4::text[]))
           order by 1""",
        channel,
        low,
        high,
        list(out_refund_nos),
    )
    return [
        Refund(
            r["out_refund_no"],
            r["out_trade_no"],
            r["amount_fen"],
            r["requested_at"],
            Owner(r["owner_kind"], r["owner_id"]),
            r["confirmed_at"],
            r["failed"],
        )
        for r in rows
    ]


async def record_run(
    conn: asyncpg.Connection,
    bill_date: date,
    channel: str,
    source: str,
    started_at: datetime,
    finished_at: datetime,
    lines: int,
    differences: Sequence[dict[str, Any]],
) -> int:
    """Store a run and its ``differences`` (each a map of the columns, with ``status``).

    A difference already stored under its key takes the new status and
    amounts (a fixed one stays fixed); a stored one still open or waiting
    that this run no longer found is resolved. Returns the run's id.
    """
    async with conn.transaction():
        counts = {s: sum(d["status"] == s for d in differences) for s in ("fixed", "open")}
        waiting = sum(d["status"] == "waiting" for d in differences)
        run_id = await conn.fetchval(
            """insert into recon_runs (bill_date, channel, source, started_at, finished_at,
                                      lines, found, fixed, open, waiting)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning run_id""",
            bill_date,
            channel,
            source,
            started_at,
            finished_at,
            lines,
            len(differences),
            counts["fixed"],
            counts["open"],
            waiting,
        )
        for d in differences:
            await conn.execute(
                """insert into recon_differences (bill_date, channel, key, kind, status, detail,
                       out_trade_no, channel_txn_id, out_refund_no, local_fen, channel_fen,
                       owner_kind, owner_id, fix, first_run, last_run, found_at, settled_at)
                   values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                           $15, $15, $16::timestamptz,
                           case when $5::text in ('fixed', 'resolved') then $16::timestamptz end)
                   on conflict (bill_date, channel, key) do update
                      set status = case when recon_differences.status = 'fixed' then 'fixed'
                                        else excluded.status end,
                          detail = excluded.detail, local_fen = excluded.local_fen,
                          channel_fen = excluded.channel_fen, fix = coalesce(excluded.fix,
                          recon_differences.fix), last_run = excluded.last_run,
                          settled_at = coalesce(recon_differences.settled_at,
                                                excluded.settled_at)""",
                bill_date,
                channel,
                d["key"],
                d["kind"],
                d["status"],
                d["detail"],
                d.get("out_trade_no"),
                d.get("channel_txn_id"),
                d.get("out_refund_no"),
                d.get("local_fen"),
                d.get("channel_fen"),
                d.get("owner_kind"),
                d.get("owner_id"),
                d.get("fix"),
                run_id,
                finished_at,
            )
        await conn.execute(
            """update recon_differences set status = 'resolved', settled_at = $4, last_run = $5
                where bill_date = $1 and channel = $2 and status in ('open', 'waiting')
                  and key <> all($3::text[])""",
            bill_date,
            channel,
            [d["key"] for d in differences],
            finished_at,
            run_id,
        )
    return run_id


async def report(
    conn: asyncpg.Connection, bill_date: date | None, channel: str | None
) -> dict[str, Any]:
    """The last run of each channel for ``bill_date`` (the latest date run when ``None``)
    and every difference of that date, unsettled first."""
    if bill_date is None:
        bill_date = await conn.fetchval("select max(bill_date) from recon_runs")
        if bill_date is None:
            return {"date": None, "runs": [], "differences": []}
    runs = await conn.fetch(
        """select distinct on (channel) run_id, channel, source, started_at, finished_at,
                  lines, found, fixed, open, waiting
             from recon_runs where bill_date = $1 and ($2::text is null or channel = $2)
            order by channel, run_id desc""",
        bill_date,
        channel,
    )
    differences = await conn.fetch(
        """select channel, key, kind, status, detail, out_trade_no, channel_txn_id,
                  out_refund_no, local_fen, channel_fen, owner_kind, owner_id, fix,
                  found_at, settled_at
             from recon_differences where bill_date = $1 and ($2::text is null or channel = $2)
            order by status not in ('open', 'waiting'), channel, kind, key""",
        bill_date,
        channel,
    )
    return {
        "date": bill_date,
        "runs": [dict(r) for r in runs],
        "differences": [dict(d) for d in differences],
    }


async def unresolved(conn: asyncpg.Connection) -> dict[str, int]:
    """Open differences by channel, over every date (waiting ones are not differences yet)."""
    rows = await conn.fetch(
        "select channel, count(*) as n from recon_differences where status = 'open' "
        "group by channel"
    )
    return {r["channel"]: r["n"] for r in rows}
