"""The money path's edges, through real websockets, a real server and a ``scenic channel-sim``.

Wrong amounts are refunded by what the channel collected; a notification the
channel's own query contradicts is decided by the query and flagged; refunds
the channel refuses for good stop, are marked failed and fail the audit;
transient refusals are retried; a dead server's claimed refunds are taken
over at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import attrs
import pytest
import trio

from clients.client import RemoteError, connect
from loadtest.local_server import (
    register_devices,
    scenic_command,
    stop_process,
    wait_for_listening,
)
from server.audit import REFUND_BOUND, run_audit
from server.channels.keys import load_or_create_channel_keys
from server.channels.remote import RemoteChannel
from server.channels.signing import signed
from server.channels.statement import local_date, parse_statement
from server.workers import free_port
from tests.helpers import RunningServer, running_server
from tests.test_orders import DEVICES, adults, next_event

LIMIT_S = 60


@attrs.frozen
class WithChannelSim:
    """A server whose WeChat Pay and Alipay are a ``scenic channel-sim`` process."""

    server: RunningServer
    #: the simulator's API, one adapter per channel (merchant side and visitor side)
    sims: dict[str, RemoteChannel]
    keys: dict[str, bytes]
    sim_url: str


def start_process(log_path, env, *args) -> subprocess.Popen:
    """Run ``scenic ARGS`` with its output in ``log_path``."""
    with open(log_path, "w") as log_file:
        return subprocess.Popen(
            scenic_command(*args), stdout=log_file, stderr=subprocess.STDOUT, env=env
        )


def start_channel_sim(tmp_path, server_url, token, port, keys_file, name="channel-sim"):
    """Start ``scenic channel-sim`` delivering to ``server_url``; wait until its API listens."""
    log_path = tmp_path / f"{name}.log"
    process = start_process(
        log_path,
        None,
        "channel-sim",
        "--server",
        server_url,
        "--device",
        "wechat-gw",
        "--token",
        token,
        "--listen-port",
        str(port),
        "--keys",
        str(keys_file),
    )
    try:
        wait_for_listening(log_path, process, time.perf_counter() + 60, "channel_sim.listening")
    except BaseException:
        stop_process(process)
        raise
    return process


@asynccontextmanager
async def with_channel_sim(
    dsn, db, tmp_path, *, sim_token: str | None = None
) -> AsyncIterator[WithChannelSim]:
    """A server on ``dsn`` using a channel-sim process; ``sim_token`` overrides its token."""
    keys_file = tmp_path / "channel_keys.json"
    keys = load_or_create_channel_keys(keys_file)
    sim_port = free_port()
    sim_url = f"ws://127.0.0.1:{sim_port}"
    async with running_server(
        dsn, db, DEVICES, channel_sim_url=sim_url, channel_keys=keys_file
    ) as server:
        token = sim_token or server.tokens["wechat-gw"]
        process = await trio.to_thread.run_sync(
            start_channel_sim, tmp_path, server.url, token, sim_port, keys_file
        )
        try:
            async with (
                RemoteChannel("wechat", sim_url, keys["wechat"]) as wechat,
                RemoteChannel("alipay", sim_url, keys["alipay"]) as alipay,
            ):
                yield WithChannelSim(server, {"wechat": wechat, "alipay": alipay}, keys, sim_url)
        finally:
            await trio.to_thread.run_sync(stop_process, process)


async def wait_for(db, sql: str, *args, timeout: float = 20.0):
    """Poll ``sql`` until its first value is truthy; return it."""
    with trio.fail_after(timeout):
        while not (value := await db.fetchval(sql, *args)):
            await trio.sleep(0.05)
    return value


async def failing_checks(db, refund_bound: timedelta = REFUND_BOUND) -> dict:
    return {r.check.name: r.offenders for r in await db.run(run_audit, refund_bound) if not r.ok}


def payment_of(view: dict, out_trade_no: str) -> dict:
    (payment,) = [p for p in view["payments"] if p["out_trade_no"] == out_trade_no]
    return payment


@pytest.mark.parametrize("delta_fen", [+1, -1, +12_000])
async def test_a_wrong_amount_is_refunded_exactly_what_the_channel_collected(
    dsn, db, tmp_path, delta_fen
):
    with trio.fail_after(LIMIT_S):
        async with with_channel_sim(dsn, db, tmp_path) as setup:
            server, wechat = setup.server, setup.sims["wechat"]
            async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
                order = await kiosk.request("order.create", client_key="k1", lines=adults(2))
                total = order["total_fen"]
                start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
                paid = total + delta_fen
                notification = await wechat.pay(start["out_trade_no"], amount_fen=paid)
                assert notification["amount_fen"] == paid  # the channel notifies what it took
                out_refund_no = await wait_for(
                    db,
                    "SELECT out_refund_no FROM refunds WHERE order_id = $1 "
                    "AND confirmed_at IS NOT NULL",
                    order["order"],
                )
                refund = await wechat.query_refund(out_refund_no)
                assert (refund.state, refund.refund_fen) == ("SUCCESS", paid)
                at_channel = await wechat.query_payment(start["out_trade_no"])
                assert (at_channel.state, at_channel.paid_fen) == ("REFUND", paid)
                with trio.fail_after(10):
                    while (view := await kiosk.request("order.get", order=order["order"]))[
                        "payments"
                    ][0]["state"] != "refunded":
                        await trio.sleep(0.05)
            assert view["status"] == "pending"  # a wrong amount never captures
            payment = payment_of(view, start["out_trade_no"])
            assert payment["amount_fen"] == total
            assert payment["collected_fen"] == paid
            assert payment["refunded_fen"] == paid
            assert payment["notified_fen"] is None
            [refund_view] = view["refunds"]
            assert (refund_view["amount_fen"], refund_view["reason"]) == (paid, "amount_mismatch")
            assert (refund_view["state"], refund_view["confirmed"]) == ("confirmed", True)
    assert await failing_checks(db) == {}


async def test_a_notification_the_channels_query_contradicts_is_decided_by_the_query(
    dsn, db, tmp_path
):
    """The channel's own notifier cannot reach us (wrong token); the test delivers a signed
    notification that claims more than the visitor paid."""
    with trio.fail_after(LIMIT_S):
        async with with_channel_sim(dsn, db, tmp_path, sim_token="not-its-token") as setup:
            server, wechat = setup.server, setup.sims["wechat"]
            async with (
                connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
                connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
                connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
            ):
                order = await kiosk.request("order.create", client_key="k1", lines=adults(2))
                total = order["total_fen"]
                start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
                true_notification = await wechat.pay(start["out_trade_no"])
                claimed = {**true_notification, "amount_fen": total + 500}
                reply = await gateway.request(
                    "payment.notify", **signed(claimed, setup.keys["wechat"], time.time())
                )
                assert reply["result"] == "captured"  # the channel collected the total
                flagged = await next_event(admin, "payment.flagged")
                view = await kiosk.request("order.get", order=order["order"])
                story = (await admin.request("order.find", order=order["order"]))["story"]
    assert flagged == {
        "order": order["order"],
        "out_trade_no": start["out_trade_no"],
        "channel": "wechat",
        "channel_txn_id": true_notification["channel_txn_id"],
        "notified_fen": total + 500,
        "collected_fen": total,
    }
    assert view["status"] == "paid"
    [step] = [s for s in story if s["what"].startswith("flagged")]
    assert step["what"] == (
        f"flagged: the notification said {total + 500} fen, the channel collected {total} fen"
    )
    assert (step["amount_fen"], step["ref"]) == (total + 500, true_notification["channel_txn_id"])
    payment = payment_of(view, start["out_trade_no"])
    assert (payment["collected_fen"], payment["notified_fen"]) == (total, total + 500)
    stored = await db.fetchrow(
        "SELECT amount_fen, notified_fen FROM payment_confirmations WHERE order_id = $1",
        order["order"],
    )
    assert (stored["amount_fen"], stored["notified_fen"]) == (total, total + 500)
    assert await failing_checks(db) == {}


async def test_a_wrong_amount_for_a_payment_the_channel_has_not_taken_is_refused(dsn, db, tmp_path):
    with trio.fail_after(LIMIT_S):
        async with with_channel_sim(dsn, db, tmp_path) as setup:
            server = setup.server
            async with (
                connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
                connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
            ):
                order = await kiosk.request("order.create", client_key="k1", lines=adults(1))
                start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
                claimed = {
                    "channel": "wechat",
                    "out_trade_no": start["out_trade_no"],
                    "channel_txn_id": "4200000000202612010000000001",
                    "amount_fen": order["total_fen"] + 1,
                    "paid_at": time.time(),
                }
                with pytest.raises(RemoteError) as refused:
                    await gateway.request(
                        "payment.notify", **signed(claimed, setup.keys["wechat"], time.time())
                    )
    assert refused.value.code == "payment_not_confirmed"
    assert await db.fetchval("SELECT count(*) FROM payment_confirmations") == 0


async def pay_twice(kiosk, sims, *, before_second=None) -> tuple[dict, dict, dict]:
    """An order paid by WeChat (captures) and then Alipay (a duplicate to refund)."""
    order = await kiosk.request("order.create", client_key="twice", lines=adults(2))
    wechat = await kiosk.request("payment.start", order=order["order"], channel="wechat")
    alipay = await kiosk.request("payment.start", order=order["order"], channel="alipay")
    await sims["wechat"].pay(wechat["out_trade_no"])
    await next_event(kiosk, "order.paid")
    if before_second is not None:
        await before_second()
    await sims["alipay"].pay(alipay["out_trade_no"])
    return order, wechat, alipay


async def test_a_refund_the_channel_refuses_for_good_is_marked_failed_and_fails_the_audit(
    dsn, db, tmp_path
):
    with trio.fail_after(LIMIT_S):
        async with with_channel_sim(dsn, db, tmp_path) as setup:
            server, alipay_sim = setup.server, setup.sims["alipay"]
            async with (
                connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
                connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
            ):
                # The server's refund call is held at the channel while someone refunds the
                # same payment in full by hand on the merchant platform.
                await alipay_sim.inject_fault("refund", "stall", stall_s=2.0)
                order, _, alipay = await pay_twice(kiosk, setup.sims)
                await wait_for(
                    db, "SELECT 1 FROM outbox WHERE kind = 'refund' AND lease_key IS NOT NULL"
                )
                by_hand = await alipay_sim.refund(
                    alipay["out_trade_no"], "HAND-1", order["total_fen"], order["total_fen"], ""
                )
                assert by_hand.state == "SUCCESS"
                failed = await next_event(admin, "refund.failed", timeout=20)
                await trio.sleep(2.5)  # long enough for two retries, were there any
                view = await kiosk.request("order.get", order=order["order"])
                story = (await admin.request("order.find", order=order["order"]))["story"]
    outbox = await db.fetchrow(
        "SELECT attempts, failed_at, done_at FROM outbox WHERE kind = 'refund'"
    )
    assert (outbox["attempts"], outbox["done_at"]) == (1, None)
    assert outbox["failed_at"] is not None
    [refund] = view["refunds"]
    assert refund["state"] == "failed"
    assert refund["failure"].startswith("refund_exceeds_payment: ")
    assert payment_of(view, alipay["out_trade_no"])["state"] == "refund_failed"
    assert {"at", "what", "amount_fen", "ref"} <= set(story[-1])
    assert story[-1]["what"] == f"refund failed: {refund['failure']}"
    assert story[-1]["ref"] == refund["out_refund_no"]
    assert failed["out_refund_no"] == refund["out_refund_no"]
    assert failed["failure"] == refund["failure"]
    assert failed["amount_fen"] == order["total_fen"]
    failures = await failing_checks(db)
    assert list(failures) == ["no_failed_refunds"]
    [named] = failures["no_failed_refunds"]
    assert named["out_refund_no"] == refund["out_refund_no"]


async def test_a_busy_channel_is_asked_again_with_backoff_until_it_refunds(dsn, db, tmp_path):
    with trio.fail_after(LIMIT_S):
        async with with_channel_sim(dsn, db, tmp_path) as setup:
            server, alipay_sim = setup.server, setup.sims["alipay"]
            async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
                await alipay_sim.inject_fault("refund", "system_busy", count=2)
                _, _, alipay = await pay_twice(kiosk, setup.sims)
                await wait_for(db, "SELECT 1 FROM outbox WHERE kind = 'refund' AND attempts = 1")
                # unconfirmed while the channel is busy: named once past the bound
                late = await failing_checks(db, refund_bound=timedelta(0))
                assert list(late) == ["refunds_confirmed_in_time"]
                assert await failing_checks(db) == {}  # within the default 10 minutes
                refund = await next_event(kiosk, "payment.refunded", timeout=20)
    outbox = await db.fetchrow("SELECT attempts, failed_at, last_error FROM outbox")
    assert (outbox["attempts"], outbox["failed_at"], outbox["last_error"]) == (3, None, None)
    assert refund["out_trade_no"] == alipay["out_trade_no"]
    assert await failing_checks(db, refund_bound=timedelta(0)) == {}


async def test_a_killed_servers_claimed_refund_is_taken_over_at_once(dsn, db, tmp_path):
    """Server A (a process) claims a refund and is killed -9 while the channel holds the call;
    server B, started after, finds A's database session gone and delivers the refund within
    seconds, not after A's 30 s lease, and the channel holds one refund for it."""
    tokens = register_devices(dsn, DEVICES)
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
    log_path = tmp_path / "server-a.log"
    server_a = start_process(log_path, env, "serve", "--dsn", dsn, "--port", str(port_a))
    sim = None
    try:
        with trio.fail_after(LIMIT_S * 2):
            url_a = await trio.to_thread.run_sync(
                wait_for_listening, log_path, server_a, time.perf_counter() + 60
            )
            sim = await trio.to_thread.run_sync(
                start_channel_sim, tmp_path, url_a, tokens["wechat-gw"], sim_port, keys_file
            )
            async with (
                RemoteChannel("wechat", sim_url, keys["wechat"]) as wechat,
                RemoteChannel("alipay", sim_url, keys["alipay"]) as alipay,
            ):
                async with connect(url_a, "kiosk-1", tokens["kiosk-1"]) as kiosk:
                    await alipay.inject_fault("refund", "stall", stall_s=8.0)
                    order, _, paid_twice = await pay_twice(
                        kiosk, {"wechat": wechat, "alipay": alipay}
                    )
                    lease_key = await wait_for(
                        db,
                        "SELECT lease_key FROM outbox WHERE kind = 'refund' AND done_at IS NULL",
                    )
                holder = await db.fetchval(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                    "AND objid = $1::bigint::oid AND granted",
                    lease_key,
                )
                assert holder is not None  # A's own database session holds the lease
                server_a.send_signal(signal.SIGKILL)
                server_a.wait(timeout=10)
                killed_at = trio.current_time()
                async with running_server(
                    dsn, db, {}, channel_sim_url=sim_url, channel_keys=keys_file
                ):
                    await wait_for(
                        db,
                        "SELECT 1 FROM refunds WHERE order_id = $1 AND confirmed_at IS NOT NULL",
                        order["order"],
                        timeout=25,
                    )
                    took_over_s = trio.current_time() - killed_at
                    await trio.sleep(max(0.0, 8.5 - took_over_s))  # A's held call lands too
                    bill = parse_statement(
                        "alipay", await alipay.statement(local_date(datetime.now(UTC)))
                    )
    finally:
        if server_a.poll() is None:
            server_a.kill()
            server_a.wait(timeout=10)
        if sim is not None:
            await trio.to_thread.run_sync(stop_process, sim)
    assert took_over_s < 10, f"the refund waited {took_over_s:.1f} s after the kill"
    refunds = [row for row in bill if row.kind == "refund"]
    assert [row.out_trade_no for row in refunds] == [paid_twice["out_trade_no"]]
    assert await failing_checks(db) == {}


async def test_orders_on_many_new_dates_at_once_are_all_created(dsn, db):
    """Orders whose lines reserve several dates nobody sold yet, in every order, at once:
    each is created (PostgreSQL's deadlocks between their batches never reach a client)."""
    import random

    from tests.test_orders import visit_day

    rng = random.Random(9)
    days = [visit_day(n) for n in range(2, 9)]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as counter,
        ):
            created = []

            async def order(n):
                seller = (kiosk, counter)[n % 2]
                lines = [adults(1, day)[0] for day in rng.sample(days, 4)]
                created.append(
                    await seller.request("order.create", client_key=f"m{n}", lines=lines)
                )

            with trio.fail_after(LIMIT_S):
                async with trio.open_nursery() as nursery:
                    for n in range(60):
                        nursery.start_soon(order, n)
    assert len(created) == 60
    reserved = await db.fetchval("SELECT sum(reserved) FROM capacity")
    assert reserved == 60 * 4
    assert await failing_checks(db) == {}


async def test_a_server_whose_merchant_keys_differ_from_the_databases_refuses_to_start(
    dsn, db, tmp_path
):
    from server.channels.keys import BadChannelKeys

    first = tmp_path / "first" / "channel_keys.json"
    async with running_server(dsn, db, DEVICES, channel_keys=first):
        pass  # the first server records its keys' fingerprints
    other = tmp_path / "other" / "channel_keys.json"
    with pytest.raises(BaseException) as refused:
        async with running_server(dsn, db, {}, channel_keys=other):
            pass
    group = refused.value
    while isinstance(group, BaseExceptionGroup):
        (group,) = group.exceptions
    assert isinstance(group, BadChannelKeys)
    assert str(other) in group.message
    assert "SCENIC_CHANNEL_KEYS" in group.message
    async with running_server(dsn, db, {}, channel_keys=first):
        pass  # the right keys still start
