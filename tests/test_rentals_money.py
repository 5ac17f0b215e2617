"""A rental's money end to end, over real websockets: collected once, charged by the rules.

The demo park's kiosk, counter, rental desks and a channel gateway talk
to a real server on loopback; WeChat Pay and Alipay are simulated in the
server; time is the park's clock (tests/rental_park.py), moved by jumping
trio's clock. Every test ends with ``scenic audit``'s checks.
"""

from __future__ import annotations

import time

import trio

from actors.ids import derived_out_trade_no
from clients.client import RemoteError, connect
from server.channels.signing import signed
from tests.helpers import running_server
from tests.rental_park import (
    BOATS,
    BOOTS,
    DEVICES,
    SKIS,
    ledger_balance,
    ok,
    paid_rental,
    park_clock,
    park_time,
    wait_for,
)
from tests.test_orders import assert_audit_clean, next_event, settle_outbox

SKI = [{"item": "skis", "quantity": 1}]
HOUR = 3600


async def test_a_double_tapped_create_is_one_rental_reserving_its_units_once(dsn, db):
    items = [{"item": "skis", "quantity": 2}]
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            made: list[dict] = []

            async def tap():
                made.append(await kiosk.request("rental.create", client_key="tap", items=items))

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(tap)
    assert len({m["rental"] for m in made}) == 1
    assert await db.fetchval("select count(*) from rentals") == 1
    assert await db.fetchval("select reserved from rental_stock where item_id = 'skis'") == 2
    await assert_audit_clean(db)


async def test_a_second_payment_by_another_channel_is_refunded_whole_automatically(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="twice", items=SKI)
            wechat = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            alipay = await kiosk.request("rental.pay", rental=rental["rental"], channel="alipay")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=wechat["out_trade_no"])
            await next_event(kiosk, "rental.voucher")
            await kiosk.request("sim.pay", channel="alipay", out_trade_no=alipay["out_trade_no"])
            refunds = await wait_for(
                lambda: _confirmed_refunds(kiosk, rental["rental"]), timeout=15
            )
            after = await kiosk.request("rental.get", rental=rental["rental"])
        books = await server.channels.adapters["alipay"].query_refund(refunds[0]["out_refund_no"])
    assert after["status"] == "held" and after["hold"]["channel"] == "wechat"
    assert after["hold"]["amount_fen"] == 92000
    assert [(r["channel"], r["amount_fen"], r["reason"]) for r in refunds] == [
        ("alipay", 92000, "already_paid")
    ]
    assert books.state == "SUCCESS" and books.refund_fen == 92000
    assert await ledger_balance(db, "deposits:held") == -80000
    assert await ledger_balance(db, "clearing:alipay") == 0
    await assert_audit_clean(db)


async def _confirmed_refunds(client, rental_id):
    rental = await client.request("rental.get", rental=rental_id)
    refunds = rental["refunds"]
    return refunds if refunds and all(r["state"] == "confirmed" for r in refunds) else None


async def test_cash_at_the_desk_is_idempotent_by_key_and_a_card_payment_after_it_refunded(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as counter:
            rental = await counter.request("rental.create", client_key="c", items=SKI)
            cash = [
                await counter.request(
                    "rental.record",
                    rental=rental["rental"],
                    channel="cash",
                    amount_fen=92000,
                    key="drawer-1",
                )
                for _ in range(2)
            ]
            card = await counter.request(
                "rental.record",
                rental=rental["rental"],
                channel="card",
                amount_fen=92000,
                key="pos-9",
            )
            await settle_outbox(db)
            after = await counter.request("rental.get", rental=rental["rental"])
    assert [c["result"] for c in cash] == ["held", "held"]
    assert cash[0]["voucher"] == cash[1]["voucher"] and cash[0]["voucher"]
    assert card["result"] == "refunding"
    assert await db.fetchval("select count(*) from rental_confirmations") == 2
    states = {p["channel"]: (p["state"], p["collected_fen"]) for p in after["payments"]}
    assert states == {"cash": ("captured", 92000), "card": ("refunded", 92000)}
    assert [(r["channel"], r["amount_fen"], r["state"]) for r in after["refunds"]] == [
        ("card", 92000, "confirmed")
    ]
    await assert_audit_clean(db)


async def test_a_gateways_notification_replayed_three_times_is_one_confirmation(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
        ):
            rental = await kiosk.request("rental.create", client_key="n", items=SKI)
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            key = server.channel_keys["wechat"]
            now = time.time()
            answers = [
                await gateway.request("payment.notify", **signed(fields, key, now))
                for _ in range(3)
            ]
            forged = {**signed(fields, key, now), "amount_fen": 1}
            try:
                await gateway.request("payment.notify", **forged)
                refused = None
            except RemoteError as exc:
                refused = exc.code
    assert [a["result"] for a in answers] == ["held"] * 3
    assert len({a["voucher"] for a in answers}) == 1
    assert refused == "bad_signature"
    assert await db.fetchval("select count(*) from rental_confirmations") == 1
    assert await db.fetchval("select count(*) from rental_refunds") == 0
    await assert_audit_clean(db)


async def test_one_of_three_units_back_keeps_the_rest_out_and_the_last_settles(dsn, db):
    items = [{"item": "skis", "quantity": 3}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(kiosk, "p", items)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=SKIS[:3])
            first = await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
            listed = await desk.request("rental.list", status="out")
            try:
                await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
                again = None
            except RemoteError as exc:
                again = exc.code
            last = await desk.request("rental.return", rental=rid, returns=ok(*SKIS[1:3]))
            await settle_outbox(db)
    assert first["status"] == "out" and first["settlement"] is None
    assert [u["label"] for u in first["units"] if u["back_at"] is None] == SKIS[1:3]
    assert [r["units_out"] for r in listed["rentals"]] == [SKIS[1:3]]
    assert again == "already_returned"
    assert last["status"] == "settled"
    # three units for a day at 120 yuan each, paid ahead with the deposit
    assert last["settlement"]["charges_fen"] == 36000
    assert last["settlement"]["released_fen"] == 240000
    states = await db.fetch("select state from rental_units where label = any($1)", SKIS[:3])
    assert {r["state"] for r in states} == {"available"}
    await assert_audit_clean(db)


async def test_late_and_damaged_skis_are_charged_by_the_rules(dsn, db, mock_clock):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    items = [{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}]
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(kiosk, "late", items)
            rid = rental["rental"]
            out = await desk.request(
                "rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0], BOOTS[0]]
            )
            # due 17:30; the boots come back on time, the skis at 19:10 and damaged
            mock_clock.jump(8 * HOUR)
            await desk.request("rental.return", rental=rid, returns=ok(BOOTS[0]))
            mock_clock.jump(2 * HOUR + 10 * 60)
            back = await desk.request(
                "rental.return", rental=rid, returns=ok(SKIS[0], condition="damaged")
            )
            await settle_outbox(db)
    assert out["due_at"] == park_time(17, 30).timestamp()
    charges = {c["item"]: c for c in back["charges"]}
    # skis: a day (120 yuan), 2 started hours late (1 h 40 min) at 30, damage 400
    assert (charges["skis"]["usage_fen"], charges["skis"]["late_fen"]) == (12000, 6000)
    assert charges["skis"]["damage_fen"] == 40000
    assert (charges["boots"]["usage_fen"], charges["boots"]["late_fen"]) == (4000, 0)
    settlement = back["settlement"]
    assert settlement["paid_fen"] == 116000 and settlement["charges_fen"] == 62000
    assert (settlement["kept_fen"], settlement["released_fen"]) == (62000, 54000)
    assert settlement["compensation_fen"] == 0
    unit = await db.fetchval("select state from rental_units where label = $1", SKIS[0])
    assert unit == "maintenance"
    assert -(await ledger_balance(db, "revenue:rentals")) == 62000
    await assert_audit_clean(db)


async def test_boats_by_the_hour_free_within_grace_then_hours_then_capped(dsn, db, mock_clock):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(kiosk, "b", [{"item": "boat", "quantity": 3}])
            rid = rental["rental"]
            assert (rental["deposit_fen"], rental["prepaid_fen"]) == (150000, 0)
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=BOATS[:3])
            mock_clock.jump(9 * 60)  # back within the 10 minutes' grace: free
            await desk.request("rental.return", rental=rid, returns=ok(BOATS[0]))
            mock_clock.jump(2 * HOUR + 21 * 60)  # out 2 h 30 min: 3 started hours
            await desk.request("rental.return", rental=rid, returns=ok(BOATS[1]))
            mock_clock.jump(6 * HOUR + 30 * 60)  # out 9 h, back at 18:00: capped, 1 h late
            back = await desk.request("rental.return", rental=rid, returns=ok(BOATS[2]))
            await settle_outbox(db)
    usage = {c["unit"]: (c["usage_fen"], c["late_fen"]) for c in back["charges"]}
    assert usage == {
        "BOAT-01": (0, 0),
        "BOAT-02": (2 * 8000 + 10000, 0),
        "BOAT-03": (36000, 5000),  # 2 x 80 + 7 x 100 = 860 yuan, capped at 360
    }
    settlement = back["settlement"]
    assert (settlement["charges_fen"], settlement["released_fen"]) == (67000, 83000)
    await assert_audit_clean(db)


async def test_charges_beyond_the_deposit_open_a_compensation_order_paid_the_normal_way(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(kiosk, "lost", SKI)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            back = await desk.request(
                "rental.return", rental=rid, returns=ok(SKIS[0], condition="lost")
            )
            settled = await next_event(kiosk, "rental.settled")
            await settle_outbox(db)
            order_id = back["settlement"]["compensation_order"]
            order = await kiosk.request("order.get", order=order_id)
            owed_before = await ledger_balance(db, "receivable:rentals")
            start = await kiosk.request("payment.start", order=order_id, channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            await next_event(kiosk, "order.paid")
            paid = await kiosk.request("order.get", order=order_id)
    # a day's usage (120 yuan) and the lost price (3000 yuan) against 920 yuan held
    split = back["settlement"]
    assert (split["charges_fen"], split["kept_fen"], split["released_fen"]) == (312000, 92000, 0)
    assert split["compensation_fen"] == 220000 and settled["compensation_order"] == order_id
    assert order["status"] == "pending" and order["total_fen"] == 220000
    assert start["amount_fen"] == 220000
    assert owed_before == 220000
    assert paid["status"] == "paid"
    assert await ledger_balance(db, "receivable:rentals") == 0
    purpose = await db.fetchval("select purpose from orders where order_id = $1", order_id)
    assert purpose == "compensation"
    assert await db.fetchval("select state from rental_units where label = $1", SKIS[0]) == "lost"
    assert await db.fetchval("select count(*) from rental_refunds") == 0
    await assert_audit_clean(db)


async def test_overdue_at_closing_is_pushed_and_listed_then_extended_or_forfeited(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            kept, kept_voucher = await paid_rental(kiosk, "k", SKI)
            gone, gone_voucher = await paid_rental(kiosk, "g", SKI)
            await desk.request("rental.pickup", voucher=kept_voucher["voucher"], labels=[SKIS[0]])
            await desk.request("rental.pickup", voucher=gone_voucher["voucher"], labels=[SKIS[1]])
            assert (await desk.request("rental.list", status="overdue"))["rentals"] == []
            mock_clock.jump(8 * HOUR + 31 * 60)  # 17:31: both are overdue
            at_desk = {(await next_event(desk, "rental.overdue"))["rental"] for _ in range(2)}
            at_admin = {(await next_event(admin, "rental.overdue"))["rental"] for _ in range(2)}
            overdue = await desk.request("rental.list", status="overdue")
            tomorrow = park_time(17, 30, days=1).timestamp()
            extended = await desk.request(
                "rental.extend", rental=kept["rental"], due_at=tomorrow, reason="night skiing"
            )
            after_extend = await desk.request("rental.list", status="overdue")
            try:
                await desk.request("rental.forfeit", rental=gone["rental"], reason="never came")
                desk_may = True
            except RemoteError as exc:
                desk_may = exc.code
            forfeited = await admin.request(
                "rental.forfeit", rental=gone["rental"], reason="not back by closing the next day"
            )
            told = await next_event(kiosk, "deposit.forfeited")
            # the extended rental is back the next afternoon, on time: no late charge
            mock_clock.jump(20 * HOUR)
            back = await desk.request("rental.return", rental=kept["rental"], returns=ok(SKIS[0]))
            await settle_outbox(db)
    assert at_desk == at_admin == {kept["rental"], gone["rental"]}
    assert {r["rental"] for r in overdue["rentals"]} == {kept["rental"], gone["rental"]}
    assert all(r["overdue"] for r in overdue["rentals"])
    assert extended["overdue"] is False and extended["due_at"] == tomorrow
    assert [r["rental"] for r in after_extend["rentals"]] == [gone["rental"]]
    assert desk_may == "forbidden"
    assert forfeited["status"] == "forfeited"
    assert forfeited["forfeit_reason"] == "not back by closing the next day"
    assert [u["condition"] for u in forfeited["units"]] == ["lost"]
    assert forfeited["refunds"] == []
    assert told["kept_fen"] == 92000
    assert await db.fetchval("select state from rental_units where label = $1", SKIS[1]) == "lost"
    # two days now at 120 yuan: one was paid ahead; no late penalty
    assert [(c["usage_fen"], c["late_fen"]) for c in back["charges"]] == [(24000, 0)]
    assert back["settlement"]["released_fen"] == 92000 - 24000
    await assert_audit_clean(db)


async def test_cancel_before_pickup_gives_back_the_deposit_and_the_prepaid_usage(dsn, db):
    items = [{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental, _ = await paid_rental(kiosk, "x", items)
            cancelled = await kiosk.request("rental.cancel", rental=rental["rental"])
            refunded = await next_event(kiosk, "deposit.refunded")
            await settle_outbox(db)
            confirmed = await next_event(kiosk, "deposit.refunded")
            again = await kiosk.request("rental.cancel", rental=rental["rental"])
    assert cancelled["status"] == "cancelled" and again["status"] == "cancelled"
    assert refunded["amount_fen"] == 116000 and refunded["state"] == "requested"
    assert confirmed["state"] == "confirmed"
    assert [(r["amount_fen"], r["state"]) for r in again["refunds"]] == [(116000, "confirmed")]
    assert await db.fetchval("select coalesce(sum(reserved), 0) from rental_stock") == 0
    assert await ledger_balance(db, "deposits:held") == 0
    assert await ledger_balance(db, "rentals:prepaid") == 0
    assert await ledger_balance(db, "clearing:wechat") == 0
    await assert_audit_clean(db)


async def test_an_unpaid_rental_expires_after_its_hold_and_frees_its_units(dsn, db, mock_clock):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    items = [{"item": "boat", "quantity": 12}]  # every boat at the dock
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="u", items=items)
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            try:
                await kiosk.request(
                    "rental.create", client_key="v", items=[{"item": "boat", "quantity": 1}]
                )
                full = None
            except RemoteError as exc:
                full = exc.code
            mock_clock.jump(14 * 60)
            still = await kiosk.request("rental.get", rental=rental["rental"])
            mock_clock.jump(2 * 60)
            expired = await wait_for(lambda: _status_is(kiosk, rental["rental"], "expired"))
            later = await kiosk.request(
                "rental.create", client_key="w", items=[{"item": "boat", "quantity": 1}]
            )
            await settle_outbox(db)
        closed = server.channels.simulators["wechat"].query_payment(start["out_trade_no"])
    assert full == "not_available"
    assert still["status"] == "pending"
    assert expired["status"] == "expired" and expired["refunds"] == []
    assert later["status"] == "pending"
    assert closed.state == "CLOSED"
    await assert_audit_clean(db)


async def _status_is(client, rental_id, status):
    rental = await client.request("rental.get", rental=rental_id)
    return rental if rental["status"] == status else None


async def test_a_payment_made_in_time_but_heard_after_the_expiry_is_refunded_whole(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="late", items=SKI)
            rid = rental["rental"]
            start = await kiosk.request("rental.pay", rental=rid, channel="wechat")
            mock_clock.jump(14 * 60)
            # the visitor pays in the last minute; the channel's notification is late
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            mock_clock.jump(2 * 60)
            await wait_for(lambda: _status_is(kiosk, rid, "expired"))
            await settle_outbox(db)  # closing the paid payment is refused: nothing to close
            server.channels.notifiers["wechat"].submit(fields)
            refunds = await wait_for(lambda: _confirmed_refunds(kiosk, rid))
            after = await kiosk.request("rental.get", rental=rid)
    assert after["status"] == "expired" and after["hold"] is None
    assert [(r["amount_fen"], r["reason"]) for r in refunds] == [(92000, "rental_expired")]
    assert await ledger_balance(db, "clearing:wechat") == 0
    assert await db.fetchval("select coalesce(sum(reserved), 0) from rental_stock") == 0
    await assert_audit_clean(db)


async def test_cash_recorded_twice_at_once_with_one_key_is_one_payment(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as counter:
            rental = await counter.request("rental.create", client_key="c", items=SKI)
            answers: list[dict] = []

            async def record():
                answers.append(
                    await counter.request(
                        "rental.record",
                        rental=rental["rental"],
                        channel="cash",
                        amount_fen=92000,
                        key="drawer-7",
                    )
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(record)
                nursery.start_soon(record)
            after = await counter.request("rental.get", rental=rental["rental"])
    assert [a["result"] for a in answers] == ["held", "held"]
    assert [(p["channel"], p["state"]) for p in after["payments"]] == [("cash", "captured")]
    assert await db.fetchval("select count(*) from rental_payments") == 1
    await assert_audit_clean(db)


def test_a_records_trade_number_is_drawn_from_it():
    at = park_time(9)
    first = derived_out_trade_no(at, "R1|cash:counter-1:drawer-7")
    assert first == derived_out_trade_no(at, "R1|cash:counter-1:drawer-7")
    assert first != derived_out_trade_no(at, "R2|cash:counter-1:drawer-7")
    assert first.startswith(f"P{at:%Y%m%d}") and len(first) == 23
