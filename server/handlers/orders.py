"""Ops for selling: the catalog and its places left, orders, payments from every channel, refunds.

Every op that touches an order asks that order's actor, so the order's
commands run one at a time and each reply is sent after its commit. Ids and
times are minted here, in the shell, and travel in the command.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.catalog import WHOLE_DAY, Catalog
from actors.channels import COUNTER_CHANNELS, QR_CHANNELS, pattern_of
from actors.ids import derived_out_trade_no, new_order_id, new_out_refund_no, new_out_trade_no
from actors.orders.actor import OrderOutcome
from actors.orders.domain import (
    CancelOrder,
    ConfirmPayment,
    CreateOrder,
    IssuedTicket,
    LineRequest,
    Order,
    PaymentRecord,
    RefundTickets,
    StartPayment,
    TicketFacts,
    visit_starts,
)
from server.errors import BadRequest, NotFound, ScenicError
from server.gates import TicketUse
from server.handlers.rentals import confirm_rental_payment, rental_catalog_view
from server.ops import OpContext, OpGroup
from server.schema import Arg
from server.storage import desk as desk_queries
from server.storage import orders as order_queries
from server.storage import rentals as rental_queries
from server.storage import tickets as ticket_queries

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.orders")
security_log = logging.getLogger("scenic.security")

SELLERS = {"kiosk", "counter"}
DESK = {"counter", "admin"}
ORDER_ID = Arg("order", "text", max_len=40)
MAX_FEN = 10**10  # 100 million yuan: anything larger is a typo or an attack

LINE_FIELDS = (
    Arg("product", "text", max_len=32),
    Arg("quantity", "int", low=1, high=200),
    Arg("date", "text", pattern=r"\d{4}-\d{2}-\d{2}"),
    Arg("slot", "text", required=False, max_len=8),
)


async def ask_order(services: Services, order_id: str, command: object) -> OrderOutcome:
    """Send ``command`` to the order's actor and return its outcome."""
    return await services.registry.ask(("order", order_id), command, services.config.ask_timeout_s)


async def order_view(order: Order, services: Services) -> dict[str, Any]:
    """The order as the protocol shows it (docs/protocol.md, ``order``).

    Its tickets' use is read as the gates keep it (the database, and this
    server's warm copy when that is newer), so a scan answered a moment ago
    shows.
    """
    stored = (
        await services.db.run(ticket_queries.tickets_of_order, order.order_id)
        if order.tickets
        else []
    )
    use = {record.ticket_id: services.gates.use_of(record) for record in stored}
    return {
        "order": order.order_id,
        "status": order.status.value,
        "total_fen": order.total_fen,
        "created_at": order.created_at.timestamp(),
        "expires_at": order.expires_at.timestamp(),
        "lines": [
            {
                "product": line.product_id,
                "quantity": line.quantity,
                "date": line.visit_date.isoformat(),
                "slot": line.slot,
                "unit_price_fen": line.unit_price_fen,
            }
            for line in order.lines
        ],
        "payments": [payment_view(order, p) for p in order.payments.values()],
        # every issued ticket has its row: tickets are written in the capture's transaction
        "tickets": [_ticket_view(t, order, use[t.ticket_id]) for t in order.tickets],
        "refunds": [
            {
                "out_refund_no": r.out_refund_no,
                "out_trade_no": r.out_trade_no,
                "channel": r.channel,
                "amount_fen": r.amount_fen,
                "reason": r.reason,
                "confirmed": r.confirmed,
                "state": r.state,
                "failure": r.failure,
            }
            for r in order.refunds.values()
        ],
    }


def payment_view(order: Order, payment: PaymentRecord) -> dict[str, Any]:
    """One payment attempt as the order map shows it: asked, collected, refunded."""
    return {
        "out_trade_no": payment.out_trade_no,
        "channel": payment.channel,
        "amount_fen": payment.amount_fen,
        "collected_fen": payment.collected_fen,
        "notified_fen": payment.notified_fen,
        "refunded_fen": sum(
            r.amount_fen
            for r in order.refunds.values()
            if r.out_trade_no == payment.out_trade_no and r.confirmed
        ),
        "state": payment.state,
        "channel_txn_id": payment.channel_txn_id,
    }


def _ticket_view(ticket: IssuedTicket, order: Order, use: TicketUse) -> dict[str, Any]:
    return {
        "ticket": ticket.ticket_id,
        "code": ticket.code,
        "product": ticket.product_id,
        "date": ticket.visit_date.isoformat(),
        "slot": ticket.slot,
        "refunded": ticket.ticket_id in order.void_ticket_ids,
        "entries_allowed": use.entries_allowed,
        "entries_used": use.entries_used,
        "entries_left": use.entries_left,
        "inside": use.inside,
    }


OPS = OpGroup()


@OPS.op("catalog.list", roles={"kiosk", "counter", "admin", "rental"})
async def catalog_list(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The site, its time slots, the products on sale and the rental items with their terms."""
    catalog = ctx.services.current_catalog()
    return {
        "site": {"name_zh": catalog.name_zh, "name_en": catalog.name_en},
        "timezone": catalog.timezone,
        "slots": [
            {
                "slot": s.slot_id,
                "starts": s.starts.isoformat("minutes"),
                "ends": s.ends.isoformat("minutes"),
            }
            for s in catalog.slots
        ],
        "products": [
            {
                "product": p.product_id,
                "name_zh": p.name_zh,
                "name_en": p.name_en,
                "price_fen": p.price_fen,
                "entries": p.entries_allowed,
                "needs_slot": p.needs_slot,
                "zones": list(p.zones),
                "includes_rentals": dict(p.includes_rentals),
            }
            for p in catalog.products
        ],
        **rental_catalog_view(catalog),
    }


@OPS.op(
    "catalog.places",
    roles={"kiosk", "counter", "admin", "rental"},
    args=(
        Arg("date", "text", required=False, pattern=r"\d{4}-\d{2}-\d{2}"),
        Arg("days", "int", required=False, low=1, high=31, default=1),
    ),
)
async def catalog_places(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The places left per date and slot, from ``date`` (default today) for ``days`` days."""
    services = ctx.services
    catalog = services.current_catalog()
    today = services.business_date(services.clock())
    first = today if args["date"] is None else _date(args["date"])
    days = [first + timedelta(days=n) for n in range(args["days"])]
    reserved = await services.db.run(order_queries.reserved_between, days[0], days[-1])
    return {"dates": [places_of_day(catalog, day, reserved) for day in days]}


@OPS.op(
    "order.create",
    roles=SELLERS,
    args=(
        Arg("client_key", "text", max_len=64),
        Arg("lines", "list", max_len=20, fields=LINE_FIELDS),
    ),
)
async def order_create(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Create a pending order; the same client_key from the same device gives the same order."""
    services = ctx.services
    existing = await services.db.run(
        order_queries.order_for_client_key, ctx.device_id, args["client_key"]
    )
    if existing is None:
        now = services.clock()
        catalog = services.current_catalog()
        command = CreateOrder(
            new_order_id(now),
            ctx.device_id,
            args["client_key"],
            tuple(_line_request(line) for line in args["lines"]),
            catalog,
            services.business_date(now),
            now,
            now + timedelta(seconds=services.config.order_ttl_s),
        )
        try:
            outcome = await ask_order(services, command.order_id, command)
            services.expiry.watch(outcome.order.order_id, outcome.order.expires_at)
            return await order_view(outcome.order, services)
        except ScenicError as exc:
            if exc.code != "order_exists":
                raise
        existing = await services.db.run(
            order_queries.order_for_client_key, ctx.device_id, args["client_key"]
        )
    return await order_view(await current_order(services, existing), services)


@OPS.op("order.get", roles=SELLERS | DESK, args=(ORDER_ID,))
async def order_get(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The order with its payments, tickets and refunds."""
    return await order_view(await current_order(ctx.services, args["order"]), ctx.services)


@OPS.op("order.cancel", roles=SELLERS | DESK, args=(ORDER_ID,))
async def order_cancel(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Cancel a pending order and release its capacity."""
    services = ctx.services
    outcome = await ask_order(services, args["order"], CancelOrder(services.clock()))
    return await order_view(outcome.order, services)


@OPS.op(
    "payment.start",
    roles=SELLERS,
    args=(ORDER_ID, Arg("channel", "text", pattern=pattern_of())),
)
async def payment_start(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Start paying an order by a channel: the amount and, for QR channels, the QR."""
    services = ctx.services
    now = services.clock()
    out_trade_no = new_out_trade_no(now)
    outcome = await ask_order(
        services, args["order"], StartPayment(out_trade_no, args["channel"], now)
    )
    order = outcome.order
    services.payments.remember(out_trade_no, order.order_id, order.total_fen)
    reply = {
        "order": order.order_id,
        "out_trade_no": out_trade_no,
        "amount_fen": outcome.order.total_fen,
        "channel": args["channel"],
        "qr": None,
    }
    channel = services.channels.get(args["channel"])
    if channel is not None:
        created = await channel.create_payment(
            out_trade_no,
            outcome.order.total_fen,
            f"tickets {order.order_id}",
            outcome.order.expires_at,
        )
        reply["qr"] = created.qr_payload
    return reply


@OPS.op(
    "payment.record",
    roles={"counter"},
    args=(
        ORDER_ID,
        Arg("channel", "text", pattern=pattern_of(COUNTER_CHANNELS)),
        Arg("amount_fen", "int", low=1, high=MAX_FEN),
        Arg("key", "text", max_len=64),
        Arg("card_ref", "text", required=False, max_len=64),
    ),
)
async def payment_record(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A cashier records cash or card taken for an order; idempotent by key."""
    services = ctx.services
    order_id = args["order"]
    now = services.clock()
    txn = f"{args['channel']}:{ctx.device_id}:{args['key']}"
    out_trade_no = await services.db.run(order_queries.out_trade_no_of_txn, args["channel"], txn)
    if out_trade_no is None:
        order = await services.db.run(order_queries.load_order, order_id)
        if order is None:
            raise NotFound(f"no order {order_id}")
        # Drawn from the record, not minted: the same record asked twice at once (a double
        # tap) starts one payment, and the second confirmation is a replay of the first.
        out_trade_no = derived_out_trade_no(order.created_at, f"{order_id}|{txn}")
        await ask_order(
            services,
            order_id,
            StartPayment(out_trade_no, args["channel"], now, money_taken=True),
        )
    outcome = await _confirm(
        services, order_id, out_trade_no, args["channel"], txn, args["amount_fen"], now
    )
    return _payment_reply(outcome, out_trade_no, txn, services)


@OPS.op(
    "payment.notify",
    roles={"channel"},
    args=(
        Arg("channel", "text", pattern=pattern_of(QR_CHANNELS)),
        Arg("out_trade_no", "text", max_len=32),
        Arg("channel_txn_id", "text", max_len=64),
        Arg("amount_fen", "int", low=1, high=MAX_FEN),
        Arg("paid_at", "number", low=0),
        Arg("nonce", "text", max_len=64),
        Arg("sign_ts", "number", low=0),
        Arg("signature", "text", max_len=512),
    ),
)
async def payment_notify(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A channel's payment notification: verified, then confirmed through the order's actor."""
    return await confirm_notification(ctx.services, args)


@OPS.op(
    "order.refund",
    roles={"counter"},
    args=(
        ORDER_ID,
        Arg("tickets", "list", max_len=200),
        Arg("reason", "text", max_len=200),
        Arg("key", "text", max_len=64),
    ),
)
async def order_refund(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Refund unused tickets of a paid order; they are void at once.

    The order's rules decide on what the gates know of each ticket's use
    (read here, as ``order_view`` shows it) and when its visit starts.
    """
    services = ctx.services
    tickets = args["tickets"]
    if not tickets or not all(isinstance(t, str) and 0 < len(t) <= 40 for t in tickets):
        raise BadRequest("'tickets' must list the ticket ids to refund")
    now = services.clock()
    refund_no = await services.db.run(
        order_queries.refund_of_key, args["order"], f"{ctx.device_id}:{args['key']}"
    ) or new_out_refund_no(now)
    command = RefundTickets(
        tuple(tickets),
        args["reason"],
        f"{ctx.device_id}:{args['key']}",
        refund_no,
        now,
        await _ticket_facts(services, args["order"], set(tickets)),
    )
    outcome = await ask_order(services, args["order"], command)
    return await order_view(outcome.order, services)


@OPS.op(
    "order.find",
    roles=DESK,
    args=(
        Arg("order", "text", required=False, max_len=40),
        Arg("out_trade_no", "text", required=False, max_len=32),
        Arg("channel_txn_id", "text", required=False, max_len=64),
        Arg("ticket", "text", required=False, max_len=512),
    ),
)
async def order_find(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Find an order by id, payment, channel transaction or ticket code, with its story."""
    services = ctx.services
    given = {k: v for k, v in args.items() if v is not None}
    if len(given) != 1:
        raise BadRequest("give exactly one of order, out_trade_no, channel_txn_id, ticket")
    ((kind, value),) = given.items()
    if not value:
        raise BadRequest(f"argument {kind!r} must not be empty")
    if kind == "ticket":
        value = services.ticket_id_of_code(value)
    found = await services.db.run(desk_queries.find_subject, kind, value)
    if found is None or found[0] != "order":
        raise NotFound(f"no order for {kind} {value}")
    order_id = found[1]
    order = await current_order(services, order_id)
    story = await services.db.run(order_queries.order_story, order_id)
    return {**(await order_view(order, services)), "story": story}


async def _confirm_for_rental(
    services: Services, channel: Any, rental_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """A rental's deposit payment notified: the amount checked as an order's is, then confirmed."""
    rental = await services.rentals.load(rental_id)
    attempt = rental.payments.get(fields["out_trade_no"]) if rental is not None else None
    if attempt is None:
        raise ScenicError(
            f"no payment {fields['out_trade_no']} was started here", code="unknown_payment"
        )
    amount_fen, _ = await collected_amount(channel, fields, attempt.amount_fen)
    return await confirm_rental_payment(services, rental_id, fields, amount_fen)


async def confirm_notification(services: Services, fields: dict[str, Any]) -> dict[str, Any]:
    """Verify a channel's payment notification and confirm it through the order's actor.

    The reply (and so the channel's acknowledgement) comes only after the
    confirmation committed. A notification of another amount than the one
    asked is checked with the channel's own query first: what the channel
    collected is what is recorded (and refunded), and a notification that
    disagrees with it is logged and flagged (:func:`collected_amount`).
    A payment of a rental's deposit goes to the rental's actor instead.
    Raises ``bad_signature`` for a forged, tampered or stale notification
    (logged on the security log, nothing recorded), ``unknown_payment`` for
    a payment we never started, ``payment_not_confirmed`` when the channel's
    query does not show the payment as paid, and the channel's own code when
    that query fails.
    """
    channel = services.channels.get(fields["channel"])
    if channel is None:
        raise BadRequest(f"channel {fields['channel']} is not configured")
    try:
        channel.verify_notification(fields)
    except ScenicError as exc:
        security_log.warning(
            "notify.bad_signature",
            extra={
                "channel": fields["channel"],
                "out_trade_no": fields.get("out_trade_no"),
                "detail": exc.message,
            },
        )
        raise
    attempt = await services.payments.find(fields["out_trade_no"])
    if attempt is None:
        rental_id = await services.db.run(rental_queries.rental_of_payment, fields["out_trade_no"])
        if rental_id is not None:  # a rental's deposit: the rental's actor confirms it
            return await _confirm_for_rental(services, channel, rental_id, fields)
        raise ScenicError(
            f"no payment {fields['out_trade_no']} was started here", code="unknown_payment"
        )
    amount_fen, notified_fen = await collected_amount(channel, fields, attempt.amount_fen)
    paid_at = datetime.fromtimestamp(fields["paid_at"], UTC)
    outcome = await _confirm(
        services,
        attempt.order_id,
        fields["out_trade_no"],
        fields["channel"],
        fields["channel_txn_id"],
        amount_fen,
        paid_at,
        notified_fen,
    )
    if notified_fen is not None:
        services.push_to_role(
            "admin",
            "payment.flagged",
            {
                "order": attempt.order_id,
                "out_trade_no": fields["out_trade_no"],
                "channel": fields["channel"],
                "channel_txn_id": fields["channel_txn_id"],
                "notified_fen": notified_fen,
                "collected_fen": amount_fen,
            },
            local=False,
        )
    return _payment_reply(outcome, fields["out_trade_no"], fields["channel_txn_id"], services)


async def collected_amount(
    channel: Any, fields: dict[str, Any], asked_fen: int
) -> tuple[int, int | None]:
    """What the channel collected for a notified payment, and the notified amount if it differs.

    A notification of the amount asked is taken as it is. Any other amount
    is checked with the channel's own ``query_payment``, which decides: the
    query's ``paid_fen`` is recorded (and is what a refund gives back); when
    the notification said otherwise, that is logged at error and returned as
    the second value, to be kept beside the payment and shown flagged.
    Raises ``payment_not_confirmed`` when the query does not show the payment
    paid, and what the query raises when it fails (``channel_unavailable``:
    the notification is not acknowledged, so the channel sends it again).
    """
    notified = fields["amount_fen"]
    if notified == asked_fen:
        return notified, None
    status = await channel.query_payment(fields["out_trade_no"])
    if status.state not in ("SUCCESS", "REFUND") or status.paid_fen is None:
        security_log.warning(
            "notify.not_paid_at_channel",
            extra={"out_trade_no": fields["out_trade_no"], "state": status.state},
        )
        raise ScenicError(
            f"the channel reports {fields['out_trade_no']} as {status.state}, not paid",
            code="payment_not_confirmed",
        )
    if status.paid_fen == notified:
        log.warning(
            "payment.wrong_amount",
            extra={
                "out_trade_no": fields["out_trade_no"],
                "asked_fen": asked_fen,
                "paid_fen": notified,
            },
        )
        return notified, None
    log.error(
        "payment.amount_disagrees",
        extra={
            "out_trade_no": fields["out_trade_no"],
            "channel_txn_id": fields["channel_txn_id"],
            "notified_fen": notified,
            "collected_fen": status.paid_fen,
        },
    )
    return status.paid_fen, notified


def places_of_day(
    catalog: Catalog, day: date, reserved: Mapping[tuple[date, str], int]
) -> dict[str, Any]:
    """One date of ``catalog.places``: whole-day places first (slot null), then each slot."""
    slots = [WHOLE_DAY, *(slot.slot_id for slot in catalog.slots)]
    places = []
    for slot in slots:
        capacity = catalog.capacity_of(day, slot)
        held = reserved.get((day, slot), 0)
        places.append(
            {
                "slot": slot or None,
                "capacity": capacity,
                "reserved": held,
                "left": max(0, capacity - held),
            }
        )
    return {"date": day.isoformat(), "places": places}


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"'{text}' is not a date") from None


async def current_order(services: Services, order_id: str | None) -> Order:
    """The order as stored now; raises ``not_found``."""
    if order_id is None:
        raise NotFound("no such order")
    order = await services.db.run(order_queries.load_order, order_id)
    if order is None:
        raise NotFound(f"no order {order_id}")
    return order


def _line_request(line: dict[str, Any]) -> LineRequest:
    return LineRequest(line["product"], line["quantity"], _date(line["date"]), line["slot"])


async def _ticket_facts(
    services: Services, order_id: str, ticket_ids: set[str]
) -> tuple[TicketFacts, ...]:
    """What a refund's rules need of the named tickets of ``order_id``: use, visit start."""
    stored = await services.db.run(ticket_queries.tickets_of_order, order_id)
    named = [record for record in stored if record.ticket_id in ticket_ids]
    if not named:
        return ()
    catalog = services.current_catalog()
    return tuple(
        TicketFacts(
            record.ticket_id,
            services.gates.use_of(record).entries_used,
            visit_starts(catalog, record.visit_date, record.slot),
        )
        for record in named
    )


async def confirm_collection(
    services: Services,
    order_id: str,
    out_trade_no: str,
    channel: str,
    channel_txn_id: str,
    amount_fen: int,
    paid_at: datetime,
) -> OrderOutcome:
    """Confirm money ``channel`` collected for ``order_id`` through the order's actor.

    The path a verified ``payment.notify`` takes (reconciliation attaches a
    collection the bill shows by it): the first collection captures the
    order, any other is refunded by its route, a known one changes nothing.
    """
    return await _confirm(
        services, order_id, out_trade_no, channel, channel_txn_id, amount_fen, paid_at
    )


async def _confirm(
    services: Services,
    order_id: str,
    out_trade_no: str,
    channel: str,
    channel_txn_id: str,
    amount_fen: int,
    paid_at: datetime,
    notified_fen: int | None = None,
) -> OrderOutcome:
    now = services.clock()
    command = ConfirmPayment(
        out_trade_no,
        channel,
        channel_txn_id,
        amount_fen,
        paid_at,
        now,
        (),  # the order's actor draws the ticket ids: it knows how many
        new_out_refund_no(now),
        notified_fen,
    )
    return await ask_order(services, order_id, command)


def _payment_reply(
    outcome: OrderOutcome, out_trade_no: str, channel_txn_id: str, services: Services
) -> dict[str, Any]:
    order = outcome.order
    captured = (
        order.captured_out_trade_no == out_trade_no
        and order.payments[out_trade_no].channel_txn_id == channel_txn_id
    )
    services.metrics.payment(
        order.payments[out_trade_no].channel, "captured" if captured else "refunding"
    )
    refund = next(
        (r for r in order.refunds.values() if not r.staff and r.channel_txn_id == channel_txn_id),
        None,
    )
    return {
        "order": order.order_id,
        "status": order.status.value,
        "result": "captured" if captured else "refunding",
        "out_refund_no": None if captured or refund is None else refund.out_refund_no,
        "tickets": len(order.tickets),
    }
