"""The order's rules as pure functions: exactly one capture, every other payment refunded."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.orders.domain import (
    CancelOrder,
    ConfirmPayment,
    ConfirmRefund,
    CreateOrder,
    DuplicatePaymentRefunding,
    ExpireOrder,
    FailRefund,
    OrderCreated,
    OrderLine,
    OrderRefused,
    OrderStatus,
    PaymentCaptured,
    RefundReason,
    RefundTickets,
    StartPayment,
    TicketsIssued,
    TicketsRefunding,
    decide,
    evolve,
    net_collected_fen,
)

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
LINES = (
    OrderLine("adult", 2, date(2026, 10, 1), "AM", 12000),
    OrderLine("child", 1, date(2026, 10, 1), "AM", 6000),
)
TOTAL = 30000
ids = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(ids)}"


def apply(order, command):
    events = decide(order, command)
    for event in events:
        order = evolve(order, event)
    return order, events


def created(expires_in=timedelta(minutes=15)):
    order, _ = apply(None, CreateOrder("o-1", "kiosk-1", "key-1", LINES, T0, T0 + expires_in))
    return order


def started(order, out_trade_no="t-1", channel="wechat", at=T0):
    order, _ = apply(order, StartPayment(out_trade_no, channel, at))
    return order


def confirm(out_trade_no="t-1", channel="wechat", txn="wx-1", amount=TOTAL, paid_at=T0, tickets=3):
    return ConfirmPayment(
        out_trade_no,
        channel,
        txn,
        amount,
        paid_at,
        paid_at + timedelta(seconds=1),
        tuple(fresh("tk") for _ in range(tickets)),
        fresh("rf"),
    )


def test_creating_an_order_sums_its_lines():
    order = created()
    assert order.status is OrderStatus.PENDING
    assert order.total_fen == TOTAL
    assert order.ticket_count == 3


@pytest.mark.parametrize(
    "lines",
    [
        (),
        (OrderLine("adult", 0, date(2026, 10, 1), None, 100),),
        (OrderLine("a", 201, date(2026, 10, 1), None, 1),),
    ],
)
def test_an_order_without_real_lines_is_refused(lines):
    with pytest.raises(OrderRefused) as refused:
        decide(None, CreateOrder("o-2", "k", "key", lines, T0, T0 + timedelta(minutes=1)))
    assert refused.value.code == "bad_request"


def test_creating_the_same_order_twice_is_refused():
    with pytest.raises(OrderRefused) as refused:
        decide(created(), CreateOrder("o-1", "k", "key", LINES, T0, T0 + timedelta(minutes=1)))
    assert refused.value.code == "order_exists"


def test_first_exact_payment_captures_and_issues_tickets():
    order, events = apply(started(created()), confirm())
    assert [type(e) for e in events] == [PaymentCaptured, TicketsIssued]
    assert order.status is OrderStatus.PAID
    assert len(order.tickets) == 3
    assert [t.price_fen for t in order.tickets] == [12000, 12000, 6000]
    assert net_collected_fen(order) == TOTAL


def test_a_replayed_notification_changes_nothing():
    order, _ = apply(started(created()), confirm())
    again, events = apply(order, confirm())
    assert events == []
    assert again == order


def test_second_channel_payment_is_refunded():
    order = started(started(created()), "t-2", "alipay")
    order, _ = apply(order, confirm())
    order, events = apply(order, confirm("t-2", "alipay", "ali-9"))
    assert len(events) == 1 and isinstance(events[0], DuplicatePaymentRefunding)
    assert events[0].reason is RefundReason.ALREADY_PAID
    assert events[0].amount_fen == TOTAL
    assert net_collected_fen(order) == TOTAL


def test_the_same_attempt_confirmed_under_a_second_transaction_is_refunded():
    order, _ = apply(started(created()), confirm())
    order, events = apply(order, confirm(txn="wx-2"))
    assert isinstance(events[0], DuplicatePaymentRefunding)
    assert net_collected_fen(order) == TOTAL


def test_wrong_amount_is_refunded_and_the_order_stays_payable():
    order = started(started(created()), "t-2")
    order, events = apply(order, confirm(amount=TOTAL - 1))
    assert events[0].reason is RefundReason.AMOUNT_MISMATCH
    assert order.status is OrderStatus.PENDING
    order, events = apply(order, confirm("t-2", txn="wx-2"))
    assert isinstance(events[0], PaymentCaptured)


def test_payment_after_expiry_is_refunded():
    order = started(created())
    order, events = apply(order, ExpireOrder(T0 + timedelta(minutes=15)))
    assert order.status is OrderStatus.EXPIRED
    order, events = apply(order, confirm(paid_at=T0 + timedelta(minutes=14)))
    assert events[0].reason is RefundReason.ORDER_EXPIRED
    assert net_collected_fen(order) == 0


def test_payment_made_after_the_deadline_is_refunded_even_before_the_timer():
    order = started(created())
    order, events = apply(order, confirm(paid_at=T0 + timedelta(minutes=16)))
    assert events[0].reason is RefundReason.ORDER_EXPIRED


def test_payment_after_cancel_is_refunded():
    order = started(created())
    order, _ = apply(order, CancelOrder(T0))
    order, events = apply(order, confirm())
    assert events[0].reason is RefundReason.ORDER_CANCELLED


def test_early_expiry_timer_does_nothing():
    assert decide(created(), ExpireOrder(T0 + timedelta(minutes=1))) == []


def test_a_paid_order_cannot_be_cancelled():
    order, _ = apply(started(created()), confirm())
    with pytest.raises(OrderRefused) as refused:
        decide(order, CancelOrder(T0))
    assert refused.value.code == "order_not_pending"


def test_payment_for_an_attempt_never_started_is_refused():
    with pytest.raises(OrderRefused) as refused:
        decide(created(), confirm())
    assert refused.value.code == "unknown_payment"


def test_payment_from_another_channel_than_started_is_refused():
    with pytest.raises(OrderRefused) as refused:
        decide(started(created()), confirm(channel="alipay"))
    assert refused.value.code == "channel_mismatch"


def test_staff_refund_voids_tickets_and_refunds_their_price():
    order, _ = apply(started(created()), confirm())
    child = order.tickets[2].ticket_id
    order, events = apply(order, RefundTickets((child,), "sick", "counter-1", "rf-s1", T0))
    assert isinstance(events[0], TicketsRefunding)
    assert events[0].amount_fen == 6000
    assert child in order.void_ticket_ids
    assert net_collected_fen(order) == TOTAL - 6000
    with pytest.raises(OrderRefused) as refused:
        decide(order, RefundTickets((child,), "again", "counter-1", "rf-s2", T0))
    assert refused.value.code == "ticket_not_refundable"
    assert decide(order, RefundTickets((child,), "retry", "counter-1", "rf-s1", T0)) == []


def test_refund_confirmation_is_idempotent():
    order, _ = apply(started(started(created()), "t-2", "alipay"), confirm())
    order, events = apply(order, confirm("t-2", "alipay", "ali-1"))
    refund_no = events[0].out_refund_no
    order, events = apply(order, ConfirmRefund(refund_no, T0))
    assert order.refunds[refund_no].confirmed
    assert decide(order, ConfirmRefund(refund_no, T0)) == []
    with pytest.raises(OrderRefused):
        decide(order, ConfirmRefund("nope", T0))


def test_a_confirmed_duplicate_reads_refunded_and_a_refused_one_refund_failed():
    order, _ = apply(started(started(created()), "t-2", "alipay"), confirm())
    order, events = apply(order, confirm("t-2", "alipay", "ali-1", amount=TOTAL))
    refund_no = events[0].out_refund_no
    assert order.payments["t-2"].state == "refunding"
    assert order.payments["t-2"].collected_fen == TOTAL
    assert order.refunds[refund_no].payment_fen == TOTAL
    failed, events = apply(order, FailRefund(refund_no, "refund_exceeds_payment: no", T0))
    assert failed.payments["t-2"].state == "refund_failed"
    assert failed.refunds[refund_no].state == "failed"
    assert failed.refunds[refund_no].failure == "refund_exceeds_payment: no"
    assert decide(failed, FailRefund(refund_no, "again", T0)) == []  # once
    confirmed, _ = apply(failed, ConfirmRefund(refund_no, T0))  # settled by hand after all
    assert confirmed.payments["t-2"].state == "refunded"
    assert (confirmed.refunds[refund_no].state, confirmed.refunds[refund_no].failure) == (
        "confirmed",
        None,
    )
    with pytest.raises(OrderRefused) as refused:
        decide(confirmed, FailRefund(refund_no, "late", T0))
    assert refused.value.code == "refund_settled"
    assert confirmed.payments["t-1"].state == "captured"  # the capture is untouched


def test_a_staff_refund_settling_leaves_the_captured_payment_captured():
    order, _ = apply(started(created()), confirm())
    child = order.tickets[-1].ticket_id
    order, _ = apply(order, RefundTickets((child,), "ill", "counter-1", "rf-s1", T0))
    assert order.refunds["rf-s1"].payment_fen == TOTAL
    order, _ = apply(order, FailRefund("rf-s1", "not_found: no such payment", T0))
    assert order.payments["t-1"].state == "captured"
    assert order.refunds["rf-s1"].state == "failed"


def test_a_flagged_notification_keeps_the_amount_it_claimed_beside_what_was_collected():
    order = started(created())
    command = attrs.evolve(confirm(amount=TOTAL), notified_fen=TOTAL + 7)
    order, events = apply(order, command)
    assert isinstance(events[0], PaymentCaptured) and events[0].notified_fen == TOTAL + 7
    assert (order.payments["t-1"].collected_fen, order.payments["t-1"].notified_fen) == (
        TOTAL,
        TOTAL + 7,
    )


class OrderMachine(RuleBasedStateMachine):
    """Interleave every command; after each step the money invariants hold."""

    def __init__(self):
        super().__init__()
        self.order = created()
        self.attempts: list[tuple[str, str]] = []
        self.confirmed: list[ConfirmPayment] = []
        self.now = T0
        self.captures = 0
        self.refunded_duplicates = 0

    def run(self, command):
        try:
            events = decide(self.order, command)
        except OrderRefused:
            return []
        for event in events:
            self.order = evolve(self.order, event)
            if isinstance(event, PaymentCaptured):
                self.captures += 1
            if isinstance(event, DuplicatePaymentRefunding):
                self.refunded_duplicates += 1
        return events

    @rule(minutes=st.integers(0, 10))
    def time_passes(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule(channel=st.sampled_from(["wechat", "alipay", "cash", "card"]))
    def start(self, channel):
        out_trade_no = fresh("t")
        if self.run(StartPayment(out_trade_no, channel, self.now)):
            self.attempts.append((out_trade_no, channel))

    @precondition(lambda self: self.attempts)
    @rule(data=st.data(), exact=st.booleans())
    def pay(self, data, exact):
        out_trade_no, channel = data.draw(st.sampled_from(self.attempts))
        amount = TOTAL if exact else data.draw(st.integers(1, 2 * TOTAL))
        command = ConfirmPayment(
            out_trade_no,
            channel,
            fresh("txn"),
            amount,
            self.now,
            self.now,
            tuple(fresh("tk") for _ in range(3)),
            fresh("rf"),
        )
        if self.run(command):
            self.confirmed.append(command)

    @precondition(lambda self: self.confirmed)
    @rule(data=st.data())
    def replay(self, data):
        command = data.draw(st.sampled_from(self.confirmed))
        assert self.run(command) == []

    @rule()
    def cancel(self):
        self.run(CancelOrder(self.now))

    @rule()
    def expire(self):
        self.run(ExpireOrder(self.now))

    @precondition(lambda self: self.order.tickets)
    @rule(data=st.data())
    def staff_refund(self, data):
        ticket = data.draw(st.sampled_from(self.order.tickets))
        self.run(RefundTickets((ticket.ticket_id,), "staff", "counter", fresh("rf"), self.now))

    @precondition(lambda self: self.order.refunds)
    @rule(data=st.data())
    def confirm_refund(self, data):
        self.run(ConfirmRefund(data.draw(st.sampled_from(sorted(self.order.refunds))), self.now))

    @precondition(lambda self: self.order.refunds)
    @rule(data=st.data())
    def channel_refuses_refund(self, data):
        refund_no = data.draw(st.sampled_from(sorted(self.order.refunds)))
        self.run(FailRefund(refund_no, "refund_exceeds_payment: no", self.now))

    @invariant()
    def a_refund_is_confirmed_or_failed_never_both(self):
        for refund in self.order.refunds.values():
            assert not (refund.confirmed and refund.failure is not None)

    @invariant()
    def a_duplicates_attempt_state_follows_its_refund(self):
        for refund in self.order.refunds.values():
            attempt = self.order.payments[refund.out_trade_no]
            if refund.staff or attempt.state == "captured":
                continue
            expected = {"confirmed": "refunded", "failed": "refund_failed"}.get(
                refund.state, "refunding"
            )
            if (
                len(
                    [
                        r
                        for r in self.order.refunds.values()
                        if r.out_trade_no == refund.out_trade_no
                    ]
                )
                == 1
            ):
                assert attempt.state == expected

    @invariant()
    def collected_at_most_once(self):
        assert self.captures <= 1
        assert (self.order.status is OrderStatus.PAID) == (self.captures == 1)

    @invariant()
    def net_collected_is_total_less_staff_refunds_or_zero(self):
        staff = sum(r.amount_fen for r in self.order.refunds.values() if r.staff)
        expected = self.order.total_fen - staff if self.order.status is OrderStatus.PAID else 0
        assert net_collected_fen(self.order) == expected

    @invariant()
    def every_duplicate_has_a_refund(self):
        duplicates = [r for r in self.order.refunds.values() if not r.staff]
        assert len(duplicates) == self.refunded_duplicates

    @invariant()
    def no_refund_exceeds_its_payment(self):
        for refund in self.order.refunds.values():
            assert 0 < refund.amount_fen <= 2 * TOTAL


OrderMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_order_machine = OrderMachine.TestCase


def test_created_event_carries_the_total():
    events = decide(None, CreateOrder("o-9", "k", "c", LINES, T0, T0 + timedelta(minutes=1)))
    assert isinstance(events[0], OrderCreated) and events[0].total_fen == TOTAL
