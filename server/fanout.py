"""Events for connections held by another server process, through PostgreSQL NOTIFY.

Several server processes may share one database. A kiosk's connection is
held by one of them, but the notification that pays its order may reach
another; an admin may set the mode of a gate connected elsewhere. So when
the device of an event has no connection here, or when every process must
know (a gate's mode), the event is published on :data:`EVENTS_CHANNEL`.
Every process listens, ignores its own notices, and pushes to the
connections it holds. NOTIFY payloads are small (8,000 bytes at most), so an
order's event carries only its id; the receiver reads the order and builds
the event from it. A notice sent while no process listens is lost, as a
push to a device with no connection is: ``order.get`` always tells the truth.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from server.storage.orders import load_order

if TYPE_CHECKING:
    from actors.orders.domain import Order
    from server.app import Services

log = logging.getLogger("scenic.fanout")

EVENTS_CHANNEL = "scenic_events"


def order_paid_data(order: Order) -> dict[str, Any]:
    """The ``order.paid`` event of a captured order."""
    captured = order.payments[order.captured_out_trade_no]
    return {
        "order": order.order_id,
        "out_trade_no": captured.out_trade_no,
        "channel": captured.channel,
        "amount_fen": captured.amount_fen,
        "tickets": [{"ticket": t.ticket_id, "code": t.code} for t in order.tickets],
    }


def refunded_data(order: Order, out_refund_no: str) -> dict[str, Any]:
    """The ``payment.refunded`` event of one of the order's refunds."""
    refund = order.refunds[out_refund_no]
    return {
        "order": order.order_id,
        "out_refund_no": refund.out_refund_no,
        "out_trade_no": refund.out_trade_no,
        "channel": refund.channel,
        "amount_fen": refund.amount_fen,
        "reason": refund.reason,
    }


def refund_failed_data(order: Order, event: Any) -> dict[str, Any]:
    """The ``refund.failed`` event (to admins) of a refund the channel refused for good."""
    return {**refunded_data(order, event.out_refund_no), "failure": event.failure}


def publish(services: Services, notice: dict[str, Any]) -> None:
    """Tell the other processes, without waiting (a task in the background nursery)."""
    if services.spawn is not None:
        services.spawn(_publish, services, {**notice, "from": services.instance_id})


async def _publish(services: Services, notice: dict[str, Any]) -> None:
    try:
        await services.db.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, json.dumps(notice))
    except Exception:
        log.exception("fanout.publish_failed", extra={"notice": notice.get("kind")})


async def listen(services: Services) -> None:
    """Receive the other processes' notices and act on them, until cancelled."""
    async with services.db.listen(EVENTS_CHANNEL) as notices:
        async for payload in notices:
            try:
                notice = json.loads(payload)
                if notice.get("from") != services.instance_id:
                    await _receive(services, notice)
            except Exception:
                log.exception("fanout.notice_failed", extra={"payload": payload[:200]})


async def _receive(services: Services, notice: dict[str, Any]) -> None:
    kind = notice["kind"]
    if "role" in notice:  # an event for every connection of a role (small data travels whole)
        services.push_to_role(notice["role"], kind, notice["data"], local=True)
        return
    if kind == "gate.mode":
        services.gates.modes[notice["gate"]] = notice["mode"]
        services.push_to_device(
            notice["gate"],
            "gate.mode",
            {"gate": notice["gate"], "mode": notice["mode"]},
            local=True,
        )
        return
    device = notice["device"]
    if not services.sessions.of_device(device):
        return  # not connected here either
    order = await services.db.run(load_order, notice["order"])
    if order is None:
        return
    if kind == "order.paid" and order.captured_out_trade_no is not None:
        services.push_to_device(device, kind, order_paid_data(order), local=True)
    elif kind == "payment.refunded" and notice["out_refund_no"] in order.refunds:
        services.push_to_device(
            device, kind, refunded_data(order, notice["out_refund_no"]), local=True
        )
