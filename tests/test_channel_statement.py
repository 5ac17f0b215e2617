"""Daily bills: the channels' layouts, exact yuan, and an exact round trip."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.channels.statement import (
    ALIPAY_LIST_END,
    CHANNEL_TZ,
    StatementRow,
    fee_fen,
    parse_statement,
    parse_yuan,
    write_statement,
    yuan,
)
from server.errors import ScenicError

BILL_DATE = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 2, 15, 3, tzinfo=UTC)  # 10:15:03 in Shanghai

PAYMENT = StatementRow("payment", "T1", "4200001234202611245678901234", None, 12800, AT, 77)
REFUND = StatementRow(
    "refund",
    "T1",
    "4200001234202611245678901234",
    "R1",
    5000,
    AT + timedelta(hours=1),
    30,
    refund_id="50000000382026112409732678859",
)


def test_fees_are_six_per_mille_rounded_half_up():
    assert [fee_fen(n) for n in (0, 1, 83, 84, 100, 12800, 250)] == [0, 0, 0, 1, 1, 77, 2]
    assert fee_fen(25) == 0  # 0.15 fen
    assert fee_fen(250) == 2  # 1.5 fen rounds up


def test_yuan_is_exact_for_every_fen():
    assert [yuan(n) for n in (0, 5, 100, 12345, -1, -100001)] == [
        "0.00",
        "0.05",
        "1.00",
        "123.45",
        "-0.01",
        "-1000.01",
    ]
    assert parse_yuan("123456789012.34") == 12345678901234


def test_a_wechat_bill_looks_like_the_real_one():
    text = write_statement("wechat", [PAYMENT, REFUND], BILL_DATE)
    lines = text.splitlines()
    assert lines[0].startswith("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号")
    assert lines[1].startswith("`2026-11-24 10:15:03,`wx")
    assert "`SUCCESS" in lines[1] and "`128.00" in lines[1] and "`0.77" in lines[1]
    assert "`REFUND" in lines[2] and "`R1" in lines[2] and "`50.00" in lines[2]
    assert "`-0.30" in lines[2]
    assert (
        lines[3] == "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,"
        "手续费总金额,订单总金额,申请退款总金额"
    )
    assert lines[4] == "`2,`128.00,`50.00,`0.00,`0.47,`128.00,`50.00"


def test_an_alipay_bill_looks_like_the_real_one():
    refund = StatementRow("refund", "T1", "2026112422001412345678901234", "R1", 5000, AT, 30)
    payment = StatementRow("payment", "T1", "2026112422001412345678901234", None, 12800, AT, 77)
    lines = write_statement("alipay", [payment, refund], BILL_DATE).splitlines()
    assert lines[0] == "#支付宝业务明细查询"
    assert lines[1].startswith("#账号：[")
    assert lines[2] == "#起始日期：[2026年11月24日 00:00:00]   终止日期：[2026年11月25日 00:00:00]"
    assert lines[4].startswith("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间")
    assert lines[5].split(",")[2] == "交易" and lines[5].split(",")[12] == "128.00"
    assert lines[6].split(",")[2] == "退款" and lines[6].split(",")[12] == "-50.00"
    assert lines[6].split(",")[21] == "R1"
    assert ALIPAY_LIST_END in lines
    assert lines[-1] == "#导出时间：[2026年11月25日 09:00:00]"


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_an_empty_bill_round_trips(channel):
    assert parse_statement(channel, write_statement(channel, [], BILL_DATE)) == []


def test_rows_of_another_date_are_not_written():
    late = StatementRow("payment", "T1", "X1", None, 100, AT + timedelta(hours=14), 1)
    with pytest.raises(ValueError, match="bill date"):
        write_statement("wechat", [late], BILL_DATE)


def test_ids_the_channels_would_refuse_are_not_written():
    bad = StatementRow("payment", "T,1", "X1", None, 100, AT, 1)
    with pytest.raises(ValueError):
        write_statement("wechat", [bad], BILL_DATE)


IDS = st.text(alphabet="0123456789ABCDEFabcdef_-|*@", min_size=1, max_size=32)
DAY_START = datetime.combine(BILL_DATE, time(), CHANNEL_TZ).astimezone(UTC)


@st.composite
def rows(draw, channel):
    kind = draw(st.sampled_from(["payment", "refund"]))
    refund = kind == "refund"
    refund_id = draw(st.none() | IDS.filter(lambda v: v != "0")) if refund else None
    return StatementRow(
        kind=kind,
        out_trade_no=draw(IDS),
        channel_txn_id=draw(IDS),
        out_refund_no=draw(IDS) if refund else None,
        amount_fen=draw(st.integers(0, 10**11)),
        at=DAY_START + timedelta(seconds=draw(st.integers(0, 86399))),
        fee_fen=draw(st.integers(0, 10**9)),
        refund_id=refund_id if channel == "wechat" else None,
    )


@given(st.lists(rows("wechat"), max_size=20))
def test_a_wechat_bill_reads_back_exactly(written):
    assert parse_statement("wechat", write_statement("wechat", written, BILL_DATE)) == written


@given(st.lists(rows("alipay"), max_size=20))
def test_an_alipay_bill_reads_back_exactly(written):
    assert parse_statement("alipay", write_statement("alipay", written, BILL_DATE)) == written


def good_text(channel):
    rows = [PAYMENT, REFUND] if channel == "wechat" else [PAYMENT]
    return write_statement(channel, rows, BILL_DATE)


MANGLED = [
    ("wechat", lambda t: ""),
    ("wechat", lambda t: "hello,world\n"),
    ("wechat", lambda t: t.replace("`128.00", "`128.0", 1)),
    ("wechat", lambda t: t.replace("`128.00", "128.00", 1)),
    ("wechat", lambda t: t.replace("`2,`128.00", "`3,`128.00")),
    ("wechat", lambda t: t.replace("`0.77", "`-0.77")),
    ("wechat", lambda t: t.replace("`2026-11-24 10:15:03", "`2026-11-24 25:15:03")),
    ("wechat", lambda t: t.replace("`REFUND", "`REVOKED")),
    ("wechat", lambda t: "\n".join(t.splitlines()[:-1])),
    ("wechat", lambda t: t.replace("`NATIVE", "`NATIVE,`extra", 1)),
    ("alipay", lambda t: t.replace("#支付宝业务明细查询", "#账务明细")),
    ("alipay", lambda t: t.replace(ALIPAY_LIST_END, "")),
    ("alipay", lambda t: t.replace(",交易,", ",转账,")),
    ("alipay", lambda t: t.replace("128.00", "12.80", 1)),
    ("alipay", lambda t: t.replace("#交易合计：1笔", "#交易合计：2笔")),
    ("alipay", lambda t: t.replace("2026年11月24日 00:00:00", "2026年11月23日 00:00:00")),
    ("alipay", lambda t: "\n".join(t.splitlines()[:5])),
]


@pytest.mark.parametrize(("channel", "mangle"), MANGLED)
def test_malformed_bills_are_refused(channel, mangle):
    text = mangle(good_text(channel))
    assert text != good_text(channel)
    with pytest.raises(ScenicError) as raised:
        parse_statement(channel, text)
    assert raised.value.code == "bad_statement"


def test_a_bill_of_an_unknown_channel_is_refused():
    with pytest.raises(ScenicError) as raised:
        parse_statement("paypal", good_text("wechat"))
    assert raised.value.code == "bad_statement"
    with pytest.raises(ScenicError):
        parse_statement("alipay", good_text("wechat"))
