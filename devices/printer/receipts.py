"""Receipts laid out as printable blocks, from the server's order and rental maps (pure).

A :class:`Receipt` is a tuple of blocks: :class:`Line` (one line of text, its
alignment, bold, size), :class:`QrCode` (a payload printed by the printer as a
QR symbol), :class:`Barcode` (CODE128) and :class:`Feed` (blank paper). It says
nothing of bytes: :func:`devices.printer.wire.encode_receipt` turns it into
ESC/POS, and the printer cuts the paper after every receipt.

The builders take the maps the server replies with (docs/protocol.md: the
order map, the rental map) and the ``catalog.list`` reply (for the site's
name, the products' names and the site's time zone), and lay them out for a
``width`` of printer columns: 32 for 58 mm paper (the default), 48 for 80 mm.
A Chinese character takes two columns, a Latin one one. ``lang`` is ``"zh"``
or ``"en"``. Nothing here reads a clock: ``printed_at`` (an aware datetime)
comes in and is shown in the site's time zone.

- :func:`sale_receipt`: a paid order: its lines, the total, the channel
  (and for cash what was handed over and the change), then one QR code per
  ticket, whose payload is the ticket's ``code`` (what the gates scan); a
  refunded ticket is printed as void, without a code.
- :func:`rental_voucher_receipt`: a rental whose deposit is held: its lines,
  the deposit, the prepaid usage, the channel, and the voucher as a QR code.
- :func:`refund_receipt`: one refund of an order (by its ``out_refund_no``).
- :func:`printer_test_receipt`: a page that exercises every block, for
  ``scenic print-test``.

Each raises ``ValueError`` with a one-line reason when the map cannot make
that receipt (an order not paid, a rental with no voucher yet, a refund not
on the order).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import attrs

Align = Literal["left", "center", "right"]
Lang = Literal["zh", "en"]

#: printer columns of 58 mm paper in font A (12 x 24 dots): 384 dots / 12
DEFAULT_WIDTH = 32


@attrs.frozen
class Line:
    """One printed line of text.

    ``size`` 1 is normal, 2 is double width and height (a size-2 line holds
    half as many columns). A text wider than the line is the layout's
    mistake: the printer would wrap it, so builders cut it with :func:`fit`.
    """

    text: str
    align: Align = "left"
    bold: bool = False
    size: int = attrs.field(default=1, validator=attrs.validators.in_((1, 2)))


@attrs.frozen
class QrCode:
    """A QR symbol the printer draws from ``payload`` (UTF-8), ``module`` dots a module."""

    payload: str = attrs.field(validator=attrs.validators.min_len(1))
    module: int = attrs.field(
        default=6, validator=[attrs.validators.ge(1), attrs.validators.le(16)]
    )


@attrs.frozen
class Barcode:
    """A CODE128 barcode of ``data`` (printable ASCII, 1..60), its text printed below."""

    data: str = attrs.field()

    @data.validator
    def _check(self, _attribute: object, value: str) -> None:
        if not 1 <= len(value) <= 60 or not all(" " <= c <= "~" for c in value):
            raise ValueError(f"a barcode holds 1..60 printable ASCII characters, not {value!r}")


@attrs.frozen
class Feed:
    """``lines`` blank lines of paper (1..255)."""

    lines: int = attrs.field(
        default=1, validator=[attrs.validators.ge(1), attrs.validators.le(255)]
    )


Block = Line | QrCode | Barcode | Feed


@attrs.frozen
class Receipt:
    """What one receipt prints, top to bottom; the paper is cut after it.

    ``kind`` is ``"sale"``, ``"rental"``, ``"refund"`` or ``"test"``.
    """

    kind: str
    blocks: tuple[Block, ...] = attrs.field(converter=tuple)
    width: int = DEFAULT_WIDTH

    def lines(self) -> list[str]:
        """The texts of its lines, QR payloads and barcodes, as plain strings (for a screen)."""
        shown = []
        for block in self.blocks:
            if isinstance(block, Line):
                shown.append(block.text)
            elif isinstance(block, QrCode):
                shown.append(f"[QR] {block.payload}")
            elif isinstance(block, Barcode):
                shown.append(f"[||] {block.data}")
            else:
                shown.extend([""] * block.lines)
        return shown


# -- columns -------------------------------------------------------------------------------


def columns_of(text: str) -> int:
    """How many printer columns ``text`` takes: 2 for a wide (Chinese) character, else 1."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def fit(text: str, width: int) -> str:
    """``text`` cut so it takes at most ``width`` columns (never half a wide character)."""
    used, kept = 0, []
    for char in text:
        used += columns_of(char)
        if used > width:
            break
        kept.append(char)
    return "".join(kept)


def spread(left: str, right: str, width: int) -> str:
    """``left`` and ``right`` on one line of ``width`` columns, ``right`` flush right.

    When both do not fit, ``left`` is cut (the amount on the right matters more).
    """
    right = fit(right, width)
    room = width - columns_of(right) - 1
    left = fit(left, max(room, 0))
    gap = width - columns_of(left) - columns_of(right)
    return left + " " * max(gap, 1 if left else 0) + right


def yuan(fen: int, lang: Lang) -> str:
    """An amount in fen as yuan: ``yuan(24000, "zh") == "240.00元"``, ``"CNY 240.00"`` in en."""
    sign = "-" if fen < 0 else ""
    amount = f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
    return f"{amount}元" if lang == "zh" else f"CNY {amount}"


def _plain(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# -- words ---------------------------------------------------------------------------------

_WORDS: dict[str, tuple[str, str]] = {
    "sale": ("购票凭证", "Ticket receipt"),
    "rental": ("租赁凭证", "Rental voucher"),
    "refund": ("退款凭证", "Refund receipt"),
    "test": ("打印测试", "Printer test"),
    "order": ("订单", "Order"),
    "rental_id": ("租赁单", "Rental"),
    "time": ("时间", "Time"),
    "total": ("合计", "Total"),
    "channel": ("支付方式", "Paid by"),
    "tendered": ("实收", "Tendered"),
    "change": ("找零", "Change"),
    "ticket": ("门票", "Ticket"),
    "tickets_note": ("凭二维码入园", "Scan the QR code at the gate"),
    "ticket_void": ("已退票，作废", "Refunded, void"),
    "thanks": ("谢谢惠顾，欢迎再来", "Thank you, come again"),
    "days": ("租期(天)", "Days"),
    "deposit": ("押金", "Deposit"),
    "prepaid": ("预付租金", "Prepaid usage"),
    "due": ("应付", "Paid"),
    "voucher_note": ("取还凭此码，请妥善保管", "Show this code to pick up and return"),
    "refund_no": ("退款单", "Refund"),
    "refund_amount": ("退款金额", "Refunded"),
    "refund_to": ("退回", "Back to"),
    "reason": ("原因", "Reason"),
    "refund_state": ("状态", "State"),
    "refunded_tickets": ("已退门票(已作废)", "Tickets refunded (void)"),
    "refund_pending": ("退款处理中", "Refund requested"),
    "refund_confirmed": ("已退回", "Refunded"),
    "refund_failed": ("退款失败，请找工作人员", "Refund failed, see staff"),
}

_CHANNELS: dict[str, tuple[str, str]] = {
    "wechat": ("微信支付", "WeChat Pay"),
    "alipay": ("支付宝", "Alipay"),
    "cash": ("现金", "Cash"),
    "card": ("银行卡", "Bank card"),
}


def _word(key: str, lang: Lang) -> str:
    zh, en = _WORDS[key]
    return zh if lang == "zh" else en


def channel_name(channel: str, lang: Lang) -> str:
    """A channel's name on paper: ``channel_name("wechat", "zh") == "微信支付"``."""
    zh, en = _CHANNELS.get(channel, (channel, channel))
    return zh if lang == "zh" else en


def _check_lang(lang: str) -> Lang:
    if lang not in ("zh", "en"):
        raise ValueError(f"lang is 'zh' or 'en', not {lang!r}")
    return lang  # type: ignore[return-value]


def _local_time(printed_at: datetime, timezone: str) -> str:
    if printed_at.tzinfo is None:
        raise ValueError("printed_at must be an aware datetime")
    return printed_at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _name(item: Mapping[str, Any], fallback: str, lang: Lang) -> str:
    return str(item.get(f"name_{lang}") or fallback)


def _header(catalog: Mapping[str, Any], kind: str, lang: Lang, width: int) -> list[Block]:
    site = _name(catalog.get("site") or {}, "", lang)
    blocks: list[Block] = []
    if site:
        blocks.append(Line(fit(site, width // 2), "center", bold=True, size=2))
    blocks.append(Line(fit(_word(kind, lang), width), "center", bold=True))
    return blocks


def _rule(width: int) -> Line:
    return Line("-" * width)


def _labelled(key: str, value: str, lang: Lang, width: int, *, bold: bool = False) -> Line:
    return Line(spread(_word(key, lang), value, width), bold=bold)


def _product_names(catalog: Mapping[str, Any], lang: Lang) -> dict[str, str]:
    return {p["product"]: _name(p, p["product"], lang) for p in catalog.get("products", ())}


def _when(date: str, slot: str | None) -> str:
    return f"{date} {slot}" if slot else date


# -- the receipts --------------------------------------------------------------------------


def sale_receipt(
    order: Mapping[str, Any],
    catalog: Mapping[str, Any],
    *,
    printed_at: datetime,
    lang: Lang = "zh",
    cash_tendered_fen: int | None = None,
    width: int = DEFAULT_WIDTH,
) -> Receipt:
    """The receipt of a paid order: lines, total, channel, and a QR code per ticket.

    ``order`` is the order map, ``catalog`` the ``catalog.list`` reply. For a
    cash sale ``cash_tendered_fen`` (what the visitor handed over, at least
    the total) adds the tendered amount and the change. A ticket the desk
    refunded is printed as void, without its QR code. Raises ValueError
    when the order is not paid (no captured payment) or the tender is short.
    """
    lang = _check_lang(lang)
    captured = [p for p in order.get("payments", ()) if p.get("state") == "captured"]
    if order.get("status") != "paid" or not captured:
        raise ValueError(f"order {order.get('order')} is not paid: print its receipt once it is")
    payment = captured[0]
    total = int(order["total_fen"])
    names = _product_names(catalog, lang)
    blocks: list[Block] = _header(catalog, "sale", lang, width)
    blocks += [
        _rule(width),
        _labelled("order", order["order"], lang, width),
        _labelled("time", _local_time(printed_at, catalog["timezone"]), lang, width),
        _rule(width),
    ]
    for line in order["lines"]:
        name = names.get(line["product"], line["product"])
        unit, quantity = int(line["unit_price_fen"]), int(line["quantity"])
        blocks.append(Line(fit(f"{name} {_when(line['date'], line.get('slot'))}", width)))
        blocks.append(
            Line(spread(f"  {quantity} x {_plain(unit)}", _plain(unit * quantity), width))
        )
    blocks += [
        _rule(width),
        _labelled("total", yuan(total, lang), lang, width, bold=True),
        _labelled("channel", channel_name(payment["channel"], lang), lang, width),
    ]
    if cash_tendered_fen is not None:
        if payment["channel"] != "cash":
            raise ValueError("cash_tendered_fen is for a cash payment only")
        if cash_tendered_fen < total:
            raise ValueError(f"{cash_tendered_fen} fen tendered is less than the {total} due")
        blocks += [
            _labelled("tendered", yuan(cash_tendered_fen, lang), lang, width),
            _labelled("change", yuan(cash_tendered_fen - total, lang), lang, width),
        ]
    tickets = list(order.get("tickets", ()))
    if tickets:
        blocks += [_rule(width), Line(fit(_word("tickets_note", lang), width), "center")]
    for n, ticket in enumerate(tickets, 1):
        name = names.get(ticket["product"], ticket["product"])
        blocks += [
            Feed(1),
            Line(fit(f"{_word('ticket', lang)} {n}/{len(tickets)}", width), "center", bold=True),
            Line(fit(f"{name} {_when(ticket['date'], ticket.get('slot'))}", width), "center"),
            # a refunded ticket is void: no code to scan, so nobody tries it at a gate
            Line(fit(_word("ticket_void", lang), width), "center", bold=True)
            if ticket.get("refunded")
            else QrCode(ticket["code"]),
            Line(fit(ticket["ticket"], width), "center"),
        ]
    blocks += _footer(order["order"], lang, width)
    return Receipt("sale", blocks, width)


def rental_voucher_receipt(
    rental: Mapping[str, Any],
    catalog: Mapping[str, Any],
    *,
    printed_at: datetime,
    lang: Lang = "zh",
    width: int = DEFAULT_WIDTH,
) -> Receipt:
    """The voucher of a rental whose deposit is held: items, deposit, prepaid, the voucher's QR.

    ``rental`` is the rental map. The QR payload is the rental's ``voucher``
    (what the desk scans at pickup and return). Raises ValueError when the
    rental has no voucher (its deposit is not held yet).
    """
    lang = _check_lang(lang)
    voucher, hold = rental.get("voucher"), rental.get("hold")
    if not voucher or not hold:
        raise ValueError(
            f"rental {rental.get('rental')} has no voucher yet: print it once the deposit is held"
        )
    blocks: list[Block] = _header(catalog, "rental", lang, width)
    blocks += [
        _rule(width),
        _labelled("rental_id", rental["rental"], lang, width),
        _labelled("time", _local_time(printed_at, catalog["timezone"]), lang, width),
        _rule(width),
    ]
    for line in rental["lines"]:
        blocks.append(Line(fit(f"{_name(line, line['item'], lang)} x{line['quantity']}", width)))
        blocks.append(
            Line(
                spread(
                    f"  {_word('deposit', lang)} {_plain(int(line['deposit_fen']))}",
                    f"{_word('prepaid', lang)} {_plain(int(line['prepaid_fen']))}",
                    width,
                )
            )
        )
    channel = channel_name(hold["channel"], lang)
    if hold.get("route") == "preauth":
        channel += "预授权" if lang == "zh" else " pre-auth"
    blocks += [
        _rule(width),
        _labelled("days", str(rental["days"]), lang, width),
        _labelled("deposit", yuan(int(rental["deposit_fen"]), lang), lang, width),
        _labelled("prepaid", yuan(int(rental["prepaid_fen"]), lang), lang, width),
        _labelled("due", yuan(int(rental["due_now_fen"]), lang), lang, width, bold=True),
        _labelled("channel", channel, lang, width),
        _rule(width),
        Line(fit(_word("voucher_note", lang), width), "center"),
        QrCode(voucher),
        Line(fit(rental["rental"], width), "center"),
    ]
    blocks += _footer(rental["rental"], lang, width)
    return Receipt("rental", blocks, width)


def refund_receipt(
    order: Mapping[str, Any],
    out_refund_no: str,
    catalog: Mapping[str, Any],
    *,
    printed_at: datetime,
    tickets: Sequence[str] = (),
    lang: Lang = "zh",
    width: int = DEFAULT_WIDTH,
) -> Receipt:
    """The receipt of one refund of ``order``: amount, channel, reason, state, the tickets voided.

    ``tickets`` are the ids of the tickets this refund voided (the counter
    knows which it named in ``order.refund``); each must be on the order.
    Raises ValueError when ``out_refund_no`` is not one of the order's refunds.
    """
    lang = _check_lang(lang)
    refund = next(
        (r for r in order.get("refunds", ()) if r["out_refund_no"] == out_refund_no), None
    )
    if refund is None:
        raise ValueError(f"order {order.get('order')} has no refund {out_refund_no}")
    by_id = {t["ticket"]: t for t in order.get("tickets", ())}
    missing = [t for t in tickets if t not in by_id]
    if missing:
        raise ValueError(f"ticket {missing[0]} is not on order {order.get('order')}")
    names = _product_names(catalog, lang)
    state = {"pending": "refund_pending", "confirmed": "refund_confirmed"}.get(
        refund["state"], "refund_failed"
    )
    blocks: list[Block] = _header(catalog, "refund", lang, width)
    blocks += [
        _rule(width),
        _labelled("order", order["order"], lang, width),
        _labelled("refund_no", out_refund_no, lang, width),
        _labelled("time", _local_time(printed_at, catalog["timezone"]), lang, width),
        _rule(width),
    ]
    if tickets:
        blocks.append(Line(fit(_word("refunded_tickets", lang), width)))
    for ticket_id in tickets:
        ticket = by_id[ticket_id]
        name = names.get(ticket["product"], ticket["product"])
        blocks.append(Line(fit(f"  {ticket_id}", width)))
        blocks.append(Line(fit(f"  {name} {_when(ticket['date'], ticket.get('slot'))}", width)))
    blocks += [
        _labelled("refund_amount", yuan(int(refund["amount_fen"]), lang), lang, width, bold=True),
        _labelled("refund_to", channel_name(refund["channel"], lang), lang, width),
        Line(fit(f"{_word('reason', lang)} {refund['reason']}", width)),
        _labelled("refund_state", _word(state, lang), lang, width),
    ]
    blocks += _footer(order["order"], lang, width)
    return Receipt("refund", blocks, width)


def printer_test_receipt(
    *, printed_at: datetime, timezone: str = "Asia/Shanghai", width: int = DEFAULT_WIDTH
) -> Receipt:
    """A page with every kind of block, in both languages, for ``scenic print-test``."""
    blocks: list[Block] = [
        Line(fit("打印测试 Printer test", width // 2), "center", bold=True, size=2),
        Line(fit(_local_time(printed_at, timezone), width), "center"),
        _rule(width),
        Line("left 左对齐"),
        Line("center 居中", "center"),
        Line("right 右对齐", "right"),
        Line("bold 粗体", bold=True),
        Line(fit("double 倍大", width // 2), size=2),
        Line(spread("合计 Total", yuan(12000, "zh"), width)),
        Feed(1),
        QrCode("T-PRINT-TEST"),
        Barcode("PRINT-TEST-01"),
    ]
    return Receipt("test", blocks, width)


#: a CODE128 of a 19-character id is about 244 modules, 488 dots at 2 dots a module:
#: wider than 58 mm paper (384 dots), within 80 mm (576 dots)
BARCODE_MIN_WIDTH = 48


def _footer(number: str, lang: Lang, width: int) -> Iterable[Block]:
    blocks: list[Block] = [_rule(width)]
    if width >= BARCODE_MIN_WIDTH:
        blocks.append(Barcode(number))
    blocks.append(Line(fit(_word("thanks", lang), width), "center"))
    return blocks
