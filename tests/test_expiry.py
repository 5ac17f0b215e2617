"""Unpaid orders expire at their deadline, even across a restart, and release capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from actors.orders.domain import ExpireOrder
from clients.client import connect
from server.expiry import ExpiryWatcher
from tests.helpers import running_server
from tests.test_orders import DEVICES, adults, assert_audit_clean, next_event


def trio_wall_clock():
    """A wall clock that moves with trio's clock, so a test can skip time."""
    base_wall, base_trio = datetime.now(UTC), trio.current_time()
    return lambda: base_wall + timedelta(seconds=trio.current_time() - base_trio)


async def test_the_watcher_expires_each_order_at_its_deadline(autojump_clock):
    clock = trio_wall_clock()
    start = clock()
    asked = []

    async def ask(order_id, command):
        assert isinstance(command, ExpireOrder)
        asked.append((order_id, round((command.at - start).total_seconds())))

    async def load_pending():  # what the database would say: orders not expired yet
        expired = {order_id for order_id, _ in asked}
        return [(start + timedelta(seconds=100), "O-loaded")] if "O-loaded" not in expired else []

    watcher = ExpiryWatcher(clock, ask, load_pending)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        watcher.watch("O-new", start + timedelta(seconds=50))
        watcher.watch("O-later", start + timedelta(seconds=1000))
        await trio.sleep(200)
        assert asked == [("O-new", 50), ("O-loaded", 100)]
        await trio.sleep(1000)
        assert asked == [("O-new", 50), ("O-loaded", 100), ("O-later", 1000)]
        nursery.cancel_scope.cancel()


async def test_a_failed_expiry_is_tried_again(autojump_clock):
    clock = trio_wall_clock()
    start = clock()
    attempts = []

    async def ask(order_id, command):
        attempts.append(round((command.at - start).total_seconds()))
        if len(attempts) < 3:
            raise RuntimeError("database away")

    async def load_pending():
        return []

    watcher = ExpiryWatcher(clock, ask, load_pending)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        watcher.watch("O1", start + timedelta(seconds=10))
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert attempts == [10, 15, 20]


async def test_an_unpaid_order_expires_releases_capacity_and_refunds_a_late_payment(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0  # real time passes (database waits), and we can jump
    clock = trio_wall_clock()
    async with running_server(dsn, db, DEVICES, clock=clock, order_ttl_s=900) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="e", lines=adults(2))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 2
            # The visitor pays in the last second; the channel's notification is late.
            mock_clock.jump(899)
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            mock_clock.jump(2)
            with trio.fail_after(10):
                while (await kiosk.request("order.get", order=order["order"]))[
                    "status"
                ] != "expired":
                    await trio.sleep(0.05)
            assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 0
            # Paid in time, but the order expired first: recorded and refunded.
            server.channels.notifiers["wechat"].submit(fields)
            refunded = await next_event(kiosk, "payment.refunded")
    assert refunded["reason"] == "order_expired"
    await assert_audit_clean(db)


async def test_deadlines_survive_a_restart(dsn, db, mock_clock):
    mock_clock.rate = 1.0
    clock = trio_wall_clock()
    async with running_server(dsn, db, DEVICES, clock=clock, order_ttl_s=900) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="r", lines=adults(1))
    mock_clock.jump(1000)  # the server was down when the order's deadline passed
    await db.execute("DELETE FROM devices")
    async with running_server(dsn, db, DEVICES, clock=clock, order_ttl_s=900) as server:
        with trio.fail_after(10):
            while (
                await db.fetchval("SELECT status FROM orders WHERE order_id = $1", order["order"])
                != "expired"
            ):
                await trio.sleep(0.05)
    assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 0
    await assert_audit_clean(db)
