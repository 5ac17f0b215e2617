"""The kiosk's pure parts: the flow's rules, the screens' text, the QR drawing."""

from __future__ import annotations

import attrs
import segno
from hypothesis import given
from hypothesis import strategies as st

from clients.kiosk import flow
from clients.kiosk.flow import Kiosk, Screen
from clients.kiosk.qr import qr_lines
from clients.kiosk.view import frame, status_line, yuan
from clients.tui.link import LinkState

PRODUCTS = (
    flow.Product("adult", "成人票", "Adult", 12000, False, 1),
    flow.Product("child", "儿童票", "Child", 6000, False, 1),
    flow.Product("adult-slot", "成人分时票", "Adult, timed entry", 10000, True, 1),
)
DATES = ("2026-12-01", "2026-12-02", "2026-12-03")
SLOTS = ("AM", "PM")


def fresh() -> Kiosk:
    return flow.with_catalog(Kiosk(), PRODUCTS, SLOTS, DATES)


def order_map(order="O1", status="pending", tickets=(), refunds=()):
    return {
        "order": order,
        "status": status,
        "total_fen": 24000,
        "expires_at": 1764600900.0,
        "tickets": [{"ticket": t, "code": f"code-{t}"} for t in tickets],
        "refunds": list(refunds),
    }


CART_CHANGES = {
    "more": lambda s: flow.change_quantity(s, 1),
    "fewer": lambda s: flow.change_quantity(s, -1),
    "later": lambda s: flow.shift_date(s, 1),
    "earlier": lambda s: flow.shift_date(s, -1),
    "slot": lambda s: flow.shift_slot(s, 1),
}
OTHER_STEPS = {
    "down": lambda s: flow.move(s, 1),
    "up": lambda s: flow.move(s, -1),
    "review": flow.review,
    "back": flow.back,
    "language": flow.toggle_language,
}


ROUNDS = st.lists(
    st.lists(st.sampled_from([*CART_CHANGES, *OTHER_STEPS]), max_size=6), min_size=1, max_size=8
)


@given(ROUNDS)
def test_a_key_is_reused_exactly_while_the_cart_is_unchanged(rounds):
    """Each round: back to the cart, some steps, review, send a create that gets no reply."""
    state = flow.change_quantity(flow.begin(fresh(), "a" * 32), 1)
    sent: list[tuple[str, list]] = []  # (key, lines) of each create sent
    for steps in rounds:
        state = flow.back(state)
        for step in steps:
            state = (CART_CHANGES | OTHER_STEPS)[step](state)
        state = flow.review(state)
        if state.screen is not Screen.REVIEW:
            continue  # an empty cart is not sent
        key, lines = flow.client_key(state), flow.cart_lines(state)
        if sent and sent[-1][1] == lines and not any(s in CART_CHANGES for s in steps):
            assert key == sent[-1][0]  # a retry of the same cart: the same key
        sent.append((key, lines))
        state = flow.failed(flow.create_sent(state), "no_reply")
    for key, lines in sent:
        assert 1 <= len(key) <= 64
        # one key never stands for two carts: the server would answer the first cart's order
        assert all(other_lines == lines for other_key, other_lines in sent if other_key == key)


@given(st.lists(st.sampled_from([*CART_CHANGES, *OTHER_STEPS]), max_size=60))
def test_the_cart_is_what_the_screen_says_and_what_is_sent(steps):
    state = flow.begin(fresh(), "p")
    for step in steps:
        state = (CART_CHANGES | OTHER_STEPS)[step](state)
    assert all(0 <= q <= flow.MAX_QUANTITY for q in state.quantities)
    lines = flow.cart_lines(state)
    for line in lines:
        product = next(p for p in PRODUCTS if p.product == line["product"])
        assert ("slot" in line) is product.needs_slot
        assert line["date"] == flow.chosen_date(state)
    assert flow.cart_total_fen(state) == sum(
        next(p.price_fen for p in PRODUCTS if p.product == line["product"]) * line["quantity"]
        for line in lines
    )


@given(st.lists(st.sampled_from([*CART_CHANGES, *OTHER_STEPS, "order", "paid"]), max_size=30))
def test_a_reset_leaves_nothing_of_the_visitor(steps):
    state = flow.begin(fresh(), "visitor-1")
    for step in steps:
        if step == "order":
            state = flow.order_seen(state, order_map())
        elif step == "paid":
            state = flow.paid(state, {"order": "O1", "tickets": [{"ticket": "T1", "code": "c"}]})
        else:
            state = (CART_CHANGES | OTHER_STEPS)[step](state)
    after = flow.reset(state)
    assert after == attrs.evolve(fresh(), quantities=())
    assert after.screen is Screen.START


def test_the_flow_goes_choose_review_pay_done():
    state = flow.begin(fresh(), "p")
    assert flow.review(state).error == "nothing_chosen"
    state = flow.review(flow.change_quantity(flow.change_quantity(state, 1), 1))
    assert state.screen is Screen.REVIEW
    assert flow.cart_lines(state) == [{"product": "adult", "quantity": 2, "date": "2026-12-01"}]
    state = flow.order_seen(flow.create_sent(state), order_map())
    assert (state.screen, state.order, state.busy) == (Screen.PAY, "O1", False)
    reply = {"order": "O1", "out_trade_no": "P1", "amount_fen": 24000, "channel": "wechat"}
    state = flow.payment_started(state, {**reply, "qr": "weixin://pay/P1"})
    assert state.payment == flow.Payment("wechat", "P1", 24000, "weixin://pay/P1")
    assert flow.paid(state, {"order": "O2", "tickets": []}) == state  # another order's event
    state = flow.paid(state, {"order": "O1", "tickets": [{"ticket": "T1", "code": "C1"}]})
    assert state.screen is Screen.DONE and state.tickets == (flow.Ticket("T1", "C1"),)
    refund = {"order": "O1", "out_trade_no": "P2", "channel": "alipay", "amount_fen": 24000}
    state = flow.refunded(state, {**refund, "out_refund_no": "R1", "reason": "already_paid"})
    assert state.refunds == (flow.Refunded("P2", "alipay", 24000, "already_paid", True),)


def test_an_order_seen_after_it_lapsed_returns_to_the_start_with_a_notice():
    state = flow.order_seen(flow.create_sent(flow.begin(fresh(), "p")), order_map())
    lapsed = flow.order_seen(state, order_map(status="expired"))
    assert (lapsed.screen, lapsed.error, lapsed.purchase, lapsed.order) == (
        Screen.START,
        "order_expired",
        None,
        None,
    )
    assert flow.order_seen(state, order_map(order="O9", status="paid")) == state


def test_an_order_read_after_a_missed_event_shows_its_tickets_and_refunds():
    state = flow.order_seen(flow.create_sent(flow.begin(fresh(), "p")), order_map())
    refund = {"out_trade_no": "P2", "channel": "wechat", "amount_fen": 24000}
    refund |= {"reason": "already_paid", "state": "pending"}
    seen = flow.order_seen(state, order_map(status="paid", tickets=["T1", "T2"], refunds=[refund]))
    assert seen.screen is Screen.DONE and [t.ticket for t in seen.tickets] == ["T1", "T2"]
    assert seen.refunds == (flow.Refunded("P2", "wechat", 24000, "already_paid", False),)


def test_an_order_on_the_pay_screen_lapses_at_its_expiry():
    state = flow.order_seen(flow.create_sent(flow.begin(fresh(), "p")), order_map())
    assert not flow.lapsed(state, 1764600899.9)
    assert flow.lapsed(state, 1764600900.0)
    assert not flow.lapsed(attrs.evolve(state, screen=Screen.DONE), 1764600901.0)


def test_a_late_reply_after_a_reset_changes_nothing():
    state = flow.reset(flow.create_sent(flow.begin(fresh(), "p")))
    assert flow.order_seen(state, order_map()) == state


@given(st.floats(0, 1000), st.sampled_from(list(Screen)), st.booleans())
def test_the_idle_rule(since, screen, with_notice):
    state = attrs.evolve(fresh(), screen=screen, error="order_expired" if with_notice else None)
    expired = flow.idle_expired(state, idle_s=60, since_input_s=since, pay_s=180)
    if screen is Screen.START:
        assert expired == (with_notice and since >= 60)
    elif screen is Screen.PAY:
        assert expired == (since >= 180)
    else:
        assert expired == (since >= 60)


@given(st.integers(0, 10**12))
def test_yuan_is_fen_with_two_decimals(fen):
    shown = yuan(fen)
    whole, cents = shown.split(".")
    assert int(whole) * 100 + int(cents) == fen and len(cents) == 2


def test_the_review_screen_shows_the_total_and_the_notes():
    state = flow.begin(fresh(), "p")
    state = flow.change_quantity(flow.move(flow.move(state, 1), 1), 1)  # one timed ticket
    state = flow.review(flow.shift_slot(state, 1))
    en = frame(attrs.evolve(state, language="en"), "Park", 0.0, None).body
    assert "Adult, timed entry  2026-12-01 PM  100.00 x 1 = 100.00" in en
    assert "Total: 100.00" in en
    assert "- Visit date 2026-12-01: Tickets are valid on the chosen date only." in en
    assert "- Entry time PM: Timed tickets enter in their time slot" in en
    assert "tickets used at a gate are not refundable" in en
    zh = frame(state, "Park", 0.0, None).body
    assert "合计: 100.00" in zh and "已入园使用的门票不退" in zh


def test_the_status_bar_says_what_the_link_does_and_how_to_retry():
    down = LinkState("reconnecting", "connection_lost", "closed", 2, 4.0)
    assert status_line(down, "en", 3.2) == "Connection lost; retrying in 4 s  R: retry"
    assert status_line(down, "zh", 0) == "正在重新连接…  R 键：重试"
    refused = LinkState("failed", "bad_credentials", "wrong token", 1)
    assert status_line(refused, "en", None).startswith("Cannot connect: The server refused")
    assert status_line(LinkState("connected"), "en", None) == "Connected"


@given(st.text(min_size=1, max_size=300))
def test_the_qr_text_draws_the_symbol_two_rows_a_line(data):
    lines = qr_lines(data)
    matrix = [[bool(m) for m in row] for row in segno.make(data, error="m").matrix_iter(border=2)]
    drawn = {"█": (False, False), "▄": (True, False), "▀": (False, True), " ": (True, True)}
    rows = []
    for line in lines:
        pairs = [drawn[c] for c in line]
        rows += [[top for top, _ in pairs], [bottom for _, bottom in pairs]]
    assert rows[: len(matrix)] == matrix
