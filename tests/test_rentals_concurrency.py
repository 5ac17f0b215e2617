"""Rentals under races and restarts: one outcome, one refund, nothing lost.

Two desks act on the same rental or the same unit at the same moment,
connected to one server or to two server processes sharing the database
(each with its own actors, so only PostgreSQL's constraints and the
rentals' version check keep them apart); both servers front the same
simulated channels. And a server dies while a settlement's refund is on
its way: the next server on the database makes it, once. Every test ends
with ``scenic audit``'s checks.
"""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio

from clients.client import RemoteError, connect
from loadtest.local_server import register_devices, stop_process, wait_for_listening
from server.channels.keys import load_or_create_channel_keys
from server.channels.remote import RemoteChannel
from server.channels.statement import StatementRow, local_date, parse_statement
from server.workers import free_port
from tests.helpers import running_server
from tests.rental_park import DEVICES, SKIS, ok, paid_rental, wait_for
from tests.test_money_edges import start_channel_sim, start_process
from tests.test_orders import assert_audit_clean, next_event, settle_outbox

SKI = [{"item": "skis", "quantity": 1}]


@asynccontextmanager
async def two_servers(dsn, db, processes: int):
    """One server, or two on the same database and channels; yields (first, second)."""
    async with running_server(dsn, db, DEVICES) as first:
        if processes == 1:
            yield first, first
            return
        async with running_server(dsn, db, {}, channels=first.channels) as second:
            yield first, second


async def outcome(call) -> str:
    """The rental status a request left, or its refusal's code."""
    try:
        return (await call)["status"]
    except RemoteError as exc:
        return exc.code


async def at_once(*calls) -> list[str]:
    """Run the requests concurrently; their outcomes in the order given."""
    results: list[str | None] = [None] * len(calls)

    async def run(i, call):
        results[i] = await outcome(call)

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(run, i, call)
    return results


async def events_of(client, names: set[str], count: int, timeout: float = 10.0) -> dict:
    """The next ``count`` events named in ``names`` (in whatever order they come), by name."""
    heard: dict[str, list[dict]] = {name: [] for name in names}
    with trio.fail_after(timeout):
        async for event, data in client.events():
            if event in names:
                heard[event].append(data)
                count -= 1
                if count == 0:
                    return heard
    raise AssertionError(f"connection closed before {names}")


def refunds_billed(simulator, out_trade_no: str) -> list[StatementRow]:
    """The refunds of payment ``out_trade_no`` on the channel's bills of the last days."""
    today = local_date(datetime.now(UTC))
    rows = []
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        rows += parse_statement(simulator.name, simulator.statement(day))
    return [r for r in rows if r.kind == "refund" and r.out_trade_no == out_trade_no]


@pytest.mark.parametrize("processes", [1, 2], ids=["one-server", "two-servers"])
async def test_two_desks_returning_the_same_rental_at_once_settle_it_once(dsn, db, processes):
    async with two_servers(dsn, db, processes) as (first, second):
        async with (
            connect(first.url, "kiosk-1", first.tokens["kiosk-1"]) as kiosk,
            connect(first.url, "desk-1", first.tokens["desk-1"]) as desk1,
            connect(second.url, "desk-2", first.tokens["desk-2"]) as desk2,
        ):
            rental, voucher = await paid_rental(kiosk, "r", SKI)
            rid = rental["rental"]
            await desk1.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            results = await at_once(
                desk1.request("rental.return", rental=rid, returns=ok(SKIS[0])),
                desk2.request("rental.return", rental=rid, returns=ok(SKIS[0])),
            )
            await settle_outbox(db)
            after = await desk1.request("rental.get", rental=rid)
        billed = refunds_billed(
            first.channels.simulators["wechat"], after["payments"][0]["out_trade_no"]
        )
    assert sorted(results) in (
        ["already_returned", "settled"],
        ["rental_closed", "settled"],
        ["settled", "settlement_in_flight"],
    )
    assert [(r["amount_fen"], r["state"]) for r in after["refunds"]] == [(80000, "confirmed")]
    assert len(billed) == 1
    assert await db.fetchval("select count(*) from rental_refunds") == 1
    await assert_audit_clean(db)


@pytest.mark.parametrize("processes", [1, 2], ids=["one-server", "two-servers"])
async def test_a_cancel_racing_a_pickup_or_a_return_has_one_outcome(dsn, db, processes):
    async with two_servers(dsn, db, processes) as (first, second):
        async with (
            connect(first.url, "kiosk-1", first.tokens["kiosk-1"]) as kiosk,
            connect(second.url, "desk-1", first.tokens["desk-1"]) as desk,
        ):
            held, held_voucher = await paid_rental(kiosk, "h", SKI)
            out, out_voucher = await paid_rental(kiosk, "o", SKI)
            await desk.request("rental.pickup", voucher=out_voucher["voucher"], labels=[SKIS[1]])
            pickup_or_cancel = await at_once(
                desk.request("rental.pickup", voucher=held_voucher["voucher"], labels=[SKIS[0]]),
                kiosk.request("rental.cancel", rental=held["rental"]),
            )
            return_or_cancel = await at_once(
                desk.request("rental.return", rental=out["rental"], returns=ok(SKIS[1])),
                kiosk.request("rental.cancel", rental=out["rental"]),
            )
            await settle_outbox(db)
            first_after = await kiosk.request("rental.get", rental=held["rental"])
    assert pickup_or_cancel in (["out", "rental_out"], ["rental_closed", "cancelled"])
    assert first_after["status"] == ("out" if pickup_or_cancel[0] == "out" else "cancelled")
    unit = await db.fetchrow("select state, rental_id from rental_units where label = $1", SKIS[0])
    if first_after["status"] == "out":
        assert tuple(unit) == ("out", held["rental"]) and first_after["refunds"] == []
    else:
        assert tuple(unit) == ("available", None)
        assert [r["amount_fen"] for r in first_after["refunds"]] == [92000]
    # the cancel comes before the return (units out) or after it (settled): refused either way
    assert return_or_cancel[0] == "settled"
    assert return_or_cancel[1] in ("rental_out", "rental_closed")
    await assert_audit_clean(db)


async def test_two_desks_on_two_servers_cannot_hand_out_the_same_unit(dsn, db):
    async with two_servers(dsn, db, 2) as (first, second):
        async with (
            connect(first.url, "kiosk-1", first.tokens["kiosk-1"]) as kiosk,
            connect(first.url, "desk-1", first.tokens["desk-1"]) as desk1,
            connect(second.url, "desk-2", first.tokens["desk-2"]) as desk2,
        ):
            a, a_voucher = await paid_rental(kiosk, "a", SKI)
            b, b_voucher = await paid_rental(kiosk, "b", SKI)
            results = await at_once(
                desk1.request("rental.pickup", voucher=a_voucher["voucher"], labels=[SKIS[5]]),
                desk2.request("rental.pickup", voucher=b_voucher["voucher"], labels=[SKIS[5]]),
            )
            loser = b if results[0] == "out" else a
            still = await kiosk.request("rental.get", rental=loser["rental"])
    assert sorted(results) == ["out", "unit_out"]
    assert still["status"] == "held" and still["units"] == []
    rows = await db.fetch("select state from rental_units where label = $1", SKIS[5])
    assert [r["state"] for r in rows] == ["out"]
    await assert_audit_clean(db)


async def killable_server(nursery, dsn, db):
    """A server run in ``nursery``, and a function that kills it: cancelled, no drain.

    Its database sessions end with it, so its outbox claims are free at once.
    """
    started, gone = trio.Event(), trio.Event()
    box: dict = {}

    async def serve():
        with trio.CancelScope() as scope:
            box["scope"] = scope
            async with running_server(dsn, db, DEVICES) as server:
                box["server"] = server
                started.set()
                await trio.sleep_forever()
        gone.set()

    nursery.start_soon(serve)
    await started.wait()

    async def kill():
        box["scope"].cancel()
        await gone.wait()

    return box["server"], kill


@pytest.mark.parametrize("how", ["stalled", "made-unanswered", "busy"])
async def test_a_server_dying_mid_settlement_refunds_once_after_restart(dsn, db, how):
    async with trio.open_nursery() as nursery:
        server, kill = await killable_server(nursery, dsn, db)
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(kiosk, "k", SKI)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            if how == "busy":
                wechat.inject_fault("refund", "system_busy", count=1)
            else:
                # held below the delivery timeout: whichever server meets it, it answers
                wechat.inject_fault("refund", "stall", count=1, stall_s=3)
            back = await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
            row = await wait_for(lambda: _refund_row(db, how))
        if how == "made-unanswered":  # the channel made it; its answer never arrived
            payload = row["payload"]
            wechat.refund(
                payload["out_trade_no"],
                payload["out_refund_no"],
                payload["refund_fen"],
                payload["total_fen"],
                payload["reason"],
            )
        await kill()  # the server dies: no drain, its refund unanswered
        async with running_server(dsn, db, {}, channels=server.channels) as again:
            await settle_outbox(db, timeout=20)
            async with connect(again.url, "desk-1", server.tokens["desk-1"]) as desk:
                after = await desk.request("rental.get", rental=rid)
    assert back["status"] == "settled" and back["settlement"]["released_fen"] == 80000
    assert [(r["amount_fen"], r["state"]) for r in after["refunds"]] == [(80000, "confirmed")]
    out_trade_no = after["payments"][0]["out_trade_no"]
    assert len(refunds_billed(wechat, out_trade_no)) == 1
    await assert_audit_clean(db)


async def _refund_row(db, how):
    """The settlement's refund row, once the first server is at it as ``how`` says."""
    row = await db.fetchrow(
        "select payload, attempts, lease_key from outbox"
        " where kind = 'rental.request_rental_refund'"
    )
    if row is None:
        return None
    if how == "busy" and row["attempts"] == 0:
        return None  # not refused once yet
    if how != "busy" and row["lease_key"] is None:
        return None  # not claimed (and stalled at the channel) yet
    return {"payload": json.loads(row["payload"])}


async def test_a_killed_server_process_mid_refund_is_taken_over_and_refunds_once(dsn, db, tmp_path):
    """Server A (a ``scenic serve`` process) settles a rental; the channel (a ``scenic
    channel-sim`` process) holds A's refund call and A is killed -9. Server B, started on
    the same database, makes the refund; A's held call lands at the channel too, under the
    same refund number: the bill shows one refund and the rental reads confirmed."""
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
        with trio.fail_after(90):
            url_a = await trio.to_thread.run_sync(
                wait_for_listening, log_path, server_a, time.perf_counter() + 60
            )
            sim = await trio.to_thread.run_sync(
                start_channel_sim, tmp_path, url_a, tokens["wechat-gw"], sim_port, keys_file
            )
            async with RemoteChannel("wechat", sim_url, keys["wechat"]) as wechat:
                async with (
                    connect(url_a, "kiosk-1", tokens["kiosk-1"]) as kiosk,
                    connect(url_a, "desk-1", tokens["desk-1"]) as desk,
                ):
                    rental = await kiosk.request("rental.create", client_key="k", items=SKI)
                    rid = rental["rental"]
                    start = await kiosk.request("rental.pay", rental=rid, channel="wechat")
                    await wechat.pay(start["out_trade_no"])
                    voucher = await next_event(kiosk, "rental.voucher")
                    await desk.request(
                        "rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]]
                    )
                    await wechat.inject_fault("refund", "stall", stall_s=4.0)
                    back = await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
                    await wait_for(lambda: _refund_row(db, "stalled"))
                server_a.send_signal(signal.SIGKILL)
                server_a.wait(timeout=10)
                landed_at = trio.current_time() + 4.5
                async with running_server(
                    dsn, db, {}, channel_sim_url=sim_url, channel_keys=keys_file
                ) as server_b:
                    await settle_outbox(db, timeout=30)
                    await trio.sleep(max(0.0, landed_at - trio.current_time()))
                    async with connect(server_b.url, "desk-1", tokens["desk-1"]) as desk:
                        after = await desk.request("rental.get", rental=rid)
                    bill = parse_statement(
                        "wechat", await wechat.statement(local_date(datetime.now(UTC)))
                    )
    finally:
        if server_a.poll() is None:
            server_a.kill()
            server_a.wait(timeout=10)
        if sim is not None:
            await trio.to_thread.run_sync(stop_process, sim)
    assert back["status"] == "settled"
    assert [(r["amount_fen"], r["state"]) for r in after["refunds"]] == [(80000, "confirmed")]
    refunds = [row for row in bill if row.kind == "refund"]
    assert [(row.out_trade_no, row.amount_fen) for row in refunds] == [
        (start["out_trade_no"], 80000)
    ]
    await assert_audit_clean(db)


async def test_a_rentals_pushes_reach_devices_connected_to_the_other_server(dsn, db):
    async with two_servers(dsn, db, 2) as (first, second):
        async with (
            connect(first.url, "kiosk-1", first.tokens["kiosk-1"]) as kiosk,
            connect(second.url, "desk-2", first.tokens["desk-2"]) as desk,
            connect(second.url, "admin-x", first.tokens["admin-x"]) as admin,
        ):
            rental, voucher = await paid_rental(kiosk, "x", SKI)
            at_desk = await next_event(desk, "rental.voucher")
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            await desk.request("rental.return", rental=rental["rental"], returns=ok(SKIS[0]))
            heard = await events_of(kiosk, {"rental.settled", "deposit.refunded"}, count=2)
            settled, requested = heard["rental.settled"][0], heard["deposit.refunded"][0]
            await settle_outbox(db)
            confirmed = await next_event(kiosk, "deposit.refunded")
            forfeitable, f_voucher = await paid_rental(kiosk, "z", SKI)
            await desk.request("rental.pickup", voucher=f_voucher["voucher"], labels=[SKIS[1]])
            await admin.request("rental.forfeit", rental=forfeitable["rental"], reason="gone")
            forfeited = await next_event(kiosk, "deposit.forfeited")
    assert at_desk["voucher"] == voucher["voucher"]
    assert settled["rental"] == rental["rental"] and settled["released_fen"] == 80000
    assert (requested["state"], confirmed["state"]) == ("requested", "confirmed")
    assert forfeited["rental"] == forfeitable["rental"]
    await assert_audit_clean(db)


async def test_a_server_dying_mid_conversion_converts_once_after_restart(dsn, db):
    """The Alipay route: a settlement's conversion (charges taken, the rest unfrozen) is
    held at the channel when the server dies; the next server converts once."""
    async with trio.open_nursery() as nursery:
        server, kill = await killable_server(nursery, dsn, db)
        alipay = server.channels.simulators["alipay"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental = await kiosk.request("rental.create", client_key="c", items=SKI)
            rid = rental["rental"]
            freeze = await kiosk.request(
                "rental.pay", rental=rid, channel="alipay", route="preauth"
            )
            await kiosk.request(
                "sim.authorize",
                channel="alipay",
                out_order_no=freeze["out_order_no"],
                out_request_no=freeze["out_request_no"],
            )
            voucher = await next_event(kiosk, "rental.voucher")
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            alipay.inject_fault("convert_to_payment", "stall", count=1, stall_s=3)
            back = await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
            await wait_for(
                lambda: db.fetchval(
                    "select lease_key from outbox where kind = 'rental.convert_frozen'"
                )
            )
        await kill()
        async with running_server(dsn, db, {}, channels=server.channels) as again:
            await settle_outbox(db, timeout=20)
            async with connect(again.url, "desk-1", server.tokens["desk-1"]) as desk:
                after = await desk.request("rental.get", rental=rid)
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert back["status"] == "settled"
    assert (books.state, books.converted_fen, books.unfrozen_fen) == ("FINISH", 12000, 80000)
    assert after["hold"]["resolution"]["kind"] == "settled"
    assert (
        await db.fetchval("select count(*) from rental_confirmations where kind = 'conversion'")
        == 1
    )
    await assert_audit_clean(db)
