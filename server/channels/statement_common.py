"""What both channels' bills share: the row, exact yuan, the channel's day, the refusal.

Pure: no I/O, no clock. :mod:`server.channels.statement_wechat` and
:mod:`server.channels.statement_alipay` write and read the two layouts;
:mod:`server.channels.statement` is the one entry point callers use.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import attrs

from server.errors import ScenicError

#: the channels' business time zone; a bill covers one local date
CHANNEL_TZ = ZoneInfo("Asia/Shanghai")
#: the channels' fee in basis points (hundredths of a percent): 60 = 0.60%
FEE_RATE_BP = 60
#: kept for callers that speak in parts per thousand
FEE_PER_MILLE = FEE_RATE_BP // 10

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
KINDS = ("payment", "refund")
#: the characters the channels allow in merchant order and refund numbers
ID = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
_AMOUNT = re.compile(r"-?\d+\.\d{2}")
_FEE = re.compile(r"(-?\d+\.\d{2})(\d{0,3})")


class BadStatement(ScenicError):
    """The bytes are not a bill in the channel's layout; the message names the line."""

    code = "bad_statement"


@attrs.frozen
class StatementRow:
    """One line of a bill: a payment, or a refund of one.

    ``amount_fen`` and ``fee_fen`` are positive for both kinds (a refund's fee
    is the fee the channel gives back). ``at`` is when the payment was paid or
    the refund succeeded, an aware UTC datetime (bills keep whole seconds).
    ``refund_id`` is the channel's refund number, which only WeChat bills
    carry. ``rate_bp`` is the fee rate the bill states for the row, in basis
    points (WeChat's 费率 column; Alipay bills state none: ``None``).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    out_trade_no: str
    channel_txn_id: str
    out_refund_no: str | None
    amount_fen: int
    at: datetime
    fee_fen: int
    refund_id: str | None = None
    rate_bp: int | None = None


def column_names(text: str) -> list[str]:
    """The names of a header line, in order."""
    return text.split(",")


def fee_fen(amount_fen: int, rate_bp: int = FEE_RATE_BP) -> int:
    """The channel's fee on ``amount_fen`` at ``rate_bp`` basis points, half-up to the fen."""
    return (amount_fen * rate_bp + 5000) // 10000


def local_date(moment: datetime) -> date:
    """The channel's business date of ``moment`` (a timezone-aware datetime)."""
    return moment.astimezone(CHANNEL_TZ).date()


def yuan(amount_fen: int) -> str:
    """``amount_fen`` as yuan with two decimals, exactly (``-1234`` -> ``-12.34``)."""
    sign = "-" if amount_fen < 0 else ""
    whole, cents = divmod(abs(amount_fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def fee_yuan(amount_fen: int) -> str:
    """A fee as WeChat writes it: yuan with five decimals (``77`` -> ``0.77000``)."""
    return yuan(amount_fen) + "000"


def parse_yuan(text: str) -> int:
    """Fen from ``12.34``-style yuan text; ``ValueError`` for anything else."""
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f"{text!r} is not an amount in yuan with two decimals")
    sign = -1 if text.startswith("-") else 1
    whole, cents = text.lstrip("-").split(".")
    return sign * (int(whole) * 100 + int(cents))


def parse_fee_yuan(text: str) -> int:
    """Fen from a fee of two to five decimals (``0.77000``); ``ValueError`` for a part of a fen."""
    match = _FEE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a fee in yuan")
    if match.group(2).strip("0"):
        raise ValueError(f"fee {text} is not a whole number of fen")
    return parse_yuan(match.group(1))


def rate_text(rate_bp: int) -> str:
    """A rate as the bill writes it: ``60`` -> ``0.60%``."""
    return f"{rate_bp // 100}.{rate_bp % 100:02d}%"


def parse_rate(text: str) -> int:
    """Basis points from ``0.60%``; ``ValueError`` for anything else."""
    if not re.fullmatch(r"\d+\.\d{2}%", text):
        raise ValueError(f"{text!r} is not a rate like 0.60%")
    whole, part = text[:-1].split(".")
    return int(whole) * 100 + int(part)


def local_time(moment: datetime) -> str:
    """``moment`` in the channel's local time, to the second."""
    return moment.astimezone(CHANNEL_TZ).strftime(TIME_FORMAT)


def parse_local_time(text: str) -> datetime:
    """The UTC instant of a local ``YYYY-MM-DD HH:MM:SS``; ``ValueError`` otherwise."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHANNEL_TZ).astimezone(UTC)


def check_row(row: StatementRow, bill_date: date) -> None:
    """Raise ``ValueError`` unless ``row`` can be written on the bill of ``bill_date``."""
    if row.at.tzinfo is None:
        raise ValueError(f"the time of {row.out_trade_no} has no time zone")
    if row.at.microsecond:
        raise ValueError(f"the time of {row.out_trade_no} has a part of a second")
    if local_date(row.at) != bill_date:
        raise ValueError(f"{row.kind} {row.out_trade_no} is not of the bill date {bill_date}")
    if row.amount_fen < 0 or row.fee_fen < 0:
        raise ValueError(f"{row.kind} {row.out_trade_no} has a negative amount or fee")
    if (row.kind == "refund") != (row.out_refund_no is not None):
        raise ValueError(f"{row.kind} {row.out_trade_no}: out_refund_no only on refunds")
    if row.kind == "payment" and row.refund_id is not None:
        raise ValueError("a payment row has no refund id")
    for value in (row.out_trade_no, row.channel_txn_id, row.out_refund_no, row.refund_id):
        if value is not None and not ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an id the channels accept")


def refuse(where: str, message: str) -> BadStatement:
    """The refusal of a bill at ``where`` (such as ``line 7``)."""
    return BadStatement(f"{where}: {message}")
