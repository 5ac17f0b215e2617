"""What a counter prints: sale receipts with tickets, refund slips, shift reports. Pure.

A receipt is a tuple of :class:`Line` and :class:`Qr` blocks laid out for a
paper :data:`WIDTH` columns wide (a 58 mm roll: 32 columns; a Chinese
character takes two). :func:`sale_receipt`, :func:`refund_slip` and
:func:`shift_slip` make them from the server's replies; :func:`as_text`
renders one as plain text (a receipt printed "to a file"). The ESC/POS
printer (devices/) prints the same blocks: a :class:`Line` as text, a
:class:`Qr` as a QR code.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from clients.counter.money import yuan

#: columns of a 58 mm receipt roll in the printer's standard font
WIDTH = 32

#: how a receipt names each channel, in Chinese and English
CHANNEL_NAMES = {
    "cash": "现金 Cash",
    "card": "银行卡 Card",
    "wechat": "微信支付 WeChat Pay",
    "alipay": "支付宝 Alipay",
}


@attrs.frozen
class Line:
    """One line of text; ``bold`` and ``center`` as the printer does them."""

    text: str
    bold: bool = False
    center: bool = False


@attrs.frozen
class Qr:
    """A QR code holding ``data`` (a ticket's code), with ``caption`` printed under it."""

    data: str
    caption: str = ""


Block = Line | Qr
Receipt = tuple[Block, ...]


def columns(text: str) -> int:
    """How many columns ``text`` takes on the paper: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def two_sides(left: str, right: str, width: int = WIDTH) -> str:
    """``left`` and ``right`` on one line, ``right`` against the right edge.

    When both do not fit, ``left`` is cut (its end marked ``~``) so that the
    right side, an amount, always shows whole.
    """
    room = width - columns(right) - 1
    if columns(left) > room:
        cut = ""
        for ch in left:
            if columns(cut + ch) > room - 1:
                break
            cut += ch
        left = cut + "~"
    return left + " " * (width - columns(left) - columns(right)) + right


def wrapped(line: Line, width: int = WIDTH) -> list[Line]:
    """``line`` cut into lines of at most ``width`` columns (at spaces where it can)."""
    out: list[Line] = []
    rest = line.text
    while columns(rest) > width:
        cut = ""
        for ch in rest:
            if columns(cut + ch) > width:
                break
            cut += ch
        space = cut.rfind(" ")
        if space > 0:
            cut = cut[:space]
        out.append(attrs.evolve(line, text=cut.rstrip()))
        rest = rest[len(cut) :].lstrip()
    out.append(attrs.evolve(line, text=rest))
    return out


def fitted(blocks: Sequence[Block], width: int = WIDTH) -> Receipt:
    """``blocks`` with every line wider than the paper wrapped."""
    out: list[Block] = []
    for block in blocks:
        out.extend(wrapped(block, width) if isinstance(block, Line) else [block])
    return tuple(out)


def rule(width: int = WIDTH) -> Line:
    """A dashed line across the paper."""
    return Line("-" * width)


def local_time(epoch: float, timezone: str) -> str:
    """``epoch`` as ``YYYY-MM-DD HH:MM`` in the site's ``timezone``."""
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _header(site: Mapping[str, str], title: str) -> list[Block]:
    return [
        Line(site["name_zh"], bold=True, center=True),
        Line(site["name_en"], center=True),
        Line(title, bold=True, center=True),
        rule(),
    ]


def sale_receipt(
    order: Mapping[str, Any],
    products: Mapping[str, Mapping[str, Any]],
    site: Mapping[str, str],
    timezone: str,
    channel: str,
    device: str,
    *,
    tendered_fen: int | None = None,
) -> Receipt:
    """The receipt of a paid order: its lines, total, channel, change, and a QR per ticket.

    ``order`` is the order map (``order.get``); ``products`` the catalog's
    products by id. For cash, ``tendered_fen`` is what the visitor handed
    over: the receipt shows it and the change.
    """
    blocks: list[Block] = _header(site, "购票凭证 Sales receipt")
    blocks += [
        Line(f"订单 Order {order['order']}"),
        Line(f"时间 Time {local_time(order['created_at'], timezone)}"),
        Line(f"柜台 Counter {device}"),
        rule(),
    ]
    for line in order["lines"]:
        product = products.get(line["product"], {})
        name = product.get("name_zh", line["product"])
        slot = f" {line['slot']}" if line["slot"] else ""
        amount = line["quantity"] * line["unit_price_fen"]
        blocks.append(Line(f"{name} {line['date']}{slot}"))
        blocks.append(
            Line(two_sides(f"  {line['quantity']} x {yuan(line['unit_price_fen'])}", yuan(amount)))
        )
    blocks += [rule(), Line(two_sides("合计 Total", yuan(order["total_fen"])), bold=True)]
    blocks.append(Line(two_sides("支付 Paid by", CHANNEL_NAMES.get(channel, channel))))
    if tendered_fen is not None:
        blocks.append(Line(two_sides("收款 Tendered", yuan(tendered_fen))))
        blocks.append(Line(two_sides("找零 Change", yuan(tendered_fen - order["total_fen"]))))
    blocks.append(rule())
    for ticket in order["tickets"]:
        product = products.get(ticket["product"], {})
        slot = f" {ticket['slot']}" if ticket["slot"] else ""
        blocks.append(Line(f"{product.get('name_zh', ticket['product'])}", bold=True))
        blocks.append(Line(f"{product.get('name_en', ticket['product'])}"))
        blocks.append(Line(f"入园 Visit {ticket['date']}{slot}"))
        blocks.append(Qr(ticket["code"], ticket["ticket"]))
        blocks.append(rule())
    blocks.append(Line("请妥善保管 Keep tickets safe", center=True))
    return fitted(blocks)


def refund_slip(
    order: Mapping[str, Any],
    refund: Mapping[str, Any],
    site: Mapping[str, str],
    timezone: str,
    device: str,
) -> Receipt:
    """The slip of a refund the counter made: which tickets, how much, by which channel, why."""
    refunded = [t for t in order["tickets"] if t["refunded"]]
    blocks: list[Block] = _header(site, "退款凭证 Refund slip")
    blocks += [
        Line(f"订单 Order {order['order']}"),
        Line(f"退款 Refund {refund['out_refund_no']}"),
        Line(f"柜台 Counter {device}"),
        rule(),
    ]
    blocks += [Line(f"作废 Void {t['ticket']}") for t in refunded]
    blocks += [
        rule(),
        Line(two_sides("退款 Refunded", yuan(refund["amount_fen"])), bold=True),
        Line(two_sides("退回 Back by", CHANNEL_NAMES.get(refund["channel"], refund["channel"]))),
        Line(f"原因 Reason {refund['reason']}"),
    ]
    return fitted(blocks)


def shift_slip(report: Mapping[str, Any], site: Mapping[str, str], timezone: str) -> Receipt:
    """The shift report on paper: sold, duplicates and refunds by channel; the drawer's cash."""
    blocks: list[Block] = _header(site, "交班报表 Shift report")
    blocks += [
        Line(f"柜台 Counter {report['device']}"),
        Line(f"从 From {local_time(report['from'], timezone)}"),
        Line(f"到 To   {local_time(report['to'], timezone)}"),
        rule(),
    ]
    sales = report["sales"]
    blocks.append(Line(f"售出 Sold {sales['orders']} 单 orders, {sales['tickets']} 张 tickets"))
    blocks += _by_channel(sales["by_channel"])
    blocks.append(Line(two_sides("  合计 Total", yuan(sales["amount_fen"])), bold=True))
    duplicates = report["duplicates"]
    blocks.append(Line(f"重复付款 Duplicates {duplicates['count']}"))
    blocks += _by_channel(duplicates["by_channel"])
    refunds = report["refunds"]
    blocks.append(Line(f"退款 Refunds {refunds['count']}"))
    blocks += _by_channel(refunds["by_channel"])
    blocks.append(Line(two_sides("  合计 Total", yuan(refunds["amount_fen"])), bold=True))
    cash = report["cash"]
    blocks += [
        rule(),
        Line(two_sides("备用金 Float", yuan(cash["float_fen"]))),
        Line(two_sides("+ 现金收入 Cash taken", yuan(cash["taken_fen"]))),
        Line(two_sides("- 现金退款 Cash back", yuan(cash["refunded_fen"]))),
        Line(two_sides("= 钱箱 In drawer", yuan(cash["in_drawer_fen"])), bold=True),
    ]
    return fitted(blocks)


def _by_channel(rows: Sequence[Mapping[str, Any]]) -> list[Block]:
    return [
        Line(two_sides(f"  {CHANNEL_NAMES[r['channel']]} x{r['count']}", yuan(r["amount_fen"])))
        for r in rows
        if r["count"]
    ]


def as_text(receipt: Receipt, width: int = WIDTH) -> str:
    """``receipt`` as plain text: centred lines centred, a QR code as ``[QR] data``."""
    out = []
    for block in receipt:
        if isinstance(block, Qr):
            out.append(f"[QR] {block.data}")
            if block.caption:
                out.append(block.caption.center(width).rstrip())
        elif block.center:
            pad = max(0, (width - columns(block.text)) // 2)
            out.append(" " * pad + block.text)
        else:
            out.append(block.text)
    return "\n".join(out) + "\n"
