"""SQL of the rental reports: the rows one business date's report is made of, plain.

Each function takes an asyncpg connection (run it through
:meth:`Database.run`) and the UTC bounds ``[start, end)`` of the site's
local day, and returns frozen rows with no arithmetic beyond what SQL
selects; :mod:`server.rental_report` turns them into the figures. What a
rental's snapshot holds (lines, units and when each came back, charges) is
read with :func:`server.storage.rental_codec.decode`, the store's own codec.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import asyncpg
import attrs

from server.storage.rental_codec import decode


@attrs.frozen
class LineRow:
    """One line of a rental: ``quantity`` units of ``item_id``, ``covered`` of them by a ticket."""

    item_id: str
    quantity: int
    covered: int


@attrs.frozen
class RentalRow:
    """A rental made on the report's business date.

    ``held``: its deposit hold was made; ``bundle_product``: the product of
    the bundle ticket it names (``None``: it names none); ``units_out``: the
    item id of each unit handed out on it.
    """

    rental_id: str
    status: str
    held: bool
    bundle_product: str | None
    lines: tuple[LineRow, ...]
    units_out: tuple[str, ...]


@attrs.frozen
class UnitSpan:
    """A unit out on a rental: from ``out_at`` until ``back_at`` (``None``: still out)."""

    rental_id: str
    unit_id: str
    item_id: str
    out_at: datetime
    back_at: datetime | None


@attrs.frozen
class ChargeRow:
    """One unit's charge in a settlement made within the day (fen)."""

    rental_id: str
    item_id: str
    usage_fen: int
    covered: bool
    late_fen: int
    damage_fen: int
    lost_fen: int


@attrs.frozen
class HoldRow:
    """A deposit hold made before the day's end and not resolved before its start."""

    rental_id: str
    route: str
    channel: str
    amount_fen: int
    held_at: datetime
    resolution: str | None
    posted_fen: int | None
    voided_fen: int | None
    resolved_at: datetime | None


@attrs.frozen
class EntryRow:
    """The ledger lines of rental transactions within the day on one account, by sign."""

    account: str
    debit_fen: int
    credit_fen: int


@attrs.frozen
class GiveBackRow:
    """A refund (``kind`` ``refund``) or unfreeze (``unfreeze``) asked within the day."""

    kind: str
    reference: str
    rental_id: str
    channel: str
    amount_fen: int
    reason: str
    requested_at: datetime
    confirmed_at: datetime | None
    failure: str | None


async def rentals_of_date(conn: asyncpg.Connection, business_date: date) -> list[RentalRow]:
    """Every rental whose business date is ``business_date``, oldest first."""
    rows = await conn.fetch(
        """select r.rental_id, r.status, r.state, t.product_id,
                  exists (select 1 from rental_holds h where h.rental_id = r.rental_id) as held
             from rentals r
             left join tickets t on t.ticket_id = r.bundle_ticket_id
            where r.business_date = $1
            order by r.created_at, r.rental_id""",
        business_date,
    )
    out = []
    for row in rows:
        rental = decode(json.loads(row["state"]))
        out.append(
            RentalRow(
                row["rental_id"],
                row["status"],
                row["held"],
                row["product_id"] if rental.bundle_ticket_id is not None else None,
                tuple(
                    LineRow(line.item.item_id, line.quantity, line.covered) for line in rental.lines
                ),
                tuple(unit.item_id for unit in rental.units),
            )
        )
    return out


async def unit_spans(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[UnitSpan]:
    """Every unit out at some time in ``[start, end)``, or handed out or back within it.

    Read from the rentals picked up before ``end`` and not closed before
    ``start``, whatever their business date (a rental of several days is out
    on each of them).
    """
    rows = await conn.fetch(
        """select state from rentals
            where picked_up_at is not null and picked_up_at < $2
              and (closed_at is null or closed_at >= $1)
            order by picked_up_at, rental_id""",
        start,
        end,
    )
    spans = []
    for row in rows:
        rental = decode(json.loads(row["state"]))
        for unit in rental.units:
            if unit.back_at is not None and unit.back_at < start:
                continue
            spans.append(
                UnitSpan(
                    rental.rental_id, unit.unit_id, unit.item_id, rental.picked_up_at, unit.back_at
                )
            )
    return spans


async def settlement_charges(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[ChargeRow]:
    """The charges of every rental settled within ``[start, end)``, unit by unit."""
    rows = await conn.fetch(
        """select state from rentals
            where status = 'settled' and closed_at >= $1 and closed_at < $2
            order by closed_at, rental_id""",
        start,
        end,
    )
    charges = []
    for row in rows:
        rental = decode(json.loads(row["state"]))
        charges += [
            ChargeRow(
                rental.rental_id,
                c.item_id,
                c.usage_fen,
                c.covered,
                c.late_fen,
                c.damage_fen,
                c.lost_fen,
            )
            for c in rental.charges
        ]
    return charges


async def holds_touching(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[HoldRow]:
    """Every hold made before ``end`` and unresolved at ``start`` (resolved in or after it)."""
    rows = await conn.fetch(
        """select rental_id, route, channel, amount_fen, held_at, resolution, posted_fen,
                  voided_fen, resolved_at
             from rental_holds
            where held_at < $2 and (resolved_at is null or resolved_at >= $1)
            order by held_at, rental_id""",
        start,
        end,
    )
    return [HoldRow(**dict(row)) for row in rows]


async def rental_entries(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> list[EntryRow]:
    """The rentals' ledger lines within ``[start, end)``, summed per account and sign."""
    rows = await conn.fetch(
        """select e.account,
                  coalesce(sum(e.amount_fen) filter (where e.amount_fen > 0), 0) as debit_fen,
                  coalesce(-sum(e.amount_fen) filter (where e.amount_fen < 0), 0) as credit_fen
             from ledger_entries e
             join ledger_transactions t on t.txn_id = e.txn_id
            where t.rental_id is not null and t.at >= $1 and t.at < $2
            group by e.account
            order by e.account""",
        start,
        end,
    )
    return [EntryRow(row["account"], int(row["debit_fen"]), int(row["credit_fen"])) for row in rows]


async def receivable_balance(conn: asyncpg.Connection, account: str, end: datetime) -> int:
    """The balance of ``account`` over every ledger transaction (any owner) before ``end``."""
    return int(
        await conn.fetchval(
            """select coalesce(sum(e.amount_fen), 0)
                 from ledger_entries e join ledger_transactions t on t.txn_id = e.txn_id
                where e.account = $1 and t.at < $2""",
            account,
            end,
        )
    )


async def give_backs(conn: asyncpg.Connection, start: datetime, end: datetime) -> list[GiveBackRow]:
    """The rentals' refunds and unfreezes asked within ``[start, end)``, in order."""
    rows = await conn.fetch(
        """select 'refund' as kind, out_refund_no as reference, rental_id, channel, amount_fen,
                  reason, requested_at, confirmed_at, failure
             from rental_refunds where requested_at >= $1 and requested_at < $2
           union all
           select 'unfreeze', out_request_no, rental_id, channel, amount_fen, reason,
                  requested_at, confirmed_at, null
             from rental_unfreezes where requested_at >= $1 and requested_at < $2
           order by requested_at, reference""",
        start,
        end,
    )
    return [GiveBackRow(**dict(row)) for row in rows]


async def units_listed(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """The unit ids the catalog lists now, by item id."""
    rows = await conn.fetch(
        "select item_id, unit_id from rental_units where in_catalog order by item_id, unit_id"
    )
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["item_id"], []).append(row["unit_id"])
    return out


@attrs.frozen
class ReportRows:
    """Everything one business date's rental report reads, as plain rows."""

    rentals: tuple[RentalRow, ...]
    spans: tuple[UnitSpan, ...]
    charges: tuple[ChargeRow, ...]
    holds: tuple[HoldRow, ...]
    entries: tuple[EntryRow, ...]
    receivable_end_fen: int
    give_backs: tuple[GiveBackRow, ...]
    units: dict[str, list[str]]


async def report_rows(
    conn: asyncpg.Connection,
    business_date: date,
    start: datetime,
    end: datetime,
    receivable_account: str,
) -> ReportRows:
    """Every row of the report of ``business_date`` (local day ``[start, end)`` in UTC).

    Read in one repeatable-read, read-only transaction, so the parts agree.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return ReportRows(
            tuple(await rentals_of_date(conn, business_date)),
            tuple(await unit_spans(conn, start, end)),
            tuple(await settlement_charges(conn, start, end)),
            tuple(await holds_touching(conn, start, end)),
            tuple(await rental_entries(conn, start, end)),
            await receivable_balance(conn, receivable_account, end),
            tuple(await give_backs(conn, start, end)),
            await units_listed(conn),
        )
