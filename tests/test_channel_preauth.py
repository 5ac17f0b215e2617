"""Alipay's fund authorisation in the simulator: freeze, authorise, unfreeze, convert, lapse.

Pure: the simulator's books and clock in memory, no I/O (the websocket API and
RemoteChannel are in tests/test_channel_remote.py).
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cbor2
import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from server.channels import fund_auth, signing
from server.channels.adapter import BadSignature, ChannelError
from server.channels.sim_api import ChannelApi
from server.channels.simulator import (
    MAX_FREEZE,
    PREAUTH_OPS,
    ChannelSimulator,
    CounterChannel,
    SimulatedChannel,
)
from server.channels.statement import parse_statement

SECRET = b"a" * 32
START = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DAY = timedelta(days=1)


class FakeClock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


def simulator(name="alipay", clock=None, **kwargs):
    return ChannelSimulator(name, SECRET, clock or FakeClock(), rng=random.Random(11), **kwargs)


def created(sim, order="D1", request="F1", amount_fen=50000, expires_in=DAY):
    return sim.create_freeze(order, request, amount_fen, "滑雪板 押金", sim.clock() + expires_in)


def authorised(sim, order="D1", request="F1", amount_fen=50000, expires_in=DAY):
    """A freeze the visitor authorised; returns its auth_no."""
    created(sim, order, request, amount_fen, expires_in)
    return sim.authorize_freeze(order, request)["auth_no"]


def refusal(call, *args, **kwargs):
    """The code ``call`` is refused with; every freeze refusal is permanent."""
    with pytest.raises(ChannelError) as raised:
        call(*args, **kwargs)
    assert raised.value.message
    assert not raised.value.transient, raised.value.code
    return raised.value.code


def amounts(status):
    return (status.rest_fen, status.converted_fen, status.unfrozen_fen, status.lapsed_fen)


# -- creating a freeze --------------------------------------------------------------


def test_a_new_freeze_waits_for_the_visitor_with_nothing_frozen_yet():
    sim = simulator()
    freeze = created(sim)
    assert re.fullmatch(r"https://qr\.alipay\.com/\w{24}", freeze.qr_payload)
    assert (freeze.out_order_no, freeze.out_request_no, freeze.amount_fen) == ("D1", "F1", 50000)
    assert freeze.expires_at == START + DAY
    status = sim.query_freeze("D1", "F1")
    assert status.state == "INIT"
    assert status.amount_fen == 50000
    assert (status.auth_no, status.authorized_at) == (None, None)
    assert amounts(status) == (0, 0, 0, 0)
    assert status.expires_at == START + DAY


def test_creating_the_same_freeze_again_returns_the_same_freeze():
    sim = simulator()
    assert created(sim) == created(sim)


def test_the_same_numbers_for_another_amount_are_refused():
    sim = simulator()
    created(sim, amount_fen=50000)
    assert refusal(created, sim, amount_fen=40000) == "request_no_used"


def test_an_order_number_is_one_freeze_whatever_its_request_number():
    sim = simulator()
    created(sim, request="F1")
    assert refusal(created, sim, request="F2") == "out_order_no_used"


def test_creating_an_authorised_freeze_again_says_already_authorized():
    sim = simulator()
    authorised(sim)
    assert refusal(created, sim) == "already_authorized"


def test_creating_a_closed_freeze_again_says_closed():
    sim = simulator()
    created(sim)
    sim.close_freeze("D1", "F1")
    assert refusal(created, sim) == "closed"


def test_a_freeze_may_last_the_channels_thirty_days_and_no_longer():
    assert timedelta(days=30) == MAX_FREEZE
    sim = simulator()
    assert created(sim, "D1", expires_in=MAX_FREEZE).expires_at == START + MAX_FREEZE
    too_long = MAX_FREEZE + timedelta(seconds=1)
    assert refusal(created, sim, "D2", expires_in=too_long) == "expires_too_late"
    with pytest.raises(ChannelError):
        sim.query_freeze("D2", "F1")


def test_the_simulators_maximum_is_configurable():
    sim = simulator(max_freeze=timedelta(hours=2))
    created(sim, "D1", expires_in=timedelta(hours=2))
    assert refusal(created, sim, "D2", expires_in=timedelta(hours=3)) == "expires_too_late"
    with pytest.raises(ValueError):
        simulator(max_freeze=timedelta(0))


@pytest.mark.parametrize(
    ("order", "request_no", "amount_fen", "expires_at"),
    [
        ("", "F1", 100, START + DAY),
        ("D" * 65, "F1", 100, START + DAY),
        ("D1", "", 100, START + DAY),
        ("D1", "F1", 0, START + DAY),
        ("D1", "F1", -5, START + DAY),
        ("D1", "F1", 1.5, START + DAY),
        ("D1", "F1", True, START + DAY),
        ("D1", "F1", 100, START),
        ("D1", "F1", 100, START - DAY),
        ("D1", "F1", 100, (START + DAY).replace(tzinfo=None)),
    ],
)
def test_a_malformed_freeze_is_a_bad_request(order, request_no, amount_fen, expires_at):
    sim = simulator()
    code = refusal(sim.create_freeze, order, request_no, amount_fen, "", expires_at)
    assert code == "bad_request"


# -- the visitor authorises ---------------------------------------------------------


def test_authorising_freezes_the_amount_and_yields_the_notification():
    clock = FakeClock()
    sim = simulator(clock=clock)
    created(sim)
    clock.advance(30)
    notification = sim.authorize_freeze("D1", "F1")
    assert set(notification) == set(fund_auth.FREEZE_NOTIFICATION_FIELDS) - {"nonce", "sign_ts"}
    assert re.fullmatch(r"202612012001\d{16}", notification["auth_no"])
    assert notification == {
        "kind": "freeze",
        "channel": "alipay",
        "out_order_no": "D1",
        "out_request_no": "F1",
        "auth_no": notification["auth_no"],
        "amount_fen": 50000,
        "authorized_at": (START + timedelta(seconds=30)).timestamp(),
    }
    status = sim.query_freeze("D1", "F1")
    assert status.state == "AUTHORIZED"
    assert status.auth_no == notification["auth_no"]
    assert status.authorized_at == START + timedelta(seconds=30)
    assert amounts(status) == (50000, 0, 0, 0)


def test_authorising_twice_says_already_authorized():
    sim = simulator()
    authorised(sim)
    assert refusal(sim.authorize_freeze, "D1", "F1") == "already_authorized"


def test_an_unauthorised_freeze_closes_at_its_expiry_and_can_no_longer_be_authorised():
    clock = FakeClock()
    sim = simulator(clock=clock)
    created(sim, expires_in=timedelta(minutes=15))
    clock.advance(15 * 60 - 1)
    assert sim.query_freeze("D1", "F1").state == "INIT"
    clock.advance(1)
    status = sim.query_freeze("D1", "F1")
    assert status.state == "CLOSED"
    assert amounts(status) == (0, 0, 0, 0)
    assert refusal(sim.authorize_freeze, "D1", "F1") == "closed"


def test_authorising_an_unknown_freeze_is_not_found():
    sim = simulator()
    created(sim)
    assert refusal(sim.authorize_freeze, "D2", "F1") == "not_found"
    assert refusal(sim.authorize_freeze, "D1", "F2") == "not_found"


def test_a_freeze_is_queried_by_both_its_numbers():
    sim = simulator()
    created(sim)
    assert refusal(sim.query_freeze, "D1", "F2") == "not_found"
    assert refusal(sim.query_freeze, "D9", "F1") == "not_found"


# -- closing one that waits ---------------------------------------------------------


def test_closing_a_waiting_freeze_stops_it_and_closing_again_is_fine():
    sim = simulator()
    created(sim)
    sim.close_freeze("D1", "F1")
    sim.close_freeze("D1", "F1")
    assert sim.query_freeze("D1", "F1").state == "CLOSED"
    assert refusal(sim.authorize_freeze, "D1", "F1") == "closed"


def test_an_authorised_freeze_cannot_be_closed_only_unfrozen():
    sim = simulator()
    authorised(sim)
    assert refusal(sim.close_freeze, "D1", "F1") == "already_authorized"
    assert refusal(sim.close_freeze, "D9", "F1") == "not_found"


# -- unfreezing ---------------------------------------------------------------------


def test_unfreezing_a_part_keeps_the_rest_frozen():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim)
    clock.advance(60)
    done = sim.unfreeze(auth_no, "U1", 12000, "boots returned early")
    assert (done.auth_no, done.out_request_no, done.amount_fen) == (auth_no, "U1", 12000)
    assert done.rest_fen == 38000
    assert done.unfrozen_at == START + timedelta(seconds=60)
    status = sim.query_freeze("D1", "F1")
    assert status.state == "AUTHORIZED"
    assert amounts(status) == (38000, 0, 12000, 0)


def test_unfreezing_all_of_it_closes_the_freeze():
    sim = simulator()
    auth_no = authorised(sim)
    sim.unfreeze(auth_no, "U1", 20000, "")
    sim.unfreeze(auth_no, "U2", 30000, "")
    status = sim.query_freeze("D1", "F1")
    assert status.state == "CLOSED"
    assert amounts(status) == (0, 0, 50000, 0)


def test_the_same_unfreeze_again_is_the_same_unfreeze():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim)
    first = sim.unfreeze(auth_no, "U1", 50000, "")
    clock.advance(5)
    assert sim.unfreeze(auth_no, "U1", 50000, "asked again") == first
    assert amounts(sim.query_freeze("D1", "F1")) == (0, 0, 50000, 0)


def test_an_unfreeze_number_names_one_amount_and_not_the_freezes_own_request():
    sim = simulator()
    auth_no = authorised(sim)
    sim.unfreeze(auth_no, "U1", 100, "")
    assert refusal(sim.unfreeze, auth_no, "U1", 200, "") == "request_no_used"
    assert refusal(sim.unfreeze, auth_no, "F1", 200, "") == "request_no_used"
    assert amounts(sim.query_freeze("D1", "F1")) == (49900, 0, 100, 0)


def test_unfreezing_more_than_the_rest_is_refused():
    sim = simulator()
    auth_no = authorised(sim)
    sim.unfreeze(auth_no, "U1", 40000, "")
    assert refusal(sim.unfreeze, auth_no, "U2", 10001, "") == "unfreeze_exceeds_rest"
    sim.unfreeze(auth_no, "U2", 10000, "")
    assert refusal(sim.unfreeze, auth_no, "U3", 1, "") == "unfreeze_exceeds_rest"


@pytest.mark.parametrize(("request_no", "amount_fen"), [("U1", 0), ("U1", -1), ("", 5)])
def test_a_malformed_unfreeze_is_a_bad_request(request_no, amount_fen):
    sim = simulator()
    auth_no = authorised(sim)
    assert refusal(sim.unfreeze, auth_no, request_no, amount_fen, "") == "bad_request"


def test_unfreezing_an_unknown_authorisation_is_not_found():
    sim = simulator()
    authorised(sim)
    assert refusal(sim.unfreeze, "2026120120010000000000000000", "U1", 1, "") == "not_found"


def test_the_rules_refuse_to_move_money_of_a_freeze_not_yet_authorised():
    sim = simulator()
    created(sim)
    freeze = sim._freezes["D1"]
    with pytest.raises(ChannelError) as raised:
        fund_auth.unfreeze(freeze, "U1", 1, START)
    assert raised.value.code == "not_authorized"
    with pytest.raises(ChannelError) as raised:
        fund_auth.convert(freeze, "T1", 1, "COMPLETE", START, lambda: "txn")
    assert raised.value.code == "not_authorized"


# -- converting into a payment ------------------------------------------------------


def test_a_complete_conversion_takes_the_payment_and_releases_the_rest():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim)
    clock.advance(3 * 3600)
    done = sim.convert_to_payment(auth_no, "T1", 18000, "雪板 3 小时", "COMPLETE")
    at = START + timedelta(hours=3)
    assert (done.out_trade_no, done.auth_no, done.amount_fen) == ("T1", auth_no, 18000)
    assert (done.auth_confirm_mode, done.released_fen, done.rest_fen) == ("COMPLETE", 32000, 0)
    assert done.paid_at == at
    assert re.fullmatch(r"202612012200\d{16}", done.channel_txn_id)
    status = sim.query_freeze("D1", "F1")
    assert status.state == "FINISH"
    assert amounts(status) == (0, 18000, 32000, 0)
    payment = sim.query_payment("T1")
    assert (payment.state, payment.amount_fen, payment.paid_fen) == ("SUCCESS", 18000, 18000)
    assert (payment.channel_txn_id, payment.paid_at) == (done.channel_txn_id, at)


def test_complete_is_the_default_mode():
    sim = simulator()
    auth_no = authorised(sim)
    assert sim.convert_to_payment(auth_no, "T1", 100, "").released_fen == 49900
    assert sim.query_freeze("D1", "F1").state == "FINISH"


def test_a_not_complete_conversion_leaves_the_rest_frozen_for_later():
    sim = simulator()
    auth_no = authorised(sim)
    first = sim.convert_to_payment(auth_no, "T1", 10000, "day 1", "NOT_COMPLETE")
    assert (first.released_fen, first.rest_fen) == (0, 40000)
    status = sim.query_freeze("D1", "F1")
    assert status.state == "AUTHORIZED"
    assert amounts(status) == (40000, 10000, 0, 0)
    sim.convert_to_payment(auth_no, "T2", 10000, "day 2", "NOT_COMPLETE")
    sim.unfreeze(auth_no, "U1", 30000, "returned")
    status = sim.query_freeze("D1", "F1")
    assert status.state == "FINISH"
    assert amounts(status) == (0, 20000, 30000, 0)


def test_converting_all_of_it_finishes_the_freeze_in_either_mode():
    for mode in ("COMPLETE", "NOT_COMPLETE"):
        sim = simulator()
        auth_no = authorised(sim)
        done = sim.convert_to_payment(auth_no, "T1", 50000, "lost skis", mode)
        assert (done.released_fen, done.rest_fen) == (0, 0)
        status = sim.query_freeze("D1", "F1")
        assert (status.state, amounts(status)) == ("FINISH", (0, 50000, 0, 0))


def test_the_same_conversion_again_is_the_same_conversion_and_one_payment():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim)
    first = sim.convert_to_payment(auth_no, "T1", 18000, "", "NOT_COMPLETE")
    clock.advance(10)
    assert sim.convert_to_payment(auth_no, "T1", 18000, "again", "NOT_COMPLETE") == first
    assert sim.convert_to_payment(auth_no, "T1", 18000, "again", "COMPLETE") == first
    assert amounts(sim.query_freeze("D1", "F1")) == (32000, 18000, 0, 0)


def test_a_trade_number_is_one_payment_whatever_took_it():
    sim = simulator()
    auth_no = authorised(sim)
    other = authorised(sim, "D2", "F2")
    sim.convert_to_payment(auth_no, "T1", 100, "", "NOT_COMPLETE")
    assert refusal(sim.convert_to_payment, auth_no, "T1", 200, "") == "out_trade_no_used"
    assert refusal(sim.convert_to_payment, other, "T1", 100, "") == "out_trade_no_used"
    sim.create_payment("T9", 100, "ticket", START + DAY)
    assert refusal(sim.convert_to_payment, auth_no, "T9", 100, "") == "out_trade_no_used"
    assert refusal(sim.create_payment, "T1", 200, "", START + DAY) == "out_trade_no_used"
    assert refusal(sim.create_payment, "T1", 100, "", START + DAY) == "already_paid"


def test_converting_more_than_the_rest_is_refused():
    sim = simulator()
    auth_no = authorised(sim)
    sim.unfreeze(auth_no, "U1", 45000, "")
    assert refusal(sim.convert_to_payment, auth_no, "T1", 5001, "") == "convert_exceeds_rest"
    sim.convert_to_payment(auth_no, "T1", 4000, "", "COMPLETE")
    assert refusal(sim.convert_to_payment, auth_no, "T2", 1, "") == "convert_exceeds_rest"
    with pytest.raises(ChannelError):
        sim.query_payment("T2")


@pytest.mark.parametrize(
    ("out_trade_no", "amount_fen", "mode"),
    [("T1", 0, "COMPLETE"), ("T1", 1, "complete"), ("T1", 1, "PARTIAL"), ("", 1, "COMPLETE")],
)
def test_a_malformed_conversion_is_a_bad_request(out_trade_no, amount_fen, mode):
    sim = simulator()
    auth_no = authorised(sim)
    code = refusal(sim.convert_to_payment, auth_no, out_trade_no, amount_fen, "", mode)
    assert code == "bad_request"
    assert amounts(sim.query_freeze("D1", "F1")) == (50000, 0, 0, 0)


def test_converting_an_unknown_authorisation_is_not_found():
    sim = simulator()
    created(sim)
    assert refusal(sim.convert_to_payment, "nope", "T1", 1, "") == "not_found"


def test_a_converted_payment_is_refunded_and_billed_like_any_payment():
    sim = simulator()
    auth_no = authorised(sim)
    done = sim.convert_to_payment(auth_no, "T1", 18000, "", "COMPLETE")
    refund = sim.refund("T1", "R1", 6000, 18000, "overcharged")
    assert (refund.state, refund.refund_fen) == ("SUCCESS", 6000)
    assert refusal(sim.refund, "T1", "R2", 12001, 18000, "") == "refund_exceeds_payment"
    assert sim.query_payment("T1").state == "REFUND"
    rows = parse_statement("alipay", sim.statement(date(2026, 12, 1)))
    assert [(r.kind, r.out_trade_no, r.channel_txn_id, r.amount_fen) for r in rows] == [
        ("payment", "T1", done.channel_txn_id, 18000),
        ("refund", "T1", done.channel_txn_id, 6000),
    ]


def test_a_freeze_and_its_unfreezes_are_not_on_the_bill():
    sim = simulator()
    auth_no = authorised(sim)
    sim.unfreeze(auth_no, "U1", 50000, "")
    assert parse_statement("alipay", sim.statement(date(2026, 12, 1))) == []


# -- the lapse ----------------------------------------------------------------------


def test_what_is_still_frozen_lapses_at_the_expiry_and_then_nothing_moves():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim, expires_in=DAY)
    sim.unfreeze(auth_no, "U1", 10000, "")
    clock.advance(DAY.total_seconds() - 1)
    assert sim.query_freeze("D1", "F1").state == "AUTHORIZED"
    clock.advance(1)
    status = sim.query_freeze("D1", "F1")
    assert status.state == "CLOSED"
    assert amounts(status) == (0, 0, 10000, 40000)
    assert refusal(sim.convert_to_payment, auth_no, "T1", 100, "") == "auth_expired"
    assert refusal(sim.unfreeze, auth_no, "U2", 100, "") == "auth_expired"
    assert sim.unfreeze(auth_no, "U1", 10000, "").rest_fen == 40000  # a repeat still answers
    with pytest.raises(ChannelError):
        sim.query_payment("T1")


def test_a_lapse_after_a_conversion_finishes_the_freeze_and_the_payment_stays():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim, expires_in=DAY)
    first = sim.convert_to_payment(auth_no, "T1", 20000, "", "NOT_COMPLETE")
    clock.advance(2 * DAY.total_seconds())
    status = sim.query_freeze("D1", "F1")
    assert (status.state, amounts(status)) == ("FINISH", (0, 20000, 0, 30000))
    assert sim.convert_to_payment(auth_no, "T1", 20000, "") == first
    assert refusal(sim.convert_to_payment, auth_no, "T2", 1, "") == "auth_expired"
    assert sim.query_payment("T1").state == "SUCCESS"


def test_a_freeze_settled_before_its_expiry_lapses_nothing():
    clock = FakeClock()
    sim = simulator(clock=clock)
    auth_no = authorised(sim, expires_in=DAY)
    sim.convert_to_payment(auth_no, "T1", 20000, "", "COMPLETE")
    clock.advance(2 * DAY.total_seconds())
    status = sim.query_freeze("D1", "F1")
    assert (status.state, amounts(status)) == ("FINISH", (0, 20000, 30000, 0))


# -- only Alipay --------------------------------------------------------------------


def test_wechat_pay_offers_no_pre_authorisation():
    sim = simulator("wechat")
    expires = START + DAY
    assert refusal(sim.create_freeze, "D1", "F1", 100, "", expires) == "not_supported"
    assert refusal(sim.query_freeze, "D1", "F1") == "not_supported"
    assert refusal(sim.close_freeze, "D1", "F1") == "not_supported"
    assert refusal(sim.unfreeze, "A1", "U1", 100, "") == "not_supported"
    assert refusal(sim.convert_to_payment, "A1", "T1", 100, "") == "not_supported"
    assert refusal(sim.authorize_freeze, "D1", "F1") == "not_supported"
    for op in PREAUTH_OPS:
        assert refusal(sim.inject_fault, op, "system_busy") == "not_supported"


async def test_wechat_and_the_counters_refuse_freezes_through_the_adapter():
    expires = START + DAY
    for channel in (
        SimulatedChannel(simulator("wechat")),
        CounterChannel("cash"),
        CounterChannel("card"),
    ):
        calls = (
            channel.create_freeze("D1", "F1", 100, "", expires),
            channel.query_freeze("D1", "F1"),
            channel.close_freeze("D1", "F1"),
            channel.unfreeze("A1", "U1", 100, ""),
            channel.convert_to_payment("A1", "T1", 100, "", "COMPLETE"),
        )
        for call in calls:
            with pytest.raises(ChannelError) as raised:
                await call
            assert raised.value.code == "not_supported", channel.name
            assert not raised.value.transient


# -- faults -------------------------------------------------------------------------


def test_a_busy_fault_refuses_each_freeze_call_transiently_and_changes_nothing():
    sim = simulator()
    auth_no = authorised(sim)
    calls = {
        "create_freeze": lambda: created(sim, "D2", "F2"),
        "query_freeze": lambda: sim.query_freeze("D1", "F1"),
        "close_freeze": lambda: sim.close_freeze("D2", "F2"),
        "unfreeze": lambda: sim.unfreeze(auth_no, "U1", 100, ""),
        "convert_to_payment": lambda: sim.convert_to_payment(auth_no, "T1", 100, ""),
    }
    assert set(calls) == set(PREAUTH_OPS)
    for op, call in calls.items():
        sim.inject_fault(op, "system_busy")
        with pytest.raises(ChannelError) as raised:
            call()
        assert raised.value.code == "system_busy"
        assert raised.value.transient
        if op == "create_freeze":
            assert refusal(sim.query_freeze, "D2", "F2") == "not_found"
        call()  # served now
    assert amounts(sim.query_freeze("D1", "F1")) == (0, 100, 49900, 0)
    assert sim.query_freeze("D2", "F2").state == "CLOSED"


async def test_a_stalled_freeze_call_is_served_after_its_stall(autojump_clock):
    sim = simulator()
    channel = SimulatedChannel(sim)
    auth_no = authorised(sim)
    sim.inject_fault("convert_to_payment", "stall", stall_s=30)
    started = trio.current_time()
    done = await channel.convert_to_payment(auth_no, "T1", 100, "", "NOT_COMPLETE")
    assert trio.current_time() - started == pytest.approx(30)
    assert done.rest_fen == 49900
    assert (await channel.query_freeze("D1", "F1")).converted_fen == 100


async def test_the_in_process_adapter_delegates_every_freeze_call():
    clock = FakeClock()
    sim = simulator(clock=clock)
    channel = SimulatedChannel(sim)
    created_ = await channel.create_freeze("D1", "F1", 50000, "", START + DAY)
    assert created_ == created(sim)
    await channel.create_freeze("D2", "F2", 100, "", START + DAY)
    await channel.close_freeze("D2", "F2")
    assert (await channel.query_freeze("D2", "F2")).state == "CLOSED"
    auth_no = sim.authorize_freeze("D1", "F1")["auth_no"]
    assert (await channel.unfreeze(auth_no, "U1", 1000, "")).rest_fen == 49000
    done = await channel.convert_to_payment(auth_no, "T1", 2000, "", "COMPLETE")
    assert done.released_fen == 47000
    assert (await channel.query_freeze("D1", "F1")).state == "FINISH"


# -- the notification ---------------------------------------------------------------


def genuine(fields, now_ts=None):
    return signing.signed(fields, SECRET, START.timestamp() if now_ts is None else now_ts)


def test_a_freeze_notification_verifies_as_a_freeze_and_never_as_a_payment():
    sim = simulator()
    channel = SimulatedChannel(sim)
    created(sim)
    notification = genuine(sim.authorize_freeze("D1", "F1"))
    channel.verify_notification(notification, "freeze")
    with pytest.raises(BadSignature):
        channel.verify_notification(notification)
    with pytest.raises(BadSignature):
        channel.verify_notification(notification, "payment")
    unkinded = {k: v for k, v in notification.items() if k != "kind"}
    with pytest.raises(BadSignature):
        channel.verify_notification(unkinded, "freeze")
    # dressed up with a payment's fields and stripped of its kind, it is still no payment
    dressed = {
        **unkinded,
        "out_trade_no": "D1",
        "channel_txn_id": notification["auth_no"],
        "paid_at": notification["authorized_at"],
    }
    with pytest.raises(BadSignature):
        channel.verify_notification(dressed)


def test_a_payment_notification_never_verifies_as_a_freeze():
    sim = simulator()
    channel = SimulatedChannel(sim)
    sim.create_payment("T1", 100, "", START + DAY)
    notification = genuine(sim.pay("T1"))
    channel.verify_notification(notification)
    with pytest.raises(BadSignature):
        channel.verify_notification(notification, "freeze")
    dressed = {
        **notification,
        "kind": "freeze",
        "out_order_no": "T1",
        "out_request_no": "T1",
        "auth_no": notification["channel_txn_id"],
        "authorized_at": notification["paid_at"],
    }
    with pytest.raises(BadSignature):
        channel.verify_notification(dressed, "freeze")
    with pytest.raises(BadSignature):
        channel.verify_notification({**notification, "kind": "payment"})


@pytest.mark.parametrize(
    "change",
    [
        {"amount_fen": 50001},
        {"auth_no": "2026120120010000000000000000"},
        {"out_request_no": "F2"},
        {"authorized_at": 1.0},
        {"channel": "wechat"},
        {"signature": "00" * 32},
        {"amount_fen": None},
        {"nonce": None},
        {"kind": "Freeze"},
    ],
)
def test_a_tampered_or_incomplete_freeze_notification_is_refused(change):
    sim = simulator()
    created(sim)
    notification = genuine(sim.authorize_freeze("D1", "F1"))
    with pytest.raises(BadSignature):
        SimulatedChannel(sim).verify_notification({**notification, **change}, "freeze")


def test_a_stale_freeze_notification_is_refused():
    clock = FakeClock()
    sim = simulator(clock=clock)
    created(sim)
    notification = genuine(sim.authorize_freeze("D1", "F1"))
    channel = SimulatedChannel(sim)
    clock.advance(signing.MAX_SKEW_S)
    channel.verify_notification(notification, "freeze")
    clock.advance(1)
    with pytest.raises(BadSignature):
        channel.verify_notification(notification, "freeze")
    with pytest.raises(BadSignature):
        channel.verify_notification({**notification, "sign_ts": "now"}, "freeze")


def test_another_key_or_an_unknown_kind_does_not_verify():
    sim = simulator()
    created(sim)
    fields = sim.authorize_freeze("D1", "F1")
    forged = signing.signed(fields, b"b" * 32, time.time())
    with pytest.raises(BadSignature):
        fund_auth.verify_notification(forged, SECRET, time.time(), "freeze")
    with pytest.raises(ValueError):
        fund_auth.verify_notification(forged, SECRET, time.time(), "refund")


def test_the_worked_freeze_example_in_docs_channels_md_recomputes():
    doc = (Path(__file__).parent.parent / "docs" / "channels.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Pre-authorisation (fund authorisation)") :]
    key = bytes.fromhex("ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100")
    fields = {
        "kind": "freeze",
        "channel": "alipay",
        "out_order_no": "D20261201K3M9Q2XT7VWA",
        "out_request_no": "F20261201K3M9Q2XT7VWA",
        "auth_no": "2026120120014422242085731906",
        "amount_fen": 50000,
        "authorized_at": 1796090400.5,
        "nonce": "9a8b7c6d5e4f30211203f4e5d6c7b8a9",
        "sign_ts": 1796090401.0,
    }
    string = signing.canonical(fields).decode()
    signature = signing.sign(fields, key)
    assert string in section
    assert signature in section
    fund_auth.verify_notification(
        {**fields, "signature": signature}, key, fields["sign_ts"], "freeze"
    )


def doc_exchange(doc, heading):
    """The ``->``/``<-`` messages of the code block after ``heading``, as maps."""
    block = doc[doc.index(heading) :]
    block = block[block.index("```\n") + 4 :]
    block = block[: block.index("```")]
    messages = []
    for line in block.splitlines():
        if line.startswith(("-> ", "<- ")):
            messages.append([line[:2], line[3:]])
        else:
            messages[-1][1] += " " + line.strip()
    return [(arrow, json.loads(text)) for arrow, text in messages]


def test_the_freeze_exchange_in_docs_channels_md_is_what_the_simulator_answers():
    doc = (Path(__file__).parent.parent / "docs" / "channels.md").read_text(encoding="utf-8")
    exchange = doc_exchange(doc, "A freeze's life over the API.")
    clock = FakeClock(datetime.fromtimestamp(1796090400, UTC))
    moments = {22: 1796101200, 26: 1796349600}
    api = ChannelApi(
        {
            "alipay": ChannelSimulator("alipay", SECRET, clock, rng=random.Random(20261201)),
            "wechat": ChannelSimulator("wechat", SECRET, clock),
        }
    )
    assert [arrow for arrow, _ in exchange] == ["->", "<-"] * 9
    for (_, request), (_, reply) in zip(exchange[::2], exchange[1::2], strict=True):
        if request["id"] in moments:
            clock.now = datetime.fromtimestamp(moments[request["id"]], UTC)
        assert cbor2.loads(api.answer(cbor2.dumps(request))) == reply


# -- the amounts always add up (hypothesis) -----------------------------------------


class FreezeLife(RuleBasedStateMachine):
    """Any mix of unfreezes, conversions, repeats and time on one authorised freeze."""

    @initialize(
        amount_fen=st.integers(1, 10**7),
        expires_s=st.integers(1, int(MAX_FREEZE.total_seconds())),
    )
    def authorise(self, amount_fen, expires_s):
        self.clock = FakeClock()
        self.sim = simulator(clock=self.clock)
        self.amount_fen = amount_fen
        self.expires_at = START + timedelta(seconds=expires_s)
        self.sim.create_freeze("D1", "F1", amount_fen, "", self.expires_at)
        self.auth_no = self.sim.authorize_freeze("D1", "F1")["auth_no"]
        self.numbers = 0
        self.done: list[tuple[str, str, int]] = []
        self.payments_fen = 0

    def status(self):
        return self.sim.query_freeze("D1", "F1")

    def attempt(self, call, *args):
        """Run a call the rules may refuse; a refusal must change nothing."""
        before = self.status()
        try:
            return call(*args)
        except ChannelError as refused:
            assert not refused.transient
            assert self.status() == before
            return None

    @rule(share=st.floats(0, 1.2))
    def unfreeze(self, share):
        self.numbers += 1
        amount = max(1, round(self.status().rest_fen * share))
        number = f"U{self.numbers}"
        if self.attempt(self.sim.unfreeze, self.auth_no, number, amount, "") is not None:
            self.done.append(("unfreeze", number, amount))

    @rule(share=st.floats(0, 1.2), mode=st.sampled_from(["COMPLETE", "NOT_COMPLETE"]))
    def convert(self, share, mode):
        self.numbers += 1
        amount = max(1, round(self.status().rest_fen * share))
        number = f"T{self.numbers}"
        done = self.attempt(self.sim.convert_to_payment, self.auth_no, number, amount, "", mode)
        if done is not None:
            self.done.append(("convert", number, amount))
            self.payments_fen += amount

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def repeat(self, data):
        kind, number, amount = data.draw(st.sampled_from(self.done))
        before = self.status()
        if kind == "unfreeze":
            assert self.sim.unfreeze(self.auth_no, number, amount, "again").amount_fen == amount
        else:
            assert (
                self.sim.convert_to_payment(self.auth_no, number, amount, "").amount_fen == amount
            )
        assert self.status() == before

    @rule(seconds=st.integers(1, 40 * 86400))
    def wait(self, seconds):
        self.clock.advance(seconds)

    @invariant()
    def amounts_add_up_to_what_was_frozen(self):
        status = self.status()
        assert min(amounts(status)) >= 0
        rest, converted, unfrozen, lapsed = amounts(status)
        assert rest + converted + unfrozen + lapsed == self.amount_fen
        assert converted == self.payments_fen
        assert (status.state in ("FINISH", "CLOSED")) == (rest == 0)
        if rest == 0:
            assert status.state == ("FINISH" if converted else "CLOSED")
        if self.clock() >= self.expires_at:
            assert rest == 0
        else:
            assert lapsed == 0

    @invariant()
    def each_conversion_is_a_paid_payment(self):
        for kind, number, amount in self.done:
            if kind == "convert":
                payment = self.sim.query_payment(number)
                assert (payment.state, payment.paid_fen) == ("SUCCESS", amount)


FreezeLife.TestCase.settings = settings(max_examples=200, stateful_step_count=25, deadline=None)
test_a_freezes_amounts_always_add_up = FreezeLife.TestCase
