"""Ops for rentals: a deposit held, the units picked up and returned, the deposit settled once.

Every op that touches a rental asks that rental's actor (its
:class:`~actors.rentals.actor.DepositActor`), so a rental's commands run
one at a time and each reply is sent after its commit. The rules are all in
actors/rentals; these handlers turn protocol arguments into commands (ids,
times and the facts a rule needs are gathered here, in the shell) and the
rental into the map the protocol shows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.catalog import Catalog, PerDay, PerHour, PerUse, Pricing
from actors.channels import COUNTER_CHANNELS, QR_CHANNELS, pattern_of
from actors.errors import DomainError
from actors.ids import (
    derived_out_trade_no,
    new_out_order_no,
    new_out_refund_no,
    new_out_trade_no,
    new_rental_id,
)
from actors.rentals.actor import RentalOutcome
from actors.rentals.commands import (
    BundleFacts,
    CancelRental,
    ConfirmFreeze,
    ConfirmPayment,
    CreateRental,
    ExtendRental,
    ForfeitDeposit,
    ItemRequest,
    PickUp,
    ReturnUnits,
    StartFreeze,
    StartPayment,
    UnitReturn,
)
from actors.rentals.effects import CollectPayment, RequestFreeze
from actors.rentals.state import Condition, Rental, RentalStatus
from actors.rentals.vouchers import rental_id_of_voucher
from server.channels.adapter import MAX_FREEZE_DAYS
from server.errors import BadRequest, NotFound
from server.ops import OpContext, OpGroup
from server.schema import Arg
from server.storage import rentals as rental_queries
from server.storage import tickets as ticket_queries

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.rentals")
security_log = logging.getLogger("scenic.security")

OPS = OpGroup()

RENTAL_ID = Arg("rental", "text", max_len=40)
#: who may start a rental and pay for it: a kiosk, a cashier, a rental desk
MAKERS = {"kiosk", "counter", "rental"}
DESKS = {"rental", "admin"}
MAX_FEN = 10**10
ITEM_FIELDS = (
    Arg("item", "text", max_len=32),
    Arg("quantity", "int", low=1, high=50),
)
RETURN_FIELDS = (
    Arg("label", "text", max_len=64),
    Arg("condition", "text", pattern="|".join(c.value for c in Condition)),
)


async def ask_rental(services: Services, rental_id: str, command: object) -> RentalOutcome:
    """Send ``command`` to the rental's actor and return its outcome."""
    return await services.registry.ask(
        ("rental", rental_id), command, services.config.ask_timeout_s
    )


async def current_rental(services: Services, rental_id: str) -> Rental:
    """The rental as stored now; raises ``not_found``."""
    rental = await services.rentals.load(rental_id)
    if rental is None:
        raise NotFound(f"no rental {rental_id}")
    return rental


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def rental_view(rental: Rental) -> dict[str, Any]:
    """The rental as the protocol shows it (docs/protocol.md, *The rental map*)."""
    hold = rental.hold
    resolution = hold.resolution if hold is not None else None
    split = rental.split
    return {
        "rental": rental.rental_id,
        "status": rental.status.value,
        "lines": [
            {
                "item": line.item.item_id,
                "name_zh": line.item.name_zh,
                "name_en": line.item.name_en,
                "quantity": line.quantity,
                "covered": line.covered,
                "deposit_fen": line.deposit_fen,
                "prepaid_fen": line.prepaid_fen,
            }
            for line in rental.lines
        ],
        "days": rental.days,
        "deposit_fen": rental.deposit_fen,
        "prepaid_fen": rental.prepaid_fen,
        "due_now_fen": rental.amount_due_fen,
        "created_at": rental.created_at.timestamp(),
        "hold_until": rental.hold_until.timestamp(),
        "bundle_ticket": rental.bundle_ticket_id,
        "voucher": rental.voucher,
        "hold": None
        if hold is None
        else {
            "route": hold.route.value,
            "channel": hold.channel,
            "amount_fen": hold.amount_fen,
            "held_at": hold.held_at.timestamp(),
            "out_trade_no": hold.out_trade_no,
            "out_order_no": hold.out_order_no,
            "auth_no": hold.auth_no,
            "expires_at": _epoch(hold.expires_at),
            "convert_by": _epoch(hold.convert_by),
            "resolution": None
            if resolution is None
            else {
                "kind": resolution.kind.value,
                "posted_fen": resolution.posted_fen,
                "voided_fen": resolution.voided_fen,
                "at": resolution.at.timestamp(),
            },
        },
        "units": [
            {
                "unit": unit.unit_id,
                "label": unit.label,
                "item": unit.item_id,
                "back_at": _epoch(unit.back_at),
                "condition": None if unit.condition is None else unit.condition.value,
            }
            for unit in rental.units
        ],
        "picked_up_at": _epoch(rental.picked_up_at),
        "due_at": _epoch(rental.due_at),
        "overdue": rental.overdue,
        "charges": [
            {
                "unit": c.unit_id,
                "item": c.item_id,
                "usage_fen": c.usage_fen,
                "covered": c.covered,
                "late_fen": c.late_fen,
                "damage_fen": c.damage_fen,
                "lost_fen": c.lost_fen,
            }
            for c in rental.charges
        ],
        "settlement": None
        if split is None
        else {
            "paid_fen": split.paid_fen,
            "charges_fen": split.charges_fen,
            "kept_fen": split.kept_fen,
            "released_fen": split.released_fen,
            "compensation_fen": split.compensation_fen,
            "compensation_order": rental.compensation_order_id,
        },
        "forfeit_reason": rental.forfeit_reason,
        "payments": [
            {
                "out_trade_no": p.out_trade_no,
                "channel": p.channel,
                "amount_fen": p.amount_fen,
                "collected_fen": p.collected_fen,
                "state": p.state,
                "channel_txn_id": p.channel_txn_id,
            }
            for p in rental.payments.values()
        ],
        "freezes": [
            {
                "out_order_no": f.out_order_no,
                "channel": f.channel,
                "amount_fen": f.amount_fen,
                "auth_no": f.auth_no,
                "expires_at": f.expires_at.timestamp(),
                "state": f.state,
            }
            for f in rental.freezes.values()
        ],
        "refunds": [
            {
                "out_refund_no": r.out_refund_no,
                "out_trade_no": r.out_trade_no,
                "channel": r.channel,
                "amount_fen": r.amount_fen,
                "reason": r.reason,
                "state": r.state,
                "failure": r.failure,
            }
            for r in rental.refunds.values()
        ],
        "unfreezes": [
            {
                "out_request_no": u.out_request_no,
                "amount_fen": u.amount_fen,
                "reason": u.reason,
                "confirmed": u.confirmed,
            }
            for u in rental.unfreezes.values()
        ],
    }


def pricing_view(pricing: Pricing) -> dict[str, Any]:
    """An item's pricing rule as the protocol shows it: ``rule`` and that rule's own keys."""
    if isinstance(pricing, PerUse):
        return {"rule": "per_use", "price_fen": pricing.price_fen}
    if isinstance(pricing, PerDay):
        return {"rule": "per_day", "daily_fen": pricing.daily_fen}
    assert isinstance(pricing, PerHour)
    return {
        "rule": "per_hour",
        "hourly_fen": pricing.hourly_fen,
        "grace_minutes": pricing.grace_minutes,
        "included_hours": pricing.included_hours,
        "overtime_hourly_fen": pricing.overtime_hourly_fen,
        "daily_cap_fen": pricing.daily_cap_fen,
    }


def rental_catalog_view(catalog: Catalog) -> dict[str, Any]:
    """What ``catalog.list`` says of rentals: the terms and every item's deposit, price, penalties.

    Enough for a kiosk to state what a rental costs before anything is paid
    (docs/protocol.md, *What the catalog says of rentals*).
    """
    terms = catalog.rental_terms
    return {
        "rentals": None
        if terms is None
        else {
            "due_back": terms.due_back.isoformat("minutes"),
            "hold_minutes": terms.hold_minutes,
            "max_days": terms.max_days,
            "max_units": terms.max_units,
        },
        "rental_items": [
            {
                "item": item.item_id,
                "name_zh": item.name_zh,
                "name_en": item.name_en,
                "area": item.area,
                "deposit_fen": item.deposit_fen,
                "pricing": pricing_view(item.pricing),
                "prepaid": item.prepaid,
                "late_fen_per_hour": item.late_fen_per_hour,
                "damage_fen": item.damage_fen,
                "lost_fen": item.lost_fen,
                "units": catalog.stock_of(item.item_id),
            }
            for item in catalog.rental_items
        ],
    }


@OPS.op(
    "rental.create",
    roles=MAKERS,
    args=(
        Arg("client_key", "text", max_len=64),
        Arg("items", "list", max_len=10, fields=ITEM_FIELDS),
        Arg("days", "int", required=False, low=1, high=366, default=1),
        Arg("ticket", "text", required=False, max_len=512),
    ),
)
async def rental_create(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Start a rental of items (units reserved, nothing paid yet); a double tap is one rental."""
    services = ctx.services
    existing = await services.db.run(
        rental_queries.rental_for_client_key, ctx.device_id, args["client_key"]
    )
    if existing is not None:
        return rental_view(await current_rental(services, existing))
    now = services.clock()
    command = CreateRental(
        new_rental_id(now),
        ctx.device_id,
        args["client_key"],
        tuple(ItemRequest(item["item"], item["quantity"]) for item in args["items"]),
        services.current_catalog(),
        services.business_date(now),
        now,
        args["days"],
        await _bundle(services, args["ticket"]),
    )
    try:
        outcome = await ask_rental(services, command.rental_id, command)
    except DomainError as exc:
        if exc.code != "rental_exists":
            raise
        existing = await services.db.run(
            rental_queries.rental_for_client_key, ctx.device_id, args["client_key"]
        )
        return rental_view(await current_rental(services, existing))
    services.rental_timers.watch(outcome.rental)
    return rental_view(outcome.rental)


async def _bundle(services: Services, code: str | None) -> BundleFacts | None:
    """The facts of the ticket a visitor names for a bundle, or ``None`` when none is named."""
    if code is None:
        return None
    if not code:
        raise BadRequest("'ticket' must not be empty")
    ticket_id = services.ticket_id_of_code(code)  # forged: refused with its code
    record = await services.db.run(ticket_queries.load_ticket, ticket_id)
    if record is None:
        raise NotFound(f"no ticket {ticket_id}")
    return BundleFacts(record.ticket_id, record.product_id, record.visit_date, record.refunded)


@OPS.op("rental.get", roles=MAKERS | DESKS, args=(RENTAL_ID,))
async def rental_get(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The rental with its lines, hold, units, charges and money."""
    return rental_view(await current_rental(ctx.services, args["rental"]))


@OPS.op(
    "rental.pay",
    roles=MAKERS,
    args=(
        RENTAL_ID,
        # cash and card are taken at a desk: rental.record, which confirms as it starts
        Arg("channel", "text", pattern=pattern_of(QR_CHANNELS)),
        Arg("route", "text", required=False, pattern="pay|preauth", default="pay"),
    ),
)
async def rental_pay(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Collect a rental's deposit: a QR payment, or an Alipay pre-authorisation (a freeze)."""
    services = ctx.services
    now = services.clock()
    channel = args["channel"]
    if args["route"] == "preauth":
        expires_at = now + timedelta(days=MAX_FREEZE_DAYS)
        command = StartFreeze(
            new_out_order_no(now), new_out_refund_no(now), channel, now, expires_at
        )
    else:
        command = StartPayment(new_out_trade_no(now), channel, now)
    outcome = await ask_rental(services, args["rental"], command)
    reply = {"rental": outcome.rental.rental_id, "route": args["route"], "channel": channel}
    adapter = services.channels.get(channel)
    for effect in outcome.effects:
        if isinstance(effect, CollectPayment):
            created = await adapter.create_payment(
                effect.out_trade_no,
                effect.amount_fen,
                f"rental {effect.rental_id}",
                effect.expires_at,
            )
            reply.update(
                out_trade_no=effect.out_trade_no,
                amount_fen=effect.amount_fen,
                qr=created.qr_payload,
            )
        elif isinstance(effect, RequestFreeze):
            created = await adapter.create_freeze(
                effect.out_order_no,
                effect.out_request_no,
                effect.amount_fen,
                f"rental deposit {effect.rental_id}",
                effect.expires_at,
            )
            reply.update(
                out_order_no=effect.out_order_no,
                out_request_no=effect.out_request_no,
                amount_fen=effect.amount_fen,
                qr=created.qr_payload,
            )
    if "amount_fen" not in reply:  # asked again: the attempt exists; nothing new to show
        raise BadRequest("this rental is not waiting for its deposit")
    return reply


@OPS.op(
    "rental.record",
    roles={"counter", "rental"},
    args=(
        RENTAL_ID,
        Arg("channel", "text", pattern=pattern_of(COUNTER_CHANNELS)),
        Arg("amount_fen", "int", low=1, high=MAX_FEN),
        Arg("key", "text", max_len=64),
    ),
)
async def rental_record(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A cashier took a rental's deposit in cash or by card; idempotent by key, even at once."""
    services = ctx.services
    now = services.clock()
    rental_id = args["rental"]
    txn = f"{args['channel']}:{ctx.device_id}:{args['key']}"
    rental = await current_rental(services, rental_id)
    out_trade_no = next(
        (p.out_trade_no for p in rental.payments.values() if p.channel_txn_id == txn), None
    )
    if out_trade_no is None:
        # Drawn from the record, not minted: the same record asked twice at once (a double
        # tap) starts one payment, and the second confirmation is a replay of the first.
        out_trade_no = derived_out_trade_no(rental.created_at, f"{rental_id}|{txn}")
        await ask_rental(
            services, rental_id, StartPayment(out_trade_no, args["channel"], now, money_taken=True)
        )
    command = ConfirmPayment(
        out_trade_no, args["channel"], txn, args["amount_fen"], now, now, new_out_refund_no(now)
    )
    outcome = await ask_rental(services, rental_id, command)
    reply = payment_reply(outcome.rental, out_trade_no)
    services.metrics.payment(args["channel"], reply["result"])
    return reply


def payment_reply(rental: Rental, out_trade_no: str) -> dict[str, Any]:
    """What a confirmed deposit payment came to: held, or being given back."""
    payment = rental.payments.get(out_trade_no)
    held = payment is not None and payment.state == "captured"
    return {
        "rental": rental.rental_id,
        "status": rental.status.value,
        "result": "held" if held else "refunding",
        "voucher": rental.voucher if held else None,
    }


@OPS.op(
    "rental.pickup",
    roles={"rental"},
    args=(
        Arg("voucher", "text", max_len=128),
        Arg("labels", "list", max_len=50),
    ),
)
async def rental_pickup(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A desk scanned a voucher and the units' labels: the units are out."""
    services = ctx.services
    labels = args["labels"]
    if not labels or not all(isinstance(label, str) and 0 < len(label) <= 64 for label in labels):
        raise BadRequest("'labels' must list the scanned units' label codes")
    secrets = services.keyring.secrets
    try:
        rental_id = rental_id_of_voucher(args["voucher"], secrets)
    except DomainError:
        security_log.warning("rental.voucher_forged", extra={"desk": ctx.device_id})
        raise
    catalog = services.current_catalog()
    unit_ids = [unit.unit_id for label in labels if (unit := catalog.unit_by_label(label))]
    states = await services.db.run(rental_queries.unit_states, unit_ids)
    now = services.clock()
    command = PickUp(args["voucher"], tuple(labels), catalog, states, secrets, ctx.device_id, now)
    outcome = await ask_rental(services, rental_id, command)
    services.rental_timers.watch(outcome.rental)
    return rental_view(outcome.rental)


@OPS.op(
    "rental.return",
    roles={"rental"},
    args=(RENTAL_ID, Arg("returns", "list", max_len=50, fields=RETURN_FIELDS)),
)
async def rental_return(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Units back at a desk, each ok, damaged or lost; the last one settles the rental once."""
    services = ctx.services
    returns = tuple(UnitReturn(r["label"], Condition(r["condition"])) for r in args["returns"])
    if not returns:
        raise BadRequest("'returns' must list the units brought back")
    command = ReturnUnits(returns, ctx.device_id, services.clock())
    outcome = await ask_rental(services, args["rental"], command)
    return rental_view(outcome.rental)


@OPS.op("rental.cancel", roles=MAKERS | {"admin"}, args=(RENTAL_ID,))
async def rental_cancel(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Cancel a rental before pickup: its units are free and everything paid goes back."""
    services = ctx.services
    command = CancelRental(ctx.device_id, services.clock())
    outcome = await ask_rental(services, args["rental"], command)
    return rental_view(outcome.rental)


@OPS.op(
    "rental.extend",
    roles=DESKS,
    args=(
        RENTAL_ID,
        Arg("due_at", "number", low=0),
        Arg("reason", "text", max_len=200),
    ),
)
async def rental_extend(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Give a rental out a later due time (it is no longer overdue until then)."""
    services = ctx.services
    due_at = datetime.fromtimestamp(args["due_at"], UTC)
    command = ExtendRental(due_at, args["reason"], ctx.device_id, services.clock())
    outcome = await ask_rental(services, args["rental"], command)
    services.rental_timers.watch(outcome.rental)
    return rental_view(outcome.rental)


@OPS.op(
    "rental.forfeit",
    roles={"admin"},
    args=(RENTAL_ID, Arg("reason", "text", max_len=200)),
)
async def rental_forfeit(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Keep a rental's whole deposit (the reason is recorded); units still out are lost."""
    services = ctx.services
    command = ForfeitDeposit(args["reason"], ctx.device_id, services.clock())
    outcome = await ask_rental(services, args["rental"], command)
    return rental_view(outcome.rental)


@OPS.op(
    "rental.list",
    roles=DESKS,
    args=(Arg("status", "text", required=False, pattern="held|out|overdue", default="out"),),
)
async def rental_list(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The rentals held (paid, not picked up), out, or overdue, for a desk's screen."""
    rows = await ctx.services.db.run(rental_queries.rentals_by_status, args["status"])
    return {"rentals": rows}


@OPS.op(
    "freeze.notify",
    roles={"channel"},
    args=(
        Arg("kind", "text", pattern="freeze"),
        Arg("channel", "text", pattern=pattern_of(QR_CHANNELS)),
        Arg("out_order_no", "text", max_len=64),
        Arg("out_request_no", "text", max_len=64),
        Arg("auth_no", "text", max_len=64),
        Arg("amount_fen", "int", low=1, high=MAX_FEN),
        Arg("authorized_at", "number", low=0),
        Arg("nonce", "text", max_len=64),
        Arg("sign_ts", "number", low=0),
        Arg("signature", "text", max_len=512),
    ),
)
async def freeze_notify(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A channel's notification that a visitor authorised a freeze of a rental's deposit."""
    return await confirm_freeze_notification(ctx.services, args)


async def confirm_freeze_notification(services: Services, fields: dict[str, Any]) -> dict[str, Any]:
    """Verify a freeze notification and confirm it through the rental's actor.

    The reply (and so the channel's acknowledgement) comes only after the
    confirmation committed. Raises ``bad_signature`` (logged on the security
    log, nothing recorded) and ``unknown_freeze`` for a freeze never asked here.
    """
    channel = services.channels.get(fields["channel"])
    try:
        channel.verify_notification(fields, "freeze")
    except DomainError as exc:
        security_log.warning(
            "freeze_notify.bad_signature",
            extra={"out_order_no": fields.get("out_order_no"), "detail": exc.message},
        )
        raise
    rental_id = await services.db.run(rental_queries.rental_of_freeze, fields["out_order_no"])
    if rental_id is None:
        raise DomainError(
            f"no freeze {fields['out_order_no']} was asked here", code="unknown_freeze"
        )
    now = services.clock()
    command = ConfirmFreeze(
        fields["out_order_no"],
        fields["channel"],
        fields["auth_no"],
        fields["amount_fen"],
        datetime.fromtimestamp(fields["authorized_at"], UTC),
        now,
        new_out_refund_no(now),
    )
    outcome = await ask_rental(services, rental_id, command)
    freeze = outcome.rental.freezes.get(fields["out_order_no"])
    held = freeze is not None and freeze.state == "frozen"
    services.metrics.payment(fields["channel"], "held" if held else "releasing")
    return {
        "rental": rental_id,
        "status": outcome.rental.status.value,
        "result": "held" if held else "releasing",
    }


async def confirm_rental_payment(
    services: Services, rental_id: str, fields: dict[str, Any], amount_fen: int
) -> dict[str, Any]:
    """Confirm a channel's payment notification for a rental's deposit through its actor."""
    now = services.clock()
    command = ConfirmPayment(
        fields["out_trade_no"],
        fields["channel"],
        fields["channel_txn_id"],
        amount_fen,
        datetime.fromtimestamp(fields["paid_at"], UTC),
        now,
        new_out_refund_no(now),
    )
    outcome = await ask_rental(services, rental_id, command)
    reply = payment_reply(outcome.rental, fields["out_trade_no"])
    services.metrics.payment(fields["channel"], reply["result"])
    return reply


__all__ = [
    "OPS",
    "RentalStatus",
    "ask_rental",
    "confirm_freeze_notification",
    "confirm_rental_payment",
    "rental_catalog_view",
    "rental_view",
]
