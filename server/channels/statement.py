"""Daily bills in the channels' own CSV layouts: write them, and read them back.

A merchant reconciles its ledger against the bill each channel publishes for
each business day (its local date, Asia/Shanghai). The simulator writes bills
in the shape of the real ones so the reconciliation code meets the real
quirks:

- **WeChat Pay** (``wechat``): one header line, one row per payment and per
  refund with every value prefixed by a backtick (so spreadsheet programs keep
  long ids as text), then a summary header and one backticked summary row.
- **Alipay** (``alipay``): ``#`` comment lines around a header and the rows;
  business type ``交易`` (payment) or ``退款`` (refund, amounts negative).

Amounts are yuan with two decimals, converted from integer fen exactly. The
channel keeps a 0.6% fee (:func:`fee_fen`, half-up to the fen) and gives the
fee of a refunded amount back. Times are written in local time to the second.
:func:`parse_statement` reads back exactly what :func:`write_statement`
wrote and refuses anything else with ``bad_statement``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs

from server.errors import ScenicError

#: the channels' business time zone; a bill covers one local date
CHANNEL_TZ = ZoneInfo("Asia/Shanghai")
#: the channels' fee, in parts per thousand
FEE_PER_MILLE = 6


def _columns(header: str) -> list[str]:
    return header.split(",")


WECHAT_HEADER = _columns(
    "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率"
)
WECHAT_SUMMARY_HEADER = _columns(
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
ALIPAY_HEADER = _columns(
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,"
    "终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
ALIPAY_TITLE = "#支付宝业务明细查询"
ALIPAY_LIST_START = (
    "#-----------------------------------------业务明细列表----------------------------------------"
)
ALIPAY_LIST_END = (
    "#-----------------------------------------业务明细列表结束------------------------------------"
)

#: the simulated merchant's accounts, as they appear on the bills
WECHAT_APPID = "wx2421b1c4370ec43b"
WECHAT_MCH_ID = "1900000109"
ALIPAY_ACCOUNT = "20880012345678900156"

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_AMOUNT = re.compile(r"-?\d+\.\d{2}")
_KINDS = ("payment", "refund")
#: the characters the channels allow in merchant order and refund numbers
_ID = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")


class BadStatement(ScenicError):
    """The text is not a bill in the layout this module writes."""

    code = "bad_statement"


@attrs.frozen
class StatementRow:
    """One line of a bill: a payment, or a refund of one.

    ``amount_fen`` and ``fee_fen`` are positive for both kinds (a refund's fee
    is the fee the channel gives back). ``at`` is when the payment was paid or
    the refund succeeded, a UTC datetime (bills keep whole seconds).
    ``refund_id`` is the channel's refund number, which only WeChat bills
    carry; Alipay refund rows have ``None``.
    """

    kind: str = attrs.field(validator=attrs.validators.in_(_KINDS))
    out_trade_no: str
    channel_txn_id: str
    out_refund_no: str | None
    amount_fen: int
    at: datetime
    fee_fen: int
    refund_id: str | None = None


def fee_fen(amount_fen: int) -> int:
    """The channel's 0.6% fee on ``amount_fen``, rounded half-up to the fen."""
    return (amount_fen * FEE_PER_MILLE + 500) // 1000


def local_date(moment: datetime) -> date:
    """The channel's business date of ``moment`` (a timezone-aware datetime)."""
    return moment.astimezone(CHANNEL_TZ).date()


def write_statement(channel: str, rows: Iterable[StatementRow], bill_date: date) -> str:
    """The ``channel``'s bill for ``bill_date`` holding ``rows``, in their order.

    Raises ``ValueError`` for an unknown channel, a row whose local date is not
    ``bill_date``, a naive ``at``, a negative amount, a text field holding a
    comma, quote or line break, or (Alipay) a row with a ``refund_id``.
    """
    rows = list(rows)
    for row in rows:
        _check_row(channel, row, bill_date)
    if channel == "wechat":
        return _write_wechat(rows)
    if channel == "alipay":
        return _write_alipay(rows, bill_date)
    raise ValueError(f"no bill layout for channel {channel!r}")


def parse_statement(channel: str, text: str) -> list[StatementRow]:
    """The rows of a ``channel`` bill written by :func:`write_statement`.

    Raises :class:`BadStatement` (``bad_statement``) when the text is not such a
    bill: wrong header, a row of the wrong width, an amount or time that does
    not parse, or a summary that disagrees with the rows.
    """
    try:
        if channel == "wechat":
            return _parse_wechat(text)
        if channel == "alipay":
            return _parse_alipay(text)
    except BadStatement:
        raise
    except (ValueError, IndexError, KeyError, csv.Error) as exc:
        raise BadStatement(f"not a {channel} bill: {exc}") from None
    raise BadStatement(f"no bill layout for channel {channel!r}")


def _check_row(channel: str, row: StatementRow, bill_date: date) -> None:
    if row.at.tzinfo is None:
        raise ValueError(f"the time of {row.out_trade_no} has no time zone")
    if local_date(row.at) != bill_date:
        raise ValueError(f"{row.kind} {row.out_trade_no} is not of the bill date {bill_date}")
    if row.amount_fen < 0 or row.fee_fen < 0:
        raise ValueError(f"{row.kind} {row.out_trade_no} has a negative amount or fee")
    if (row.kind == "refund") != (row.out_refund_no is not None):
        raise ValueError(f"{row.kind} {row.out_trade_no}: out_refund_no only on refunds")
    if channel == "alipay" and row.refund_id is not None:
        raise ValueError("Alipay bills have no column for the refund id")
    if row.kind == "payment" and row.refund_id is not None:
        raise ValueError("a payment row has no refund id")
    if row.refund_id == "0":
        raise ValueError("refund id 0 means 'none' on a WeChat bill")
    for value in (row.out_trade_no, row.channel_txn_id, row.out_refund_no, row.refund_id):
        if value is not None and not _ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an id the channels accept")


# -- amounts and times ------------------------------------------------------------


def yuan(amount_fen: int) -> str:
    """``amount_fen`` as yuan with two decimals, exactly (``-1234`` -> ``-12.34``)."""
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def parse_yuan(text: str) -> int:
    """Fen from ``12.34``-style yuan text; ``ValueError`` for anything else."""
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f"{text!r} is not an amount in yuan")
    sign = -1 if text.startswith("-") else 1
    whole, cents = text.lstrip("-").split(".")
    return sign * (int(whole) * 100 + int(cents))


def _local_time(moment: datetime) -> str:
    return moment.astimezone(CHANNEL_TZ).strftime(_TIME_FORMAT)


def _parse_local_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=CHANNEL_TZ).astimezone(UTC)


def _csv_line(values: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(list(values))
    return buffer.getvalue()


def _csv_rows(lines: list[str]) -> list[list[str]]:
    return list(csv.reader(lines, strict=True))


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise BadStatement(message)


# -- WeChat Pay -------------------------------------------------------------------


def _write_wechat(rows: list[StatementRow]) -> str:
    lines = [_csv_line(WECHAT_HEADER)]
    for row in rows:
        refund = row.kind == "refund"
        values = [
            _local_time(row.at),
            WECHAT_APPID,
            WECHAT_MCH_ID,
            "0",
            "",
            row.channel_txn_id,
            row.out_trade_no,
            "",
            "NATIVE",
            "REFUND" if refund else "SUCCESS",
            "OTHERS",
            "CNY",
            yuan(0 if refund else row.amount_fen),
            "0.00",
            (row.refund_id or "0") if refund else "0",
            row.out_refund_no if refund else "0",
            yuan(row.amount_fen if refund else 0),
            "0.00",
            "ORIGINAL" if refund else "",
            "SUCCESS" if refund else "",
            "",
            "",
            yuan(-row.fee_fen if refund else row.fee_fen),
            "0.60%",
        ]
        lines.append(_csv_line("`" + value for value in values))
    payments = [row for row in rows if row.kind == "payment"]
    refunds = [row for row in rows if row.kind == "refund"]
    paid = sum(row.amount_fen for row in payments)
    refunded = sum(row.amount_fen for row in refunds)
    fees = sum(row.fee_fen for row in payments) - sum(row.fee_fen for row in refunds)
    summary = [str(len(rows)), yuan(paid), yuan(refunded), "0.00", yuan(fees), yuan(paid)]
    summary.append(yuan(refunded))
    lines.append(_csv_line(WECHAT_SUMMARY_HEADER))
    lines.append(_csv_line("`" + value for value in summary))
    return "".join(lines)


def _unbacktick(values: list[str]) -> list[str]:
    for value in values:
        _expect(value.startswith("`"), f"value {value!r} lacks the backtick prefix")
    return [value[1:] for value in values]


def _parse_wechat(text: str) -> list[StatementRow]:
    table = _csv_rows(text.splitlines())
    _expect(len(table) >= 3, "a WeChat bill has a header, a summary header and a summary")
    _expect(table[0] == WECHAT_HEADER, "the first line is not the WeChat bill header")
    _expect(table[-2] == WECHAT_SUMMARY_HEADER, "the summary header is missing")
    rows = []
    for number, raw in enumerate(table[1:-2], start=2):
        _expect(len(raw) == len(WECHAT_HEADER), f"line {number} has {len(raw)} columns")
        rows.append(_wechat_row(dict(zip(WECHAT_HEADER, _unbacktick(raw), strict=True))))
    summary = _unbacktick(table[-1])
    _expect(len(summary) == len(WECHAT_SUMMARY_HEADER), "the summary row has the wrong width")
    expected = _write_wechat(rows).splitlines()
    _expect(text.splitlines()[-1] == expected[-1], "the summary disagrees with the rows")
    _expect(text.splitlines() == expected, "a row holds values this layout does not write")
    return rows


def _wechat_row(values: dict[str, str]) -> StatementRow:
    state = values["交易状态"]
    _expect(state in ("SUCCESS", "REFUND"), f"unknown 交易状态 {state!r}")
    refund = state == "REFUND"
    fee = parse_yuan(values["手续费"])
    amount = parse_yuan(values["退款金额"] if refund else values["应结订单金额"])
    refund_id = values["微信退款单号"] if refund else None
    return StatementRow(
        kind="refund" if refund else "payment",
        out_trade_no=_text(values["商户订单号"]),
        channel_txn_id=_text(values["微信订单号"]),
        out_refund_no=_text(values["商户退款单号"]) if refund else None,
        amount_fen=_non_negative(amount),
        at=_parse_local_time(values["交易时间"]),
        fee_fen=_non_negative(-fee if refund else fee),
        refund_id=None if refund_id == "0" else refund_id,
    )


def _text(value: str) -> str:
    _expect(bool(value), "an id column is empty")
    return value


def _non_negative(amount: int) -> int:
    _expect(amount >= 0, f"amount {yuan(amount)} has the wrong sign")
    return amount


# -- Alipay -----------------------------------------------------------------------


def _chinese_time(moment: datetime) -> str:
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def _alipay_preamble(bill_date: date) -> list[str]:
    start = datetime.combine(bill_date, time(), CHANNEL_TZ)
    return [
        ALIPAY_TITLE + "\n",
        f"#账号：[{ALIPAY_ACCOUNT}]\n",
        f"#起始日期：[{_chinese_time(start)}]   "
        f"终止日期：[{_chinese_time(start + timedelta(days=1))}]\n",
        ALIPAY_LIST_START + "\n",
    ]


def _alipay_trailer(rows: list[StatementRow], bill_date: date) -> list[str]:
    payments = [row for row in rows if row.kind == "payment"]
    refunds = [row for row in rows if row.kind == "refund"]
    exported = datetime.combine(bill_date + timedelta(days=1), time(9), CHANNEL_TZ)
    paid = yuan(sum(row.amount_fen for row in payments))
    refunded = yuan(-sum(row.amount_fen for row in refunds))
    return [
        ALIPAY_LIST_END + "\n",
        f"#交易合计：{len(payments)}笔，商家实收共计：{paid}元\n",
        f"#退款合计：{len(refunds)}笔，商家实收共计：{refunded}元\n",
        f"#导出时间：[{_chinese_time(exported)}]\n",
    ]


def _write_alipay(rows: list[StatementRow], bill_date: date) -> str:
    lines = [*_alipay_preamble(bill_date), _csv_line(ALIPAY_HEADER)]
    for row in rows:
        refund = row.kind == "refund"
        amount = yuan(-row.amount_fen if refund else row.amount_fen)
        when = _local_time(row.at)
        values = [row.channel_txn_id, row.out_trade_no, "退款" if refund else "交易", ""]
        values += [when, when, "", "", "", "", "", amount, amount]
        values += ["0.00"] * 5 + [""] + ["0.00"] * 2
        values += [row.out_refund_no if refund else ""]
        values += [yuan(row.fee_fen if refund else -row.fee_fen), "0.00", ""]
        lines.append(_csv_line(values))
    lines += _alipay_trailer(rows, bill_date)
    return "".join(lines)


def _parse_alipay(text: str) -> list[StatementRow]:
    lines = text.splitlines()
    _expect(len(lines) >= 9, "an Alipay bill has a preamble, a header and a trailer")
    _expect(lines[0] == ALIPAY_TITLE, "the first line is not the Alipay bill title")
    dates = re.fullmatch(r"#起始日期：\[(\d{4})年(\d{2})月(\d{2})日 00:00:00\].*", lines[2])
    _expect(dates is not None, "the start date line is missing")
    bill_date = date(*(int(part) for part in dates.groups()))
    _expect(lines[4] == _csv_line(ALIPAY_HEADER).rstrip("\n"), "the Alipay header is missing")
    try:
        end = lines.index(ALIPAY_LIST_END)
    except ValueError:
        raise BadStatement("the end-of-list line is missing") from None
    rows = []
    for number, raw in enumerate(_csv_rows(lines[5:end]), start=6):
        _expect(len(raw) == len(ALIPAY_HEADER), f"line {number} has {len(raw)} columns")
        rows.append(_alipay_row(dict(zip(ALIPAY_HEADER, raw, strict=True))))
    for row in rows:
        _expect(local_date(row.at) == bill_date, f"{row.out_trade_no} is not of {bill_date}")
    expected = _write_alipay(rows, bill_date).splitlines()
    _expect(lines == expected, "the bill's preamble or totals disagree with its rows")
    return rows


def _alipay_row(values: dict[str, str]) -> StatementRow:
    kind = values["业务类型"]
    _expect(kind in ("交易", "退款"), f"unknown 业务类型 {kind!r}")
    refund = kind == "退款"
    amount = parse_yuan(values["商家实收（元）"])
    fee = parse_yuan(values["服务费（元）"])
    return StatementRow(
        kind="refund" if refund else "payment",
        out_trade_no=_text(values["商户订单号"]),
        channel_txn_id=_text(values["支付宝交易号"]),
        out_refund_no=_text(values["退款批次号/请求号"]) if refund else None,
        amount_fen=_non_negative(-amount if refund else amount),
        at=_parse_local_time(values["完成时间"]),
        fee_fen=_non_negative(fee if refund else -fee),
    )
