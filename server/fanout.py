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

from actors.orders.effects import order_paid_data, refunded_data
from server.storage.orders import load_order

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("scenic.fanout")

EVENTS_CHANNEL = "scenic_events"


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
