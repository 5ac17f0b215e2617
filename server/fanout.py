"""Events for devices, wherever their connection is: here, or in another server process.

:class:`SessionIndex` holds this process's authenticated connections by
device. :class:`Pushes` sends an event to a device's or a role's
connections without waiting (each send is a task in the server's background
nursery).

Several server processes may share one database. A kiosk's connection is
held by one of them, but the notification that pays its order may reach
another; an admin may set the mode of a gate connected elsewhere. So when
the device of an event has no connection here, or when every process must
know (a gate's mode, an admin alert), the event is published on
:data:`EVENTS_CHANNEL` (:meth:`Pushes.publish`). Every process listens
(:func:`listen`), ignores its own notices, and pushes to the connections it
holds. NOTIFY payloads are small (8,000 bytes at most), so an order's event
carries only its id; the receiver reads the order and builds the event from
it. A notice sent while no process listens is lost, as a push to a device
with no connection is: ``order.get`` always tells the truth.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import trio

from actors.orders.effects import order_paid_data, refunded_data
from actors.orders.state import Order
from actors.rentals.pushes import forfeited_data, settled_data, voucher_data
from actors.rentals.state import Rental, RentalStatus
from server.storage.database import Database

log = logging.getLogger("scenic.fanout")

EVENTS_CHANNEL = "scenic_events"


class Connection(Protocol):
    """What the index and the pushes need of one authenticated connection (a session)."""

    device_id: str
    role: str

    async def push(self, event: str, data: dict[str, Any]) -> bool:
        """Send one event; ``False`` when the connection is gone."""
        ...

    def close_soon(self, code: int, reason: str) -> None:
        """Close the connection now."""
        ...

    def drain(self, grace_s: float) -> None:
        """Stop reading; let in-flight requests finish within ``grace_s``."""
        ...


class SessionIndex:
    """The authenticated connections, by device id (a device may hold several)."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[Connection]] = {}

    def add(self, session: Connection) -> None:
        """Index ``session`` under its device id."""
        self._by_device.setdefault(session.device_id, set()).add(session)

    def discard(self, session: Connection) -> None:
        """Forget ``session``; nothing happens if it was never indexed."""
        sessions = self._by_device.get(session.device_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._by_device[session.device_id]

    def of_device(self, device_id: str) -> list[Connection]:
        """The open connections of ``device_id``."""
        return list(self._by_device.get(device_id, ()))

    def __iter__(self) -> Iterator[Connection]:
        return iter([s for sessions in self._by_device.values() for s in sessions])

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._by_device.values())


class Pushes:
    """Sends events to connections here, and tells the other server processes by NOTIFY.

    ``spawn`` starts a task in the server's background nursery (a push never
    makes its caller wait); ``instance_id`` tells this process's notices from
    the others' when they come back.
    """

    def __init__(
        self,
        sessions: SessionIndex,
        db: Database,
        spawn: Callable[..., None],
        instance_id: str | None = None,
    ) -> None:
        self.sessions = sessions
        self._db = db
        self._spawn = spawn
        self.instance_id = instance_id or secrets.token_hex(6)

    def to_device(
        self,
        device_id: str,
        event: str,
        data: dict,
        *,
        local: bool = False,
        notice: dict | None = None,
    ) -> None:
        """Send ``event`` to every open connection of ``device_id``, without waiting.

        When the device has no connection here and ``local`` is false, the
        other server processes are told with ``notice`` (without one, nothing
        more is done).
        """
        sessions = self.sessions.of_device(device_id)
        for session in sessions:
            self._spawn(session.push, event, data)
        if not sessions and not local and notice is not None:
            self.publish({"kind": event, "device": device_id, **notice})

    def to_role(self, role: str, event: str, data: dict, *, local: bool = True) -> None:
        """Send ``event`` to every open connection of a device with ``role``, without waiting.

        With ``local`` false the other server processes push it to theirs too
        (``data`` must then be small: it travels by NOTIFY).
        """
        for session in list(self.sessions):
            if session.role == role:
                self._spawn(session.push, event, data)
        if not local:
            self.publish({"kind": event, "role": role, "data": data})

    def publish(self, notice: dict[str, Any]) -> None:
        """Tell the other processes, without waiting."""
        self._spawn(self._publish, {**notice, "from": self.instance_id})

    async def _publish(self, notice: dict[str, Any]) -> None:
        try:
            await self._db.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, json.dumps(notice))
        except Exception:
            log.exception("fanout.publish_failed", extra={"notice": notice.get("kind")})


async def listen(
    db: Database,
    pushes: Pushes,
    load_order: Callable[[str], Awaitable[Order | None]],
    gate_mode_changed: Callable[[str, str], None],
    load_rental: Callable[[str], Awaitable[Rental | None]] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Receive the other processes' notices and act on them, until cancelled.

    ``load_order`` reads an order (an order's notice carries only its id),
    ``load_rental`` a rental (for its voucher);
    ``gate_mode_changed`` takes a gate's new mode into this process's view.
    Reports ``started`` once it listens.
    """
    async with db.listen(EVENTS_CHANNEL) as notices:
        task_status.started()
        async for payload in notices:
            try:
                notice = json.loads(payload)
                if notice.get("from") != pushes.instance_id:
                    await _receive(notice, pushes, load_order, gate_mode_changed, load_rental)
            except Exception:
                log.exception("fanout.notice_failed", extra={"payload": payload[:200]})


async def _receive(
    notice: dict[str, Any],
    pushes: Pushes,
    load_order: Callable[[str], Awaitable[Order | None]],
    gate_mode_changed: Callable[[str, str], None],
    load_rental: Callable[[str], Awaitable[Rental | None]] | None = None,
) -> None:
    kind = notice["kind"]
    if "role" in notice:  # an event for every connection of a role (small data travels whole)
        pushes.to_role(notice["role"], kind, notice["data"], local=True)
        return
    if kind == "gate.mode":
        gate_mode_changed(notice["gate"], notice["mode"])
        pushes.to_device(
            notice["gate"],
            "gate.mode",
            {"gate": notice["gate"], "mode": notice["mode"]},
            local=True,
        )
        return
    device = notice["device"]
    if not pushes.sessions.of_device(device):
        return  # not connected here either
    if "rental" in notice:
        await _receive_rental(notice, device, pushes, load_rental)
        return
    order = await load_order(notice["order"])
    if order is None:
        return
    if kind == "order.paid" and order.captured_out_trade_no is not None:
        pushes.to_device(device, kind, order_paid_data(order), local=True)
    elif kind == "payment.refunded" and notice["out_refund_no"] in order.refunds:
        pushes.to_device(device, kind, refunded_data(order, notice["out_refund_no"]), local=True)


async def _receive_rental(
    notice: dict[str, Any],
    device: str,
    pushes: Pushes,
    load_rental: Callable[[str], Awaitable[Rental | None]] | None,
) -> None:
    """A rental's push another process made for a device connected here.

    ``deposit.refunded`` travels whole; the voucher, the settlement and the
    forfeit carry only the rental's id, and their data is built from the
    rental as stored (once it is in the state the event says).
    """
    kind = notice["kind"]
    if "data" in notice:  # deposit.refunded: small, it travels whole
        pushes.to_device(device, kind, notice["data"], local=True)
        return
    built = _RENTAL_PUSHES.get(kind)
    if built is None or load_rental is None:
        return
    rental = await load_rental(notice["rental"])
    ready, data_of = built
    if rental is not None and ready(rental):
        pushes.to_device(device, kind, data_of(rental), local=True)


#: the rental pushes rebuilt from the stored rental: when the rental shows it, and its data
_RENTAL_PUSHES: dict[str, tuple[Callable[[Rental], bool], Callable[[Rental], dict[str, Any]]]] = {
    "rental.voucher": (lambda rental: rental.voucher is not None, voucher_data),
    "rental.settled": (lambda rental: rental.split is not None, settled_data),
    "deposit.forfeited": (lambda rental: rental.status is RentalStatus.FORFEITED, forfeited_data),
}
