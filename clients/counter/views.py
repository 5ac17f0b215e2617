"""What the counter's screens say, made from the server's replies. Pure: text with markup.

Each function returns the text one widget shows (textual's ``[b]...[/]``
markup; server text is escaped so a ``[`` in it is never read as markup).
"""

from __future__ import annotations

from typing import Any

import segno
from rich.markup import escape

from clients.counter.money import change_in_notes, yuan
from clients.counter.receipt import CHANNEL_NAMES
from clients.desk import render_lookup
from clients.tui.messages import describe_error
from server.errors import ScenicError


def both(zh: str, en: str) -> str:
    """A message in both languages, Chinese first."""
    return f"{zh}\n{en}"


def error_text(exc: ScenicError) -> str:
    """A refusal as the cashier reads it: both languages, the code, and what to press."""
    retry = exc.code in ("no_reply", "connection_lost", "timeout", "overloaded")
    hint = both("按 Enter 重试（不会重复收款）", "press Enter to retry (it will not charge twice)")
    return (
        f"[b red]{describe_error(exc.code, 'zh')}\n{describe_error(exc.code, 'en')}[/]"
        f"  ({exc.code})" + (f"\n{hint}" if retry else "")
    )


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with half blocks, for the screen."""
    matrix = [[0] * 2 + list(row) + [0] * 2 for row in segno.make(data, error="m").matrix]
    blank = [0] * len(matrix[0])
    rows = [blank, blank, *matrix, blank, blank, blank]
    chars = {(1, 1): " ", (0, 0): "█", (0, 1): "▀", (1, 0): "▄"}
    return "\n".join(
        "".join(chars[(top, bottom)] for top, bottom in zip(rows[i], rows[i + 1], strict=True))
        for i in range(0, len(rows) - 1, 2)
    )


def sale_summary(
    lines: list[dict[str, Any]], channel: str, total_fen: int, tendered_fen: int | None
) -> str:
    """The confirmation of a sale: total, channel, lines, and for cash the change and its notes."""
    summary = [
        f"[b]合计 Total {yuan(total_fen)}[/]  · {CHANNEL_NAMES[channel]}",
        *(
            f"  {line['product']} x{line['quantity']}  {line['date']} {line.get('slot') or ''}"
            for line in lines
        ),
    ]
    if tendered_fen is not None:
        change = tendered_fen - total_fen
        notes = ", ".join(f"{yuan(n)} x{c}" for n, c in change_in_notes(change - change % 10))
        summary.append(
            f"[b]收款 Tendered {yuan(tendered_fen)}  找零 Change {yuan(change)}[/]"
            + (f"  ({notes})" if notes else "")
        )
    summary.append("按 Enter 确认收款，Esc 返回 · Enter to collect, Esc to go back")
    return "\n".join(summary)


def lookup_text(reply: dict[str, Any], timezone: str) -> str:
    """A ``desk.lookup`` reply: the visitor's three answers first, then the whole story."""
    answers = reply["answers"]
    times = answers["collections"]
    head = [
        f"[b]扣款了吗 Charged? {'是 yes' if answers['charged'] else '否 no'}[/]",
        f"[b]扣了几次 How many times? {times} · {yuan(answers['collected_fen'])}[/]",
        f"[b]退回多少 What comes back? {yuan(answers['refunded_fen'])} confirmed; "
        f"{len(answers['comes_back'])} refund(s)[/]",
    ]
    if times > 1:
        head.append(
            "[yellow]检测到重复付款，多付的款项已原路退回\n"
            "a second payment was taken and is refunded[/]"
        )
    return "\n".join([*head, "", *(escape(line) for line in render_lookup(reply, timezone))])


def ticket_state(ticket: dict[str, Any]) -> str:
    """``未用 unused``, ``已用 used`` or ``已退 refunded``."""
    if ticket["refunded"]:
        return "已退 refunded"
    return "已用 used" if ticket["entries_used"] else "未用 unused"


def ticket_rows(order: dict[str, Any]) -> str:
    """An order and its tickets, each with whether it may still be refunded."""
    rows = [f"{t['ticket']} {t['product']} {t['date']} {ticket_state(t)}" for t in order["tickets"]]
    return f"{order['order']} ({order['status']})\n" + "\n".join(rows)


def refund_amount(order: dict[str, Any], tickets: list[str]) -> int:
    """What refunding ``tickets`` of ``order`` gives back: the sum of their prices."""
    unit = {(line["product"], line["date"]): line["unit_price_fen"] for line in order["lines"]}
    by_id = {t["ticket"]: t for t in order["tickets"]}
    return sum(unit.get((by_id[t]["product"], by_id[t]["date"]), 0) for t in tickets if t in by_id)


def settlement_text(rental: dict[str, Any]) -> str:
    """A settled rental: each unit's charges, the deposit paid, kept, released, and any owed."""
    settlement = rental["settlement"]
    charges = "\n".join(
        f"  {c['item']} {c['unit']}: usage {yuan(0 if c['covered'] else c['usage_fen'])}"
        f" late {yuan(c['late_fen'])} damage {yuan(c['damage_fen'])} lost {yuan(c['lost_fen'])}"
        for c in rental["charges"]
    )
    owed = (
        f" · 需补 owed {yuan(settlement['compensation_fen'])} ({settlement['compensation_order']})"
        if settlement["compensation_fen"]
        else ""
    )
    return (
        f"[b green]已结算 Settled {rental['rental']}[/]\n{charges}\n"
        f"押金 paid {yuan(settlement['paid_fen'])} · 扣除 kept {yuan(settlement['kept_fen'])}"
        f" · 退回 released {yuan(settlement['released_fen'])}{owed}"
    )
