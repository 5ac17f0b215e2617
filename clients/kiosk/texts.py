"""The kiosk's words, in Chinese and English (docs/kiosk.md lists them by screen).

Error codes are worded by :mod:`clients.tui.messages`; this module has the
screens' own words and the flow's notices (``nothing_chosen``,
``order_expired``, ``order_cancelled``, ``gave_up_waiting``).
"""

from __future__ import annotations

from collections.abc import Mapping

from clients.tui.messages import ERRORS, Language, Text, describe_error

__all__ = ["NOTICES", "WORDS", "notice", "word"]

WORDS: Mapping[str, Text] = {
    "welcome": Text("欢迎！自助购票", "Welcome! Buy your tickets here"),
    "press_enter": Text("按 回车键 开始购票", "Press Enter to start"),
    "language_key": Text("L 键：English", "L: 中文"),
    "choose_title": Text("选择门票", "Choose your tickets"),
    "date": Text("游玩日期", "Visit date"),
    "slot": Text("入园时段", "Entry time"),
    "left": Text("余票", "left"),
    "whole_day": Text("全天", "whole day"),
    "each": Text("单价", "each"),
    "total": Text("合计", "Total"),
    "review_title": Text("请确认订单", "Please check your order"),
    "notes": Text("须知", "Notes"),
    "note_date": Text("门票仅限所选日期使用。", "Tickets are valid on the chosen date only."),
    "note_slot": Text(
        "分时票请在所选时段入园（可提前30分钟）。",
        "Timed tickets enter in their time slot (from 30 minutes before it).",
    ),
    "note_refund": Text(
        "未使用的门票可到服务台退款；已入园使用的门票不退。",
        "Unused tickets can be refunded at the service desk; tickets used at a gate "
        "are not refundable.",
    ),
    "note_expiry": Text(
        "请在15分钟内付款，逾时订单自动取消。", "Pay within 15 minutes or the order lapses."
    ),
    "pay_title": Text("请扫码付款", "Scan to pay"),
    "pay_with": Text("支付方式", "Paying with"),
    "wechat": Text("微信支付", "WeChat Pay"),
    "alipay": Text("支付宝", "Alipay"),
    "order_no": Text("订单号", "Order"),
    "payment_no": Text("支付单号", "Payment no."),
    "waiting_payment": Text("等待付款…", "Waiting for your payment…"),
    "pay_until": Text("付款剩余时间", "Time left to pay"),
    "done_title": Text("付款成功！这是您的门票", "Paid! Here are your tickets"),
    "ticket_n": Text("第 {n} 张，共 {of} 张", "Ticket {n} of {of}"),
    "show_at_gate": Text("入园时请在闸机扫描此二维码。", "Scan this QR code at the gate."),
    "refund_notice": Text(
        "检测到重复付款：{channel} {amount} 元正在原路退回。",
        "A second payment was detected: {amount} yuan by {channel} is being refunded.",
    ),
    "refund_confirmed": Text(
        "{channel} 已确认退款 {amount} 元。",
        "{channel} confirmed the refund of {amount} yuan.",
    ),
    "please_wait": Text("请稍候…", "Please wait…"),
    "retry_key": Text("R 键：重试", "R: retry"),
    "connected": Text("已连接", "Connected"),
    "connecting": Text("正在连接服务器…", "Connecting to the server…"),
    "reconnecting": Text("连接中断，{s} 秒后重连", "Connection lost; retrying in {s} s"),
    "reconnecting_now": Text("正在重新连接…", "Reconnecting…"),
    "failed": Text("无法连接", "Cannot connect"),
    "idle_in": Text("{s} 秒无操作将返回首页", "Back to start in {s} s without a key press"),
    "keys_start": Text("回车 开始 · L 语言", "Enter start · L language"),
    "keys_choose": Text(
        "↑↓ 选择 · ←→ 或 +− 数量 · D/Shift+D 日期 · T 时段 · 回车 下一步 · Esc 返回",
        "↑↓ select · ←→ or +− quantity · D/Shift+D date · T time · Enter next · Esc back",
    ),
    "keys_review": Text("回车 确认并付款 · Esc 修改", "Enter confirm and pay · Esc change"),
    "keys_pay": Text(
        "W 微信支付 · A 支付宝 · Esc 取消订单", "W WeChat Pay · A Alipay · Esc cancel the order"
    ),
    "keys_done": Text("←→ 切换门票 · 回车 完成", "←→ other ticket · Enter done"),
}

NOTICES: Mapping[str, Text] = {
    "nothing_chosen": Text("请至少选择一张门票。", "Please choose at least one ticket."),
    "order_expired": Text(
        "订单已超时未付款，已自动取消。请重新购票。",
        "The order was not paid in time and has lapsed. Please start again.",
    ),
    "order_cancelled": Text("订单已取消。", "The order was cancelled."),
    "gave_up_waiting": Text(
        "长时间未付款，订单已取消；之后收到的付款会原路退回。",
        "No payment arrived in time, so the order was cancelled; a payment made after this "
        "is refunded.",
    ),
}


def word(key: str, language: Language, **values: object) -> str:
    """The screen word ``key`` in ``language``, with ``{values}`` filled in."""
    return WORDS[key].in_(language).format(**values)


def notice(code: str, language: Language) -> str:
    """The words for a notice or an error ``code`` on screen."""
    if code in NOTICES:
        return NOTICES[code].in_(language)
    if code in ERRORS:
        return ERRORS[code].in_(language)
    return describe_error(code, language)
