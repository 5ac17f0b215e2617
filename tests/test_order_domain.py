"""The order's rules as pure functions: exactly one capture, every other payment refunded.

And what each committed event asks of the outside world (:func:`react`):
every refund requested once, a closed order's open QR payments closed.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actors.catalog import Capacity, Catalog, Product, Slot
from actors.orders.domain import (
    CancelOrder,
    ConfirmPayment,
    ConfirmRefund,
    CreateOrder,
    DuplicatePaymentRefunding,
    ExpireOrder,
    FailRefund,
    LineRequest,
    OrderCreated,
    OrderRefused,
    OrderStatus,
    PaymentCaptured,
    RefundReason,
    RefundTickets,
    StartPayment,
    TicketFacts,
    TicketsIssued,
    TicketsRefunding,
    decide,
    evolve,
    net_collected_fen,
    visit_starts,
)
from actors.orders.effects import (
    ClosePayment,
    PushToDevice,
    PushToRole,
    RequestRefund,
    TicketsValidAtGates,
    TicketsVoidAtGates,
    react,
)

T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
TODAY = date(2026, 10, 1)


def _product(product_id, price_fen, *, needs_slot, entries=1):
    return Product(
        product_id, product_id, product_id, price_fen, entries, needs_slot, ("main",), True
    )


CATALOG = Catalog(
    "测试园",
    "Test Park",
    "Asia/Shanghai",
    (Slot("AM", time(8), time(12)), Slot("PM", time(12), time(17, 30))),
    Capacity(1000, {"AM": 500, "PM": 500}),
    {},
    (
        _product("adult", 12000, needs_slot=True),
        _product("child", 6000, needs_slot=True),
        _product("day", 9000, needs_slot=False, entries=None),
    ),
)
LINES = (
    LineRequest("adult", 2, TODAY, "AM"),
    LineRequest("child", 1, TODAY, "AM"),
)
TOTAL = 30000
ids = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(ids)}"


def create(order_id="o-1", lines=LINES, *, today=TODAY, at=T0, expires_in=timedelta(minutes=15)):
    return CreateOrder(
        order_id, "kiosk-1", "key-1", tuple(lines), CATALOG, today, at, at + expires_in
    )


def apply(order, command):
    events = decide(order, command)
    for event in events:
        order = evolve(order, event)
    return order, events


def effects_of(order, command):
    """The order after ``command``, and every effect its events ask for, in order."""
    effects = []
    for event in decide(order, command):
        after = evolve(order, event)
        effects.extend(react(order, event, after))
        order = after
    return order, effects


def unused(order, *ticket_ids, used=0):
    """The facts of ``ticket_ids`` on ``order``: ``used`` entries each, visits at T0."""
    return tuple(TicketFacts(ticket_id, used, T0) for ticket_id in ticket_ids)


def refund(order, ticket_ids, refund_no="rf-s1", used=0):
    return RefundTickets(
        tuple(ticket_ids),
        "staff",
        "counter-1",
        refund_no,
        T0,
        unused(order, *ticket_ids, used=used),
    )


def created(expires_in=timedelta(minutes=15)):
    order, _ = apply(None, create(expires_in=expires_in))
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
        (LineRequest("day", 0, TODAY, None),),
        (LineRequest("day", 201, TODAY, None),),
        (LineRequest("day", 150, TODAY, None), LineRequest("adult", 51, TODAY, "PM")),
    ],
)
def test_an_order_without_real_lines_is_refused(lines):
    with pytest.raises(OrderRefused) as refused:
        decide(None, create("o-2", lines))
    assert refused.value.code == "bad_request"


def test_creating_the_same_order_twice_is_refused():
    with pytest.raises(OrderRefused) as refused:
        decide(created(), create())
    assert refused.value.code == "order_exists"


def test_a_line_is_priced_and_entitled_from_the_catalog():
    (event,) = decide(None, create(lines=[LineRequest("day", 3, TODAY, None)]))
    (line,) = event.lines
    assert (line.unit_price_fen, line.entries_allowed, event.total_fen) == (9000, None, 27000)


@settings(max_examples=300)
@given(today=st.dates(date(2000, 1, 1), date(2099, 12, 31)), days=st.integers(-400, 400))
def test_a_visit_date_before_the_sites_today_is_refused_and_today_or_later_is_sold(today, days):
    visit = today + timedelta(days=days)
    command = create(lines=[LineRequest("day", 1, visit, None)], today=today)
    if days < 0:
        with pytest.raises(OrderRefused) as refused:
            decide(None, command)
        assert refused.value.code == "bad_request"
        assert refused.value.message == f"{visit} is in the past"
    else:
        (event,) = decide(None, command)
        assert event.lines[0].visit_date == visit


@given(
    product=st.sampled_from(CATALOG.products),
    slot=st.sampled_from([None, "AM", "PM", "XX", "am", ""]),
)
def test_a_slot_is_required_exactly_by_the_products_that_need_one(product, slot):
    command = create(lines=[LineRequest(product.product_id, 1, TODAY, slot)])
    wanted = slot in {"AM", "PM"} if product.needs_slot else slot is None
    if wanted:
        (event,) = decide(None, command)
        assert (event.lines[0].slot, event.total_fen) == (slot, product.price_fen)
    else:
        with pytest.raises(OrderRefused) as refused:
            decide(None, command)
        assert refused.value.code == "bad_request"
        needs = "needs one of the slots" if product.needs_slot else "leave out the slot"
        assert needs in refused.value.message


@given(product_id=st.text(max_size=12).filter(lambda p: CATALOG.product(p) is None))
def test_a_product_the_catalog_does_not_sell_is_refused(product_id):
    with pytest.raises(OrderRefused) as refused:
        decide(None, create(lines=[LineRequest(product_id, 1, TODAY, None)]))
    assert refused.value.code == "bad_request"
    assert refused.value.message == f"unknown product {product_id!r}"


def test_an_unknown_product_is_named_before_a_past_date_or_a_slot():
    with pytest.raises(OrderRefused) as refused:
        decide(None, create(lines=[LineRequest("unicorn", 1, TODAY - timedelta(days=1), "XX")]))
    assert "unknown product" in refused.value.message


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
    order, events = apply(order, refund(order, [child]))
    assert isinstance(events[0], TicketsRefunding)
    assert events[0].amount_fen == 6000
    assert child in order.void_ticket_ids
    assert net_collected_fen(order) == TOTAL - 6000
    with pytest.raises(OrderRefused) as refused:
        decide(order, refund(order, [child], "rf-s2"))
    assert refused.value.code == "ticket_not_refundable"
    assert decide(order, refund(order, [child], "rf-s1")) == []


@given(used=st.lists(st.integers(0, 3), min_size=3, max_size=3), data=st.data())
def test_only_tickets_no_gate_admitted_are_refunded(used, data):
    order, _ = apply(started(created()), confirm())
    tickets = data.draw(st.lists(st.sampled_from(order.tickets), min_size=1, unique=True))
    use = {ticket.ticket_id: n for ticket, n in zip(order.tickets, used, strict=True)}
    facts = tuple(TicketFacts(t.ticket_id, use[t.ticket_id], T0) for t in tickets)
    command = RefundTickets(tuple(t.ticket_id for t in tickets), "rain", "c-1", "rf-u", T0, facts)
    first_used = next((t.ticket_id for t in tickets if use[t.ticket_id] > 0), None)
    if first_used is None:
        (event,) = decide(order, command)
        assert event.amount_fen == sum(t.price_fen for t in tickets)
    else:
        with pytest.raises(OrderRefused) as refused:
            decide(order, command)
        assert refused.value.code == "ticket_used"
        assert refused.value.message.startswith(f"ticket {first_used} has been used")


def test_the_refund_example_of_the_protocol_docs():
    order, _ = apply(started(created()), confirm())  # 2 adult at 12000, 1 child at 6000
    adult, child = order.tickets[0].ticket_id, order.tickets[2].ticket_id
    (event,) = decide(order, refund(order, [child, adult]))
    assert (event.amount_fen, event.channel) == (18000, "wechat")
    used = (TicketFacts(child, 0, T0), TicketFacts(adult, 1, T0))
    with pytest.raises(OrderRefused) as refused:
        decide(order, RefundTickets((child, adult), "rain", "c-1", "rf-x", T0, used))
    assert refused.value.code == "ticket_used" and adult in refused.value.message
    order, _ = apply(order, refund(order, [child, adult]))
    replay = RefundTickets((child, adult), "rain", "c-1", "rf-s1", T0, used)
    assert decide(order, replay) == []  # the same key: the refund it made, used since or not


def test_a_ticket_refunded_already_is_named_before_a_used_one():
    order, _ = apply(started(created()), confirm())
    adult, child = order.tickets[0].ticket_id, order.tickets[2].ticket_id
    order, _ = apply(order, refund(order, [child]))
    facts = (TicketFacts(adult, 1, T0), TicketFacts(child, 0, T0))
    with pytest.raises(OrderRefused) as refused:
        decide(order, RefundTickets((adult, child), "x", "c-1", "rf-2", T0, facts))
    assert refused.value.code == "ticket_not_refundable"


def test_a_ticket_not_on_the_order_is_not_found_and_needs_no_facts():
    order, _ = apply(started(created()), confirm())
    with pytest.raises(OrderRefused) as refused:
        decide(order, RefundTickets(("T-other",), "x", "c-1", "rf-3", T0, ()))
    assert refused.value.code == "not_found"


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
    order, _ = apply(order, refund(order, [child]))
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


def test_a_capture_tells_the_gates_its_tickets_then_the_kiosk_order_paid():
    order, effects = effects_of(started(created()), confirm())
    valid, paid = effects
    assert valid == TicketsValidAtGates("o-1", order.tickets)
    assert (paid.device_id, paid.event, paid.notice) == ("kiosk-1", "order.paid", {"order": "o-1"})
    assert paid.data["tickets"] == [{"ticket": t.ticket_id, "code": t.code} for t in order.tickets]
    assert (paid.data["out_trade_no"], paid.data["amount_fen"]) == ("t-1", TOTAL)


def test_a_duplicate_asks_for_its_refund_by_its_own_channel_and_nothing_else():
    order, _ = apply(started(started(created()), "t-2", "alipay"), confirm())
    command = confirm("t-2", "alipay", "ali-1")
    _, effects = effects_of(order, command)
    assert effects == [
        RequestRefund(
            "o-1", command.out_refund_no, "alipay", "t-2", TOTAL, TOTAL, "already_paid", command.at
        )
    ]


def test_a_wrong_amount_is_refunded_what_was_collected():
    command = confirm(amount=TOTAL + 5)
    _, (request,) = effects_of(started(created()), command)
    assert (request.refund_fen, request.total_fen, request.reason) == (
        TOTAL + 5,
        TOTAL + 5,
        "amount_mismatch",
    )


@pytest.mark.parametrize("close", [CancelOrder(T0), ExpireOrder(T0 + timedelta(minutes=15))])
def test_a_closed_order_closes_exactly_its_open_qr_payments(close):
    order = started(created(), "t-wx", "wechat")
    order = started(order, "t-ali", "alipay")
    order = started(order, "t-cash", "cash")
    order = started(order, "t-paid", "wechat")
    order, _ = apply(order, confirm("t-paid", amount=1))  # a wrong amount: refunding, not open
    _, effects = effects_of(order, close)
    assert effects == [
        ClosePayment("wechat", "t-wx", close.at),
        ClosePayment("alipay", "t-ali", close.at),
    ]


def test_a_staff_refund_voids_the_tickets_at_the_gates_and_refunds_the_capture():
    order, _ = apply(started(created()), confirm())
    child = order.tickets[2].ticket_id
    _, effects = effects_of(order, refund(order, [child]))
    assert effects == [
        TicketsVoidAtGates((child,)),
        RequestRefund("o-1", "rf-s1", "wechat", "t-1", 6000, TOTAL, "staff", T0),
    ]


def test_a_settled_refund_is_told_to_the_kiosk_and_a_failed_one_to_admins():
    order, _ = apply(started(started(created()), "t-2", "alipay"), confirm())
    order, events = apply(order, confirm("t-2", "alipay", "ali-1"))
    refund_no = events[0].out_refund_no
    _, (failed,) = effects_of(order, FailRefund(refund_no, "not_found: gone", T0))
    assert (failed.role, failed.event) == ("admin", "refund.failed")
    assert failed.data["failure"] == "not_found: gone" and failed.data["out_refund_no"] == refund_no
    _, (told,) = effects_of(order, ConfirmRefund(refund_no, T0))
    assert (told.device_id, told.event) == ("kiosk-1", "payment.refunded")
    assert told.notice == {"order": "o-1", "out_refund_no": refund_no}
    assert (told.data["amount_fen"], told.data["reason"]) == (TOTAL, "already_paid")


def test_a_visit_starts_at_its_slot_or_at_local_midnight():
    assert visit_starts(CATALOG, TODAY, "PM") == datetime(2026, 10, 1, 4, 0, tzinfo=UTC)
    assert visit_starts(CATALOG, TODAY, None) == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)
    assert visit_starts(CATALOG, TODAY, "gone") == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)


class OrderMachine(RuleBasedStateMachine):
    """Interleave every command; after each step the money invariants hold.

    Every committed event goes through :func:`react` too: the machine keeps
    every effect asked for, and checks them against what it saw happen.
    """

    def __init__(self):
        super().__init__()
        self.order = created()
        self.attempts: list[tuple[str, str]] = []
        self.confirmed: list[ConfirmPayment] = []
        self.now = T0
        self.captures = 0
        self.refunded_duplicates = 0
        self.effects: list = []
        self.step_effects: list = []

    def run(self, command):
        self.step_effects = []
        try:
            events = decide(self.order, command)
        except OrderRefused:
            return []
        for event in events:
            after = evolve(self.order, event)
            self.step_effects.extend(react(self.order, event, after))
            self.order = after
            if isinstance(event, PaymentCaptured):
                self.captures += 1
            if isinstance(event, DuplicatePaymentRefunding):
                self.refunded_duplicates += 1
        self.effects.extend(self.step_effects)
        return events

    def open_qr_attempts(self):
        """The QR attempts started and never confirmed, as the machine saw them."""
        paid = {command.out_trade_no for command in self.confirmed}
        return {
            (channel, out_trade_no)
            for out_trade_no, channel in self.attempts
            if out_trade_no not in paid and channel in ("wechat", "alipay")
        }

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

    @rule(expire=st.booleans())
    def close(self, expire):
        still_open = self.open_qr_attempts()
        command = ExpireOrder(self.now) if expire else CancelOrder(self.now)
        if self.run(command):
            closed = {(e.channel, e.out_trade_no) for e in self.step_effects}
            assert all(isinstance(e, ClosePayment) for e in self.step_effects)
            assert closed == still_open and len(self.step_effects) == len(still_open)

    @precondition(lambda self: self.order.tickets)
    @rule(data=st.data(), used=st.integers(0, 2))
    def staff_refund(self, data, used):
        ticket = data.draw(st.sampled_from(self.order.tickets))
        facts = (TicketFacts(ticket.ticket_id, used, T0),)
        command = RefundTickets(
            (ticket.ticket_id,), "staff", "counter", fresh("rf"), self.now, facts
        )
        if used and ticket.ticket_id not in self.order.void_ticket_ids:
            with pytest.raises(OrderRefused) as refused:
                decide(self.order, command)
            assert refused.value.code == "ticket_used"
            return
        if self.run(command):
            void, request = self.step_effects
            assert void == TicketsVoidAtGates((ticket.ticket_id,))
            assert isinstance(request, RequestRefund) and request.refund_fen == ticket.price_fen

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
    def every_refund_is_requested_exactly_once_as_the_order_records_it(self):
        requests = [e for e in self.effects if isinstance(e, RequestRefund)]
        assert sorted(r.out_refund_no for r in requests) == sorted(self.order.refunds)
        for request in requests:
            refund = self.order.refunds[request.out_refund_no]
            assert (request.channel, request.out_trade_no, request.refund_fen) == (
                refund.channel,
                refund.out_trade_no,
                refund.amount_fen,
            )
            assert request.total_fen == refund.payment_fen >= request.refund_fen

    @invariant()
    def a_payment_is_closed_at_most_once(self):
        closed = [e.out_trade_no for e in self.effects if isinstance(e, ClosePayment)]
        assert len(closed) == len(set(closed))

    @invariant()
    def the_kiosk_hears_order_paid_once_with_the_tickets_the_gates_learn(self):
        paid = [e for e in self.effects if isinstance(e, PushToDevice) and e.event == "order.paid"]
        valid = [e for e in self.effects if isinstance(e, TicketsValidAtGates)]
        assert len(paid) == len(valid) == self.captures
        if paid:
            tickets = [t["ticket"] for t in paid[0].data["tickets"]]
            assert tickets == [t.ticket_id for t in valid[0].tickets]
            assert tickets == [t.ticket_id for t in self.order.tickets]

    @invariant()
    def void_tickets_are_the_ones_the_gates_were_told(self):
        told = {i for e in self.effects if isinstance(e, TicketsVoidAtGates) for i in e.ticket_ids}
        assert told == self.order.void_ticket_ids

    @invariant()
    def the_kiosk_hears_each_confirmed_refund_once_and_admins_each_failure_once(self):
        refunded = [
            e.data["out_refund_no"]
            for e in self.effects
            if isinstance(e, PushToDevice) and e.event == "payment.refunded"
        ]
        failed = [
            e.data["out_refund_no"]
            for e in self.effects
            if isinstance(e, PushToRole) and (e.role, e.event) == ("admin", "refund.failed")
        ]
        refunds = self.order.refunds
        assert sorted(refunded) == sorted(no for no, r in refunds.items() if r.confirmed)
        assert len(failed) == len(set(failed))
        assert set(failed) >= {no for no, r in refunds.items() if r.state == "failed"}

    @invariant()
    def no_refund_exceeds_its_payment(self):
        for refund in self.order.refunds.values():
            assert 0 < refund.amount_fen <= 2 * TOTAL


OrderMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_order_machine = OrderMachine.TestCase


def test_created_event_carries_the_total():
    events = decide(None, create("o-9", expires_in=timedelta(minutes=1)))
    assert isinstance(events[0], OrderCreated) and events[0].total_fen == TOTAL


# --- a rental's compensation: one amount, no lines ---------------------------------

from actors.orders.domain import CreatePaymentOrder, Purpose  # noqa: E402
from actors.orders.postings import postings_for  # noqa: E402


def compensation(total=12000, purpose=Purpose.COMPENSATION):
    return apply(
        None,
        CreatePaymentOrder(
            "o-c", "desk-1", "c-key", purpose, "R1", total, T0, T0 + timedelta(days=7)
        ),
    )


def test_a_compensation_has_no_lines_issues_no_tickets_and_settles_the_receivable():
    order, [created] = compensation()
    assert (order.purpose, order.rental_id, order.total_fen, order.lines) == (
        Purpose.COMPENSATION,
        "R1",
        12000,
        (),
    )
    assert created.purpose is Purpose.COMPENSATION
    order = started(order, channel="wechat")
    command = attrs.evolve(confirm(amount=12000, tickets=0), ticket_ids=())
    captured, issued = decide(order, command)
    assert isinstance(captured, PaymentCaptured) and issued.tickets == ()
    assert {(p.account, p.amount_fen) for p in postings_for(order, captured)} == {
        ("clearing:wechat", 12000),
        ("receivable:rentals", -12000),
    }
    paid = evolve(evolve(order, captured), issued)
    assert paid.status is OrderStatus.PAID and net_collected_fen(paid) == 12000


def test_a_payment_order_for_tickets_or_of_nothing_is_refused():
    for purpose, total in ((Purpose.TICKETS, 100), (Purpose.COMPENSATION, 0)):
        with pytest.raises(OrderRefused) as refused:
            compensation(total, purpose)
        assert refused.value.code == "bad_request"
