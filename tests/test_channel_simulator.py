"""The simulated channels keep books and refuse requests the way WeChat Pay and Alipay do."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from server.channels import signing
from server.channels.adapter import BadSignature, ChannelError
from server.channels.simulator import ChannelSimulator, CounterChannel, SimulatedChannel
from server.channels.statement import parse_statement

SECRET = b"k" * 32
START = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class FakeClock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return FakeClock()


def simulator(name="wechat", clock=None, **kwargs):
    return ChannelSimulator(name, SECRET, clock or FakeClock(), rng=random.Random(7), **kwargs)


def created(sim, out_trade_no="T1", amount_fen=12800, expires_in_s=900):
    return sim.create_payment(
        out_trade_no, amount_fen, "门票", sim.clock() + timedelta(seconds=expires_in_s)
    )


def paid(sim, out_trade_no="T1", amount_fen=12800):
    created(sim, out_trade_no, amount_fen)
    return sim.pay(out_trade_no)


def refund_error(sim, *args):
    with pytest.raises(ChannelError) as raised:
        sim.refund(*args)
    return raised.value.code


# -- payments -----------------------------------------------------------------------


def test_qr_payloads_look_like_the_real_channels():
    assert re.fullmatch(r"weixin://wxpay/bizpayurl\?pr=\w+", created(simulator()).qr_payload)
    assert re.fullmatch(r"https://qr\.alipay\.com/\w+", created(simulator("alipay")).qr_payload)


def test_creating_the_same_payment_twice_returns_the_same_payment():
    sim = simulator()
    assert created(sim) == created(sim)


def test_reusing_an_out_trade_no_for_another_amount_is_refused():
    sim = simulator()
    created(sim, amount_fen=100)
    with pytest.raises(ChannelError) as raised:
        created(sim, amount_fen=200)
    assert raised.value.code == "out_trade_no_used"


def test_creating_a_paid_payment_again_says_already_paid():
    sim = simulator()
    paid(sim)
    with pytest.raises(ChannelError) as raised:
        created(sim)
    assert raised.value.code == "already_paid"


def test_a_non_positive_amount_is_refused():
    with pytest.raises(ChannelError) as raised:
        created(simulator(), amount_fen=0)
    assert raised.value.code == "bad_request"


def test_a_new_payment_waits_and_a_paid_one_reports_its_transaction(clock):
    sim = simulator(clock=clock)
    created(sim)
    assert sim.query_payment("T1").state == "NOTPAY"
    clock.advance(30)
    fields = sim.pay("T1")
    status = sim.query_payment("T1")
    assert status.state == "SUCCESS"
    assert status.channel_txn_id == fields["channel_txn_id"]
    assert status.paid_at == clock.now
    assert fields == {
        "channel": "wechat",
        "out_trade_no": "T1",
        "channel_txn_id": status.channel_txn_id,
        "amount_fen": 12800,
        "paid_at": clock.now.timestamp(),
    }


def test_transaction_ids_have_each_channels_shape(clock):
    wechat = paid(simulator(clock=clock))["channel_txn_id"]
    alipay = paid(simulator("alipay", clock=clock))["channel_txn_id"]
    assert re.fullmatch(r"4200\d{6}20261124\d{10}", wechat)
    assert re.fullmatch(r"202611242200\d{16}", alipay)


def test_every_payment_gets_its_own_transaction_id():
    sim = simulator()
    ids = {paid(sim, f"T{n}")["channel_txn_id"] for n in range(200)}
    assert len(ids) == 200


def test_a_visitor_who_pays_a_wrong_amount_is_notified_queried_and_refunded_by_it():
    sim = simulator()
    created(sim)
    assert sim.pay("T1", amount_fen=12801)["amount_fen"] == 12801
    status = sim.query_payment("T1")
    assert (status.amount_fen, status.paid_fen) == (12800, 12801)
    assert refund_error(sim, "T1", "R1", 12801, 12800, "") == "amount_mismatch"
    assert refund_error(sim, "T1", "R1", 12802, 12801, "") == "refund_exceeds_payment"
    assert sim.refund("T1", "R1", 12801, 12801, "wrong amount").state == "SUCCESS"
    assert refund_error(sim, "T1", "R2", 1, 12801, "") == "refund_exceeds_payment"
    [row, refund] = parse_statement("wechat", sim.statement(date(2026, 11, 24)))
    assert (row.kind, row.amount_fen, refund.amount_fen) == ("payment", 12801, 12801)


def test_a_payment_below_the_total_bounds_its_refund_by_what_was_paid():
    sim = simulator()
    created(sim)
    sim.pay("T1", amount_fen=100)
    assert refund_error(sim, "T1", "R1", 101, 100, "") == "refund_exceeds_payment"
    assert sim.refund("T1", "R1", 100, 100, "").refund_fen == 100
    assert sim.query_payment("T1").state == "REFUND"


def test_a_busy_fault_refuses_the_next_calls_and_changes_nothing():
    sim = simulator()
    paid(sim)
    sim.inject_fault("refund", "system_busy", count=2)
    for _ in range(2):
        with pytest.raises(ChannelError) as raised:
            sim.refund("T1", "R1", 100, 12800, "")
        assert raised.value.code == "system_busy"
        assert raised.value.transient
    assert sim.refund("T1", "R1", 100, 12800, "").state == "SUCCESS"
    assert sim.query_payment("T1").state == "REFUND"  # the other calls were never hit


def test_a_stall_fault_is_taken_once_per_call_and_counts_down_on_its_own():
    sim = simulator()
    sim.inject_fault("query_payment", "stall", count=2, stall_s=1.5)
    sim.inject_fault("query_payment", "system_busy")
    assert [sim.take_stall("query_payment") for _ in range(3)] == [1.5, 1.5, 0.0]
    assert sim.take_stall("refund") == 0.0
    created(sim)
    with pytest.raises(ChannelError):
        sim.query_payment("T1")
    assert sim.query_payment("T1").state == "NOTPAY"


@pytest.mark.parametrize(
    "args",
    [
        ("pay", "system_busy", 1, 0),
        ("refund", "explode", 1, 0),
        ("refund", "stall", 0, 0),
        ("refund", "stall", 1, -1),
        ("refund", "stall", 1, 3601),
    ],
)
def test_faults_outside_their_range_are_refused(args):
    with pytest.raises(ChannelError) as raised:
        simulator().inject_fault(*args)
    assert raised.value.code == "bad_request"


def test_a_permanent_refusal_is_not_transient():
    sim = simulator()
    created(sim)
    with pytest.raises(ChannelError) as raised:
        sim.refund("T1", "R1", 100, 12800, "")
    assert (raised.value.code, raised.value.transient) == ("not_paid", False)


def test_paying_twice_is_refused():
    sim = simulator()
    paid(sim)
    with pytest.raises(ChannelError) as raised:
        sim.pay("T1")
    assert raised.value.code == "already_paid"


def test_a_closed_payment_cannot_be_paid_and_closing_twice_is_fine():
    sim = simulator()
    created(sim)
    sim.close_payment("T1")
    sim.close_payment("T1")
    assert sim.query_payment("T1").state == "CLOSED"
    with pytest.raises(ChannelError) as raised:
        sim.pay("T1")
    assert raised.value.code == "closed"


def test_an_expired_payment_is_closed(clock):
    sim = simulator(clock=clock)
    created(sim, expires_in_s=60)
    clock.advance(60)
    assert sim.query_payment("T1").state == "CLOSED"
    with pytest.raises(ChannelError) as raised:
        sim.pay("T1")
    assert raised.value.code == "closed"


def test_closing_a_paid_payment_is_refused():
    sim = simulator()
    paid(sim)
    with pytest.raises(ChannelError) as raised:
        sim.close_payment("T1")
    assert raised.value.code == "already_paid"


@pytest.mark.parametrize("call", ["query_payment", "close_payment", "pay"])
def test_an_unknown_payment_is_not_found(call):
    with pytest.raises(ChannelError) as raised:
        getattr(simulator(), call)("nope")
    assert raised.value.code == "not_found"


# -- refunds ------------------------------------------------------------------------


def test_a_refund_succeeds_at_once_and_is_idempotent(clock):
    sim = simulator(clock=clock)
    paid(sim)
    first = sim.refund("T1", "R1", 5000, 12800, "duplicate payment")
    clock.advance(10)
    again = sim.refund("T1", "R1", 5000, 12800, "duplicate payment")
    assert first == again == sim.query_refund("R1")
    assert first.state == "SUCCESS"
    assert first.succeeded_at == START
    assert sim.query_payment("T1").state == "REFUND"


def test_refunds_never_exceed_the_paid_amount():
    sim = simulator()
    paid(sim)
    sim.refund("T1", "R1", 10000, 12800, "")
    assert refund_error(sim, "T1", "R2", 2801, 12800, "") == "refund_exceeds_payment"
    assert sim.refund("T1", "R2", 2800, 12800, "").state == "SUCCESS"
    assert refund_error(sim, "T1", "R3", 1, 12800, "") == "refund_exceeds_payment"


def test_a_refund_number_reused_for_another_amount_is_refused():
    sim = simulator()
    paid(sim)
    sim.refund("T1", "R1", 100, 12800, "")
    assert refund_error(sim, "T1", "R1", 200, 12800, "") == "refund_no_used"
    paid(sim, "T2")
    assert refund_error(sim, "T2", "R1", 100, 12800, "") == "refund_no_used"


def test_refunds_of_unknown_or_unpaid_payments_are_refused():
    sim = simulator()
    assert refund_error(sim, "nope", "R1", 100, 100, "") == "not_found"
    created(sim)
    assert refund_error(sim, "T1", "R1", 100, 12800, "") == "not_paid"


def test_a_refund_whose_total_is_not_the_payment_amount_is_refused():
    sim = simulator()
    paid(sim)
    assert refund_error(sim, "T1", "R1", 100, 12801, "") == "amount_mismatch"


def test_an_unknown_refund_is_not_found():
    with pytest.raises(ChannelError) as raised:
        simulator().query_refund("R404")
    assert raised.value.code == "not_found"


def test_a_processing_refund_succeeds_after_its_processing_time(clock):
    sim = simulator(clock=clock, refund_mode="processing", processing_s=30)
    paid(sim)
    first = sim.refund("T1", "R1", 100, 12800, "")
    assert first.state == "PROCESSING"
    assert first.succeeded_at is None
    clock.advance(29)
    assert sim.query_refund("R1").state == "PROCESSING"
    assert sim.refund("T1", "R1", 100, 12800, "").state == "PROCESSING"
    clock.advance(1)
    done = sim.refund("T1", "R1", 100, 12800, "")
    assert done.state == "SUCCESS"
    assert done.succeeded_at == START + timedelta(seconds=30)
    assert done.refund_id == first.refund_id
    assert sim.query_refund("R1") == done


def test_a_processing_refund_still_counts_against_the_paid_amount():
    sim = simulator(refund_mode="processing")
    paid(sim)
    sim.refund("T1", "R1", 12800, 12800, "")
    assert refund_error(sim, "T1", "R2", 1, 12800, "") == "refund_exceeds_payment"


# -- statements ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wechat", "alipay"])
def test_the_statement_lists_the_days_payments_and_refunds(clock, name):
    sim = simulator(name, clock=clock, refund_mode="processing", processing_s=60)
    paid(sim, "T1", 10000)
    clock.advance(5)
    paid(sim, "T2", 333)
    sim.refund("T1", "R1", 4000, 10000, "")
    created(sim, "T3", 500)  # never paid: not on the bill
    clock.advance(60)
    rows = parse_statement(name, sim.statement(date(2026, 11, 24)))
    assert [(row.kind, row.out_trade_no, row.amount_fen) for row in rows] == [
        ("payment", "T1", 10000),
        ("payment", "T2", 333),
        ("refund", "T1", 4000),
    ]
    assert [row.fee_fen for row in rows] == [60, 2, 24]
    assert rows[2].at == START + timedelta(seconds=65)
    assert rows[2].channel_txn_id == rows[0].channel_txn_id


def test_a_payment_belongs_to_the_shanghai_date_it_was_paid_on():
    clock = FakeClock(datetime(2026, 11, 24, 16, 30, tzinfo=UTC))  # 00:30 on the 25th
    sim = simulator(clock=clock)
    paid(sim)
    assert parse_statement("wechat", sim.statement(date(2026, 11, 24))) == []
    assert len(parse_statement("wechat", sim.statement(date(2026, 11, 25)))) == 1


def test_a_refund_belongs_to_the_date_it_succeeded():
    clock = FakeClock(datetime(2026, 11, 24, 15, 59, tzinfo=UTC))  # 23:59 on the 24th
    sim = simulator(clock=clock, refund_mode="processing", processing_s=120)
    paid(sim)
    sim.refund("T1", "R1", 100, 12800, "")
    clock.advance(600)
    on_24th = parse_statement("wechat", sim.statement(date(2026, 11, 24)))
    on_25th = parse_statement("wechat", sim.statement(date(2026, 11, 25)))
    assert [row.kind for row in on_24th] == ["payment"]
    assert [row.kind for row in on_25th] == ["refund"]


# -- the adapters -------------------------------------------------------------------


async def test_the_in_process_adapter_delegates_to_the_simulator(clock):
    sim = simulator(clock=clock)
    channel = SimulatedChannel(sim)
    assert channel.name == "wechat"
    payment = await channel.create_payment("T1", 800, "缆车", clock.now + timedelta(minutes=15))
    fields = sim.pay("T1")
    assert (await channel.query_payment("T1")).state == "SUCCESS"
    refund = await channel.refund("T1", "R1", 800, 800, "cancelled")
    assert await channel.query_refund("R1") == refund
    assert payment.qr_payload.startswith("weixin://")
    assert b"`T1," in await channel.statement(date(2026, 11, 24))
    channel.verify_notification(signing.signed(fields, SECRET, clock.now.timestamp()))
    with pytest.raises(BadSignature):
        channel.verify_notification(signing.signed(fields, b"x" * 32, clock.now.timestamp()))
    clock.advance(signing.MAX_SKEW_S + 1)
    with pytest.raises(BadSignature):
        channel.verify_notification(signing.signed(fields, SECRET, START.timestamp()))
    with pytest.raises(ChannelError) as raised:
        await channel.close_payment("T1")
    assert raised.value.code == "already_paid"


@pytest.mark.parametrize("name", ["cash", "card"])
async def test_counter_channels_refund_at_once_and_send_no_notifications(name):
    channel = CounterChannel(name, clock=FakeClock())
    payment = await channel.create_payment("T1", 5000, "雪具租赁押金", START)
    assert payment.qr_payload == ""
    refund = await channel.refund("T1", "R1", 5000, 5000, "deposit returned")
    assert refund.state == "SUCCESS"
    assert await channel.refund("T1", "R1", 5000, 5000, "deposit returned") == refund
    assert await channel.query_refund("R1") == refund
    with pytest.raises(ChannelError) as raised:
        await channel.refund("T1", "R1", 4000, 5000, "")
    assert raised.value.code == "refund_no_used"
    with pytest.raises(ChannelError) as raised:
        await channel.query_payment("T1")
    assert raised.value.code == "not_supported"
    await channel.close_payment("T1")
    fields = signing.signed(
        {
            "channel": name,
            "out_trade_no": "T1",
            "channel_txn_id": "x",
            "amount_fen": 1,
            "paid_at": 0.0,
        },
        SECRET,
        START.timestamp(),
    )
    with pytest.raises(BadSignature, match="no notifications"):
        channel.verify_notification(fields)
    statement = await channel.statement(date(2026, 11, 24))
    assert statement.count(b"\n") == 1


def test_unknown_channel_names_and_refund_modes_are_refused():
    with pytest.raises(ValueError):
        ChannelSimulator("paypal", SECRET)
    with pytest.raises(ValueError):
        ChannelSimulator("wechat", SECRET, refund_mode="eventually")
    with pytest.raises(ValueError):
        CounterChannel("wechat")
