"""``counter.shift``: one counter's morning, driven through a real server, and its figures.

The demo park, Asia/Shanghai, 2026-03-14 (docs/protocol.md works the same
example). counter-1 opens at 08:30 with a float of 500.00:

- 08:00 (before the shift) counter-1 sells an adult for cash (120.00);
- 09:00 A: 2 adult, cash 240.00;
- 09:10 B: a child, card 60.00;
- 09:20 C: an adult, WeChat Pay QR on the counter's screen, 120.00;
- 09:30 D: an adult, cash 120.00, then by card too: the card taking is refunded;
- 09:40 E: a child, cash 60.00 recorded twice (two keys): the second handed back;
- 09:50 counter-2 sells an adult for cash; kiosk-1 one by WeChat Pay;
- 10:00 counter-1 refunds one of A's adults (cash 120.00, "rain");
- 10:10 counter-2 refunds B's child (card 60.00).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.client import RemoteError, connect
from server.shift_report import (
    CHANNEL_ORDER,
    CollectionRow,
    ShiftRefundRow,
    cash_in_drawer,
    shift_report,
)
from tests.helpers import running_server
from tests.test_orders import next_event, settle_outbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = "2026-03-14"
DEVICES = {"counter-1": "counter", "counter-2": "counter", "kiosk-1": "kiosk", "admin-x": "admin"}


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 14, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def lines(product: str, quantity: int = 1) -> list[dict]:
    return [{"product": product, "quantity": quantity, "date": DAY}]


async def cash_sale(counter, key: str, product: str, quantity: int, fen: int) -> dict:
    order = await counter.request("order.create", client_key=key, lines=lines(product, quantity))
    paid = await counter.request(
        "payment.record", order=order["order"], channel="cash", amount_fen=fen, key=f"{key}-cash"
    )
    assert paid["result"] == "captured"
    return await counter.request("order.get", order=order["order"])


async def the_morning(clock: Clock, db, counter, counter2, kiosk) -> None:
    clock.now = at(8, 0)
    await cash_sale(counter, "early", "adult", 1, 12000)

    clock.now = at(9, 0)
    a = await cash_sale(counter, "a", "adult", 2, 24000)

    clock.now = at(9, 10)
    b = await counter.request("order.create", client_key="b", lines=lines("child"))
    paid = await counter.request(
        "payment.record", order=b["order"], channel="card", amount_fen=6000, key="b-card"
    )
    assert paid["result"] == "captured"

    clock.now = at(9, 20)
    c = await counter.request("order.create", client_key="c", lines=lines("adult"))
    start = await counter.request("payment.start", order=c["order"], channel="wechat")
    await counter.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
    await next_event(counter, "order.paid")

    clock.now = at(9, 30)
    d = await cash_sale(counter, "d", "adult", 1, 12000)
    twice = await counter.request(
        "payment.record", order=d["order"], channel="card", amount_fen=12000, key="d-card"
    )
    assert twice["result"] == "refunding"

    clock.now = at(9, 40)
    e = await cash_sale(counter, "e", "child", 1, 6000)
    again = await counter.request(
        "payment.record", order=e["order"], channel="cash", amount_fen=6000, key="e-cash-2"
    )
    assert again["result"] == "refunding"

    clock.now = at(9, 50)
    await cash_sale(counter2, "x", "adult", 1, 12000)
    k = await kiosk.request("order.create", client_key="k", lines=lines("adult"))
    start = await kiosk.request("payment.start", order=k["order"], channel="wechat")
    await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
    await next_event(kiosk, "order.paid")

    clock.now = at(10, 0)
    await counter.request(
        "order.refund",
        order=a["order"],
        tickets=[a["tickets"][0]["ticket"]],
        reason="rain",
        key="r-a",
    )
    clock.now = at(10, 10)
    b_ticket = (await counter2.request("order.get", order=b["order"]))["tickets"][0]["ticket"]
    await counter2.request(
        "order.refund", order=b["order"], tickets=[b_ticket], reason="wrong ticket", key="r-b"
    )
    await settle_outbox(db)


def channels(**figures: tuple[int, int]) -> list[dict]:
    return [
        {"channel": c, "count": figures.get(c, (0, 0))[0], "amount_fen": figures.get(c, (0, 0))[1]}
        for c in CHANNEL_ORDER
    ]


async def test_a_counters_shift_report_counts_its_own_money_exactly(dsn, db):
    clock = Clock(at(8, 0))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with (
            connect(server.url, "counter-1", server.tokens["counter-1"]) as counter,
            connect(server.url, "counter-2", server.tokens["counter-2"]) as counter2,
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            await the_morning(clock, db, counter, counter2, kiosk)
            clock.now = at(12, 0)
            report = await counter.request(
                "counter.shift", **{"from": at(8, 30).timestamp(), "float_fen": 50000}
            )
            other = await counter2.request("counter.shift", **{"from": at(8, 30).timestamp()})
            by_admin = await admin.request(
                "counter.shift",
                device="counter-1",
                float_fen=50000,
                **{"from": at(8, 30).timestamp(), "to": at(12, 0).timestamp()},
            )
            with pytest.raises(RemoteError) as refused:
                await counter.request(
                    "counter.shift", device="counter-2", **{"from": at(8, 30).timestamp()}
                )
            assert refused.value.code == "forbidden"
            with pytest.raises(RemoteError) as nameless:
                await admin.request("counter.shift", **{"from": at(8, 30).timestamp()})
            assert nameless.value.code == "bad_request"
            with pytest.raises(RemoteError) as backwards:
                await counter.request(
                    "counter.shift",
                    **{"from": at(12, 0).timestamp(), "to": at(8, 30).timestamp()},
                )
            assert backwards.value.code == "bad_request"
            with pytest.raises(RemoteError) as kiosk_refused:
                await kiosk.request("counter.shift", **{"from": at(8, 30).timestamp()})
            assert kiosk_refused.value.code == "forbidden"

    assert report == by_admin
    assert report["device"] == "counter-1"
    assert (report["from"], report["to"]) == (at(8, 30).timestamp(), at(12, 0).timestamp())
    assert report["sales"] == {
        "orders": 5,
        "tickets": 6,
        "amount_fen": 60000,
        "by_channel": channels(cash=(3, 42000), card=(1, 6000), wechat=(1, 12000)),
    }
    assert report["duplicates"] == {
        "count": 2,
        "amount_fen": 18000,
        "by_channel": channels(cash=(1, 6000), card=(1, 12000)),
    }
    refunds = report["refunds"]
    assert (refunds["count"], refunds["amount_fen"]) == (3, 30000)
    assert refunds["by_channel"] == channels(cash=(2, 18000), card=(1, 12000))
    assert refunds["staff"] == {
        "count": 1,
        "amount_fen": 12000,
        "by_channel": channels(cash=(1, 12000)),
    }
    assert refunds["automatic"]["by_channel"] == channels(cash=(1, 6000), card=(1, 12000))
    assert (refunds["failed"], refunds["pending"]) == (0, 0)
    assert report["cash"] == {
        "float_fen": 50000,
        "taken_fen": 48000,
        "refunded_fen": 18000,
        "in_drawer_fen": 80000,
    }

    assert other["sales"]["by_channel"] == channels(cash=(1, 12000))
    assert other["refunds"]["staff"]["by_channel"] == channels(card=(1, 6000))
    assert other["cash"] == {
        "float_fen": 0,
        "taken_fen": 12000,
        "refunded_fen": 0,
        "in_drawer_fen": 12000,
    }


MOMENT = datetime(2026, 3, 14, 1, tzinfo=UTC)
collection_rows = st.builds(
    CollectionRow,
    order_id=st.just("O1"),
    channel=st.sampled_from(CHANNEL_ORDER),
    channel_txn_id=st.just("t"),
    amount_fen=st.integers(1, 10**8),
    captured=st.booleans(),
    tickets=st.integers(0, 200),
    received_at=st.just(MOMENT),
)
refund_rows = st.builds(
    ShiftRefundRow,
    out_refund_no=st.just("R1"),
    order_id=st.just("O1"),
    channel=st.sampled_from(CHANNEL_ORDER),
    amount_fen=st.integers(1, 10**8),
    reason=st.just("rain"),
    staff=st.booleans(),
    requested_at=st.just(MOMENT),
    confirmed_at=st.none() | st.just(MOMENT),
    failed_at=st.none() | st.just(MOMENT),
)


@given(
    st.integers(0, 10**7),
    st.lists(collection_rows, max_size=30),
    st.lists(refund_rows, max_size=30),
)
def test_the_drawer_holds_the_float_plus_cash_taken_less_cash_handed_back(
    float_fen, collections, refunds
):
    report = shift_report("c", MOMENT, MOMENT, float_fen, collections, refunds)
    taken = sum(c.amount_fen for c in collections if c.channel == "cash")
    back = sum(r.amount_fen for r in refunds if r.channel == "cash" and r.failed_at is None)
    assert (
        report["cash"]["in_drawer_fen"]
        == float_fen + taken - back
        == cash_in_drawer(float_fen, taken, back)
    )
    sold_and_dup = report["sales"]["amount_fen"] + report["duplicates"]["amount_fen"]
    assert sold_and_dup == sum(c.amount_fen for c in collections)
    for part in (report["sales"], report["duplicates"], report["refunds"]):
        assert sum(c["amount_fen"] for c in part["by_channel"]) == part["amount_fen"]
    staff, auto = report["refunds"]["staff"], report["refunds"]["automatic"]
    assert staff["amount_fen"] + auto["amount_fen"] == report["refunds"]["amount_fen"]
