"""Daily bills in the channels' own layouts: write them, and read them back.

A merchant reconciles its books against the bill each channel publishes for
each business day (its local date, Asia/Shanghai). The simulator writes bills
in the real layouts and the reader takes real files:

- **WeChat Pay** (``wechat``): the trade bill of type ``ALL``
  (:mod:`server.channels.statement_wechat`): UTF-8 text, every value
  prefixed by a backtick, a summary header and line at the end.
- **Alipay** (``alipay``): the trade bill (业务明细,
  :mod:`server.channels.statement_alipay`): a zip holding a GBK CSV with
  ``#`` preamble lines, the rows between the 业务明细列表 markers with each
  cell ending in a tab, refunds as negative rows, the 交易合计 / 退款合计
  footer lines.

A bill is bytes: the file as the channel serves it. Amounts are integer fen,
converted from yuan with two decimals exactly. The channels keep a 0.60% fee
(:func:`fee_fen`, half-up to the fen) and give the fee of a refunded amount
back. :func:`parse_statement` reads back exactly what :func:`write_statement`
wrote (and the real files) and refuses anything else with ``bad_statement``,
its message naming the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from server.channels import statement_alipay, statement_wechat
from server.channels.statement_common import (
    CHANNEL_TZ,
    FEE_PER_MILLE,
    FEE_RATE_BP,
    BadStatement,
    StatementRow,
    fee_fen,
    local_date,
    parse_yuan,
    yuan,
)

__all__ = [
    "ALIPAY_LIST_END",
    "BILL_CHANNELS",
    "CHANNEL_TZ",
    "FEE_PER_MILLE",
    "FEE_RATE_BP",
    "BadStatement",
    "StatementRow",
    "fee_fen",
    "local_date",
    "parse_statement",
    "parse_yuan",
    "write_statement",
    "yuan",
]

ALIPAY_LIST_END = statement_alipay.LIST_END
#: the channels that publish a daily bill
BILL_CHANNELS = ("wechat", "alipay")
_LAYOUTS = {"wechat": statement_wechat, "alipay": statement_alipay}


def write_statement(channel: str, rows: Iterable[StatementRow], bill_date: date) -> bytes:
    """The ``channel``'s bill for ``bill_date`` holding ``rows`` in their order, as bytes.

    Raises ``ValueError`` for an unknown channel, a row whose local date is not
    ``bill_date``, a naive ``at`` or one with a part of a second, a negative
    amount, an id the channels refuse, a WeChat row without ``rate_bp``, or an
    Alipay row with a ``refund_id`` or ``rate_bp``.
    """
    layout = _LAYOUTS.get(channel)
    if layout is None:
        raise ValueError(f"no bill layout for channel {channel!r}")
    return layout.write(list(rows), bill_date)


def parse_statement(channel: str, data: bytes) -> list[StatementRow]:
    """The rows of a ``channel`` bill (the file's bytes), in the file's order.

    Raises :class:`BadStatement` (``bad_statement``) naming the line when the
    bytes are not such a bill: wrong header or markers, a row of the wrong
    width, an amount, fee or time that does not parse, or a total that
    disagrees with the rows.
    """
    layout = _LAYOUTS.get(channel)
    if layout is None:
        raise BadStatement(f"no bill layout for channel {channel!r}")
    if isinstance(data, str):
        raise TypeError("a bill is the file's bytes, not text")
    return layout.parse(data)
