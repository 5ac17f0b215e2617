"""What each kiosk screen shows: plain text from the :class:`~clients.kiosk.flow.Kiosk` state.

Pure: the App puts these strings into its widgets, and tests read them.
Money is shown in yuan with two decimals (24000 fen is ``240.00``).
"""

from __future__ import annotations

import math

import attrs

from clients.kiosk import flow
from clients.kiosk.flow import Kiosk, Screen
from clients.kiosk.qr import qr_lines
from clients.kiosk.texts import notice, word
from clients.tui.link import LinkState
from clients.tui.messages import Language

__all__ = ["Frame", "frame", "status_line", "yuan"]


@attrs.frozen
class Frame:
    """One screen's text: a title, the body, a QR code (lines, may be empty) and the keys."""

    title: str
    body: str
    qr: tuple[str, ...]
    keys: str


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals: ``yuan(24050) == '240.50'``."""
    return f"{fen // 100}.{fen % 100:02d}"


def _name(product: flow.Product, language: Language) -> str:
    return product.name_zh if language == "zh" else product.name_en


def _channel(channel: str, language: Language) -> str:
    return word(channel, language) if channel in ("wechat", "alipay") else channel


def frame(state: Kiosk, site_name: str, now: float, idle_left_s: float | None) -> Frame:
    """The screen for ``state``; ``now`` (epoch seconds) counts down the payment's time.

    ``idle_left_s``: seconds until the idle reset, shown when it is near
    (under 15 s), or None.
    """
    lang = state.language
    body = _BODIES[state.screen](state, lang, now)
    qr: tuple[str, ...] = ()
    if state.screen is Screen.PAY and state.payment is not None and state.payment.qr:
        qr = tuple(qr_lines(state.payment.qr))
    if state.screen is Screen.DONE and state.tickets:
        qr = tuple(qr_lines(state.tickets[state.ticket_index].code))
    extra = []
    if state.busy:
        extra.append(word("please_wait", lang))
    if state.error is not None:
        extra.append(notice(state.error, lang))
        if state.screen is not Screen.START and state.error != "nothing_chosen":
            extra.append(word("retry_key", lang))
    if idle_left_s is not None and idle_left_s < 15:
        extra.append(word("idle_in", lang, s=max(0, math.ceil(idle_left_s))))
    if extra:
        body = body + "\n\n" + "\n".join(extra)
    return Frame(site_name, body, qr, word(f"keys_{state.screen.value}", lang))


def _start(state: Kiosk, lang: Language, now: float) -> str:
    return "\n".join(
        [word("welcome", lang), "", word("press_enter", lang), word("language_key", lang)]
    )


def _places(state: Kiosk, slot: str | None) -> str:
    left = state.places.get((flow.chosen_date(state), slot))
    return "?" if left is None else str(left)


def _choose(state: Kiosk, lang: Language, now: float) -> str:
    date = flow.chosen_date(state) or "-"
    lines = [word("choose_title", lang), ""]
    lines.append(
        f"{word('date', lang)}: < {date} >   "
        f"({word('whole_day', lang)} {word('left', lang)} {_places(state, None)})"
    )
    if state.slots:
        slot = flow.chosen_slot(state)
        lines.append(
            f"{word('slot', lang)}: [{slot}]   ({word('left', lang)} {_places(state, slot)})"
        )
    lines.append("")
    for index, (product, quantity) in enumerate(zip(state.products, state.quantities, strict=True)):
        marker = ">" if index == state.row else " "
        slot_mark = " *" if product.needs_slot else ""
        lines.append(
            f"{marker} {_name(product, lang)}{slot_mark}  {word('each', lang)} "
            f"{yuan(product.price_fen)}   x {quantity}"
        )
    lines.append("")
    lines.append(f"{word('total', lang)}: {yuan(flow.cart_total_fen(state))}")
    return "\n".join(lines)


def _review(state: Kiosk, lang: Language, now: float) -> str:
    lines = [word("review_title", lang), ""]
    for product, quantity in zip(state.products, state.quantities, strict=True):
        if quantity:
            slot = f" {flow.chosen_slot(state)}" if product.needs_slot else ""
            lines.append(
                f"{_name(product, lang)}  {flow.chosen_date(state)}{slot}  "
                f"{yuan(product.price_fen)} x {quantity} = {yuan(product.price_fen * quantity)}"
            )
    lines += ["", f"{word('total', lang)}: {yuan(flow.cart_total_fen(state))}", ""]
    lines.append(f"{word('notes', lang)}:")
    lines.append(f"- {word('date', lang)} {flow.chosen_date(state)}: {word('note_date', lang)}")
    if flow.needs_slot(state):
        lines.append(f"- {word('slot', lang)} {flow.chosen_slot(state)}: {word('note_slot', lang)}")
    lines.append(f"- {word('note_refund', lang)}")
    lines.append(f"- {word('note_expiry', lang)}")
    return "\n".join(lines)


def _pay(state: Kiosk, lang: Language, now: float) -> str:
    lines = [word("pay_title", lang), ""]
    lines.append(f"{word('order_no', lang)}: {state.order}")
    lines.append(f"{word('total', lang)}: {yuan(state.total_fen)}")
    if state.payment is not None:
        lines.append(f"{word('pay_with', lang)}: {_channel(state.payment.channel, lang)}")
        lines.append(f"{word('payment_no', lang)}: {state.payment.out_trade_no}")
    if state.expires_at is not None:
        left = max(0, int(state.expires_at - now))
        lines.append(f"{word('pay_until', lang)}: {left // 60}:{left % 60:02d}")
    lines += ["", word("waiting_payment", lang)]
    return "\n".join(lines)


def _done(state: Kiosk, lang: Language, now: float) -> str:
    lines = [word("done_title", lang), ""]
    lines.append(
        f"{word('order_no', lang)}: {state.order}   {word('total', lang)}: {yuan(state.total_fen)}"
    )
    if state.tickets:
        ticket = state.tickets[state.ticket_index]
        n, of = state.ticket_index + 1, len(state.tickets)
        lines.append(f"{word('ticket_n', lang, n=n, of=of)}: {ticket.ticket}")
        lines.append(word("show_at_gate", lang))
    for refund in state.refunds:
        key = "refund_confirmed" if refund.confirmed else "refund_notice"
        values = {"channel": _channel(refund.channel, lang), "amount": yuan(refund.amount_fen)}
        lines += ["", word("refund_notice", lang, **values)]
        if key == "refund_confirmed":
            lines.append(word(key, lang, **values))
    return "\n".join(lines)


_BODIES = {
    Screen.START: _start,
    Screen.CHOOSE: _choose,
    Screen.REVIEW: _review,
    Screen.PAY: _pay,
    Screen.DONE: _done,
}


def status_line(link: LinkState, language: Language, now_monotonic_left: float | None) -> str:
    """The status bar: the link's state, with the seconds to the next attempt and the retry key.

    ``now_monotonic_left``: seconds left until the next reconnect attempt, or None.
    """
    if link.status == "connected":
        return word("connected", language)
    if link.status == "connecting":
        return word("connecting", language)
    reason = notice(link.code, language) if link.code else (link.reason or "")
    if link.status == "failed":
        return f"{word('failed', language)}: {reason}  {word('retry_key', language)}"
    if now_monotonic_left is None or now_monotonic_left <= 0:
        head = word("reconnecting_now", language)
    else:
        head = word("reconnecting", language, s=math.ceil(now_monotonic_left))
    return f"{head}  {word('retry_key', language)}"
