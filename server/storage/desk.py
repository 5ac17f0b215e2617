"""The service desk's queries: find what a visitor's number names, and read its money and story.

:func:`find_subject` turns any number a visitor can show (an order id, a
payment's ``out_trade_no``, a channel's transaction id, a refund number, a
ticket id, a rental id, a freeze's ``out_order_no``) into the order or rental
it belongs to. :func:`order_money` and :func:`rental_money` read the rows of
every payment, collection, refund (and freeze) with their times; an order's
story is :func:`server.storage.orders.order_story`, a rental's is
:func:`rental_story`, built from its events. :func:`reconciliation_status` is
the one place the desk asks about reconciliation.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

from actors.rentals import events as ev
from server.storage.rental_codec import decode

#: the kinds of number the desk finds by, and where each is looked up, orders first
_FIND: dict[str, tuple[tuple[str, str], ...]] = {
    "order": (("order", "select order_id from orders where order_id = $1"),),
    "out_trade_no": (
        ("order", "select order_id from payments where out_trade_no = $1"),
        ("rental", "select rental_id from rental_payments where out_trade_no = $1"),
    ),
    "channel_txn_id": (
        (
            "order",
            "select order_id from payment_confirmations where channel_txn_id = $1 limit 1",
        ),
        (
            "rental",
            "select rental_id from rental_confirmations where channel_txn_id = $1 limit 1",
        ),
    ),
    "out_refund_no": (
        ("order", "select order_id from refunds where out_refund_no = $1"),
        ("rental", "select rental_id from rental_refunds where out_refund_no = $1"),
    ),
    "ticket": (("order", "select order_id from tickets where ticket_id = $1"),),
    "rental": (("rental", "select rental_id from rentals where rental_id = $1"),),
    "out_order_no": (("rental", "select rental_id from rental_freezes where out_order_no = $1"),),
}

#: every kind :func:`find_subject` takes
FIND_KINDS = tuple(_FIND)


async def find_subject(conn: asyncpg.Connection, kind: str, value: str) -> tuple[str, str] | None:
    """``("order", order_id)`` or ``("rental", rental_id)`` that ``kind`` = ``value`` names.

    ``kind`` is one of :data:`FIND_KINDS` (a ticket by its id: the caller
    turns a code into its id first; a voucher into its rental id). ``None``
    when nothing here has that number.
    """
    for subject, sql in _FIND[kind]:
        found = await conn.fetchval(sql, value)
        if found is not None:
            return subject, found
    return None


async def order_money(conn: asyncpg.Connection, order_id: str) -> dict[str, list[dict[str, Any]]]:
    """The order's payments, collections and refunds as stored, each oldest first.

    ``payments``: ``out_trade_no``, ``channel``, ``amount_fen``, ``started_at``;
    ``collections`` (money a channel or cashier took): ``out_trade_no``,
    ``channel``, ``channel_txn_id``, ``amount_fen``, ``paid_at``,
    ``received_at``, ``kept`` (it paid the order; otherwise it is refunded);
    ``refunds``: ``out_refund_no``, ``out_trade_no``, ``channel``,
    ``amount_fen``, ``reason``, ``requested_at``, ``confirmed_at``,
    ``failed_at``, ``failure``.
    """
    payments = await conn.fetch(
        """select out_trade_no, channel, amount_fen, started_at from payments
            where order_id = $1 order by started_at, out_trade_no""",
        order_id,
    )
    collections = await conn.fetch(
        """select out_trade_no, channel, channel_txn_id, amount_fen, paid_at, received_at,
                  captured as kept
             from payment_confirmations where order_id = $1
            order by received_at, channel_txn_id""",
        order_id,
    )
    refunds = await conn.fetch(
        """select out_refund_no, out_trade_no, channel, amount_fen, reason, requested_at,
                  confirmed_at, failed_at, failure
             from refunds where order_id = $1 order by requested_at, out_refund_no""",
        order_id,
    )
    return {
        "payments": [dict(r) for r in payments],
        "collections": [dict(r) for r in collections],
        "refunds": [dict(r) for r in refunds],
        "freezes": [],
    }


async def rental_money(conn: asyncpg.Connection, rental_id: str) -> dict[str, list[dict[str, Any]]]:
    """The rental's payments, collections, refunds and freezes, in :func:`order_money`'s shape.

    A rental's collections are the payments and freeze conversions a
    channel confirmed (a freeze itself holds money, it collects none: it is
    in ``freezes``, with ``out_order_no``, ``out_request_no``, ``channel``,
    ``amount_fen``, ``started_at``, ``expires_at``, ``auth_no``,
    ``frozen_at``). A refund that failed has ``failed_at`` ``None`` (rental
    refunds keep only the failure) and its ``failure``.
    """
    payments = await conn.fetch(
        """select out_trade_no, channel, amount_fen, started_at from rental_payments
            where rental_id = $1 order by started_at, out_trade_no""",
        rental_id,
    )
    collections = await conn.fetch(
        """select reference as out_trade_no, channel, channel_txn_id, amount_fen,
                  at as paid_at, at as received_at, (holds or kind = 'conversion') as kept
             from rental_confirmations
            where rental_id = $1 and kind in ('payment', 'conversion')
            order by at, channel_txn_id""",
        rental_id,
    )
    refunds = await conn.fetch(
        """select out_refund_no, out_trade_no, channel, amount_fen, reason, requested_at,
                  confirmed_at, null::timestamptz as failed_at, failure
             from rental_refunds where rental_id = $1 order by requested_at, out_refund_no""",
        rental_id,
    )
    freezes = await conn.fetch(
        """select f.out_order_no, f.out_request_no, f.channel, f.amount_fen, f.started_at,
                  f.expires_at, c.channel_txn_id as auth_no, c.at as frozen_at
             from rental_freezes f
             left join rental_confirmations c on c.kind = 'freeze' and c.reference = f.out_order_no
            where f.rental_id = $1 order by f.started_at, f.out_order_no""",
        rental_id,
    )
    return {
        "payments": [dict(r) for r in payments],
        "collections": [dict(r) for r in collections],
        "refunds": [dict(r) for r in refunds],
        "freezes": [dict(r) for r in freezes],
    }


async def rental_story(conn: asyncpg.Connection, rental_id: str) -> list[dict[str, Any]]:
    """Everything that happened to a rental, oldest first, in the order story's step shape.

    One step per stored event (:func:`rental_step`) plus one ``refund
    requested: REASON`` per refund asked of a channel; steps that share a
    time keep the order they happened in (events by their sequence, a
    refund's request after the event that asked for it).
    """
    rows = await conn.fetch(
        "select seq, kind, at, body from rental_events where rental_id = $1 order by seq",
        rental_id,
    )
    refunds = await conn.fetch(
        """select out_refund_no, amount_fen, reason, requested_at from rental_refunds
            where rental_id = $1""",
        rental_id,
    )
    amounts = {r["out_refund_no"]: r["amount_fen"] for r in refunds}
    keyed: list[tuple[datetime, int, dict[str, Any]]] = []
    for row in rows:
        step = rental_step(decode(json.loads(row["body"])), row["at"], amounts)
        if step is not None:
            keyed.append((row["at"], 2 * row["seq"], step))
    last_seq_at: dict[datetime, int] = {}
    for at, order, _ in keyed:
        last_seq_at[at] = max(last_seq_at.get(at, 0), order)
    for refund in refunds:
        at = refund["requested_at"]
        step = _step(at, f"refund requested: {refund['reason']}", refund["amount_fen"])
        step["ref"] = refund["out_refund_no"]
        keyed.append((at, last_seq_at.get(at, 0) + 1, step))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [step for _, _, step in keyed]


def _step(at: datetime, what: str, amount_fen: int | None = None, ref: str | None = None) -> dict:
    return {"at": at.timestamp(), "what": what, "amount_fen": amount_fen, "ref": ref}


def _labels(units: tuple[Any, ...]) -> str:
    return ", ".join(unit.label for unit in units)


def rental_step(event: Any, at: datetime, refund_amounts: dict[str, int]) -> dict[str, Any] | None:
    """One rental event, stored at ``at``, as a story step (``at``, ``what``,
    ``amount_fen``, ``ref``).

    ``refund_amounts`` gives a confirmed or failed refund's amount by its
    number. The words are docs/protocol.md's (``desk.lookup``); an event the
    desk has nothing to say about gives ``None``.
    """
    match event:
        case ev.RentalCreated():
            return _step(at, "created", event.deposit_fen + event.prepaid_fen)
        case ev.PaymentStarted():
            return _step(
                at, f"payment started ({event.channel})", event.amount_fen, event.out_trade_no
            )
        case ev.FreezeStarted():
            return _step(
                at, f"freeze started ({event.channel})", event.amount_fen, event.out_order_no
            )
        case ev.DepositPaid():
            amount = event.deposit_fen + event.prepaid_fen
            return _step(at, f"deposit paid ({event.channel})", amount, event.channel_txn_id)
        case ev.DepositFrozen():
            amount = event.deposit_fen + event.prepaid_fen
            return _step(at, f"deposit frozen ({event.channel})", amount, event.auth_no)
        case ev.VoucherIssued():
            return _step(at, "voucher issued")
        case ev.DuplicatePaymentRefunding():
            what = f"payment received, to refund ({event.channel})"
            return _step(at, what, event.amount_fen, event.channel_txn_id)
        case ev.DuplicateFreezeReleasing():
            what = f"freeze received, to release ({event.channel})"
            return _step(at, what, event.amount_fen, event.auth_no)
        case ev.RentalCancelled():
            return _step(at, f"cancelled: {event.reason}")
        case ev.RentalExpired():
            return _step(at, "expired")
        case ev.RentalPickedUp():
            return _step(at, f"picked up: {_labels(event.units)}", ref=event.by_device)
        case ev.UnitsReturned():
            return _step(at, f"returned: {_labels(event.units)}", ref=event.by_device)
        case ev.RentalSettled():
            split = event.split
            return _step(
                at,
                f"settled: kept {split.kept_fen} fen, released {split.released_fen} fen",
                split.charges_fen,
                event.compensation_order_id,
            )
        case ev.RentalOverdue():
            return _step(at, "overdue")
        case ev.RentalExtended():
            return _step(at, f"extended: {event.reason}", ref=event.by_device)
        case ev.DepositForfeited():
            posted = event.resolution.posted_fen if event.resolution else None
            return _step(at, f"deposit forfeited: {event.reason}", posted, event.by_device)
        case ev.FreezeConverting():
            conversion = event.conversion
            return _step(at, "freeze converting", conversion.amount_fen, conversion.out_trade_no)
        case ev.ConversionConfirmed():
            return _step(at, "freeze converted", event.amount_fen, event.channel_txn_id)
        case ev.UnfreezeConfirmed():
            return _step(at, "unfreeze confirmed", ref=event.out_request_no)
        case ev.FreezeLapsed():
            return _step(at, "freeze lapsed", event.amount_fen, event.out_order_no)
        case ev.RefundConfirmed():
            amount = refund_amounts.get(event.out_refund_no)
            return _step(at, "refund confirmed", amount, event.out_refund_no)
        case ev.RefundFailed():
            amount = refund_amounts.get(event.out_refund_no)
            return _step(at, f"refund failed: {event.failure}", amount, event.out_refund_no)
    return None


async def reconciliation_status(
    conn: asyncpg.Connection, subject: str, subject_id: str
) -> dict[str, Any] | None:
    """What reconciliation found about this order's or rental's money; ``None`` before any run.

    ``checked``: each channel and business date (Beijing time) the subject's
    collections fall on, with when the latest reconciliation run of that date
    and channel finished (``None``: not reconciled yet). ``differences``:
    every difference reconciliation stored about the subject (docs/reconciliation.md),
    with its date, channel, kind, status and detail.
    """
    if not await conn.fetchval("select exists (select 1 from recon_runs)"):
        return None
    checked = await conn.fetch(
        """with paid as (
               select channel, (paid_at at time zone 'Asia/Shanghai')::date as bill_date
                 from payment_confirmations where $1 = 'order' and order_id = $2
               union
               select channel, (at at time zone 'Asia/Shanghai')::date
                 from rental_confirmations
                where $1 = 'rental' and rental_id = $2 and kind in ('payment', 'conversion'))
           select p.channel, p.bill_date, max(r.finished_at) as last_run_at
             from paid p left join recon_runs r
               on r.channel = p.channel and r.bill_date = p.bill_date
            group by p.channel, p.bill_date order by p.bill_date, p.channel""",
        subject,
        subject_id,
    )
    differences = await conn.fetch(
        """select bill_date, channel, key, kind, status, detail
             from recon_differences where owner_kind = $1 and owner_id = $2
            order by bill_date, channel, key""",
        subject,
        subject_id,
    )
    return {
        "checked": [
            {
                "channel": r["channel"],
                "date": r["bill_date"].isoformat(),
                "last_run_at": r["last_run_at"].timestamp() if r["last_run_at"] else None,
            }
            for r in checked
        ],
        "differences": [{**dict(d), "bill_date": d["bill_date"].isoformat()} for d in differences],
    }
