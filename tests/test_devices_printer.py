"""The receipt printer without I/O: receipt layout, the bytes sent, and decoding them back."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from escpos.printer import Dummy
from hypothesis import given
from hypothesis import strategies as st

from devices.printer.decoder import (
    Cut,
    EscPosDecoder,
    PrintedBarcode,
    PrintedLine,
    PrintedQr,
    Unknown,
    decode_readable,
)
from devices.printer.receipts import (
    Barcode,
    Line,
    QrCode,
    Receipt,
    columns_of,
    fit,
    refund_receipt,
    rental_voucher_receipt,
    sale_receipt,
    spread,
    yuan,
)
from devices.printer.wire import encode_line, encode_receipt, encode_text

DOCS = Path(__file__).parent.parent / "docs" / "devices.md"
AT = datetime(2026, 10, 1, 1, 5, tzinfo=UTC)  # 09:05 in Shanghai
CATALOG = {
    "site": {"name_zh": "西湖风景名胜区", "name_en": "West Lake"},
    "timezone": "Asia/Shanghai",
    "products": [
        {"product": "adult", "name_zh": "成人票", "name_en": "Adult"},
        {"product": "child", "name_zh": "儿童票", "name_en": "Child"},
    ],
}
TICKETS = [
    {"ticket": "T20261001AAAA", "code": "k4e1.T20261001AAAA.QRTAG1", "product": "adult",
     "date": "2026-10-01", "slot": "AM", "refunded": False},
    {"ticket": "T20261001BBBB", "code": "k4e1.T20261001BBBB.QRTAG2", "product": "child",
     "date": "2026-10-01", "slot": "AM", "refunded": True},
]  # fmt: skip
ORDER = {
    "order": "O20261001K3M9Q2XT7V",
    "status": "paid",
    "total_fen": 18000,
    "lines": [
        {"product": "adult", "quantity": 1, "date": "2026-10-01", "slot": "AM",
         "unit_price_fen": 12000},
        {"product": "child", "quantity": 1, "date": "2026-10-01", "slot": "AM",
         "unit_price_fen": 6000},
    ],
    "payments": [{"out_trade_no": "P1", "channel": "wechat", "amount_fen": 18000,
                  "collected_fen": 18000, "state": "captured", "channel_txn_id": "42"}],
    "tickets": TICKETS,
    "refunds": [{"out_refund_no": "R20261001X", "out_trade_no": "P1", "channel": "wechat",
                 "amount_fen": 6000, "reason": "visitor ill", "state": "pending",
                 "confirmed": False, "failure": None}],
}  # fmt: skip
RENTAL = {
    "rental": "H20261201K3M9Q2XT7V",
    "status": "held",
    "lines": [{"item": "skis", "name_zh": "双板滑雪板", "name_en": "Skis with poles",
               "quantity": 1, "covered": 0, "deposit_fen": 80000, "prepaid_fen": 12000}],
    "days": 1, "deposit_fen": 80000, "prepaid_fen": 12000, "due_now_fen": 92000,
    "voucher": "H20261201K3M9Q2XT7V.k4e1.3NRBYC3SSC7Q5ZRMMRXUNMKL",
    "hold": {"route": "preauth", "channel": "alipay", "amount_fen": 92000},
}  # fmt: skip

printable = st.characters(exclude_categories=("Cs", "Cc"))


def decode(data: bytes):
    decoder = EscPosDecoder()
    return decoder.feed(data) + decoder.flush()


# -- the bytes ------------------------------------------------------------------------------


def test_the_documented_example_receipt_is_the_bytes_sent():
    section = DOCS.read_text().split("## Receipt printer", 1)[1]
    example = re.search(r"is sent as\n\n```\n([0-9a-f ]+)\n```", section).group(1)
    receipt = Receipt("sale", [Line("票 Ticket", "center", bold=True), QrCode("T-1")])
    assert encode_receipt(receipt) == bytes.fromhex(example)


def test_every_documented_command_row_is_what_the_encoder_sends():
    section = DOCS.read_text().split("## Receipt printer", 1)[1]
    assert "`1b 40`" in section
    assert encode_receipt(Receipt("t", [])) == bytes.fromhex("1b 40 1b 64 06 1d 56 00")
    assert encode_line(Line("Total", size=2)) == bytes.fromhex("1d 21 11 1b 45 00 1b 61 00") + (
        b"Total\n"
    )
    barcode = encode_receipt(Receipt("t", [Barcode("O1")]))[2:-6]
    prefix = "1b 61 01 1d 68 40 1d 77 02 1d 66 00 1d 48 02 1d 6b 49 n 7b 42"
    assert f"`{prefix}` data" in section
    assert barcode == bytes.fromhex(prefix.replace(" n ", " 04 ")) + b"O1"


def test_a_chinese_line_is_gb18030_inside_chinese_mode_and_ascii_passes_plain():
    assert encode_text("票 Ticket") == b"\x1c\x26" + "票 Ticket".encode("gb18030") + b"\x1c\x2e"
    assert encode_text("票") == bytes.fromhex("1c 26 c6 b1 1c 2e")
    assert encode_text("Total 240.00") == b"Total 240.00"
    assert encode_text("¥") == bytes.fromhex("1c 26 81 30 84 36 1c 2e")  # four GB18030 bytes


def test_chinese_punctuation_alone_prints_where_python_escpos_text_would_print_question_marks():
    punctuation = Dummy()
    punctuation.text("（）")
    assert b"?" in punctuation.output  # why wire.py encodes text itself
    assert encode_text("（）") == b"\x1c\x26" + "（）".encode("gb18030") + b"\x1c\x2e"
    assert decode(encode_line(Line("（）")))[0].text == "（）"


def test_control_characters_in_a_text_become_spaces_so_no_command_hides_in_it():
    assert encode_text("a\x1bd\x06b\n") == b"a d b "
    assert [e.text for e in decode(encode_line(Line("票\x1d\x56\x00")))] == ["票 V "]


@given(
    st.text(printable, max_size=40),
    st.sampled_from(["left", "center", "right"]),
    st.booleans(),
    st.sampled_from([1, 2]),
)
def test_any_line_decodes_back_to_its_text_and_modes(text, align, bold, size):
    assert decode(encode_line(Line(text, align, bold, size))) == [
        PrintedLine(text, align, bold, size, size)
    ]


@given(st.text(printable, min_size=1, max_size=300), st.integers(1, 16))
def test_any_qr_payload_decodes_back_from_the_gs_k_commands(payload, module):
    events = decode(encode_receipt(Receipt("t", [QrCode(payload, module)])))
    assert [e for e in events if isinstance(e, PrintedQr)] == [PrintedQr(payload, module, "M")]
    assert isinstance(events[-1], Cut)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60))
def test_any_barcode_decodes_back_to_its_data(data):
    events = decode(encode_receipt(Receipt("t", [Barcode(data)])))
    assert [e for e in events if isinstance(e, PrintedBarcode)] == [PrintedBarcode("CODE128", data)]


def test_a_receipt_split_at_every_position_decodes_the_same():
    receipt = Receipt("t", [Line("合计 Total", bold=True), QrCode("T-1"), Barcode("O1")])
    wire = encode_receipt(receipt)
    whole = decode(wire)
    for cut in range(len(wire) + 1):
        decoder = EscPosDecoder()
        assert decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) + decoder.flush() == whole


def test_an_unknown_command_is_shown_and_skipped_and_what_follows_still_prints():
    events = decode(b"\x1bXok\n\x1d\x28\x4c\x02\x00\x30\x45after\n")
    assert events == [
        Unknown(b"\x1bX"),
        PrintedLine("ok"),
        Unknown(b"\x1d\x28\x4c\x02\x00\x30\x45"),
        PrintedLine("after"),
    ]
    assert decode_readable(b"\x1bXok\n") == ["[unknown 1b 58]", "ok"]


# -- the layout -----------------------------------------------------------------------------


@given(st.text(printable, max_size=30), st.text(printable, max_size=30), st.integers(8, 48))
def test_two_columns_never_overflow_the_paper(left, right, width):
    line = spread(left, right, width)
    assert columns_of(line) <= width
    assert columns_of(fit(left, width)) <= width


def test_a_chinese_character_takes_two_columns():
    assert columns_of("成人票 Adult") == 12
    assert fit("成人票", 5) == "成人"
    assert spread("合计", "240.00元", 16) == "合计    240.00元"
    assert (yuan(24000, "zh"), yuan(5, "en")) == ("240.00元", "CNY 0.05")
    assert yuan(-150, "zh") == "-1.50元"


def test_a_sale_receipt_carries_the_order_lines_total_channel_and_a_qr_per_ticket_code():
    lines = decode_readable(encode_receipt(sale_receipt(ORDER, CATALOG, printed_at=AT)))
    assert lines[0] == "[center bold 2x2] 西湖风景名胜区"
    assert "订单         O20261001K3M9Q2XT7V" in lines
    assert "时间            2026-10-01 09:05" in lines
    assert "成人票 2026-10-01 AM" in lines and "  1 x 60.00                60.00" in lines
    assert "[bold] 合计                    180.00元" in lines
    assert "支付方式                微信支付" in lines
    assert [line for line in lines if line.startswith("[qr]")] == [
        "[qr] k4e1.T20261001AAAA.QRTAG1"  # the child ticket was refunded: void, no code
    ]
    void = lines.index("[center] 儿童票 2026-10-01 AM") + 1
    assert lines[void : void + 2] == ["[center bold] 已退票，作废", "[center] T20261001BBBB"]
    assert lines[-2:] == ["[feed 6]", "[cut]"]
    assert all(columns_of(line.split("] ")[-1]) <= 32 for line in lines)


def test_an_english_cash_receipt_shows_the_tender_and_the_change():
    cash = {**ORDER, "payments": [{**ORDER["payments"][0], "channel": "cash"}]}
    receipt = sale_receipt(cash, CATALOG, printed_at=AT, lang="en", cash_tendered_fen=20000)
    lines = receipt.lines()
    assert "Ticket receipt" in lines and "Adult 2026-10-01 AM" in lines
    assert "Total                 CNY 180.00" in lines
    assert "Paid by                     Cash" in lines
    assert "Tendered              CNY 200.00" in lines
    assert "Change                 CNY 20.00" in lines


def test_an_unpaid_order_or_a_short_tender_makes_no_receipt():
    with pytest.raises(ValueError, match="is not paid"):
        sale_receipt({**ORDER, "status": "pending", "payments": []}, CATALOG, printed_at=AT)
    cash = {**ORDER, "payments": [{**ORDER["payments"][0], "channel": "cash"}]}
    with pytest.raises(ValueError, match="less than"):
        sale_receipt(cash, CATALOG, printed_at=AT, cash_tendered_fen=100)


def test_on_80_mm_paper_the_order_id_is_a_barcode_at_the_foot():
    wide = decode_readable(encode_receipt(sale_receipt(ORDER, CATALOG, printed_at=AT, width=48)))
    narrow = decode_readable(encode_receipt(sale_receipt(ORDER, CATALOG, printed_at=AT)))
    assert "[barcode CODE128] O20261001K3M9Q2XT7V" in wide
    assert not any(line.startswith("[barcode") for line in narrow)


def test_a_rental_voucher_receipt_carries_the_deposit_and_the_voucher_as_its_qr():
    lines = decode_readable(encode_receipt(rental_voucher_receipt(RENTAL, CATALOG, printed_at=AT)))
    assert "[center bold] 租赁凭证" in lines and "双板滑雪板 x1" in lines
    assert "押金                    800.00元" in lines
    assert "[bold] 应付                    920.00元" in lines
    assert "支付方式            支付宝预授权" in lines
    assert "[qr] H20261201K3M9Q2XT7V.k4e1.3NRBYC3SSC7Q5ZRMMRXUNMKL" in lines
    with pytest.raises(ValueError, match="no voucher yet"):
        rental_voucher_receipt({**RENTAL, "voucher": None, "hold": None}, CATALOG, printed_at=AT)


def test_a_refund_receipt_names_the_refund_its_tickets_amount_channel_and_state():
    receipt = refund_receipt(
        ORDER, "R20261001X", CATALOG, printed_at=AT, tickets=["T20261001BBBB"], lang="en"
    )
    lines = receipt.lines()
    assert "Refund                R20261001X" in lines
    assert "  T20261001BBBB" in lines and "  Child 2026-10-01 AM" in lines
    assert "Refunded               CNY 60.00" in lines
    assert "Back to               WeChat Pay" in lines
    assert "Reason visitor ill" in lines and "State           Refund requested" in lines
    with pytest.raises(ValueError, match="has no refund R-NONE"):
        refund_receipt(ORDER, "R-NONE", CATALOG, printed_at=AT)
    with pytest.raises(ValueError, match="ticket T-X is not on order"):
        refund_receipt(ORDER, "R20261001X", CATALOG, printed_at=AT, tickets=["T-X"])
