"""Daily bills: the channels' real layouts, exact yuan, an exact round trip, refusals by line."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.channels import statement_wechat
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
from server.channels.statement_common import parse_fee_yuan
from server.errors import ScenicError

BILL_DATE = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 2, 15, 3, tzinfo=UTC)  # 10:15:03 in Shanghai
TXN = "4200001234202611245678901234"

PAYMENT = StatementRow("payment", "T1", TXN, None, 12800, AT, 77, rate_bp=60)
REFUND = StatementRow(
    "refund",
    "T1",
    TXN,
    "R1",
    5000,
    AT + timedelta(hours=1),
    30,
    refund_id="50000000382026112409732678859",
    rate_bp=60,
)


def alipay_lines(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        [name] = archive.namelist()
        assert name == "20880012345678900156_20261124_业务明细.csv"
        return archive.read(name).decode("gbk").split("\r\n")


def test_fees_are_the_rate_rounded_half_up():
    assert [fee_fen(n) for n in (0, 1, 83, 84, 100, 12800, 250)] == [0, 0, 0, 1, 1, 77, 2]
    assert fee_fen(25) == 0  # 0.15 fen
    assert fee_fen(250) == 2  # 1.5 fen rounds up
    assert fee_fen(10000, rate_bp=38) == 38


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
    assert parse_fee_yuan("0.77000") == 77
    with pytest.raises(ValueError, match="whole number of fen"):
        parse_fee_yuan("0.00600")


@given(st.integers(-(10**13), 10**13))
def test_yuan_and_fen_convert_exactly_both_ways(fen):
    assert parse_yuan(yuan(fen)) == fen
    assert parse_fee_yuan(yuan(fen) + "000") == fen


def test_a_wechat_bill_is_the_real_all_layout():
    lines = write_statement("wechat", [PAYMENT, REFUND], BILL_DATE).decode().split("\r\n")
    assert lines[0] == (
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
        "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
        "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
        "费率备注"
    )
    assert lines[1] == (
        f"`2026-11-24 10:15:03,`wx2421b1c4370ec43b,`1900000109,`0,`,`{TXN},`T1,`,`NATIVE,"
        "`SUCCESS,`OTHERS,`CNY,`128.00,`0.00,`0,`0,`0.00,`0.00,`,`,`,`,`0.77000,`0.60%,"
        "`128.00,`0.00,`"
    )
    assert lines[2] == (
        f"`2026-11-24 11:15:03,`wx2421b1c4370ec43b,`1900000109,`0,`,`{TXN},`T1,`,`NATIVE,"
        "`REFUND,`OTHERS,`CNY,`0.00,`0.00,`50000000382026112409732678859,`R1,`50.00,`0.00,"
        "`ORIGINAL,`SUCCESS,`,`,`-0.30000,`0.60%,`0.00,`50.00,`"
    )
    assert lines[3] == (
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    )
    assert lines[4] == "`2,`128.00,`50.00,`0.00,`0.47000,`128.00,`50.00"
    assert lines[5] == ""


def test_an_alipay_bill_is_a_zip_of_the_real_gbk_layout():
    refund = StatementRow("refund", "T1", "2026112422001412345678901234", "R1", 5000, AT, 30)
    payment = StatementRow("payment", "T1", "2026112422001412345678901234", None, 12800, AT, 77)
    lines = alipay_lines(write_statement("alipay", [payment, refund], BILL_DATE))
    assert lines[0] == "#支付宝业务明细查询"
    assert lines[1] == "#账号：[20880012345678900156]"
    assert lines[2] == "#起始日期：[2026年11月24日 00:00:00]   终止日期：[2026年11月25日 00:00:00]"
    assert lines[3].startswith("#-----") and "业务明细列表" in lines[3]
    assert lines[4].startswith("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间")
    cells = lines[5].split(",")
    assert all(cell.endswith("\t") for cell in cells) and len(cells) == 25
    assert cells[2] == "交易\t" and cells[12] == "128.00\t" and cells[22] == "-0.77\t"
    cells = lines[6].split(",")
    assert cells[2] == "退款\t" and cells[12] == "-50.00\t" and cells[21] == "R1\t"
    assert lines[7] == ALIPAY_LIST_END
    assert lines[8] == "#交易合计：1笔，商家实收共128.00元，商家优惠共0.00元"
    assert lines[9] == "#退款合计：1笔，商家实收退款共-50.00元，商家优惠退款共0.00元"
    assert lines[10] == "#导出时间：[2026年11月25日 09:00:00]"


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_an_empty_bill_round_trips(channel):
    assert parse_statement(channel, write_statement(channel, [], BILL_DATE)) == []


def test_rows_of_another_date_are_not_written():
    late = StatementRow("payment", "T1", "X1", None, 100, AT + timedelta(hours=14), 1, rate_bp=60)
    with pytest.raises(ValueError, match="bill date"):
        write_statement("wechat", [late], BILL_DATE)


def test_ids_the_channels_would_refuse_are_not_written():
    bad = StatementRow("payment", "T,1", "X1", None, 100, AT, 1, rate_bp=60)
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
        rate_bp=draw(st.integers(0, 9999)) if channel == "wechat" else None,
    )


@given(st.lists(rows("wechat"), max_size=20))
def test_a_wechat_bill_reads_back_exactly(written):
    assert parse_statement("wechat", write_statement("wechat", written, BILL_DATE)) == written


@given(st.lists(rows("alipay"), max_size=20))
def test_an_alipay_bill_reads_back_exactly(written):
    assert parse_statement("alipay", write_statement("alipay", written, BILL_DATE)) == written


def test_a_real_wechat_bill_with_openids_bodies_and_lf_endings_is_read():
    text = (
        ",".join(statement_wechat.HEADER) + "\n"
        "`2026-11-24 06:23:58,`wxf73fbd0076a0e2c1,`1603895592,`0,`,`4200000810202611290227372665,"
        "`ord0202611282223,`orB-mvyTy5Qvs8f-8c69-mwMLu4o,`JSAPI,`SUCCESS,`CMC,`CNY,`0.01,`0.00,"
        "`0,`0,`0.00,`0.00,`,`,`药师咨询服务,`1,`0.00000,`0.60%,`0.01,`0.00,`\n"
        + ",".join(statement_wechat.SUMMARY_HEADER)
        + "\n`1,`0.01,`0.00,`0.00,`0.00000,`0.01,`0.00\n"
    )
    [row] = parse_statement("wechat", text.encode())
    assert (row.kind, row.out_trade_no, row.amount_fen, row.fee_fen, row.rate_bp) == (
        "payment",
        "ord0202611282223",
        1,
        0,
        60,
    )


def test_a_bare_alipay_csv_and_a_zip_named_in_gbk_are_read():
    data = write_statement("alipay", [PAYMENT_ALIPAY], BILL_DATE)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        csv_bytes = archive.read(archive.namelist()[0])
    assert parse_statement("alipay", csv_bytes) == [PAYMENT_ALIPAY]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("20880012345678900156_20261124_业务明细(汇总).csv")
        archive.writestr(info, b"summary")
        archive.writestr(zipfile.ZipInfo("20880012345678900156_20261124_XXXXXXXX.csv"), csv_bytes)
    # as Alipay writes it: the name's bytes in GBK, without zip's UTF-8 flag
    gbk = buffer.getvalue().replace(b"XXXXXXXX", "业务明细".encode("gbk"))
    assert parse_statement("alipay", gbk) == [PAYMENT_ALIPAY]


PAYMENT_ALIPAY = StatementRow("payment", "T1", "2026112422001412345678901234", None, 12800, AT, 77)


def good(channel):
    if channel == "wechat":
        return write_statement("wechat", [PAYMENT, REFUND], BILL_DATE).decode()
    with zipfile.ZipFile(io.BytesIO(write_statement("alipay", [PAYMENT_ALIPAY], BILL_DATE))) as z:
        return z.read(z.namelist()[0]).decode("gbk")


MANGLED = [
    ("wechat", lambda t: "", "line 1"),
    ("wechat", lambda t: "hello,world\r\n", "line 1"),
    ("wechat", lambda t: t.replace("`128.00", "`128.0", 1), "line 2"),
    ("wechat", lambda t: t.replace("`128.00", "128.00", 1), "line 2"),
    ("wechat", lambda t: t.replace("`2,`128.00", "`3,`128.00"), "line 5"),
    ("wechat", lambda t: t.replace("`0.77000", "`-0.77000"), "line 2"),
    ("wechat", lambda t: t.replace("`0.77000", "`0.77100"), "line 2"),
    ("wechat", lambda t: t.replace("`2026-11-24 10:15:03", "`2026-11-24 25:15:03"), "line 2"),
    ("wechat", lambda t: t.replace("`REFUND", "`REVOKED"), "line 3"),
    ("wechat", lambda t: "\r\n".join(t.split("\r\n")[:-2]), "line 4"),
    ("wechat", lambda t: t.replace("`NATIVE", "`NATIVE,`extra", 1), "line 2"),
    ("wechat", lambda t: t.replace("`0.60%", "`0.6%", 1), "line 2"),
    ("alipay", lambda t: t.replace("#支付宝业务明细查询", "#账务明细"), "line 1"),
    ("alipay", lambda t: t.replace(ALIPAY_LIST_END, "#"), "line 7"),
    ("alipay", lambda t: t.replace(",交易\t,", ",转账\t,"), "line 6"),
    ("alipay", lambda t: t.replace("128.00\t,128.00\t", "128.00\t,12.80\t"), "line 8"),
    ("alipay", lambda t: t.replace("#交易合计：1笔", "#交易合计：2笔"), "line 8"),
    ("alipay", lambda t: t.replace("2026年11月24日 00:00:00", "2026年11月23日 00:00:00"), "line 6"),
    ("alipay", lambda t: t.replace("商家实收（元）", "实收"), "line 5"),
    ("alipay", lambda t: t.replace("\t,", "\t,,", 1), "line 6"),
]


@pytest.mark.parametrize(("channel", "mangle", "line"), MANGLED)
def test_malformed_bills_are_refused_naming_the_line(channel, mangle, line):
    text = mangle(good(channel))
    assert text != good(channel)
    with pytest.raises(ScenicError) as raised:
        parse_statement(channel, text.encode("utf-8" if channel == "wechat" else "gbk"))
    assert raised.value.code == "bad_statement"
    assert f"{line}:" in raised.value.message


def test_a_bill_of_an_unknown_channel_or_the_other_layout_is_refused():
    wechat = write_statement("wechat", [PAYMENT], BILL_DATE)
    with pytest.raises(ScenicError) as raised:
        parse_statement("paypal", wechat)
    assert raised.value.code == "bad_statement"
    with pytest.raises(ScenicError, match="line 1"):
        parse_statement("alipay", wechat)
    with pytest.raises(ScenicError, match="line 1"):
        parse_statement("wechat", write_statement("alipay", [], BILL_DATE))
    with pytest.raises(ScenicError, match="zip"):
        parse_statement("alipay", b"PK\x03\x04broken")
