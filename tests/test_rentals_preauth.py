"""The Alipay pre-authorisation route end to end: frozen, converted, unfrozen, lapsed.

A real server on loopback with Alipay simulated in-process: the kiosk
asks for a freeze (``rental.pay`` route ``preauth``), the visitor
authorises it (``sim.authorize``), the simulator's notifier delivers the
signed ``freeze.notify``, and the deposit is held off the ledger (a memo
on ``preauth:alipay``) until the rental settles: the charges converted
into a payment with the rest unfrozen in the same call, or the whole
freeze converted before it could lapse, or the lapse recorded. Time is
the park's clock (tests/rental_park.py). Every test ends with ``scenic
audit``'s checks.
"""

from __future__ import annotations

import time

import pytest

from actors.rentals.commands import ConfirmConversion, ConvertFreeze, ReportLapse
from actors.rentals.rules import RentalRefused
from actors.rentals.state import ResolutionKind
from actors.rentals.timers import Timer, deadlines_of
from clients.client import RemoteError, connect
from server.channels.signing import signed
from tests.helpers import running_server
from tests.rental_park import (
    DEVICES,
    SKIS,
    ledger_balance,
    ok,
    park_clock,
    park_time,
    wait_for,
)
from tests.rental_support import HOUR, T0, create, freeze, pick_up, step
from tests.test_orders import assert_audit_clean, next_event, settle_outbox

SKI = [{"item": "skis", "quantity": 1}]
HELMET = [{"item": "helmet", "quantity": 1}]
HELMETS = [f"8801040{n:02d}" for n in range(1, 61)]
DAY = 24 * 3600


async def frozen_rental(kiosk, key: str, items: list[dict]) -> tuple[dict, dict, dict]:
    """A rental whose deposit the visitor froze at Alipay; (rental, freeze reply, voucher)."""
    rental = await kiosk.request("rental.create", client_key=key, items=items)
    freeze = await kiosk.request(
        "rental.pay", rental=rental["rental"], channel="alipay", route="preauth"
    )
    await kiosk.request(
        "sim.authorize",
        channel="alipay",
        out_order_no=freeze["out_order_no"],
        out_request_no=freeze["out_request_no"],
    )
    voucher = await next_event(kiosk, "rental.voucher")
    return rental, freeze, voucher


async def memo_balance(db, account: str = "preauth:alipay") -> int:
    return await db.fetchval(
        "select coalesce(sum(amount_fen), 0) from rental_memos where account = $1", account
    )


async def test_a_frozen_deposit_is_converted_for_the_charges_and_the_rest_unfrozen(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, freeze, voucher = await frozen_rental(kiosk, "f", SKI)
            rid = rental["rental"]
            assert freeze["amount_fen"] == 92000 and freeze["qr"].startswith("https://")
            held = await desk.request("rental.get", rental=rid)
            frozen_memo = await memo_balance(db)
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            back = await desk.request("rental.return", rental=rid, returns=ok(SKIS[0]))
            requested = await next_event(kiosk, "deposit.refunded")
            await settle_outbox(db)
            confirmed = await next_event(kiosk, "deposit.refunded")
            after = await desk.request("rental.get", rental=rid)
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert held["status"] == "held" and held["hold"]["route"] == "preauth"
    assert held["hold"]["auth_no"] and held["hold"]["expires_at"] > held["hold"]["held_at"]
    assert frozen_memo == 92000
    assert await ledger_balance(db, "deposits:held") == 0  # frozen money is not ours yet
    assert back["status"] == "settled"
    assert (back["settlement"]["kept_fen"], back["settlement"]["released_fen"]) == (12000, 80000)
    assert (requested["how"], requested["amount_fen"], requested["state"]) == (
        "unfreeze",
        80000,
        "requested",
    )
    assert (confirmed["amount_fen"], confirmed["state"]) == (80000, "confirmed")
    assert books.state == "FINISH"
    assert (books.converted_fen, books.unfrozen_fen, books.rest_fen) == (12000, 80000, 0)
    assert after["hold"]["resolution"]["kind"] == "settled"
    assert await memo_balance(db) == 0
    assert -(await ledger_balance(db, "revenue:rentals")) == 12000
    await assert_audit_clean(db)


async def test_cancel_before_pickup_unfreezes_a_freeze_or_closes_one_not_authorised(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            held, held_freeze, _ = await frozen_rental(kiosk, "h", SKI)
            cancelled = await kiosk.request("rental.cancel", rental=held["rental"])
            requested = await next_event(kiosk, "deposit.refunded")
            waiting = await kiosk.request("rental.create", client_key="w", items=SKI)
            asked = await kiosk.request(
                "rental.pay", rental=waiting["rental"], channel="alipay", route="preauth"
            )
            dropped = await kiosk.request("rental.cancel", rental=waiting["rental"])
            await settle_outbox(db)
            confirmed = await next_event(kiosk, "deposit.refunded")
        alipay = server.channels.adapters["alipay"]
        unfrozen = await alipay.query_freeze(
            held_freeze["out_order_no"], held_freeze["out_request_no"]
        )
        closed = await alipay.query_freeze(asked["out_order_no"], asked["out_request_no"])
    assert cancelled["status"] == "cancelled" and dropped["status"] == "cancelled"
    assert (requested["how"], requested["amount_fen"]) == ("unfreeze", 92000)
    assert confirmed["state"] == "confirmed"
    assert (unfrozen.state, unfrozen.unfrozen_fen, unfrozen.converted_fen) == ("CLOSED", 92000, 0)
    assert closed.state == "CLOSED" and closed.auth_no is None
    assert await memo_balance(db) == 0
    assert await db.fetchval("select coalesce(sum(reserved), 0) from rental_stock") == 0
    await assert_audit_clean(db)


async def _extended_far(desk, rental_id: str, days: int) -> dict:
    """Extend a rental out to closing time ``days`` days from now (it outlives its freeze)."""
    due = park_time(17, 30, days=days).timestamp()
    return await desk.request("rental.extend", rental=rental_id, due_at=due, reason="season")


async def test_a_rental_outliving_its_freeze_is_converted_whole_then_the_rest_refunded(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, freeze, voucher = await frozen_rental(kiosk, "long", HELMET)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[HELMETS[0]])
            await _extended_far(desk, rid, 31)
            held = await desk.request("rental.get", rental=rid)
            convert_by = held["hold"]["convert_by"]
            expires_at = held["hold"]["expires_at"]
            mock_clock.jump(convert_by - clock().timestamp() + 60)
            converted = await wait_for(lambda: _pooled(db, rid))
            mock_clock.jump(2 * 3600)  # past the freeze's timeout: nothing lapses
            back = await desk.request("rental.return", rental=rid, returns=ok(HELMETS[0]))
            refunded = await next_event(kiosk, "deposit.refunded")
            await settle_outbox(db)
            after = await desk.request("rental.get", rental=rid)
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert expires_at - convert_by == 3600
    assert converted == 13000  # the helmet's 100 yuan deposit and its 30 yuan use
    assert (books.state, books.converted_fen, books.lapsed_fen) == ("FINISH", 13000, 0)
    assert back["status"] == "settled"
    assert (back["settlement"]["kept_fen"], back["settlement"]["released_fen"]) == (3000, 10000)
    assert (refunded["how"], refunded["amount_fen"]) == ("refund", 10000)
    assert [(r["amount_fen"], r["state"]) for r in after["refunds"]] == [(10000, "confirmed")]
    assert await memo_balance(db) == 0
    assert await ledger_balance(db, "deposits:held") == 0
    await assert_audit_clean(db)


async def _pooled(db, rental_id: str) -> int | None:
    """The deposit a whole conversion put into the pool, once the channel confirmed it."""
    return await db.fetchval(
        """select c.amount_fen from rental_confirmations c
            where c.rental_id = $1 and c.kind = 'conversion'""",
        rental_id,
    )


async def test_a_freeze_that_lapses_while_its_conversion_fails_is_recorded_as_lapsed(
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
            rental, freeze, voucher = await frozen_rental(kiosk, "lapse", HELMET)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[HELMETS[0]])
            await _extended_far(desk, rid, 31)
            held = await desk.request("rental.get", rental=rid)
            server.channels.simulators["alipay"].inject_fault(
                "convert_to_payment", "system_busy", count=2
            )
            mock_clock.jump(held["hold"]["convert_by"] - clock().timestamp() + 60)
            await wait_for(lambda: _conversion_asked(db, rid))
            mock_clock.jump(2 * 3600)  # the channel is still busy when the freeze lapses
            lapsed = await next_event(admin, "deposit.lapsed")
            after = await desk.request("rental.get", rental=rid)
            back = await desk.request("rental.return", rental=rid, returns=ok(HELMETS[0]))
            await wait_for(lambda: _outbox_quiet(db))
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert (books.state, books.lapsed_fen, books.converted_fen) == ("CLOSED", 13000, 0)
    assert (lapsed["rental"], lapsed["amount_fen"]) == (rid, 13000)
    assert after["hold"]["resolution"]["kind"] == "lapsed"
    # nothing secured any more: the helmet's use is owed by a compensation order
    assert back["settlement"]["paid_fen"] == 0
    assert back["settlement"]["compensation_fen"] == 3000
    assert await memo_balance(db) == 0
    await assert_audit_clean(db)


async def _conversion_asked(db, rental_id: str) -> bool:
    return bool(
        await db.fetchval(
            "select count(*) from rental_payments where rental_id = $1 and kind = 'conversion'",
            rental_id,
        )
    )


async def _outbox_quiet(db) -> bool:
    """No outbox row waits any more: each is done or given up on."""
    return not await db.fetchval(
        "select count(*) from outbox where done_at is null and failed_at is null"
    )


def test_the_rule_a_conversion_the_channel_never_made_before_the_timeout_is_a_lapse():
    rental = pick_up(freeze(create(("boat", 1)), lasts=4 * HOUR), "D001")
    converting = step(rental, ConvertFreeze("P-conv", T0 + 3 * HOUR)).rental
    assert {d.timer for d in deadlines_of(converting)} == {Timer.DUE, Timer.LAPSE}
    lapsed = step(converting, ReportLapse(T0 + 4 * HOUR))
    assert lapsed.kinds() == ["FreezeLapsed"]
    assert lapsed.rental.hold.resolution.kind is ResolutionKind.LAPSED
    assert [m.amount_fen for m in lapsed.memos] == [-50000]
    assert Timer.LAPSE not in {d.timer for d in deadlines_of(lapsed.rental)}
    late = ConfirmConversion("P-conv", "ALI-1", 50000, T0 + 5 * HOUR)
    with pytest.raises(RentalRefused) as refused:
        step(lapsed.rental, late)
    assert refused.value.code == "freeze_lapsed"
    converted = step(converting, ConfirmConversion("P-conv", "ALI-1", 50000, T0 + 3 * HOUR))
    assert step(converted.rental, ReportLapse(T0 + 4 * HOUR)).events == ()


async def test_a_freeze_authorised_after_the_deposit_was_paid_is_unfrozen_whole(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="both", items=SKI)
            rid = rental["rental"]
            freeze = await kiosk.request(
                "rental.pay", rental=rid, channel="alipay", route="preauth"
            )
            pay = await kiosk.request("rental.pay", rental=rid, channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=pay["out_trade_no"])
            await next_event(kiosk, "rental.voucher")
            await kiosk.request(
                "sim.authorize",
                channel="alipay",
                out_order_no=freeze["out_order_no"],
                out_request_no=freeze["out_request_no"],
            )
            unfrozen = await wait_for(lambda: _unfrozen(kiosk, rid))
            await settle_outbox(db)
            after = await kiosk.request("rental.get", rental=rid)
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert after["status"] == "held" and after["hold"]["route"] == "pay"
    assert [(u["amount_fen"], u["reason"]) for u in unfrozen] == [(92000, "already_paid")]
    assert (books.state, books.unfrozen_fen, books.converted_fen) == ("CLOSED", 92000, 0)
    assert await memo_balance(db) == 0
    assert await ledger_balance(db, "deposits:held") == -80000
    await assert_audit_clean(db)


async def _unfrozen(client, rental_id):
    rental = await client.request("rental.get", rental=rental_id)
    done = rental["unfreezes"]
    return done if done and all(u["confirmed"] for u in done) else None


async def test_forfeiting_a_frozen_deposit_converts_it_whole_and_gives_nothing_back(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            rental, freeze, voucher = await frozen_rental(kiosk, "ff", SKI)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0]])
            forfeited = await admin.request("rental.forfeit", rental=rid, reason="skis not back")
            told = await next_event(admin, "deposit.forfeited")
            await settle_outbox(db)
            after = await admin.request("rental.get", rental=rid)
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert forfeited["status"] == "forfeited" and told["kept_fen"] == 92000
    assert after["refunds"] == [] and after["unfreezes"] == []
    assert (books.state, books.converted_fen, books.unfrozen_fen) == ("FINISH", 92000, 0)
    assert await memo_balance(db) == 0
    assert -(await ledger_balance(db, "revenue:rentals")) == 92000
    assert await db.fetchval("select state from rental_units where label = $1", SKIS[0]) == "lost"
    await assert_audit_clean(db)


async def test_a_freeze_whose_conversion_a_stopped_server_never_reached_is_recorded_lapsed(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, _, voucher = await frozen_rental(kiosk, "down", HELMET)
            rid = rental["rental"]
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[HELMETS[0]])
            await _extended_far(desk, rid, 31)
            held = await desk.request("rental.get", rental=rid)
    # the server is down from before the conversion was due until after the freeze lapsed
    mock_clock.jump(held["hold"]["expires_at"] - clock().timestamp() + 3600)
    async with running_server(dsn, db, {}, clock=clock, channels=server.channels) as again:
        async with connect(again.url, "admin-x", server.tokens["admin-x"]) as admin:
            lapsed = await next_event(admin, "deposit.lapsed")
            after = await admin.request("rental.get", rental=rid)
    assert (lapsed["rental"], lapsed["amount_fen"]) == (rid, 13000)
    assert after["status"] == "out" and after["hold"]["resolution"]["kind"] == "lapsed"
    assert await memo_balance(db) == 0
    await assert_audit_clean(db)


async def test_a_gateways_freeze_notification_replayed_three_times_is_one_confirmation(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "wechat-gw", server.tokens["wechat-gw"]) as gateway,
        ):
            rental = await kiosk.request("rental.create", client_key="n", items=SKI)
            freeze = await kiosk.request(
                "rental.pay", rental=rental["rental"], channel="alipay", route="preauth"
            )
            fields = server.channels.simulators["alipay"].authorize_freeze(
                freeze["out_order_no"], freeze["out_request_no"]
            )
            key = server.channel_keys["alipay"]
            now = time.time()
            answers = [
                await gateway.request("freeze.notify", **signed(fields, key, now)) for _ in range(3)
            ]
            forged = {**signed(fields, key, now), "amount_fen": 1}
            try:
                await gateway.request("freeze.notify", **forged)
                refused = None
            except RemoteError as exc:
                refused = exc.code
            after = await kiosk.request("rental.get", rental=rental["rental"])
    assert [a["result"] for a in answers] == ["held"] * 3
    assert refused == "bad_signature"
    assert after["status"] == "held" and after["unfreezes"] == []
    assert await db.fetchval("select count(*) from rental_confirmations") == 1
    assert await memo_balance(db) == 92000
    await assert_audit_clean(db)


async def test_a_freeze_authorised_in_time_but_heard_after_the_expiry_is_unfrozen_whole(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="late", items=SKI)
            rid = rental["rental"]
            freeze = await kiosk.request(
                "rental.pay", rental=rid, channel="alipay", route="preauth"
            )
            mock_clock.jump(14 * 60)
            fields = server.channels.simulators["alipay"].authorize_freeze(
                freeze["out_order_no"], freeze["out_request_no"]
            )
            mock_clock.jump(2 * 60)
            await wait_for(lambda: _status_is(kiosk, rid, "expired"))
            await settle_outbox(db)  # cancelling the authorised request is refused
            server.channels.notifiers["alipay"].submit(fields)
            unfrozen = await wait_for(lambda: _unfrozen(kiosk, rid))
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert [(u["amount_fen"], u["reason"]) for u in unfrozen] == [(92000, "rental_expired")]
    assert (books.state, books.unfrozen_fen) == ("CLOSED", 92000)
    assert await memo_balance(db) == 0
    await assert_audit_clean(db)


async def _status_is(client, rental_id, status):
    rental = await client.request("rental.get", rental=rental_id)
    return rental if rental["status"] == status else None


async def test_a_frozen_deposit_never_picked_up_lapses_and_the_rental_is_cancelled(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0
    clock = park_clock(park_time(9))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            rental, freeze, _ = await frozen_rental(kiosk, "never", SKI)
            rid = rental["rental"]
            held = await kiosk.request("rental.get", rental=rid)
            server.channels.simulators["alipay"].inject_fault(
                "convert_to_payment", "system_busy", count=2
            )
            mock_clock.jump(held["hold"]["convert_by"] - clock().timestamp() + 60)
            await wait_for(lambda: _conversion_asked(db, rid))
            mock_clock.jump(2 * 3600)
            lapsed = await next_event(admin, "deposit.lapsed")
            after = await wait_for(lambda: _status_is(kiosk, rid, "cancelled"))
        books = await server.channels.adapters["alipay"].query_freeze(
            freeze["out_order_no"], freeze["out_request_no"]
        )
    assert (books.state, books.lapsed_fen) == ("CLOSED", 92000)
    assert lapsed["rental"] == rid
    assert after["hold"]["resolution"]["kind"] == "lapsed"
    assert await db.fetchval("select coalesce(sum(reserved), 0) from rental_stock") == 0
    assert await memo_balance(db) == 0
    await assert_audit_clean(db)
