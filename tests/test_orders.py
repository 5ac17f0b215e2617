"""Selling end to end: orders, payments from every channel, refunds, through real websockets."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import trio

from actors.catalog import parse_catalog
from clients.client import RemoteError, connect
from server.audit import run_audit
from server.channels.signing import signed
from server.site import demo_catalog_source
from server.storage import site
from tests.helpers import running_server

DEVICES = {
    "kiosk-1": "kiosk",
    "counter-1": "counter",
    "wechat-gw": "channel",
    "gate-1": "gate",
    "admin-x": "admin",
}


def visit_day(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).date().isoformat()


def adults(n: int = 2, day: str | None = None) -> list[dict]:
    return [{"product": "adult", "quantity": n, "date": day or visit_day()}]


async def next_event(client, name: str, timeout: float = 10.0) -> dict:
    with trio.fail_after(timeout):
        async for event, data in client.events():
            if event == name:
                return data
    raise AssertionError(f"connection closed before {name}")


async def assert_audit_clean(db) -> None:
    failures = {r.check.name: r.offenders for r in await db.run(run_audit) if not r.ok}
    assert failures == {}


async def settle_outbox(db, timeout: float = 10.0) -> None:
    """Wait until every outbox entry (refunds) has been delivered and confirmed."""
    with trio.move_on_after(timeout):
        while await db.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL"):
            await trio.sleep(0.05)
        return
    stuck = await db.fetch(
        "SELECT kind, dedupe_key, attempts, last_error FROM outbox WHERE done_at IS NULL"
    )
    raise AssertionError(f"outbox entries still undelivered: {[dict(r) for r in stuck]}")


async def test_a_kiosk_sells_two_tickets_paid_by_wechat(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            catalog = await kiosk.request("catalog.list")
            assert {p["product"] for p in catalog["products"]} >= {"adult", "child"}
            order = await kiosk.request("order.create", client_key="tap-1", lines=adults(2))
            assert order["status"] == "pending" and order["total_fen"] == 24000
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            assert start["amount_fen"] == 24000 and start["qr"].startswith("weixin://")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            paid = await next_event(kiosk, "order.paid")
            assert paid["order"] == order["order"] and len(paid["tickets"]) == 2
            after = await kiosk.request("order.get", order=order["order"])
    assert after["status"] == "paid"
    assert sorted(t["code"] for t in after["tickets"]) == sorted(t["code"] for t in paid["tickets"])
    assert await db.fetchval("SELECT count(*) FROM tickets") == 2
    await assert_audit_clean(db)


async def test_the_same_client_key_gives_the_same_order_even_when_tapped_at_once(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            taps = [
                await kiosk.start_request("order.create", {"client_key": "k", "lines": adults()})
                for _ in range(5)
            ]
            orders = {(await tap.wait())["order"] for tap in taps}
            again = await kiosk.request("order.create", client_key="k", lines=adults())
    assert orders == {again["order"]}
    assert await db.fetchval("SELECT count(*) FROM orders") == 1
    assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 2


async def test_a_visitor_who_pays_twice_is_refunded_once_automatically(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="twice", lines=adults(2))
            wechat = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            alipay = await kiosk.request("payment.start", order=order["order"], channel="alipay")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=wechat["out_trade_no"])
            await next_event(kiosk, "order.paid")
            second = await kiosk.request(
                "sim.pay", channel="alipay", out_trade_no=alipay["out_trade_no"]
            )
            refunded = await next_event(kiosk, "payment.refunded")
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            found = await desk.request("order.find", channel_txn_id=second["channel_txn_id"])
        alipay_books = await server.channels.adapters["alipay"].query_refund(
            refunded["out_refund_no"]
        )
    assert refunded["channel"] == "alipay" and refunded["amount_fen"] == 24000
    assert refunded["reason"] == "already_paid"
    assert alipay_books.state == "SUCCESS" and alipay_books.refund_fen == 24000
    assert found["order"] == order["order"] and found["status"] == "paid"
    assert [r["confirmed"] for r in found["refunds"]] == [True]
    story = [step["what"] for step in found["story"]]
    assert "payment captured (wechat)" in story
    assert "payment received, to refund (alipay)" in story and "refund confirmed" in story
    await assert_audit_clean(db)


async def test_a_replayed_notification_changes_nothing_and_gets_the_same_answer(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
        ):
            order = await kiosk.request("order.create", client_key="r", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            key = server.channel_keys["wechat"]
            answers = [
                await gateway.request("payment.notify", **signed(fields, key, time.time()))
                for _ in range(3)
            ]
    assert {a["result"] for a in answers} == {"captured"}
    assert await db.fetchval("SELECT count(*) FROM payment_confirmations") == 1
    assert await db.fetchval("SELECT count(*) FROM refunds") == 0
    await assert_audit_clean(db)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f, key: {**signed(f, key, time.time()), "amount_fen": f["amount_fen"] + 1},
        lambda f, key: signed(f, b"x" * 32, time.time()),
        lambda f, key: signed(f, key, time.time() - 3600),
        lambda f, key: {**signed(f, key, time.time()), "signature": "00" * 32},
    ],
    ids=["tampered-amount", "wrong-key", "stale", "forged-signature"],
)
async def test_a_forged_or_stale_notification_is_refused_and_nothing_recorded(dsn, db, tamper):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
        ):
            order = await kiosk.request("order.create", client_key="f", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            with pytest.raises(RemoteError) as refused:
                await gateway.request(
                    "payment.notify", **tamper(fields, server.channel_keys["wechat"])
                )
            assert await gateway.request("ping") == {}
    assert refused.value.code == "bad_signature"
    assert await db.fetchval("SELECT count(*) FROM payment_confirmations") == 0


async def test_a_wrong_amount_is_recorded_and_refunded_and_the_order_stays_pending(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="w", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="alipay")
            await kiosk.request(
                "sim.pay", channel="alipay", out_trade_no=start["out_trade_no"], amount_fen=100
            )
            refunded = await next_event(kiosk, "payment.refunded")
            after = await kiosk.request("order.get", order=order["order"])
    assert refunded["reason"] == "amount_mismatch" and refunded["amount_fen"] == 100
    assert after["status"] == "pending" and after["tickets"] == []
    await assert_audit_clean(db)


async def test_cash_at_the_counter_is_idempotent_by_key_and_a_second_payment_refunded(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as counter:
            order = await counter.request("order.create", client_key="c", lines=adults(1))
            first = [
                await counter.request(
                    "payment.record",
                    order=order["order"],
                    channel="cash",
                    amount_fen=12000,
                    key="drawer-1",
                )
                for _ in range(2)
            ]
            card = await counter.request(
                "payment.record",
                order=order["order"],
                channel="card",
                amount_fen=12000,
                key="pos-77",
            )
            await settle_outbox(db)
    assert [r["result"] for r in first] == ["captured", "captured"]
    assert card["result"] == "refunding" and card["out_refund_no"]
    assert await db.fetchval("SELECT count(*) FROM payment_confirmations") == 2
    await assert_audit_clean(db)


async def test_cash_recorded_twice_at_once_with_one_key_is_one_payment(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as counter:
            order = await counter.request("order.create", client_key="tap", lines=adults(1))
            args = {"order": order["order"], "channel": "cash", "amount_fen": 12000, "key": "d"}
            taps = [await counter.start_request("payment.record", args) for _ in range(2)]
            replies = [await tap.wait() for tap in taps]
    assert [r["result"] for r in replies] == ["captured", "captured"]
    assert await db.fetchval("SELECT count(*) FROM payments") == 1
    assert await db.fetchval("SELECT count(*) FROM payment_confirmations") == 1
    assert await db.fetchval("SELECT count(*) FROM refunds") == 0
    await assert_audit_clean(db)


async def test_staff_refund_of_one_unused_ticket_voids_it_and_pays_it_back(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            order = await kiosk.request("order.create", client_key="s", lines=adults(2))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            paid = await next_event(kiosk, "order.paid")
            ticket = paid["tickets"][0]["ticket"]
            refund = [
                await desk.request(
                    "order.refund",
                    order=order["order"],
                    tickets=[ticket],
                    reason="rain",
                    key="desk-9",
                )
                for _ in range(2)  # a retried request refunds once
            ]
            refunded = await next_event(kiosk, "payment.refunded")
            with pytest.raises(RemoteError) as twice:
                await desk.request(
                    "order.refund", order=order["order"], tickets=[ticket], reason="x", key="k2"
                )
    assert refunded["amount_fen"] == 12000 and refunded["reason"] == "rain"
    assert [t["refunded"] for t in refund[-1]["tickets"]] == [True, False]
    assert len(refund[-1]["refunds"]) == 1
    assert twice.value.code == "ticket_not_refundable"
    await assert_audit_clean(db)


async def test_cancel_releases_capacity_and_a_late_payment_is_refunded(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="x", lines=adults(3))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            other = await kiosk.request("payment.start", order=order["order"], channel="alipay")
            assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 3
            # The visitor pays at the very moment the kiosk gives up: the channel's
            # notification arrives only after the cancel.
            fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])
            cancelled = await kiosk.request("order.cancel", order=order["order"])
            assert cancelled["status"] == "cancelled"
            assert await db.fetchval("SELECT sum(reserved) FROM capacity") == 0
            server.channels.notifiers["wechat"].submit(fields)
            refunded = await next_event(kiosk, "payment.refunded")
            with pytest.raises(RemoteError) as again:
                await kiosk.request("payment.start", order=order["order"], channel="alipay")
            # The unpaid attempt was closed at its channel: it can no longer be paid.
            await settle_outbox(db)
            with pytest.raises(RemoteError) as closed:
                await kiosk.request("sim.pay", channel="alipay", out_trade_no=other["out_trade_no"])
    assert refunded["reason"] == "order_cancelled"
    assert again.value.code == "order_not_pending"
    assert closed.value.code == "closed"
    await assert_audit_clean(db)


async def test_capacity_is_never_oversold_under_concurrent_orders(dsn, db):
    catalog_text = demo_catalog_source().replace("daily = 20000", "daily = 5")
    catalog = parse_catalog(catalog_text)
    await db.run(site.store_catalog, catalog_text, catalog, datetime.now(UTC).date())
    results = []
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:

            async def buy(n):
                try:
                    await kiosk.request("order.create", client_key=f"o{n}", lines=adults(1))
                    results.append("ok")
                except RemoteError as exc:
                    results.append(exc.code)

            async with trio.open_nursery() as nursery:
                for n in range(12):
                    nursery.start_soon(buy, n)
    assert sorted(results) == ["ok"] * 5 + ["sold_out"] * 7
    assert await db.fetchval("SELECT reserved FROM capacity WHERE slot = ''") == 5
    await assert_audit_clean(db)


@pytest.mark.parametrize(
    ("op", "args", "code"),
    [
        ("order.get", {"order": "O20260101NOSUCHORDER"}, "not_found"),
        ("order.create", {"client_key": "q", "lines": adults(0)}, "bad_request"),
        ("order.create", {"client_key": "q", "lines": adults(-3)}, "bad_request"),
        ("order.create", {"client_key": "q", "lines": adults(10**12)}, "bad_request"),
        ("order.create", {"client_key": "q", "lines": adults(201)}, "bad_request"),
        ("order.create", {"client_key": "q", "lines": []}, "bad_request"),
        (
            "order.create",
            {
                "client_key": "q",
                "lines": [{"product": "unicorn", "quantity": 1, "date": visit_day()}],
            },
            "bad_request",
        ),
        ("order.create", {"client_key": "q", "lines": adults(1, "2001-01-01")}, "bad_request"),
        ("order.create", {"client_key": "q", "lines": adults(1, "2026-02-30")}, "bad_request"),
        ("payment.start", {"order": "O20260101NOSUCHORDER", "channel": "wechat"}, "not_found"),
        ("payment.start", {"order": "O1", "channel": "bitcoin"}, "bad_request"),
        ("payment.notify", {}, "forbidden"),
        ("order.find", {"order": "x"}, "forbidden"),
    ],
)
async def test_bad_selling_requests_get_clear_errors(dsn, db, op, args, code):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            with pytest.raises(RemoteError) as refused:
                await kiosk.request(op, **args)
            assert await kiosk.request("ping") == {}
    assert refused.value.code == code


async def test_a_gate_may_not_sell(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "gate-1", server.tokens["gate-1"]) as gate:
            with pytest.raises(RemoteError) as refused:
                await gate.request("order.create", client_key="g", lines=adults(1))
    assert refused.value.code == "forbidden"


async def test_a_notification_for_an_unknown_payment_is_unknown_payment(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway:
            fields = {
                "channel": "wechat",
                "out_trade_no": "P20260101NOSUCHPAYMNT",
                "channel_txn_id": "4200000000000000000000000001",
                "amount_fen": 100,
                "paid_at": time.time(),
            }
            with pytest.raises(RemoteError) as refused:
                await gateway.request(
                    "payment.notify", **signed(fields, server.channel_keys["wechat"], time.time())
                )
    assert refused.value.code == "unknown_payment"  # as docs/protocol.md lists it


async def test_the_readme_story_runs(dsn, db, capsys):
    from clients.story import tell_story

    async with running_server(dsn, db, DEVICES) as server:
        await tell_story(server.url, "kiosk-1", server.tokens["kiosk-1"])
    told = capsys.readouterr().out
    assert "was refunded" in told and "is paid; refunds: 1" in told
    await assert_audit_clean(db)


async def test_asking_for_orders_that_do_not_exist_leaves_no_actors_behind(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            for n in range(20):
                with pytest.raises(RemoteError):
                    await kiosk.request("order.cancel", order=f"O20260101NOSUCH{n:04d}")
            async with connect(server.url, "admin-x", server.tokens["admin-x"]) as admin:
                with trio.fail_after(5):
                    while (await admin.request("server.stats"))["actors"]["live_by_kind"].get(
                        "order"
                    ):
                        await trio.sleep(0.02)


async def test_catalog_places_shows_what_is_left_per_date_and_slot(dsn, db):
    day = visit_day(3)
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "gate-1", server.tokens["gate-1"]) as gate,
        ):
            before = await kiosk.request("catalog.places", date=day, days=2)
            lines = [
                {"product": "adult", "quantity": 3, "date": day},
                {"product": "adult-slot", "quantity": 2, "date": day, "slot": "AM"},
            ]
            order = await kiosk.request("order.create", client_key="places", lines=lines)
            after = await kiosk.request("catalog.places", date=day, days=2)
            await kiosk.request("order.cancel", order=order["order"])
            released = await kiosk.request("catalog.places", date=day)
            golden = await kiosk.request("catalog.places", date="2026-10-01")
            today = await kiosk.request("catalog.places")
            with pytest.raises(RemoteError) as forbidden:
                await gate.request("catalog.places")
            refusals = []
            for args in ({"date": "2026-02-30"}, {"days": 32}, {"days": 0}, {"date": "tomorrow"}):
                with pytest.raises(RemoteError) as refused:
                    await kiosk.request("catalog.places", **args)
                refusals.append(refused.value.code)

    def left(reply, index=0):
        return {p["slot"]: p["left"] for p in reply["dates"][index]["places"]}

    assert [d["date"] for d in before["dates"]] == [day, visit_day(4)]
    assert left(before) == {None: 20000, "AM": 8000, "PM": 8000}
    assert left(after) == {None: 19997, "AM": 7998, "PM": 8000}
    assert after["dates"][0]["places"][0] == {
        "slot": None,
        "capacity": 20000,
        "reserved": 3,
        "left": 19997,
    }
    assert left(after, 1) == {None: 20000, "AM": 8000, "PM": 8000}
    assert left(released) == {None: 20000, "AM": 8000, "PM": 8000}
    assert left(golden) == {None: 15000, "AM": 6000, "PM": 6000}  # the holiday's own caps
    assert len(today["dates"]) == 1
    assert forbidden.value.code == "forbidden"
    assert refusals == ["bad_request"] * 4
