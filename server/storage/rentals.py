"""SQL of rentals: load a rental, persist its events with their money, units and outbox rows.

:class:`RentalStorage` is the deposit actor's store (it implements
:class:`actors.rentals.interfaces.DepositStore`). A rental is stored whole
as a snapshot (:mod:`server.storage.rental_codec`) beside the rows that
carry its constraints: the units' states (a unit out is out on one rental),
the stock its reservation holds, the hold (made once, resolved once), the
payments, freezes, confirmations (a channel transaction once), refunds
(never more than a payment collected), unfreezes, the ledger postings and
off-ledger memos, every event, and the outbox rows of its durable effects.
All commit or vanish together in one group-commit write.

The rest are asyncio coroutine functions taking an asyncpg connection, run
in the database thread through :meth:`Database.run`: the queries of the
rental ops and the units seeded from the catalog.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import attrs

from actors.catalog import Catalog
from actors.orders.effects import ClosePayment
from actors.rentals.effects import (
    CancelFreeze,
    ConvertFrozen,
    DurableEffect,
    OpenCompensationOrder,
    RequestRentalRefund,
    Unfreeze,
)
from actors.rentals.events import Event, RentalCreated
from actors.rentals.interfaces import (
    BundleClaimed,
    OutOfStock,
    RentalConflict,
    StockLimits,
    UnitsTaken,
)
from actors.rentals.inventory import reserved, unit_changes
from actors.rentals.postings import Memo, memos_for, postings_for
from actors.rentals.state import CLOSED, DepositRoute, Rental, RentalStatus, UnitState
from server.storage.orders import insert_outbox_rows, post_ledger
from server.storage.rental_codec import decode, encode


class RentalStorage:
    """The deposit actors' store in PostgreSQL: loads through the pool, commits by group commit.

    Implements :class:`actors.rentals.interfaces.DepositStore`. ``run`` is
    :meth:`Database.run`, ``submit`` :meth:`GroupCommitter.submit`.
    """

    def __init__(
        self, run: Callable[..., Awaitable[Any]], submit: Callable[..., Awaitable[Any]]
    ) -> None:
        self._run = run
        self._submit = submit

    async def load(self, rental_id: str) -> Rental | None:
        """The rental's current state, or ``None`` if it does not exist."""
        return await self._run(load_rental, rental_id)

    async def load_open(self) -> list[Rental]:
        """Every rental not closed yet (its deadlines still matter)."""
        return await self._run(open_rentals)

    async def commit(
        self,
        before: Rental | None,
        events: Sequence[Event],
        after: Sequence[Rental],
        effects: Sequence[DurableEffect],
        *,
        stock: StockLimits | None = None,
    ) -> None:
        """Write ``events``, their consequences and ``effects`` in the next group commit.

        Raises :class:`RentalConflict` when the version check or a unique
        constraint says another process got there first,
        :class:`OutOfStock`, :class:`UnitsTaken` and :class:`BundleClaimed`
        when the backstops refuse; nothing is written then.
        """
        write = partial(
            write_rental_events,
            before=before,
            events=events,
            after=after,
            outbox=effects,
            stock=stock or {},
        )
        try:
            await self._submit(write)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "one_rental_per_bundle_ticket":
                raise BundleClaimed(str(exc)) from None
            raise RentalConflict(str(exc), constraint=exc.constraint_name or "unique") from None
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name == "a_unit_out_is_on_one_rental":
                raise UnitsTaken(str(exc)) from None
            if exc.constraint_name in ("a_hold_resolves_once", "a_hold_is_made_once"):
                raise RentalConflict(str(exc), constraint=exc.constraint_name) from None
            raise


async def load_rental(conn: asyncpg.Connection, rental_id: str) -> Rental | None:
    """The rental as stored, with its version, or ``None``."""
    row = await conn.fetchrow("select state, version from rentals where rental_id = $1", rental_id)
    if row is None:
        return None
    return _rental_of(row)


def _rental_of(row: asyncpg.Record) -> Rental:
    rental = decode(json.loads(row["state"]))
    return attrs.evolve(rental, version=row["version"])


async def open_rentals(conn: asyncpg.Connection) -> list[Rental]:
    """Every rental not closed yet, oldest first."""
    rows = await conn.fetch(
        "select state, version from rentals where closed_at is null order by created_at"
    )
    return [_rental_of(row) for row in rows]


async def write_rental_events(
    conn: asyncpg.Connection,
    before: Rental | None,
    events: Sequence[Event],
    after: Sequence[Rental],
    *,
    outbox: Sequence[DurableEffect] = (),
    stock: StockLimits,
) -> None:
    """Persist ``events`` (``after[i]``: the rental after event ``i``) and ``outbox``.

    First writes the rental's row (checking it is still at
    ``before.version`` and bumping it), then the stock its reservation
    holds, then for each event its rows, postings, memos and unit states,
    then the outbox rows. Raises :class:`RentalConflict`,
    :class:`OutOfStock`, :class:`UnitsTaken`, or asyncpg's constraint
    errors, and the caller's transaction rolls the write back.
    """
    final = after[-1]
    await _write_rental_row(conn, before, final, events)
    await _change_stock(conn, reserved(before), reserved(final), stock)
    seq = await conn.fetchval(
        "select coalesce(max(seq), 0) from rental_events where rental_id = $1", final.rental_id
    )
    state = before
    for event, next_state in zip(events, after, strict=True):
        await _write_money_records(conn, state, next_state, event.at)
        postings = postings_for(state, event)
        if postings:
            await post_ledger(conn, postings, event.at, rental_id=final.rental_id)
        memos = memos_for(state, event)
        if memos:
            await _write_memos(conn, final.rental_id, memos, event.at)
        await _change_units(conn, final.rental_id, unit_changes(event), event.at)
        seq += 1
        await conn.execute(
            """insert into rental_events (rental_id, seq, kind, at, body)
               values ($1, $2, $3, $4, $5)""",
            final.rental_id,
            seq,
            type(event).__name__,
            event.at,
            json.dumps(encode(event)),
        )
        state = next_state
    if outbox:
        await write_rental_outbox(conn, outbox)


async def _write_rental_row(
    conn: asyncpg.Connection, before: Rental | None, final: Rental, events: Sequence[Event]
) -> None:
    closed_at = events[-1].at if final.status in CLOSED else None
    columns = (
        final.status.value,
        final.voucher,
        final.picked_up_at,
        final.due_at,
        final.overdue,
        closed_at,
        json.dumps(encode(attrs.evolve(final, version=0))),
    )
    if before is None:
        created = events[0]
        if not isinstance(created, RentalCreated):
            raise TypeError(f"a new rental starts with RentalCreated, not {created!r}")
        await conn.execute(
            """insert into rentals (rental_id, device_id, client_key, business_date, created_at,
                                    hold_until, deposit_fen, prepaid_fen, bundle_ticket_id,
                                    status, voucher, picked_up_at, due_at, overdue, closed_at,
                                    state)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
            final.rental_id,
            final.device_id,
            final.client_key,
            final.created_at.astimezone(ZoneInfo(final.timezone)).date(),
            final.created_at,
            final.hold_until,
            final.deposit_fen,
            final.prepaid_fen,
            final.bundle_ticket_id,
            *columns,
        )
        return
    bumped = await conn.execute(
        """update rentals set status = $3, voucher = $4, picked_up_at = $5, due_at = $6,
                              overdue = $7, closed_at = coalesce(closed_at, $8), state = $9,
                              version = version + 1
            where rental_id = $1 and version = $2""",
        before.rental_id,
        before.version,
        *columns,
    )
    if bumped != "UPDATE 1":
        raise RentalConflict(f"rental {before.rental_id} changed since version {before.version}")


#: advisory lock key serialising the transactions that change rental stock (see _change_stock)
STOCK_LOCK = 0x5CE1_5C00


async def _change_stock(
    conn: asyncpg.Connection,
    held_before: Mapping[str, int],
    held_after: Mapping[str, int],
    limits: StockLimits,
) -> None:
    """Reserve what the rental holds back now and release what it no longer does.

    A reservation fits only within the units of the type that are available
    (and the catalog's count, ``limits``); the stock row is locked, so two
    processes reserving the last unit cannot both get it.

    A group-commit batch holds many rentals' writes, so one transaction
    takes several stock rows in no global order; two batches committing side
    by side then deadlock (PostgreSQL finds it after ``deadlock_timeout``,
    a second, and one batch is retried). So the first change of stock in a
    transaction takes :data:`STOCK_LOCK` first: transactions that change
    stock take its rows one transaction at a time, and never deadlock on them.
    """
    locked = False
    for item_id in sorted(set(held_before) | set(held_after)):
        delta = held_after.get(item_id, 0) - held_before.get(item_id, 0)
        if delta == 0:
            continue
        if not locked:  # taken again by the batch's next rental: a no-op for this transaction
            await conn.execute("select pg_advisory_xact_lock($1)", STOCK_LOCK)
            locked = True
        await conn.execute(
            "insert into rental_stock (item_id) values ($1) on conflict do nothing", item_id
        )
        if delta < 0:
            await conn.execute(
                "update rental_stock set reserved = reserved + $2 where item_id = $1",
                item_id,
                delta,
            )
            continue
        fits = await conn.fetchval(
            """update rental_stock set reserved = reserved + $2
                where item_id = $1
                  and reserved + $2 <= least($3::integer, (
                      select count(*) from rental_units
                       where item_id = $1 and state = 'available' and in_catalog))
            returning reserved""",
            item_id,
            delta,
            limits.get(item_id, 0),
        )
        if fits is None:
            raise OutOfStock(f"not enough units of {item_id} are free")


async def _change_units(
    conn: asyncpg.Connection, rental_id: str, changes: Mapping[str, UnitState], at: datetime
) -> None:
    """Put units out on the rental (only available ones) or back in their state after it."""
    going_out = sorted(unit for unit, state in changes.items() if state is UnitState.OUT)
    if going_out:
        taken = await conn.fetch(
            """update rental_units set state = 'out', rental_id = $2, changed_at = $3
                where unit_id = any($1::text[]) and state = 'available'
            returning unit_id""",
            going_out,
            rental_id,
            at,
        )
        missing = sorted(set(going_out) - {row["unit_id"] for row in taken})
        if missing:
            raise UnitsTaken(f"units {missing} are not available", unit_ids=missing)
    for unit_id, state in sorted(changes.items()):
        if state is UnitState.OUT:
            continue
        await conn.execute(
            """update rental_units set state = $3, rental_id = null, changed_at = $4
                where unit_id = $1 and rental_id = $2""",
            unit_id,
            rental_id,
            state.value,
            at,
        )


async def _write_money_records(
    conn: asyncpg.Connection, before: Rental | None, after: Rental, at: datetime
) -> None:
    """The rows of the money records an event added or changed: a diff of the two states.

    Payments and freezes asked, confirmations (a channel transaction once),
    the hold made and resolved, refunds and unfreezes asked, confirmed or
    failed. Parents before children, so each foreign key holds.
    """
    rid = after.rental_id
    old_payments = before.payments if before else {}
    for no, payment in after.payments.items():
        if no not in old_payments:
            await _insert_payment(
                conn, rid, no, payment.channel, "deposit", payment.amount_fen, payment.started_at
            )
    old_freezes = before.freezes if before else {}
    for no, freeze in after.freezes.items():
        if no not in old_freezes:
            await conn.execute(
                """insert into rental_freezes (out_order_no, out_request_no, rental_id, channel,
                                               amount_fen, started_at, expires_at)
                   values ($1, $2, $3, $4, $5, $6, $7)""",
                no,
                freeze.out_request_no,
                rid,
                freeze.channel,
                freeze.amount_fen,
                freeze.started_at,
                freeze.expires_at,
            )
    old_hold = before.hold if before else None
    hold = after.hold
    conversion = hold.conversion if hold else None
    old_conversion = old_hold.conversion if old_hold else None
    if conversion is not None and old_conversion is None:
        await _insert_payment(
            conn,
            rid,
            conversion.out_trade_no,
            hold.channel,
            "conversion",
            conversion.amount_fen,
            conversion.at,
        )
    for channel, txn in sorted(after.confirmed_txns - (before.confirmed_txns if before else set())):
        kind, reference, amount = _confirmed(after, channel, txn)
        holds = hold is not None and txn in (hold.channel_txn_id, hold.auth_no)
        await conn.execute(
            """insert into rental_confirmations (channel, channel_txn_id, kind, reference,
                                                 rental_id, amount_fen, holds, at)
               values ($1, $2, $3, $4, $5, $6, $7, $8)""",
            channel,
            txn,
            kind,
            reference,
            rid,
            amount,
            holds,
            at,
        )
    if hold is not None and old_hold is None:
        await conn.execute(
            """insert into rental_holds (rental_id, route, channel, reference, amount_fen, held_at)
               values ($1, $2, $3, $4, $5, $6)""",
            rid,
            hold.route.value,
            hold.channel,
            hold.out_trade_no or hold.out_order_no,
            hold.amount_fen,
            hold.held_at,
        )
    resolution = hold.resolution if hold else None
    if resolution is not None and (old_hold is None or old_hold.resolution is None):
        resolved = await conn.execute(
            """update rental_holds set resolution = $2, posted_fen = $3, voided_fen = $4,
                                       resolved_at = $5
                where rental_id = $1 and resolution is null""",
            rid,
            resolution.kind.value,
            resolution.posted_fen,
            resolution.voided_fen,
            resolution.at,
        )
        if resolved != "UPDATE 1":
            raise RentalConflict(
                f"the hold of rental {rid} is resolved already", constraint="a_hold_resolves_once"
            )
    old_refunds = before.refunds if before else {}
    for no, refund in after.refunds.items():
        old = old_refunds.get(no)
        if old is None:
            await conn.execute(
                """insert into rental_refunds (out_refund_no, rental_id, out_trade_no, channel,
                                               amount_fen, reason, requested_at)
                   values ($1, $2, $3, $4, $5, $6, $7)""",
                no,
                rid,
                refund.out_trade_no,
                refund.channel,
                refund.amount_fen,
                refund.reason,
                at,
            )
        if (old is None or not old.confirmed) and refund.confirmed:
            await conn.execute(
                """update rental_refunds set confirmed_at = $2, failure = null
                    where out_refund_no = $1""",
                no,
                at,
            )
        elif (old is None or old.failure is None) and refund.failure is not None:
            await conn.execute(
                "update rental_refunds set failure = $2 where out_refund_no = $1",
                no,
                refund.failure,
            )
    old_unfreezes = before.unfreezes if before else {}
    for no, unfreeze in after.unfreezes.items():
        old = old_unfreezes.get(no)
        if old is None:
            await conn.execute(
                """insert into rental_unfreezes (out_request_no, rental_id, out_order_no, channel,
                                                 amount_fen, reason, requested_at)
                   values ($1, $2, $3, $4, $5, $6, $7)""",
                no,
                rid,
                unfreeze.out_order_no,
                unfreeze.channel,
                unfreeze.amount_fen,
                unfreeze.reason,
                at,
            )
        if (old is None or not old.confirmed) and unfreeze.confirmed:
            await conn.execute(
                "update rental_unfreezes set confirmed_at = $2 where out_request_no = $1", no, at
            )


async def _insert_payment(
    conn: asyncpg.Connection,
    rental_id: str,
    out_trade_no: str,
    channel: str,
    kind: str,
    amount_fen: int,
    at: datetime,
) -> None:
    await conn.execute(
        """insert into rental_payments (out_trade_no, rental_id, channel, kind, amount_fen,
                                        started_at)
           values ($1, $2, $3, $4, $5, $6)""",
        out_trade_no,
        rental_id,
        channel,
        kind,
        amount_fen,
        at,
    )


def _confirmed(rental: Rental, channel: str, txn: str) -> tuple[str, str, int]:
    """What confirmed channel transaction ``txn`` was: its kind, reference and amount."""
    hold = rental.hold
    if hold is not None:
        conversion = hold.conversion
        if conversion is not None and conversion.channel_txn_id == txn:
            return "conversion", conversion.out_trade_no, conversion.amount_fen
        if hold.route is DepositRoute.PAY and hold.channel_txn_id == txn:
            return "payment", hold.out_trade_no or "", hold.amount_fen
        if hold.route is DepositRoute.PREAUTH and hold.auth_no == txn:
            return "freeze", hold.out_order_no or "", hold.amount_fen
    for refund in rental.refunds.values():  # a duplicate, refunded whole
        if refund.channel == channel and refund.channel_txn_id == txn:
            return "payment", refund.out_trade_no, refund.payment_fen or refund.amount_fen
    for unfreeze in rental.unfreezes.values():  # a duplicate freeze, unfrozen whole
        if unfreeze.channel == channel and unfreeze.auth_no == txn:
            return "freeze", unfreeze.out_order_no, unfreeze.amount_fen
    raise ValueError(f"rental {rental.rental_id} confirmed {channel} {txn}, which it never asked")


async def _write_memos(
    conn: asyncpg.Connection, rental_id: str, memos: Sequence[Memo], at: datetime
) -> None:
    await conn.executemany(
        """insert into rental_memos (rental_id, account, amount_fen, memo, at)
           values ($1, $2, $3, $4, $5)""",
        [(rental_id, memo.account, memo.amount_fen, memo.memo, at) for memo in memos],
    )


_KIND_WORDS = re.compile(r"(?<!^)(?=[A-Z])")


def outbox_kind(effect: DurableEffect) -> str:
    """The outbox row kind of a rental's durable effect: ``rental.`` and its name in snake case."""
    return "rental." + _KIND_WORDS.sub("_", type(effect).__name__).lower()


def _dedupe_key(effect: DurableEffect) -> str:
    """The key that makes asking for the same money work twice one outbox row."""
    if isinstance(effect, RequestRentalRefund):
        return f"refund:{effect.out_refund_no}"
    if isinstance(effect, ConvertFrozen):
        return f"convert:{effect.out_trade_no}"
    if isinstance(effect, Unfreeze):
        return f"unfreeze:{effect.out_request_no}"
    if isinstance(effect, CancelFreeze):
        return f"cancel_freeze:{effect.out_order_no}"
    if isinstance(effect, ClosePayment):
        return f"close:{effect.out_trade_no}"
    if isinstance(effect, OpenCompensationOrder):
        return f"compensation:{effect.rental_id}"
    raise TypeError(f"not a rental's durable effect: {effect!r}")


def _payload(effect: DurableEffect) -> dict[str, Any]:
    """The effect's fields as the outbox worker reads them (times as ISO text)."""
    payload = attrs.asdict(effect, recurse=True)
    return {key: _plain(value) for key, value in payload.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


async def write_rental_outbox(conn: asyncpg.Connection, effects: Sequence[DurableEffect]) -> None:
    """Add the durable ``effects`` to the outbox, in one statement; a known key is ignored."""
    rows = [
        (outbox_kind(effect), _dedupe_key(effect), json.dumps(_payload(effect)), _due(effect))
        for effect in effects
    ]
    await insert_outbox_rows(conn, rows)


def _due(effect: DurableEffect) -> datetime:
    return effect.at


# --- the units, from the catalog ------------------------------------------------------------


async def store_rental_units(conn: asyncpg.Connection, catalog: Catalog) -> None:
    """Make a row for every unit ``catalog`` lists; a unit it no longer lists stays, unlisted.

    A known unit keeps its state (it may be out); its label and item type
    follow the catalog.
    """
    units = catalog.rental_units
    await conn.execute(
        """insert into rental_units (unit_id, item_id, label)
           select * from unnest($1::text[], $2::text[], $3::text[])
           on conflict (unit_id) do update
              set item_id = excluded.item_id, label = excluded.label, in_catalog = true""",
        [unit.unit_id for unit in units],
        [unit.item_id for unit in units],
        [unit.label for unit in units],
    )
    await conn.execute(
        "update rental_units set in_catalog = false where not (unit_id = any($1::text[]))",
        [unit.unit_id for unit in units],
    )


# --- what the ops ask -----------------------------------------------------------------------


async def rental_for_client_key(
    conn: asyncpg.Connection, device_id: str, client_key: str
) -> str | None:
    """The rental a device made with ``client_key``, or ``None``."""
    return await conn.fetchval(
        "select rental_id from rentals where device_id = $1 and client_key = $2",
        device_id,
        client_key,
    )


async def unit_states(conn: asyncpg.Connection, unit_ids: Iterable[str]) -> dict[str, UnitState]:
    """The runtime state of each of ``unit_ids`` that storage knows, by unit id."""
    rows = await conn.fetch(
        "select unit_id, state from rental_units where unit_id = any($1::text[])", list(unit_ids)
    )
    return {row["unit_id"]: UnitState(row["state"]) for row in rows}


async def rental_of_freeze(conn: asyncpg.Connection, out_order_no: str) -> str | None:
    """The rental that asked freeze ``out_order_no``, or ``None``."""
    return await conn.fetchval(
        "select rental_id from rental_freezes where out_order_no = $1", out_order_no
    )


async def rental_of_payment(conn: asyncpg.Connection, out_trade_no: str) -> str | None:
    """The rental whose payment (deposit or conversion) is ``out_trade_no``, or ``None``."""
    return await conn.fetchval(
        "select rental_id from rental_payments where out_trade_no = $1", out_trade_no
    )


async def rentals_by_status(conn: asyncpg.Connection, status: str) -> list[dict[str, Any]]:
    """Open rentals ``held`` (paid, not picked up), ``out``, or ``overdue``, for a desk's list.

    Each is a short map: id, status, voucher, units out, deposit, times
    (epoch seconds), overdue.
    """
    where = {
        "held": "status = 'held'",
        "out": "status = 'out'",
        "overdue": "status = 'out' and overdue",
    }[status]
    rows = await conn.fetch(
        f"""select rental_id, status, voucher, deposit_fen, prepaid_fen, created_at,
                   picked_up_at, due_at, overdue,
                   (select array_agg(label order by label) from rental_units u
                     where u.rental_id = r.rental_id) as labels
              from rentals r
             where closed_at is null and {where}
             order by coalesce(due_at, created_at), rental_id
             limit 500"""
    )
    return [
        {
            "rental": row["rental_id"],
            "status": row["status"],
            "voucher": row["voucher"],
            "deposit_fen": row["deposit_fen"],
            "prepaid_fen": row["prepaid_fen"],
            "created_at": row["created_at"].timestamp(),
            "picked_up_at": _epoch(row["picked_up_at"]),
            "due_at": _epoch(row["due_at"]),
            "overdue": row["overdue"],
            "units_out": list(row["labels"] or []),
        }
        for row in rows
    ]


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


__all__ = [
    "RentalStatus",
    "RentalStorage",
    "load_rental",
    "open_rentals",
    "rental_for_client_key",
    "rental_of_freeze",
    "rental_of_payment",
    "rentals_by_status",
    "store_rental_units",
    "unit_states",
    "write_rental_events",
]
