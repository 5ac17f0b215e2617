"""Two server processes on one database: events reach the connection wherever it is held."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import trio

from clients.client import connect
from server.channels.signing import signed
from tests.helpers import running_server
from tests.test_gates import GATES, scan
from tests.test_orders import adults, next_event


async def serve_until(stop, dsn, db, devices, task_status=trio.TASK_STATUS_IGNORED, **config):
    async with running_server(dsn, db, devices, **config) as server:
        task_status.started(server)
        await stop.wait()


async def test_events_reach_devices_connected_to_the_other_server(dsn, db):
    keys = Path(tempfile.mkdtemp()) / "channel_keys.json"  # both servers share the merchant keys
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server_a = await nursery.start(
            lambda task_status: serve_until(
                stop, dsn, db, {**GATES, "gw": "channel"}, task_status, channel_keys=keys
            )
        )
        server_b = await nursery.start(
            lambda task_status: serve_until(stop, dsn, db, {}, task_status, channel_keys=keys)
        )
        tokens = server_a.tokens
        async with (
            connect(server_a.url, "kiosk-1", tokens["kiosk-1"]) as kiosk,
            connect(server_a.url, "G-MAIN-1", tokens["G-MAIN-1"]) as gate,
            connect(server_b.url, "gw", tokens["gw"]) as gateway_b,
            connect(server_b.url, "admin-1", tokens["admin-1"]) as admin_b,
        ):
            order = await kiosk.request("order.create", client_key="x", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            fields = server_a.channels.simulators["wechat"].pay(start["out_trade_no"])
            # The channel's notification reaches the other server process...
            await gateway_b.request(
                "payment.notify", **signed(fields, server_a.channel_keys["wechat"], time.time())
            )
            # ...and the kiosk, connected here, still hears that its order is paid.
            paid = await next_event(kiosk, "order.paid")
            code = paid["tickets"][0]["code"]
            # An admin on the other server locks a gate connected here.
            await admin_b.request("gate.set_mode", gate="G-MAIN-1", mode="locked")
            pushed = await next_event(gate, "gate.mode")
            with trio.fail_after(5):
                while (verdict := await scan(gate, code))["reason"] != "gate_closed":
                    await trio.sleep(0.05)
        stop.set()
    assert paid["order"] == order["order"] and len(paid["tickets"]) == 1
    assert pushed == {"gate": "G-MAIN-1", "mode": "locked"}
    assert verdict["granted"] is False
