"""Rentals end to end: create, pay (both routes), pickup, return, settle, over websockets.

A real server on loopback, the demo park's ski area and boat dock, the
in-process WeChat Pay and Alipay simulators, and a real PostgreSQL; each
test ends with ``scenic audit``'s checks, the deposit ones included.
"""

from __future__ import annotations

import trio

from clients.client import RemoteError, connect
from tests.helpers import running_server
from tests.test_orders import assert_audit_clean, next_event, settle_outbox

DEVICES = {
    "kiosk-1": "kiosk",
    "counter-1": "counter",
    "desk-1": "rental",
    "desk-2": "rental",
    "admin-x": "admin",
}

SKIS = ["880101001", "880101002", "880101003"]
BOOTS = ["880103001", "880103002"]


async def paid_rental(server, kiosk, key: str, items: list[dict], channel: str = "wechat"):
    """A rental made at the kiosk and paid by QR; returns (rental, voucher event)."""
    rental = await kiosk.request("rental.create", client_key=key, items=items)
    start = await kiosk.request("rental.pay", rental=rental["rental"], channel=channel)
    await kiosk.request("sim.pay", channel=channel, out_trade_no=start["out_trade_no"])
    voucher = await next_event(kiosk, "rental.voucher")
    assert voucher["rental"] == rental["rental"]
    return rental, voucher


async def test_a_ski_rental_is_held_picked_up_returned_and_the_rest_refunded(dsn, db):
    items = [{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental = await kiosk.request("rental.create", client_key="tap-1", items=items)
            # skis 800 + boots 200 yuan deposit; a day each paid ahead: 120 + 40 yuan
            assert rental["status"] == "pending"
            assert (rental["deposit_fen"], rental["prepaid_fen"]) == (100000, 16000)
            assert rental["due_now_fen"] == 116000
            again = await kiosk.request("rental.create", client_key="tap-1", items=items)
            assert again["rental"] == rental["rental"]
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            assert start["amount_fen"] == 116000 and start["qr"].startswith("weixin://")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            voucher = await next_event(kiosk, "rental.voucher")
            at_desk = await next_event(desk, "rental.voucher")
            assert voucher["voucher"] == at_desk["voucher"]
            held = await desk.request("rental.get", rental=rental["rental"])
            assert held["status"] == "held" and held["hold"]["amount_fen"] == 116000
            out = await desk.request(
                "rental.pickup", voucher=voucher["voucher"], labels=[SKIS[0], BOOTS[0]]
            )
            assert out["status"] == "out" and {u["label"] for u in out["units"]} == {
                SKIS[0],
                BOOTS[0],
            }
            back = await desk.request(
                "rental.return",
                rental=rental["rental"],
                returns=[
                    {"label": SKIS[0], "condition": "ok"},
                    {"label": BOOTS[0], "condition": "ok"},
                ],
            )
            refunded = await next_event(kiosk, "deposit.refunded")
            assert back["status"] == "settled"
            assert back["settlement"]["kept_fen"] == 16000
            assert back["settlement"]["released_fen"] == 100000
            assert refunded["amount_fen"] == 100000
            await settle_outbox(db)
            confirmed = await next_event(kiosk, "deposit.refunded")
            assert confirmed["state"] == "confirmed"
        units = await db.fetch(
            "SELECT state, rental_id FROM rental_units WHERE label = $1", SKIS[0]
        )
        assert [tuple(r) for r in units] == [("available", None)]
        pool = await db.fetchval(
            "SELECT coalesce(sum(amount_fen), 0) FROM ledger_entries"
            " WHERE account = 'deposits:held'"
        )
        assert pool == 0
        revenue = await db.fetchval(
            "SELECT -sum(amount_fen) FROM ledger_entries WHERE account = 'revenue:rentals'"
        )
        assert revenue == 16000
    await assert_audit_clean(db)


async def test_a_unit_cannot_go_out_on_two_rentals_even_from_two_desks_at_once(dsn, db):
    items = [{"item": "skis", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk1,
            connect(server.url, "desk-2", server.tokens["desk-2"]) as desk2,
        ):
            _, first = await paid_rental(server, kiosk, "a", items)
            _, second = await paid_rental(server, kiosk, "b", items)
            results: list[object] = []

            async def hand_out(desk, voucher):
                try:
                    results.append(
                        await desk.request("rental.pickup", voucher=voucher, labels=[SKIS[1]])
                    )
                except RemoteError as exc:
                    results.append(exc.code)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(hand_out, desk1, first["voucher"])
                nursery.start_soon(hand_out, desk2, second["voucher"])
    codes = sorted(r if isinstance(r, str) else r["status"] for r in results)
    assert codes == ["out", "unit_out"]
    rows = await db.fetch("SELECT state, rental_id FROM rental_units WHERE label = $1", SKIS[1])
    assert rows[0]["state"] == "out"
    await assert_audit_clean(db)


async def test_refusals_have_their_codes(dsn, db):
    items = [{"item": "skis", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental, voucher = await paid_rental(server, kiosk, "r", items)
            forged = voucher["voucher"][:-2] + ("AA" if voucher["voucher"][-2:] != "AA" else "BB")
            codes = []
            for call in (
                desk.request("rental.pickup", voucher=forged, labels=[SKIS[2]]),
                kiosk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[2]]),
                desk.request("rental.pickup", voucher=voucher["voucher"], labels=["nope"]),
                desk.request("rental.pickup", voucher=voucher["voucher"], labels=[BOOTS[1]]),
            ):
                try:
                    await call
                    codes.append("ok")
                except RemoteError as exc:
                    codes.append(exc.code)
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[2]])
            for call in (
                desk.request("rental.pickup", voucher=voucher["voucher"], labels=[SKIS[2]]),
                desk.request(
                    "rental.return",
                    rental=rental["rental"],
                    returns=[{"label": SKIS[0], "condition": "ok"}],
                ),
            ):
                try:
                    await call
                    codes.append("ok")
                except RemoteError as exc:
                    codes.append(exc.code)
            # the channel is busy twice: the refund of the rest is in flight a while
            server.channels.simulators["wechat"].inject_fault("refund", "system_busy", count=2)
            again = {"rental": rental["rental"], "returns": [{"label": SKIS[2], "condition": "ok"}]}
            await desk.request("rental.return", **again)
            for settled in (False, True):
                if settled:
                    await settle_outbox(db)
                try:
                    await desk.request("rental.return", **again)
                    codes.append("ok")
                except RemoteError as exc:
                    codes.append(exc.code)
    assert codes == [
        "voucher_forged",  # a voucher whose tag does not verify
        "forbidden",  # a kiosk may not hand units out
        "unknown_unit",  # a label no unit has
        "wrong_item",  # boots for a rental of skis
        "voucher_used",  # the units are out already
        "unit_not_on_rental",  # a unit this rental never had
        "settlement_in_flight",  # a second return while the refund is on its way
        "rental_closed",  # and once the channel confirmed it
    ]
    await assert_audit_clean(db)
