"""What a cashier types, read into protocol arguments. Pure: no screen, no network.

Each reader raises :class:`EntryError` with a Chinese and an English line
saying what is wrong and what to type instead.

- :func:`read_lines` ``"adult 2, child"`` -> ticket lines;
- :func:`read_payment` ``"cash 200"``, ``"card"``, ``"wechat"``, ``"alipay"``;
- :func:`lookup_arg` a number the visitor shows -> the ``desk.lookup`` arg it is;
- :func:`read_returns` ``"880101001 ok, 880103001 damaged"`` -> ``rental.return``'s returns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from clients.counter.money import parse_yuan

#: what a cashier may type for each channel
CHANNEL_WORDS = {
    "cash": "cash",
    "现金": "cash",
    "card": "card",
    "银行卡": "card",
    "wechat": "wechat",
    "微信": "wechat",
    "alipay": "alipay",
    "支付宝": "alipay",
}
CONDITIONS = ("ok", "damaged", "lost")


class EntryError(ValueError):
    """What the cashier typed cannot be read; ``zh`` and ``en`` say what to type."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en


@attrs.frozen
class Payment:
    """How the visitor pays: a channel and, for cash, what they handed over."""

    channel: str
    tendered_fen: int | None = None


def _parts(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,，;；]", text) if part.strip()]


def read_lines(
    text: str, products: Mapping[str, Mapping[str, Any]], visit_date: str, slot: str | None
) -> list[dict[str, Any]]:
    """Ticket lines for ``order.create`` from ``"adult 2, child"`` (a quantity defaults to 1).

    A product that needs a slot gets ``slot``; one that does not gets none.
    Raises :class:`EntryError` for an unknown product, a bad quantity, a
    product named twice, a slot missing, or nothing typed.
    """
    lines: list[dict[str, Any]] = []
    for part in _parts(text):
        words = part.split()
        product = words[0]
        if product not in products:
            known = ", ".join(products)
            raise EntryError(
                f"没有票种 {product}；可选：{known}", f"no product {product}; one of {known}"
            )
        if len(words) > 2 or (len(words) == 2 and not re.fullmatch(r"[1-9]\d{0,2}", words[1])):
            raise EntryError(
                f"{part}：数量应为 1 到 200 的整数",
                f"{part}: the quantity is a whole number 1..200",
            )
        quantity = int(words[1]) if len(words) == 2 else 1
        if quantity > 200:
            raise EntryError(f"{part}：一次最多 200 张", f"{part}: at most 200 tickets at once")
        if any(line["product"] == product for line in lines):
            raise EntryError(f"{product} 写了两次", f"{product} is named twice")
        line = {"product": product, "quantity": quantity, "date": visit_date}
        if products[product].get("needs_slot"):
            if not slot:
                raise EntryError(
                    f"{product} 需要选择时段（AM 或 PM）", f"{product} needs a time slot (AM or PM)"
                )
            line["slot"] = slot
        lines.append(line)
    if not lines:
        raise EntryError(
            "请输入票种和数量，如 adult 2, child", "type products, like: adult 2, child"
        )
    return lines


def total_of(lines: list[dict[str, Any]], products: Mapping[str, Mapping[str, Any]]) -> int:
    """What ``lines`` cost at the catalog's prices, in fen."""
    return sum(products[line["product"]]["price_fen"] * line["quantity"] for line in lines)


def read_payment(text: str) -> Payment:
    """``cash 200`` (what the visitor handed over, in yuan), ``card``, ``wechat`` or ``alipay``."""
    words = text.split()
    channel = CHANNEL_WORDS.get(words[0].lower()) if words else None
    if channel is None:
        raise EntryError(
            "付款方式：cash 金额 / card / wechat / alipay",
            "pay by: cash AMOUNT / card / wechat / alipay",
        )
    if channel != "cash":
        if len(words) != 1:
            raise EntryError(f"{channel} 后面不用写金额", f"no amount after {channel}")
        return Payment(channel)
    if len(words) != 2:
        raise EntryError(
            "现金请写收到的金额，如 cash 200", "for cash type what was handed over: cash 200"
        )
    try:
        return Payment("cash", parse_yuan(words[1]))
    except ValueError:
        raise EntryError(
            f"{words[1]} 不是金额（如 200 或 200.50）", f"{words[1]} is not an amount"
        ) from None


_LOOKUP_PATTERNS = (
    ("ticket", re.compile(r"T\w+\.\w+\.\S+")),
    ("voucher", re.compile(r"H\w+\.\w+\.\S+")),
    ("order", re.compile(r"O[0-9A-Z]{8,39}")),
    ("out_trade_no", re.compile(r"P[0-9A-Z]{8,63}")),
    ("out_refund_no", re.compile(r"R[0-9A-Z]{8,63}")),
    ("ticket_id", re.compile(r"T[0-9A-Z]{8,39}")),
    ("rental", re.compile(r"H[0-9A-Z]{8,39}")),
)


def lookup_arg(text: str) -> tuple[str, str]:
    """The ``desk.lookup`` arg a number is, by its shape: ``("order", "O2026...")``.

    Our numbers start with a letter (O order, P payment, R refund, T ticket,
    H rental; a ticket code or voucher has dots); anything else is taken as
    a channel's transaction id (what the visitor's payment app shows). A
    ``KIND:`` prefix (``out_order_no:...``) names the kind outright.
    """
    text = text.strip()
    if not text:
        raise EntryError("请输入或扫描号码", "type or scan a number")
    kind, sep, rest = text.partition(":")
    if sep and kind in {
        "order",
        "out_trade_no",
        "channel_txn_id",
        "out_refund_no",
        "ticket",
        "ticket_id",
        "voucher",
        "rental",
        "out_order_no",
    }:
        return kind, rest.strip()
    for kind, pattern in _LOOKUP_PATTERNS:
        if pattern.fullmatch(text):
            return kind, text
    return "channel_txn_id", text


def read_returns(text: str) -> list[dict[str, str]]:
    """``rental.return``'s returns from ``"880101001 ok, 880103001 damaged"`` (ok by default)."""
    returns = []
    for part in _parts(text):
        words = part.split()
        condition = words[1] if len(words) > 1 else "ok"
        if len(words) > 2 or condition not in CONDITIONS:
            raise EntryError(
                f"{part}：写成 标签 ok/damaged/lost", f"{part}: type LABEL ok, damaged or lost"
            )
        returns.append({"label": words[0], "condition": condition})
    if not returns:
        raise EntryError("请扫描归还物品的标签", "scan the labels of what comes back")
    return returns


def read_labels(text: str) -> list[str]:
    """The labels scanned, separated by spaces or commas."""
    labels = [label for label in re.split(r"[\s,，]+", text) if label]
    if not labels:
        raise EntryError("请扫描物品标签", "scan the units' labels")
    return labels
