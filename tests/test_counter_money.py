"""The cashier's arithmetic and the receipt's layout: pure rules, checked over their range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clients.counter.entry import (
    EntryError,
    Payment,
    lookup_arg,
    read_lines,
    read_payment,
    read_returns,
    total_of,
)
from clients.counter.money import (
    DENOMINATIONS_FEN,
    MAX_TENDERED_FEN,
    NotEnoughCash,
    change_due,
    change_in_notes,
    parse_yuan,
    yuan,
)
from clients.counter.receipt import (
    WIDTH,
    Line,
    Qr,
    as_text,
    columns,
    sale_receipt,
    two_sides,
    wrapped,
)
from clients.counter.views import lookup_text, refund_amount, sale_summary

fen = st.integers(0, MAX_TENDERED_FEN)


@given(fen)
def test_yuan_typed_back_is_the_same_fen(amount):
    assert parse_yuan(yuan(amount)) == amount


@pytest.mark.parametrize(
    ("typed", "fen_"), [("120", 12000), ("120.5", 12050), ("120.50", 12050), (" 0.01 ", 1)]
)
def test_a_cashier_types_yuan(typed, fen_):
    assert parse_yuan(typed) == fen_


@pytest.mark.parametrize("typed", ["", "-5", "1,000", "12.345", "abc", "1e3", "10000000.01"])
def test_what_is_not_an_amount_is_refused(typed):
    with pytest.raises(ValueError):
        parse_yuan(typed)


@given(fen, fen)
def test_change_is_what_was_handed_over_less_the_total(total, tendered):
    if tendered < total:
        with pytest.raises(NotEnoughCash) as short:
            change_due(total, tendered)
        assert short.value.short_fen == total - tendered
    else:
        assert change_due(total, tendered) + total == tendered


def _fewest(change: int) -> int:
    best = [0] + [10**9] * (change // 10)
    for amount in range(10, change + 1, 10):
        best[amount // 10] = 1 + min(
            best[(amount - note) // 10] for note in DENOMINATIONS_FEN if note <= amount
        )
    return best[change // 10]


@given(st.integers(0, 5000).map(lambda n: n * 10))
def test_change_is_handed_back_in_the_fewest_notes_and_coins(change):
    notes = change_in_notes(change)
    assert sum(note * count for note, count in notes) == change
    assert sum(count for _, count in notes) == _fewest(change)
    assert [note for note, _ in notes] == sorted({n for n, _ in notes}, reverse=True)


def test_change_with_odd_fen_cannot_be_handed_back():
    with pytest.raises(ValueError):
        change_in_notes(12345)


@given(st.text(max_size=40), st.integers(0, 10**9).map(yuan))
def test_an_amount_always_shows_whole_against_the_right_edge(left, amount):
    line = two_sides(left, amount)
    assert line.endswith(amount)
    assert columns(line) <= WIDTH or columns(amount) + 2 > WIDTH


def test_a_chinese_character_takes_two_columns():
    assert columns("成人票 Adult") == 12
    assert columns(two_sides("合计 Total", "240.00")) == WIDTH


ORDER = {
    "order": "O20261201AAAA",
    "created_at": 1796090400.0,  # 2026-12-01 10:00 Asia/Shanghai
    "total_fen": 18000,
    "lines": [
        {
            "product": "adult",
            "quantity": 1,
            "date": "2026-12-01",
            "slot": None,
            "unit_price_fen": 12000,
        },
        {
            "product": "child",
            "quantity": 1,
            "date": "2026-12-01",
            "slot": None,
            "unit_price_fen": 6000,
        },
    ],
    "tickets": [
        {
            "ticket": "T1",
            "code": "T1.k1.tag",
            "product": "adult",
            "date": "2026-12-01",
            "slot": None,
            "refunded": False,
        },
        {
            "ticket": "T2",
            "code": "T2.k1.tag",
            "product": "child",
            "date": "2026-12-01",
            "slot": None,
            "refunded": False,
        },
    ],
}
PRODUCTS = {
    "adult": {"name_zh": "成人票", "name_en": "Adult"},
    "child": {"name_zh": "儿童票", "name_en": "Child (1.2-1.5 m)"},
}
SITE = {"name_zh": "云栖山风景区", "name_en": "Yunqi Mountain Scenic Area"}


def test_a_cash_receipt_carries_order_lines_total_channel_change_and_a_qr_per_ticket():
    receipt = sale_receipt(
        ORDER, PRODUCTS, SITE, "Asia/Shanghai", "cash", "counter-1", tendered_fen=20000
    )
    assert [b.data for b in receipt if isinstance(b, Qr)] == ["T1.k1.tag", "T2.k1.tag"]
    text = as_text(receipt)
    assert "订单 Order O20261201AAAA" in text
    assert "时间 Time 2026-12-01 10:00" in text
    assert two_sides("合计 Total", "180.00") in text
    assert two_sides("支付 Paid by", "现金 Cash") in text
    assert two_sides("收款 Tendered", "200.00") in text
    assert two_sides("找零 Change", "20.00") in text
    assert "[QR] T1.k1.tag" in text
    assert all(columns(b.text) <= WIDTH for b in receipt if isinstance(b, Line))


@given(st.text(alphabet="成人票 Adult-xyz", max_size=120))
def test_a_long_line_is_wrapped_to_the_paper_and_loses_nothing_but_spaces(text):
    lines = wrapped(Line(text))
    assert all(columns(line.text) <= WIDTH for line in lines)
    assert "".join(line.text for line in lines).replace(" ", "") == text.replace(" ", "")


PRODUCT_TABLE = {
    "adult": {"price_fen": 12000, "needs_slot": False},
    "child": {"price_fen": 6000, "needs_slot": False},
    "adult-slot": {"price_fen": 10000, "needs_slot": True},
}


def test_a_cashier_types_the_tickets_and_the_total_is_worked_out():
    lines = read_lines("adult 2, child，adult-slot", PRODUCT_TABLE, "2026-12-01", "AM")
    assert lines == [
        {"product": "adult", "quantity": 2, "date": "2026-12-01"},
        {"product": "child", "quantity": 1, "date": "2026-12-01"},
        {"product": "adult-slot", "quantity": 1, "date": "2026-12-01", "slot": "AM"},
    ]
    assert total_of(lines, PRODUCT_TABLE) == 40000


@pytest.mark.parametrize(
    "typed", ["", "dragon 2", "adult 0", "adult 201", "adult x", "adult, adult"]
)
def test_tickets_that_cannot_be_read_are_refused_in_both_languages(typed):
    with pytest.raises(EntryError) as refused:
        read_lines(typed, PRODUCT_TABLE, "2026-12-01", None)
    assert refused.value.zh and refused.value.en


@pytest.mark.parametrize(
    ("typed", "arg"),
    [
        ("O20261201K3M9Q2XT7V", ("order", "O20261201K3M9Q2XT7V")),
        ("P20261201AAAA", ("out_trade_no", "P20261201AAAA")),
        ("R20261201X1XXXX", ("out_refund_no", "R20261201X1XXXX")),
        ("T20261001SBXZD6EZTWWK.k4e1.abc", ("ticket", "T20261001SBXZD6EZTWWK.k4e1.abc")),
        ("T20261001SBXZD6EZTWWK", ("ticket_id", "T20261001SBXZD6EZTWWK")),
        ("4200002715202610011188", ("channel_txn_id", "4200002715202610011188")),
        ("out_order_no: F123", ("out_order_no", "F123")),
    ],
)
def test_a_number_is_looked_up_as_what_its_shape_says(typed, arg):
    assert lookup_arg(typed) == arg


def test_payments_and_returns_are_read():
    assert read_payment("cash 200.5") == Payment("cash", 20050)
    assert read_payment("微信") == Payment("wechat")
    with pytest.raises(EntryError):
        read_payment("card 20")
    assert read_returns("880101001, 880103001 damaged") == [
        {"label": "880101001", "condition": "ok"},
        {"label": "880103001", "condition": "damaged"},
    ]


def test_the_confirmation_shows_the_total_the_change_and_its_notes():
    lines = [{"product": "adult", "quantity": 2, "date": "2026-12-01"}]
    shown = sale_summary(lines, "cash", 24000, 30000)
    assert "合计 Total 240.00" in shown and "现金 Cash" in shown
    assert "找零 Change 60.00" in shown and "(50.00 x1, 10.00 x1)" in shown
    assert "Change" not in sale_summary(lines, "card", 24000, None)


def test_a_refund_gives_back_the_named_tickets_prices():
    assert refund_amount(ORDER, ["T2"]) == 6000
    assert refund_amount(ORDER, ["T1", "T2"]) == 18000


def test_a_lookups_story_is_shown_as_text_not_markup():
    reply = {
        "subject": "order",
        "by": "order",
        "order": {"order": "O1", "status": "paid"},
        "rental": None,
        "answers": {
            "charged": True,
            "collections": 2,
            "collected_fen": 48000,
            "frozen_fen": 0,
            "refunded_fen": 24000,
            "comes_back": [],
        },
        "payments": [],
        "story": [{"at": 0.0, "what": "[b]odd[/b]", "amount_fen": None, "ref": None}],
        "reconciliation": None,
    }
    shown = lookup_text(reply, "Asia/Shanghai")
    assert "How many times? 2 · 480.00" in shown and "second payment" in shown
    assert r"\[b]odd" in shown
