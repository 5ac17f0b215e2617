"""The service desk's lookup through a real server and real websockets: any number, one story.

A visitor who paid twice, a rental from creation to the refund of its rest,
channels that cannot be asked, roles that may not look, and the payer's
identifier never shown whole in a reply or a log line.
"""

from __future__ import annotations

import logging

import pytest
import trio

from clients.client import RemoteError, connect
from server.cli import build_parser
from server.payer_mask import mask_payer
from tests.helpers import running_server
from tests.test_orders import adults, next_event, settle_outbox
from tests.test_rentals import BOOTS, SKIS

DEVICES = {
    "kiosk-1": "kiosk",
    "counter-1": "counter",
    "admin-x": "admin",
    "G-MAIN-1": "gate",
    "desk-1": "rental",
    "wechat-gw": "channel",
}


async def _paid_twice(server, db) -> dict:
    """An order paid by WeChat Pay and then again by Alipay; the second refunded, confirmed."""
    async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
        order = await kiosk.request("order.create", client_key="twice", lines=adults(2))
        wechat = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        alipay = await kiosk.request("payment.start", order=order["order"], channel="alipay")
        first = await kiosk.request(
            "sim.pay", channel="wechat", out_trade_no=wechat["out_trade_no"]
        )
        paid = await next_event(kiosk, "order.paid")
        second = await kiosk.request(
            "sim.pay", channel="alipay", out_trade_no=alipay["out_trade_no"]
        )
        refunded = await next_event(kiosk, "payment.refunded")
    await settle_outbox(db)
    return {
        "order": order,
        "wechat": wechat["out_trade_no"],
        "alipay": alipay["out_trade_no"],
        "first_txn": first["channel_txn_id"],
        "second_txn": second["channel_txn_id"],
        "ticket": paid["tickets"][0],
        "refund": refunded["out_refund_no"],
    }


async def test_every_number_of_an_order_finds_the_same_story(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        paid = await _paid_twice(server, db)
        keys = {
            "order": paid["order"]["order"],
            "out_trade_no": paid["alipay"],
            "channel_txn_id": paid["second_txn"],
            "out_refund_no": paid["refund"],
            "ticket": paid["ticket"]["code"],
            "ticket_id": paid["ticket"]["ticket"],
        }
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            found = {
                kind: await desk.request("desk.lookup", **{kind: v}) for kind, v in keys.items()
            }
            by_first_payment = await desk.request("desk.lookup", out_trade_no=paid["wechat"])
            by_first_txn = await desk.request("desk.lookup", channel_txn_id=paid["first_txn"])
    stories = [reply["story"] for reply in [*found.values(), by_first_payment, by_first_txn]]
    assert all(story == stories[0] for story in stories)
    assert {reply["order"]["order"] for reply in found.values()} == {paid["order"]["order"]}
    assert {(reply["subject"], reply["by"]) for reply in found.values()} == {
        ("order", kind) for kind in keys
    }
    assert [s["what"] for s in stories[0]] == [
        "created",
        "payment started (wechat)",
        "payment started (alipay)",
        "payment captured (wechat)",
        "payment received, to refund (alipay)",
        "refund requested: already_paid",
        "refund confirmed",
    ]


async def test_a_visitor_who_paid_twice_is_told_charged_twice_and_what_comes_back_when(
    dsn, db, caplog
):
    caplog.set_level(logging.INFO)
    async with running_server(dsn, db, DEVICES) as server:
        paid = await _paid_twice(server, db)
        payers = {
            channel: (await server.channels.adapters[channel].query_payment(trade_no)).payer
            for channel, trade_no in (("wechat", paid["wechat"]), ("alipay", paid["alipay"]))
        }
        async with connect(server.url, "admin-x", server.tokens["admin-x"]) as desk:
            reply = await desk.request("desk.lookup", channel_txn_id=paid["second_txn"])
    total = paid["order"]["total_fen"]
    answers = reply["answers"]
    assert (answers["charged"], answers["collections"]) == (True, 2)
    assert answers["collected_fen"] == 2 * total and answers["refunded_fen"] == total
    (back,) = answers["comes_back"]
    assert (back["out_refund_no"], back["channel"], back["amount_fen"], back["state"]) == (
        paid["refund"],
        "alipay",
        total,
        "confirmed",
    )
    (refund,) = reply["refunds"]
    assert refund["at_channel"]["asked"] and refund["at_channel"]["state"] == "SUCCESS"
    assert (
        back["arrival"] == "on its way"
        and back["earliest_at"] == refund["at_channel"]["succeeded_at"]
    )
    assert back["latest_at"] is None  # Alipay publishes no figure for bank cards
    assert back["note"].startswith("to the Alipay balance at once")
    shown = {p["channel"]: p["at_channel"] for p in reply["payments"]}
    assert {c: s["state"] for c, s in shown.items()} == {"wechat": "SUCCESS", "alipay": "REFUND"}
    assert [[c["kept"] for c in p["collections"]] for p in reply["payments"]] == [[True], [False]]
    assert reply["reconciliation"] is None
    # the payer: masked in the reply, masked in the log line, whole nowhere
    assert all(payer and len(payer) >= 12 for payer in payers.values())
    assert {c: s["payer"] for c, s in shown.items()} == {
        c: mask_payer(p) for c, p in payers.items()
    }
    assert not any(payer in repr(reply) for payer in payers.values())
    (line,) = [r for r in caplog.records if r.getMessage() == "desk.lookup"]
    assert line.payers == [mask_payer(payers["wechat"]), mask_payer(payers["alipay"])]
    assert line.charged is True and line.collections == 2
    logged = " ".join(repr(vars(r)) for r in caplog.records)
    assert not any(payer in logged for payer in payers.values())


async def test_a_rentals_whole_story_is_found_by_each_of_its_numbers(dsn, db):
    items = [{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as rental_desk,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            rental = await kiosk.request("rental.create", client_key="ski-1", items=items)
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            paid = await kiosk.request(
                "sim.pay", channel="wechat", out_trade_no=start["out_trade_no"]
            )
            voucher = (await next_event(kiosk, "rental.voucher"))["voucher"]
            await rental_desk.request("rental.pickup", voucher=voucher, labels=[SKIS[0], BOOTS[0]])
            back = [{"label": SKIS[0], "condition": "ok"}, {"label": BOOTS[0], "condition": "ok"}]
            await rental_desk.request("rental.return", rental=rental["rental"], returns=back)
            await settle_outbox(db)
            refund_no = await db.fetchval(
                "SELECT out_refund_no FROM rental_refunds WHERE rental_id = $1", rental["rental"]
            )
            keys = {
                "voucher": voucher,
                "rental": rental["rental"],
                "out_trade_no": start["out_trade_no"],
                "channel_txn_id": paid["channel_txn_id"],
                "out_refund_no": refund_no,
            }
            found = {k: await desk.request("desk.lookup", **{k: v}) for k, v in keys.items()}
    stories = [reply["story"] for reply in found.values()]
    assert all(story == stories[0] for story in stories)
    reply = found["voucher"]
    assert reply["subject"] == "rental" and reply["rental"]["rental"] == rental["rental"]
    assert [s["what"] for s in stories[0]] == [
        "created",
        "payment started (wechat)",
        "deposit paid (wechat)",
        "voucher issued",
        f"picked up: {SKIS[0]}, {BOOTS[0]}",
        f"returned: {SKIS[0]}, {BOOTS[0]}",
        "settled: kept 16000 fen, released 100000 fen",
        "refund requested: deposit_release",
        "refund confirmed",
    ]
    times = [s["at"] for s in stories[0]]
    assert times == sorted(times)
    answers = reply["answers"]
    assert (answers["charged"], answers["collections"], answers["collected_fen"]) == (
        True,
        1,
        116000,
    )
    (back,) = answers["comes_back"]
    assert (back["amount_fen"], back["state"], back["arrival"]) == (
        100000,
        "confirmed",
        "on its way",
    )
    assert (
        back["note"] == "to WeChat change within 5 minutes; to a bank card within 1-3 business days"
    )
    assert back["latest_at"] > back["earliest_at"] + 3 * 86400 - 1
    (payment,) = reply["payments"]
    assert payment["at_channel"]["state"] == "REFUND"
    assert payment["at_channel"]["payer"].count("***") == 1


async def test_a_channel_that_cannot_be_asked_is_said_so_and_the_lookup_still_answers(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            order = await desk.request("order.create", client_key="cash-1", lines=adults(1))
            await desk.request(
                "payment.record",
                order=order["order"],
                channel="cash",
                amount_fen=order["total_fen"],
                key="drawer-1",
            )
            in_cash = await desk.request("desk.lookup", order=order["order"])
        (ticket,) = [t for t in in_cash["order"]["tickets"]]
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            other = await kiosk.request("order.create", client_key="slow", lines=adults(1))
            start = await kiosk.request("payment.start", order=other["order"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            await next_event(kiosk, "order.paid")
        server.channels.simulators["wechat"].inject_fault("query_payment", "stall", stall_s=60)
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            stalled = await desk.request("desk.lookup", out_trade_no=start["out_trade_no"])
    (cash,) = in_cash["payments"]
    assert cash["at_channel"]["asked"] is False and cash["at_channel"]["reason"] == "not_supported"
    assert in_cash["answers"]["charged"] and in_cash["answers"]["collections"] == 1
    assert [t["ticket"] for t in in_cash["tickets"]] == [ticket["ticket"]]
    (wechat,) = stalled["payments"]
    assert wechat["at_channel"] == {
        "asked": False,
        "reason": "timeout",
        "message": "wechat did not answer within 2 s",
    }
    assert stalled["answers"]["collections"] == 1  # what we recorded still answers


async def test_no_role_below_counter_sees_a_story(dsn, db):
    refused = {}
    async with running_server(dsn, db, DEVICES) as server:
        paid = await _paid_twice(server, db)
        for device in ("kiosk-1", "G-MAIN-1", "desk-1", "wechat-gw"):
            async with connect(server.url, device, server.tokens[device]) as client:
                with pytest.raises(RemoteError) as caught:
                    await client.request("desk.lookup", order=paid["order"]["order"])
                refused[device] = caught.value.code
    assert refused == dict.fromkeys(("kiosk-1", "G-MAIN-1", "desk-1", "wechat-gw"), "forbidden")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({}, "bad_request"),
        ({"order": "O1", "out_trade_no": "P1"}, "bad_request"),
        ({"out_refund_no": ""}, "bad_request"),
        ({"order": "O20260101NOSUCHORDER"}, "not_found"),
        ({"out_refund_no": "R-NOSUCH"}, "not_found"),
        ({"rental": "NOSUCH"}, "not_found"),
        ({"ticket": "T" + "x" * 300}, "forged"),
        ({"voucher": "V-not-a-voucher"}, "voucher_forged"),
    ],
)
async def test_desk_lookup_refuses_clearly(dsn, db, args, code):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            with pytest.raises(RemoteError) as refused:
                await desk.request("desk.lookup", **args)
    assert refused.value.code == code


async def test_a_refund_the_channel_has_not_confirmed_yet_says_not_yet(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        alipay = server.channels.simulators["alipay"]
        alipay.refund_mode, alipay.processing_s = "processing", 3600.0  # a bank card's refund
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="slow", lines=adults(1))
            first = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            second = await kiosk.request("payment.start", order=order["order"], channel="alipay")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=first["out_trade_no"])
            await next_event(kiosk, "order.paid")
            await kiosk.request("sim.pay", channel="alipay", out_trade_no=second["out_trade_no"])
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            with trio.fail_after(10):
                while True:  # until the outbox has asked Alipay for the refund
                    reply = await desk.request("desk.lookup", out_trade_no=second["out_trade_no"])
                    if reply["refunds"] and reply["refunds"][0]["at_channel"]["asked"]:
                        break
                    await trio.sleep(0.05)
    (refund,) = reply["refunds"]
    assert refund["state"] == "requested" and refund["confirmed_at"] is None
    assert refund["at_channel"]["state"] == "PROCESSING"
    assert refund["arrival"] == {
        "arrival": "not yet",
        "earliest_at": None,
        "latest_at": None,
        "note": "not confirmed by the channel yet; the money leaves when it is",
    }
    assert reply["answers"]["charged"] and reply["answers"]["collections"] == 2
    assert reply["answers"]["refunded_fen"] == 0


async def test_scenic_desk_lookup_prints_the_three_answers(dsn, db, capsys):
    async with running_server(dsn, db, DEVICES) as server:
        paid = await _paid_twice(server, db)
        payers = [
            (await server.channels.adapters[c].query_payment(paid[c])).payer
            for c in ("wechat", "alipay")
        ]

        async def scenic_desk_lookup(*flags: str) -> int:
            device = ["--device", "counter-1", "--token", server.tokens["counter-1"]]
            args = build_parser().parse_args(
                ["desk", "lookup", "--server", server.url, *device, *flags]
            )
            return await args.run(None, args)

        found = await scenic_desk_lookup("--out-refund-no", paid["refund"])
        printed = capsys.readouterr().out
        missing = await scenic_desk_lookup("--order", "O20260101NOSUCHORDER")
        refused = capsys.readouterr()
    total = _yuan(paid["order"]["total_fen"])
    assert found == 0
    assert f"order {paid['order']['order']} (paid), found by out_refund_no" in printed
    assert f"charged: yes, 2 times, {_yuan(2 * paid['order']['total_fen'])} yuan in all" in printed
    assert f"  {total} yuan by alipay ({paid['refund']}): confirmed, on its way - " in printed
    assert "refund requested: already_paid" in printed and "reconciliation: no run yet" in printed
    assert all(mask_payer(p) in printed and p not in printed for p in payers)
    assert missing == 1 and refused.out == ""
    assert refused.err == (
        "scenic desk lookup: nothing here has order O20260101NOSUCHORDER; "
        "check the number and which kind it is\n"
    )


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


async def test_a_frozen_deposit_is_held_not_charged_and_its_conversion_is_the_one_charge(dsn, db):
    items = [{"item": "skis", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as rental_desk,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            rental = await kiosk.request("rental.create", client_key="frozen", items=items)
            start = await kiosk.request(
                "rental.pay", rental=rental["rental"], channel="alipay", route="preauth"
            )
            await kiosk.request(
                "sim.authorize",
                channel="alipay",
                out_order_no=start["out_order_no"],
                out_request_no=start["out_request_no"],
            )
            voucher = (await next_event(kiosk, "rental.voucher"))["voucher"]
            held = await desk.request("desk.lookup", out_order_no=start["out_order_no"])
            await rental_desk.request("rental.pickup", voucher=voucher, labels=[SKIS[0]])
            await rental_desk.request(
                "rental.return",
                rental=rental["rental"],
                returns=[{"label": SKIS[0], "condition": "ok"}],
            )
            await settle_outbox(db)
            settled = await desk.request("desk.lookup", voucher=voucher)
    assert held["answers"]["charged"] is False and held["answers"]["collections"] == 0
    assert held["answers"]["frozen_fen"] == start["amount_fen"]
    (freeze,) = held["freezes"]
    assert freeze["at_channel"]["state"] == "AUTHORIZED" and freeze["auth_no"]
    assert [s["what"] for s in held["story"]] == [
        "created",
        "freeze started (alipay)",
        "deposit frozen (alipay)",
        "voucher issued",
    ]
    kept = settled["rental"]["settlement"]["kept_fen"]
    answers = settled["answers"]
    assert (answers["charged"], answers["collections"], answers["collected_fen"]) == (
        True,
        1,
        kept,
    )
    assert answers["frozen_fen"] == 0 and answers["comes_back"] == []
    assert settled["freezes"][0]["at_channel"]["state"] == "FINISH"
    assert "freeze converted" in [s["what"] for s in settled["story"]]
