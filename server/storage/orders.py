"""SQL of orders: load an order's state, persist its events with ledger and outbox rows.

:class:`OrderStorage` is the order actor's store (it implements
:class:`actors.orders.interfaces.OrderStore`): it loads an order and commits
a command's events by group commit. The rest are asyncio coroutine functions
taking an asyncpg connection; they run in the database thread, inside a
transaction the caller owns (a group-commit batch or
:meth:`Database.run_in_transaction`). Each event's rows, its ledger postings
and the outbox rows of its durable effects (decided by
:func:`actors.orders.effects.react`, written here as they are given) commit
or vanish together. The schema's constraints are the backstop: a second
capture of one order, a replayed channel transaction, an oversold date or a
refund of a ticket a gate just admitted raise here rather than corrupt
anything, and :class:`OrderStorage` turns them into the store's answers.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any, NamedTuple

import asyncpg

from actors.catalog import WHOLE_DAY
from actors.orders.domain import (
    DuplicatePaymentRefunding,
    Event,
    IssuedTicket,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderLine,
    OrderStatus,
    PaymentCaptured,
    PaymentRecord,
    PaymentStarted,
    Purpose,
    RefundConfirmed,
    RefundFailed,
    RefundRecord,
    TicketsIssued,
    TicketsRefunding,
)
from actors.orders.effects import ClosePayment, DurableEffect, RequestRefund
from actors.orders.interfaces import (
    CapacityLimits,
    OrderConflict,
    SoldOut,
    TicketsUsedMeanwhile,
)
from actors.orders.postings import Posting, postings_for


class OrderStorage:
    """The order actors' store in PostgreSQL: loads through the pool, commits by group commit.

    Implements :class:`actors.orders.interfaces.OrderStore`. ``run`` is
    :meth:`Database.run`, ``submit`` :meth:`GroupCommitter.submit`.
    """

    def __init__(
        self, run: Callable[..., Awaitable[Any]], submit: Callable[..., Awaitable[Any]]
    ) -> None:
        self._run = run
        self._submit = submit
        #: (date, slot) pairs whose capacity row is known to exist
        self._known_capacity: set[tuple[date, str]] = set()

    async def load(self, order_id: str) -> Order | None:
        """The order's current state, or ``None`` if it does not exist."""
        return await self._run(load_order, order_id)

    async def commit(
        self,
        before: Order | None,
        events: Sequence[Event],
        after: Sequence[Order],
        effects: Sequence[DurableEffect],
        *,
        capacity: CapacityLimits | None = None,
    ) -> None:
        """Write ``events`` and the outbox rows of ``effects`` in the next group commit.

        The capacity rows a new order needs are made first, on their own
        (:func:`ensure_capacity_rows`). Raises :class:`OrderConflict` when
        the version check or a unique constraint says another process got
        there first, :class:`SoldOut` when the capacity check refuses,
        :class:`TicketsUsedMeanwhile` when the refund backstop does.
        """
        if capacity:
            await self._ensure_capacity_rows(capacity)
        write = partial(
            write_events,
            before=before,
            events=events,
            after=after,
            outbox=effects,
            capacity=capacity,
        )
        try:
            await self._submit(write)
        except asyncpg.UniqueViolationError as exc:
            raise OrderConflict(str(exc), constraint=exc.constraint_name or "unique") from exc
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name == "capacity_not_oversold":
                raise SoldOut(str(exc)) from None
            raise

    async def _ensure_capacity_rows(self, limits: CapacityLimits) -> None:
        new = {pair: limit for pair, limit in limits.items() if pair not in self._known_capacity}
        if new:
            await self._run(ensure_capacity_rows, new)
            self._known_capacity.update(new)


async def load_order(conn: asyncpg.Connection, order_id: str) -> Order | None:
    """The order's current state rebuilt from its rows, or ``None`` if it does not exist."""
    row = await conn.fetchrow("select * from orders where order_id = $1", order_id)
    if row is None:
        return None
    payments = await conn.fetch(
        "select * from payments where order_id = $1 order by started_at, out_trade_no", order_id
    )
    confirmations = await conn.fetch(
        "select * from payment_confirmations where order_id = $1", order_id
    )
    refunds = await conn.fetch(
        "select * from refunds where order_id = $1 order by requested_at", order_id
    )
    tickets = await conn.fetch(
        "select * from tickets where order_id = $1 order by ticket_id", order_id
    )
    txn_of = {c["out_trade_no"]: c["channel_txn_id"] for c in confirmations if c["captured"]}
    collected_of: Counter[str] = Counter()
    notified_of: dict[str, int] = {}
    paid_in: dict[tuple[str, str], int] = {}
    for confirmation in confirmations:
        if confirmation["notified_fen"] is not None:
            notified_of[confirmation["out_trade_no"]] = confirmation["notified_fen"]
        txn_of.setdefault(confirmation["out_trade_no"], confirmation["channel_txn_id"])
        collected_of[confirmation["out_trade_no"]] += confirmation["amount_fen"]
        paid_in[(confirmation["channel"], confirmation["channel_txn_id"])] = confirmation[
            "amount_fen"
        ]
    captured = next((c["out_trade_no"] for c in confirmations if c["captured"]), None)
    return Order(
        order_id=row["order_id"],
        device_id=row["device_id"],
        client_key=row["client_key"],
        lines=tuple(_line(line) for line in json.loads(row["lines"])),
        total_fen=row["total_fen"],
        status=OrderStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        payments={
            p["out_trade_no"]: PaymentRecord(
                p["out_trade_no"],
                p["channel"],
                p["amount_fen"],
                p["started_at"],
                txn_of.get(p["out_trade_no"]),
                p["state"],
                collected_of.get(p["out_trade_no"]),
                notified_of.get(p["out_trade_no"]),
            )
            for p in payments
        },
        confirmed_txns=frozenset((c["channel"], c["channel_txn_id"]) for c in confirmations),
        captured_out_trade_no=captured,
        tickets=tuple(
            IssuedTicket(
                t["ticket_id"],
                t["product_id"],
                t["visit_date"],
                t["slot"],
                t["entries_allowed"],
                t["price_fen"],
                t["code"],
            )
            for t in tickets
        ),
        void_ticket_ids=frozenset(t["ticket_id"] for t in tickets if t["status"] == "refunded"),
        refunds={
            r["out_refund_no"]: RefundRecord(
                r["out_refund_no"],
                r["out_trade_no"],
                r["channel"],
                r["amount_fen"],
                r["reason"],
                r["channel_txn_id"],
                r["staff"],
                r["confirmed_at"] is not None,
                paid_in.get((r["channel"], r["channel_txn_id"]), 0),
                r["failure"],
            )
            for r in refunds
        },
        received_fen=sum(c["amount_fen"] for c in confirmations),
        purpose=Purpose(row["purpose"]),
        rental_id=row["rental_id"],
        version=row["version"],
    )


def _line(data: dict[str, Any]) -> OrderLine:
    return OrderLine(
        data["product_id"],
        data["quantity"],
        date.fromisoformat(data["visit_date"]),
        data["slot"],
        data["unit_price_fen"],
        data.get("entries_allowed", 1),
    )


def _line_json(line: OrderLine) -> dict[str, Any]:
    return {
        "product_id": line.product_id,
        "quantity": line.quantity,
        "visit_date": line.visit_date.isoformat(),
        "slot": line.slot,
        "unit_price_fen": line.unit_price_fen,
        "entries_allowed": line.entries_allowed,
    }


async def order_for_client_key(
    conn: asyncpg.Connection, device_id: str, client_key: str
) -> str | None:
    """The id of the order ``device_id`` made with ``client_key``, if any."""
    return await conn.fetchval(
        "select order_id from orders where device_id = $1 and client_key = $2",
        device_id,
        client_key,
    )


class PaymentAttempt(NamedTuple):
    """The order a payment attempt belongs to, and the amount it asked the channel for."""

    order_id: str
    amount_fen: int


async def payment_attempt(conn: asyncpg.Connection, out_trade_no: str) -> PaymentAttempt | None:
    """The order and amount asked of payment attempt ``out_trade_no``, if it exists."""
    row = await conn.fetchrow(
        "select order_id, amount_fen from payments where out_trade_no = $1", out_trade_no
    )
    return None if row is None else PaymentAttempt(row["order_id"], row["amount_fen"])


async def out_trade_no_of_txn(
    conn: asyncpg.Connection, channel: str, channel_txn_id: str
) -> str | None:
    """The payment attempt a confirmed channel transaction was recorded under."""
    return await conn.fetchval(
        "select out_trade_no from payment_confirmations where channel = $1 and channel_txn_id = $2",
        channel,
        channel_txn_id,
    )


async def refund_of_key(conn: asyncpg.Connection, order_id: str, requested_by: str) -> str | None:
    """The refund a staff member already requested with this key, if any."""
    return await conn.fetchval(
        "select out_refund_no from refunds where order_id = $1 and requested_by = $2",
        order_id,
        requested_by,
    )


# the gate columns of a money step (named here: a union takes its first branch's names)
_NO_GATE = """null::text as ticket_id, null::text as gate_id, null::text as direction,
              null::boolean as granted, null::text as reason, null::integer as entries_left,
              null::boolean as offline, null::boolean as passed, 0 as seq"""


async def order_story(conn: asyncpg.Connection, order_id: str) -> list[dict[str, Any]]:
    """Everything that happened to an order, oldest first, for the service desk.

    Money steps (created, payments, flagged notifications, refunds asked,
    confirmed or refused for good, closing) and gate steps: each
    scan of the order's tickets with its verdict, and each passage reported
    for a granted one (the scan's time for an offline gate's passage). A
    passage sorts after its scan when the two share a time.
    """
    rows = await conn.fetch(
        f"""with order_scans as (
             select s.* from scans s join tickets t on t.ticket_id = s.ticket_id
              where t.order_id = $1)
           select created_at as at, 'created' as what, total_fen as amount_fen, null as ref,
                  {_NO_GATE}
             from orders where order_id = $1
           union all
           select started_at, 'payment started (' || channel || ')', amount_fen, out_trade_no,
                  {_NO_GATE}
             from payments where order_id = $1
           union all
           select received_at,
                  case when captured then 'payment captured (' || channel || ')'
                       else 'payment received, to refund (' || channel || ')' end,
                  amount_fen, channel_txn_id, {_NO_GATE}
             from payment_confirmations where order_id = $1
           union all
           select requested_at, 'refund requested: ' || reason, amount_fen, out_refund_no,
                  {_NO_GATE}
             from refunds where order_id = $1
           union all
           select received_at,
                  'flagged: the notification said ' || notified_fen || ' fen, the channel '
                  || 'collected ' || amount_fen || ' fen',
                  notified_fen, channel_txn_id, {_NO_GATE}
             from payment_confirmations where order_id = $1 and notified_fen is not null
           union all
           select confirmed_at, 'refund confirmed', amount_fen, out_refund_no, {_NO_GATE}
             from refunds where order_id = $1 and confirmed_at is not null
           union all
           select failed_at, 'refund failed: ' || failure, amount_fen, out_refund_no, {_NO_GATE}
             from refunds where order_id = $1 and failed_at is not null
           union all
           select closed_at, status, null, null, {_NO_GATE}
             from orders where order_id = $1 and closed_at is not null
           union all
           select at,
                  direction || case when granted then ' granted' else ' refused: ' || reason end
                  || case when offline then ' (offline)' else '' end,
                  null, scan_id, ticket_id, gate_id, direction, granted, reason, entries_left,
                  offline, null, 0
             from order_scans
           union all
           select coalesce(passed_at, at),
                  direction || case when passed then ' passed' else ' not passed' end,
                  null, scan_id, ticket_id, gate_id, direction, null, null, null, null, passed, 1
             from order_scans where passed is not null
           order by at, seq, what""",
        order_id,
    )
    return [_story_step(r) for r in rows]


def _story_step(row: asyncpg.Record) -> dict[str, Any]:
    step = {
        "at": row["at"].timestamp(),
        "what": row["what"],
        "amount_fen": row["amount_fen"],
        "ref": row["ref"],
    }
    if row["gate_id"] is None:
        return step
    step.update(ticket=row["ticket_id"], gate=row["gate_id"], direction=row["direction"])
    if row["passed"] is None:
        step.update(
            granted=row["granted"],
            reason=row["reason"],
            entries_left=row["entries_left"],
            offline=row["offline"],
        )
    else:
        step["passed"] = row["passed"]
    return step


async def write_events(
    conn: asyncpg.Connection,
    before: Order | None,
    events: Sequence[Event],
    after: Sequence[Order],
    *,
    outbox: Sequence[DurableEffect] = (),
    capacity: CapacityLimits | None = None,
) -> None:
    """Persist ``events`` (with ``after[i]`` the state after event ``i``) and ``outbox``.

    First bumps the order's version, checking it is still ``before.version``
    (:class:`OrderConflict` otherwise). Writes each event's rows and its
    balanced ledger postings, then one outbox row per durable effect.
    ``capacity`` gives the limits of the (date, slot) pairs an
    :class:`OrderCreated` reserves. Raises asyncpg's ``CheckViolationError``
    when a date is sold out, ``UniqueViolationError`` when a constraint says
    the change already happened elsewhere, :class:`TicketsUsedMeanwhile` when
    a ticket to refund has an entry used.
    """
    if (
        before is not None
        and not outbox
        and len(events) == 2
        and isinstance(events[0], PaymentCaptured)
        and isinstance(events[1], TicketsIssued)
    ):  # a capture always issues its tickets: the two are one statement
        await _write_capture(conn, before, events[0], events[1])
        return
    if before is not None:
        bumped = await conn.execute(
            "update orders set version = version + 1 where order_id = $1 and version = $2",
            before.order_id,
            before.version,
        )
        if bumped != "UPDATE 1":
            raise OrderConflict(f"order {before.order_id} changed since version {before.version}")
    state = before
    for event, next_state in zip(events, after, strict=True):
        await _write_event(conn, state, event, next_state, capacity or {})
        postings = postings_for(state, event)
        if postings:
            await post_ledger(conn, postings, event.at, order_id=event.order_id)
        state = next_state
    if outbox:
        await write_outbox(conn, outbox)


async def _write_event(
    conn: asyncpg.Connection,
    before: Order | None,
    event: Event,
    after: Order,
    capacity: CapacityLimits,
) -> None:
    if isinstance(event, OrderCreated):
        await conn.execute(
            """insert into orders (order_id, device_id, client_key, status, total_fen, lines,
                                   created_at, expires_at, purpose, rental_id)
               values ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9)""",
            event.order_id,
            event.device_id,
            event.client_key,
            event.total_fen,
            json.dumps([_line_json(line) for line in event.lines]),
            event.at,
            event.expires_at,
            event.purpose.value,
            event.rental_id,
        )
        await _change_capacity(conn, event.lines, +1, capacity)
    elif isinstance(event, PaymentStarted):
        await conn.execute(
            """insert into payments (out_trade_no, order_id, channel, amount_fen, state,
                                     started_at, started_by)
               values ($1, $2, $3, $4, 'started', $5, $6)""",
            event.out_trade_no,
            event.order_id,
            event.channel,
            event.amount_fen,
            event.at,
            after.device_id,
        )
    elif isinstance(event, DuplicatePaymentRefunding):
        await _uncaptured_confirmation(conn, event)
        await conn.execute(
            "update payments set state = 'refunding' where out_trade_no = $1 and state = 'started'",
            event.out_trade_no,
        )
        await _refund(conn, after, event.out_refund_no, event.channel_txn_id, None, event.at)
    elif isinstance(event, OrderCancelled | OrderExpired):
        status = "cancelled" if isinstance(event, OrderCancelled) else "expired"
        await conn.execute(
            "update orders set status = $2, closed_at = $3 where order_id = $1",
            event.order_id,
            status,
            event.at,
        )
        await _change_capacity(conn, after.lines, -1, capacity)
    elif isinstance(event, TicketsRefunding):
        voided = await conn.execute(
            "update tickets set status = 'refunded', version = version + 1 "
            "where ticket_id = any($1::text[]) and order_id = $2 and entries_used = 0",
            list(event.ticket_ids),
            event.order_id,
        )
        if voided != f"UPDATE {len(event.ticket_ids)}":
            # The backstop, not the rule (actors.orders.rules.refund_refusal): a gate
            # admitted one of them after the refund's facts were read.
            raise TicketsUsedMeanwhile(f"a ticket of {list(event.ticket_ids)} has an entry used")
        captured = after.payments[event.out_trade_no]
        await _refund(
            conn, after, event.out_refund_no, captured.channel_txn_id, event.by_device, event.at
        )
    elif isinstance(event, RefundConfirmed | RefundFailed):
        if isinstance(event, RefundConfirmed):
            await conn.execute(
                "update refunds set confirmed_at = $2, failed_at = null, failure = null "
                "where out_refund_no = $1 and confirmed_at is null",
                event.out_refund_no,
                event.at,
            )
        else:
            await conn.execute(
                "update refunds set failed_at = $2, failure = $3 "
                "where out_refund_no = $1 and confirmed_at is null",
                event.out_refund_no,
                event.at,
                event.failure,
            )
        refund = after.refunds[event.out_refund_no]
        await conn.execute(
            "update payments set state = $2 where out_trade_no = $1 and state <> $2",
            refund.out_trade_no,
            after.payments[refund.out_trade_no].state,
        )
    else:
        raise TypeError(f"no SQL for {event!r}")


async def _write_capture(
    conn: asyncpg.Connection, before: Order, captured: PaymentCaptured, issued: TicketsIssued
) -> None:
    """The hot path, in one round trip: a payment captures its order and issues tickets.

    The version check, the confirmation, its attempt, the order, the tickets
    and the balanced ledger postings are one statement; every part depends
    on the version check, so a stale order changes nothing (and raises
    :class:`OrderConflict`).
    """
    postings = postings_for(before, captured)
    tickets = issued.tickets
    done = await conn.fetchval(
        """with v as (
             update orders set version = version + 1, status = 'paid', paid_at = $7
              where order_id = $4 and version = $8 and status = 'pending'
             returning 1),
           confirmed as (
             insert into payment_confirmations (channel, channel_txn_id, out_trade_no, order_id,
                                                amount_fen, paid_at, received_at, captured,
                                                notified_fen)
             select $1, $2, $3, $4, $5, $6, $7, true, $20 where exists (select 1 from v)),
           attempt as (
             update payments set state = 'captured'
              where out_trade_no = $3 and exists (select 1 from v)),
           issued as (
             insert into tickets (ticket_id, order_id, product_id, visit_date, slot,
                                  entries_allowed, price_fen, status, issued_at, code)
             select x.ticket_id, $4, x.product_id, x.visit_date, x.slot, x.entries_allowed,
                    x.price_fen, 'valid', $9, x.code
               from unnest($10::text[], $11::text[], $12::date[], $13::text[], $14::int[],
                           $15::bigint[], $16::text[])
                    as x(ticket_id, product_id, visit_date, slot, entries_allowed, price_fen, code)
              where exists (select 1 from v)),
           txn as (
             insert into ledger_transactions (order_id, memo, at)
             select $4, $17, $7 where exists (select 1 from v)
             returning txn_id),
           posted as (
             insert into ledger_entries (txn_id, account, amount_fen)
             select txn.txn_id, entry.account, entry.amount_fen
               from txn, unnest($18::text[], $19::bigint[]) as entry(account, amount_fen))
           select exists (select 1 from v)""",
        captured.channel,
        captured.channel_txn_id,
        captured.out_trade_no,
        captured.order_id,
        captured.amount_fen,
        captured.paid_at,
        captured.at,
        before.version,
        issued.at,
        [t.ticket_id for t in tickets],
        [t.product_id for t in tickets],
        [t.visit_date for t in tickets],
        [t.slot for t in tickets],
        [t.entries_allowed for t in tickets],
        [t.price_fen for t in tickets],
        [t.code for t in tickets],
        postings[0].memo,
        [p.account for p in postings],
        [p.amount_fen for p in postings],
        captured.notified_fen,
    )
    if not done:
        raise OrderConflict(f"order {before.order_id} changed since version {before.version}")


async def _uncaptured_confirmation(
    conn: asyncpg.Connection, event: DuplicatePaymentRefunding
) -> None:
    await conn.execute(
        """insert into payment_confirmations (channel, channel_txn_id, out_trade_no, order_id,
                                              amount_fen, paid_at, received_at, captured,
                                              notified_fen)
           values ($1, $2, $3, $4, $5, $6, $7, false, $8)""",
        event.channel,
        event.channel_txn_id,
        event.out_trade_no,
        event.order_id,
        event.amount_fen,
        event.paid_at,
        event.at,
        event.notified_fen,
    )


async def _refund(
    conn: asyncpg.Connection,
    order: Order,
    out_refund_no: str,
    channel_txn_id: str | None,
    requested_by: str | None,
    at: datetime,
) -> None:
    refund = order.refunds[out_refund_no]
    await conn.execute(
        """insert into refunds (out_refund_no, order_id, out_trade_no, channel, channel_txn_id,
                                amount_fen, reason, staff, requested_by, requested_at)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        out_refund_no,
        order.order_id,
        refund.out_trade_no,
        refund.channel,
        channel_txn_id,
        refund.amount_fen,
        refund.reason,
        refund.staff,
        requested_by,
        at,
    )


async def reserved_between(
    conn: asyncpg.Connection, first: date, last: date
) -> dict[tuple[date, str], int]:
    """Places held (pending and paid orders) per (date, slot) from ``first`` to ``last``."""
    rows = await conn.fetch(
        "select visit_date, slot, reserved from capacity where visit_date between $1 and $2",
        first,
        last,
    )
    return {(row["visit_date"], row["slot"]): row["reserved"] for row in rows}


async def ensure_capacity_rows(conn: asyncpg.Connection, limits: CapacityLimits) -> None:
    """Create the capacity rows of ``limits`` ((date, slot) -> capacity) not there yet.

    Runs on its own, before the order's transaction: concurrent group-commit
    batches that each inserted the same new rows in another order deadlocked
    (one of them was refused). A row made here and never used holds nothing.
    """
    keys = sorted(limits)
    await conn.execute(
        """insert into capacity (visit_date, slot, capacity)
           select * from unnest($1::date[], $2::text[], $3::int[]) order by 1, 2
           on conflict do nothing""",
        [visit_date for visit_date, _ in keys],
        [slot for _, slot in keys],
        [limits[key] for key in keys],
    )


async def _change_capacity(
    conn: asyncpg.Connection, lines: Sequence[OrderLine], sign: int, limits: CapacityLimits
) -> None:
    needs: Counter[tuple[date, str]] = Counter()
    for line in lines:
        needs[(line.visit_date, line.slot or WHOLE_DAY)] += line.quantity
    for (visit_date, slot), quantity in sorted(needs.items()):
        if sign > 0:
            await conn.execute(
                "insert into capacity (visit_date, slot, capacity) values ($1, $2, $3) "
                "on conflict do nothing",
                visit_date,
                slot,
                limits.get((visit_date, slot), 0),
            )
        await conn.execute(
            "update capacity set reserved = reserved + $3 where visit_date = $1 and slot = $2",
            visit_date,
            slot,
            sign * quantity,
        )


async def post_ledger(
    conn: asyncpg.Connection,
    postings: Sequence[Posting],
    at: datetime,
    *,
    order_id: str | None = None,
    rental_id: str | None = None,
) -> None:
    """Write one balanced ledger transaction of ``postings``, naming its order or its rental."""
    await conn.execute(
        """with txn as (
             insert into ledger_transactions (order_id, rental_id, memo, at)
             values ($1, $2, $3, $4)
             returning txn_id)
           insert into ledger_entries (txn_id, account, amount_fen)
           select txn.txn_id, entry.account, entry.amount_fen
             from txn, unnest($5::text[], $6::bigint[]) as entry(account, amount_fen)""",
        order_id,
        rental_id,
        postings[0].memo,
        at,
        [posting.account for posting in postings],
        [posting.amount_fen for posting in postings],
    )


def _outbox_row(effect: DurableEffect) -> tuple[str, str, str, datetime]:
    """An effect as its outbox row: kind, dedupe key, payload (JSON), due time."""
    if isinstance(effect, RequestRefund):
        payload = {
            "order_id": effect.order_id,
            "channel": effect.channel,
            "out_trade_no": effect.out_trade_no,
            "out_refund_no": effect.out_refund_no,
            "refund_fen": effect.refund_fen,
            "total_fen": effect.total_fen,
            "reason": effect.reason,
        }
        return "refund", f"refund:{effect.out_refund_no}", json.dumps(payload), effect.at
    if isinstance(effect, ClosePayment):
        payload = {"channel": effect.channel, "out_trade_no": effect.out_trade_no}
        return "close_payment", f"close:{effect.out_trade_no}", json.dumps(payload), effect.at
    raise TypeError(f"not a durable effect: {effect!r}")


async def write_outbox(conn: asyncpg.Connection, effects: Sequence[DurableEffect]) -> None:
    """Add the durable ``effects`` to the outbox, in one statement; a known key is ignored."""
    await insert_outbox_rows(conn, [_outbox_row(effect) for effect in effects])


async def insert_outbox_rows(
    conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, datetime]]
) -> None:
    """Add outbox ``rows`` (kind, dedupe key, JSON payload, due time); a known key is ignored."""
    await conn.execute(
        """insert into outbox (kind, dedupe_key, payload, created_at, next_attempt_at)
           select kind, dedupe_key, payload::jsonb, at, at
             from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                  as r(kind, dedupe_key, payload, at)
           on conflict (dedupe_key) do nothing""",
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
    )
