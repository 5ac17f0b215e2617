"""The service desk's lookup: any number a visitor shows, answered with the whole story.

``desk.lookup`` (counter, admin) finds an order or a rental by any of its
numbers and answers the visitor's three questions as fields - was I charged,
how many times, what comes back when - beside the order or rental map, its
story in time order, every payment and refund with what its channel says of
it now (asked through the adapter, each under :data:`CHANNEL_QUERY_TIMEOUT_S`;
a channel that cannot be asked is said so, never a failure), each ticket with
its scans and passages, and reconciliation's word (``None`` until runs exist).

A payer's channel identifier shows only masked (:func:`server.payer_mask.mask_payer`),
in the reply and in the log line; it is never stored. ``order.find`` stays as
documented: it shares :func:`server.storage.desk.find_subject` and
:func:`server.storage.orders.order_story` with this op.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio

from actors.rentals.vouchers import rental_id_of_voucher
from server.channels.adapter import ChannelError
from server.errors import BadRequest, NotFound
from server.handlers.orders import current_order, order_view
from server.handlers.rentals import current_rental, rental_view
from server.ops import OpContext, OpGroup
from server.payer_mask import mask_payer
from server.refund_arrival import expected_arrival
from server.schema import Arg
from server.storage import desk as desk_queries
from server.storage import orders as order_queries

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.desk")

#: the roles that see a visitor's story; every other role is refused ``forbidden``
DESK_ROLES = {"counter", "admin"}
#: how long the desk waits for one channel query before saying it could not ask
CHANNEL_QUERY_TIMEOUT_S = 2.0

#: each key a lookup may give (exactly one), as the protocol names it
LOOKUP_KEYS = (
    Arg("order", "text", required=False, max_len=40),
    Arg("out_trade_no", "text", required=False, max_len=64),
    Arg("channel_txn_id", "text", required=False, max_len=64),
    Arg("out_refund_no", "text", required=False, max_len=64),
    Arg("ticket", "text", required=False, max_len=512),
    Arg("ticket_id", "text", required=False, max_len=40),
    Arg("voucher", "text", required=False, max_len=128),
    Arg("rental", "text", required=False, max_len=40),
    Arg("out_order_no", "text", required=False, max_len=64),
)
KEY_NAMES = tuple(arg.name for arg in LOOKUP_KEYS)

OPS = OpGroup()


def one_key(args: dict[str, Any], names: tuple[str, ...]) -> tuple[str, str]:
    """The one (name, value) given among ``names``; ``bad_request`` for none, two or empty."""
    given = {k: v for k, v in args.items() if v is not None}
    if len(given) != 1:
        raise BadRequest(f"give exactly one of {', '.join(names)}")
    ((kind, value),) = given.items()
    if not value:
        raise BadRequest(f"argument {kind!r} must not be empty")
    return kind, value


def find_kind(services: Services, kind: str, value: str) -> tuple[str, str]:
    """The stored number a key names: a ticket code becomes its ticket id (``forged``
    if it is none of this site's), a voucher its rental id (refused as
    :func:`rental_id_of_voucher` refuses)."""
    if kind == "ticket":
        return "ticket", services.ticket_id_of_code(value)
    if kind == "ticket_id":
        return "ticket", value
    if kind == "voucher":
        return "rental", rental_id_of_voucher(value, services.keyring.secrets)
    return kind, value


@OPS.op("desk.lookup", roles=DESK_ROLES, args=LOOKUP_KEYS)
async def desk_lookup(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Find an order or rental by any of its numbers: its story and the visitor's three answers."""
    services = ctx.services
    by, value = one_key(args, KEY_NAMES)
    kind, stored = find_kind(services, by, value)
    found = await services.db.run(desk_queries.find_subject, kind, stored)
    if found is None:
        raise NotFound(f"nothing here has {by} {value}")
    subject, subject_id = found
    reply: dict[str, Any] = {"subject": subject, "by": by, "order": None, "rental": None}
    if subject == "order":
        order = await current_order(services, subject_id)
        reply["order"] = await order_view(order, services)
        money = await services.db.run(desk_queries.order_money, subject_id)
        story = await services.db.run(order_queries.order_story, subject_id)
        reply["tickets"] = [
            {**ticket, "scans": [s for s in story if s.get("ticket") == ticket["ticket"]]}
            for ticket in reply["order"]["tickets"]
        ]
    else:
        rental = await current_rental(services, subject_id)
        reply["rental"] = rental_view(rental)
        money = await services.db.run(desk_queries.rental_money, subject_id)
        story = await services.db.run(desk_queries.rental_story, subject_id)
        reply["tickets"] = []
    reply.update(await money_story(services, money))
    reply["story"] = story
    reply["reconciliation"] = await services.db.run(
        desk_queries.reconciliation_status, subject, subject_id
    )
    answers = reply["answers"]
    log.info(
        "desk.lookup",
        extra={
            "by": by,
            "subject": subject,
            "id": subject_id,
            "charged": answers["charged"],
            "collections": answers["collections"],
            "payers": [p["at_channel"].get("payer") for p in reply["payments"]],
            "unasked": [
                p["out_trade_no"] for p in reply["payments"] if not p["at_channel"]["asked"]
            ],
        },
    )
    return reply


async def money_story(services: Services, money: dict[str, list[dict]]) -> dict[str, Any]:
    """Payments, refunds and freezes with what each channel says now, and the three answers.

    Every channel question runs at once, each under
    :data:`CHANNEL_QUERY_TIMEOUT_S`; the reply waits for the slowest, so
    a lookup takes at most about that long whatever the channels do.
    """
    payments = [dict(p, collections=[]) for p in money["payments"]]
    by_trade_no = {p["out_trade_no"]: p for p in payments}
    for collection in money["collections"]:
        by_trade_no[collection["out_trade_no"]]["collections"].append(collection)
    refunds = [dict(r) for r in money["refunds"]]
    freezes = [dict(f) for f in money["freezes"]]
    async with trio.open_nursery() as nursery:
        for p in payments:
            nursery.start_soon(_fill, services, p, "query_payment", (p["out_trade_no"],))
        for r in refunds:
            nursery.start_soon(_fill, services, r, "query_refund", (r["out_refund_no"],))
        for f in freezes:
            args = (f["out_order_no"], f["out_request_no"])
            nursery.start_soon(_fill, services, f, "query_freeze", args)
    timezone = services.current_catalog().timezone
    for refund in refunds:
        refund["state"] = _refund_state(refund)
        refund["arrival"] = expected_arrival(
            refund["channel"], refund["state"], _succeeded_at(refund), timezone
        )
    collections = [c for p in payments for c in p["collections"]]
    return {
        "answers": {
            "charged": bool(collections),
            "collections": len(collections),
            "collected_fen": sum(c["amount_fen"] for c in collections),
            "frozen_fen": sum(
                f["at_channel"].get("rest_fen", 0) for f in freezes if f["at_channel"]["asked"]
            ),
            "refunded_fen": sum(r["amount_fen"] for r in refunds if r["state"] == "confirmed"),
            "comes_back": [
                {
                    "out_refund_no": r["out_refund_no"],
                    "channel": r["channel"],
                    "amount_fen": r["amount_fen"],
                    "state": r["state"],
                    **r["arrival"],
                }
                for r in refunds
            ],
        },
        "payments": [_payment_out(p) for p in payments],
        "refunds": [_refund_out(r) for r in refunds],
        "freezes": [_freeze_out(f) for f in freezes],
    }


async def _fill(services: Services, row: dict[str, Any], query: str, args: tuple) -> None:
    """Put what ``row``'s channel answers to ``query`` in ``row["at_channel"]``."""
    row["at_channel"] = await ask_channel(services, row["channel"], query, args)


async def ask_channel(services: Services, channel: str, query: str, args: tuple) -> dict[str, Any]:
    """Ask ``channel``'s adapter ``query(*args)`` under the desk's timeout.

    Returns ``{"asked": True, ...}`` with the channel's answer (a payer
    masked), or ``{"asked": False, "reason": CODE, "message": TEXT}``:
    ``timeout`` when it did not answer in time, the channel's own code
    (``channel_unavailable``, ``not_supported``, ``not_found``, ...) when it
    refused. Cancellation from outside still propagates.
    """
    adapter = services.channels.get(channel)
    if adapter is None:
        return {"asked": False, "reason": "no_channel", "message": f"no channel {channel} here"}
    call: Callable[..., Awaitable[Any]] = getattr(adapter, query)
    with trio.move_on_after(CHANNEL_QUERY_TIMEOUT_S):
        try:
            return {"asked": True, **_channel_answer(await call(*args))}
        except ChannelError as exc:
            return {"asked": False, "reason": exc.code, "message": exc.message}
    return {
        "asked": False,
        "reason": "timeout",
        "message": f"{channel} did not answer within {CHANNEL_QUERY_TIMEOUT_S:g} s",
    }


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _channel_answer(status: Any) -> dict[str, Any]:
    """A channel's status value as the desk shows it: times as epoch seconds, payer masked."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(status)):
        name, value = field.name, getattr(status, field.name)
        if name == "payer":
            value = mask_payer(value)
        elif isinstance(value, datetime):
            value = value.timestamp()
        out[name] = value
    return out


def _refund_state(refund: dict[str, Any]) -> str:
    if refund["confirmed_at"] is not None:
        return "confirmed"
    if refund["failure"] is not None:
        return "failed"
    return "requested"


def _succeeded_at(refund: dict[str, Any]) -> datetime | None:
    """When the channel says the refund succeeded, else when we recorded its confirmation."""
    at_channel = refund["at_channel"]
    if at_channel["asked"] and at_channel.get("succeeded_at") is not None:
        return datetime.fromtimestamp(at_channel["succeeded_at"], UTC)
    return refund["confirmed_at"]


def _payment_out(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "out_trade_no": p["out_trade_no"],
        "channel": p["channel"],
        "amount_fen": p["amount_fen"],
        "started_at": p["started_at"].timestamp(),
        "collections": [
            {
                "channel_txn_id": c["channel_txn_id"],
                "amount_fen": c["amount_fen"],
                "paid_at": c["paid_at"].timestamp(),
                "received_at": c["received_at"].timestamp(),
                "kept": c["kept"],
            }
            for c in p["collections"]
        ],
        "at_channel": p["at_channel"],
    }


def _refund_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "out_refund_no": r["out_refund_no"],
        "out_trade_no": r["out_trade_no"],
        "channel": r["channel"],
        "amount_fen": r["amount_fen"],
        "reason": r["reason"],
        "state": r["state"],
        "requested_at": r["requested_at"].timestamp(),
        "confirmed_at": _epoch(r["confirmed_at"]),
        "failure": r["failure"],
        "at_channel": r["at_channel"],
        "arrival": r["arrival"],
    }


def _freeze_out(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "out_order_no": f["out_order_no"],
        "channel": f["channel"],
        "amount_fen": f["amount_fen"],
        "started_at": f["started_at"].timestamp(),
        "expires_at": f["expires_at"].timestamp(),
        "auth_no": f["auth_no"],
        "frozen_at": _epoch(f["frozen_at"]),
        "at_channel": f["at_channel"],
    }
