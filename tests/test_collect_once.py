"""Promise one under fire: many orders paid twice at once, on one server and on two."""

from __future__ import annotations

import os
import subprocess
import time
from functools import partial

import trio

from clients.client import connect
from loadtest.local_server import scenic_command, stop_process, wait_for_listening
from server.auth import hash_token, new_token
from server.channels.keys import load_or_create_channel_keys
from server.channels.remote import RemoteChannel
from server.channels.signing import signed
from server.storage import devices
from server.workers import free_port
from tests.helpers import running_server
from tests.test_orders import DEVICES, adults, assert_audit_clean, settle_outbox

ORDERS = 25


async def pay_every_order_twice(kiosks, gateways, keys, pay) -> None:
    """Per order: start WeChat and Alipay, the visitor pays both, both notify at once,
    plus a replay of the WeChat notification.

    ``kiosks`` and ``gateways`` are lists of clients; order ``n`` uses
    ``kiosks[n % len]`` for its WeChat attempt and the next one for Alipay,
    and each notification goes to a different gateway connection. ``pay``
    pays an attempt at its channel and returns the unsigned notification.
    """

    async def one(n: int) -> None:
        kiosk = kiosks[n % len(kiosks)]
        other = kiosks[(n + 1) % len(kiosks)]
        order = await kiosk.request("order.create", client_key=f"c{n}", lines=adults(2))
        wechat = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        alipay = await other.request("payment.start", order=order["order"], channel="alipay")
        first = await pay("wechat", wechat["out_trade_no"])
        second = await pay("alipay", alipay["out_trade_no"])
        async with trio.open_nursery() as deliveries:
            for i, fields in enumerate([first, second, first]):
                gateway = gateways[(n + i) % len(gateways)]
                body = signed(fields, keys[fields["channel"]], time.time())
                deliveries.start_soon(partial(gateway.request, "payment.notify", **body))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for n in range(ORDERS):
                nursery.start_soon(one, n)


async def assert_each_order_collected_once(db) -> None:
    captures = await db.fetch(
        "SELECT order_id, count(*) FILTER (WHERE captured) AS captured, "
        "count(*) FILTER (WHERE NOT captured) AS refunding "
        "FROM payment_confirmations GROUP BY order_id"
    )
    assert len(captures) == ORDERS
    assert {(r["captured"], r["refunding"]) for r in captures} == {(1, 1)}
    assert await db.fetchval("SELECT count(*) FROM orders WHERE status = 'paid'") == ORDERS
    await settle_outbox(db, timeout=30)
    assert await db.fetchval("SELECT count(*) FROM refunds WHERE confirmed_at IS NULL") == 0
    await assert_audit_clean(db)


async def test_orders_paid_by_two_channels_at_once_are_collected_once(dsn, db):
    async with running_server(dsn, db, {**DEVICES, "alipay-gw": "channel"}) as server:

        async def pay(channel, out_trade_no):
            return server.channels.simulators[channel].pay(out_trade_no)

        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as counter,
            connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as wechat,
            connect(server.url, "alipay-gw", server.tokens["alipay-gw"]) as alipay,
        ):
            await pay_every_order_twice(
                [kiosk, counter], [wechat, alipay], server.channel_keys, pay
            )
        await assert_each_order_collected_once(db)


async def test_two_server_processes_on_one_database_still_collect_once(dsn, db, tmp_path):
    """Two ``scenic serve`` processes and one ``scenic channel-sim`` process, one database."""
    tokens = {}
    for device_id, role in [("kiosk-a", "kiosk"), ("kiosk-b", "kiosk"), ("gw", "channel")]:
        tokens[device_id] = new_token()
        await devices.add_device(db, device_id, role, hash_token(tokens[device_id]))
    keys_file = tmp_path / "channel_keys.json"
    keys = load_or_create_channel_keys(keys_file)
    port_a, sim_port = free_port(), free_port()
    sim_url = f"ws://127.0.0.1:{sim_port}"
    env = {
        **os.environ,
        "SCENIC_DEMO": "1",
        "SCENIC_CHANNEL_KEYS": str(keys_file),
        "SCENIC_CHANNEL_SIM_URL": sim_url,
        "SCENIC_DATA_DIR": str(tmp_path),
    }
    processes = []

    def start(name, *args):
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                scenic_command(*args), stdout=log_file, stderr=subprocess.STDOUT, env=env
            )
        processes.append(process)
        return log_path, process

    try:
        sim_log, sim = start(
            "channel-sim",
            "channel-sim",
            "--server",
            f"ws://127.0.0.1:{port_a}",
            "--device",
            "gw",
            "--token",
            tokens["gw"],
            "--listen-port",
            str(sim_port),
            "--keys",
            str(keys_file),
        )
        # its API must listen before the servers call it
        wait_for_listening(sim_log, sim, time.perf_counter() + 60, event="channel_sim.listening")
        urls = []
        for name, port in (("server-a", port_a), ("server-b", 0)):
            log_path, process = start(name, "serve", "--dsn", dsn, "--port", str(port))
            urls.append(wait_for_listening(log_path, process, time.perf_counter() + 60))
        async with (
            RemoteChannel("wechat", sim_url, keys["wechat"]) as wechat_sim,
            RemoteChannel("alipay", sim_url, keys["alipay"]) as alipay_sim,
            connect(urls[0], "kiosk-a", tokens["kiosk-a"]) as kiosk_a,
            connect(urls[1], "kiosk-b", tokens["kiosk-b"]) as kiosk_b,
            connect(urls[0], "gw", tokens["gw"]) as gateway_a,
            connect(urls[1], "gw", tokens["gw"]) as gateway_b,
        ):
            sims = {"wechat": wechat_sim, "alipay": alipay_sim}

            async def pay(channel, out_trade_no):
                return await sims[channel].pay(out_trade_no)

            await pay_every_order_twice([kiosk_a, kiosk_b], [gateway_a, gateway_b], keys, pay)
            await assert_each_order_collected_once(db)
    finally:
        for process in processes:
            stop_process(process)
