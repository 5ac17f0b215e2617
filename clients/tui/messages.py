"""What a visitor or a cashier reads when a request is refused: every error code, zh and en.

Each message says what happened and what to do next, in words for people at
a kiosk or a counter, not for the programmer. :data:`ERRORS` holds one for
every error code of docs/protocol.md (its error tables and each op's
*Errors*), the rules' refusals that docs/protocol.md names in prose, and the
two codes the client side adds: ``connection_lost`` (the connection closed
before the reply) and ``no_reply`` (no reply within the request's timeout).
:data:`SCAN_REASONS` does the same for the gates' scan reasons
(docs/gates.md) and :data:`REFUND_REASONS` for a refund's ``reason``.

::

    >>> text(ERRORS, "sold_out", "en")
    'Sold out for that date or time slot. Please choose another.'
    >>> describe_error("no_such_code", "zh")
    '出了点问题（no_such_code）。请联系工作人员。'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs

__all__ = [
    "ERRORS",
    "LANGUAGES",
    "REFUND_REASONS",
    "SCAN_REASONS",
    "Language",
    "Text",
    "describe_error",
    "text",
]

Language = Literal["zh", "en"]
#: the languages every message has, in the order a toggle cycles through them
LANGUAGES: tuple[Language, ...] = ("zh", "en")


@attrs.frozen
class Text:
    """One message in both languages."""

    zh: str
    en: str

    def in_(self, language: Language) -> str:
        """The message in ``language`` (``"zh"`` or ``"en"``)."""
        return self.zh if language == "zh" else self.en


_STAFF = Text("请联系工作人员。", "Please ask a member of staff.")

#: every error code a device can meet, with what to tell the person in front of it
ERRORS: Mapping[str, Text] = {
    # the session and the transport
    "bad_frame": Text(
        "设备发送了无法识别的数据。请联系工作人员。",
        "The device sent data the server could not read. Please ask a member of staff.",
    ),
    "too_large": Text(
        "请求过大。请减少数量后重试。",
        "The request is too large. Please buy fewer items at once and try again.",
    ),
    "bad_statement": Text(
        "对账单格式不对（消息里写明了哪一行），请下载渠道原始账单再试。",
        "The bill file is not in the channel's layout (the message names the line); "
        "download the channel's own bill and try again.",
    ),
    "bad_request": Text(
        "请求内容有误，请检查后重试。",
        "Something in the request is not right. Please check it and try again.",
    ),
    "unknown_op": Text(
        "服务器不支持此操作，设备可能需要更新。请联系工作人员。",
        "The server does not know this action; the device may need an update. "
        "Please ask a member of staff.",
    ),
    "not_authenticated": Text(
        "设备尚未登录，正在重新连接。",
        "The device is not signed in yet; it is reconnecting.",
    ),
    "bad_credentials": Text(
        "设备登录被拒绝（编号或口令错误，或设备已停用）。请联系工作人员。",
        "The server refused this device (wrong id or token, or the device was revoked). "
        "Please ask a member of staff.",
    ),
    "forbidden": Text(
        "此设备无权进行该操作。请到人工窗口办理。",
        "This device may not do that. Please go to a staffed counter.",
    ),
    "overloaded": Text(
        "系统繁忙，请稍后重试。",
        "The system is busy. Please try again in a moment.",
    ),
    "timeout": Text(
        "服务器处理超时，请重试（不会重复扣款）。",
        "The server took too long. Please try again (you will not be charged twice).",
    ),
    "not_found": Text(
        "找不到该记录，请核对号码。",
        "Nothing was found for that number. Please check it.",
    ),
    "internal": Text(
        "服务器出错了。请稍后重试，或联系工作人员。",
        "The server had a problem. Please try again, or ask a member of staff.",
    ),
    # selling
    "sold_out": Text(
        "该日期或时段已售罄，请选择其他日期或时段。",
        "Sold out for that date or time slot. Please choose another.",
    ),
    "order_not_pending": Text(
        "该订单已支付、已过期或已取消，不能再付款。请重新下单。",
        "This order is already paid, expired or cancelled and cannot be paid. "
        "Please start a new order.",
    ),
    "unknown_payment": Text(
        "找不到这笔支付。请联系工作人员。",
        "This payment is not known here. Please ask a member of staff.",
    ),
    "payment_not_confirmed": Text(
        "支付渠道未确认这笔款项，未记录任何付款。请联系工作人员。",
        "The payment channel did not confirm this payment; nothing was recorded. "
        "Please ask a member of staff.",
    ),
    "channel_unavailable": Text(
        "支付渠道暂时无法连接，请稍后重试或换一种支付方式。",
        "The payment channel cannot be reached right now. Please try again or pay another way.",
    ),
    "channel_mismatch": Text(
        "付款渠道与订单不符。请联系工作人员。",
        "The payment came from another channel than expected. Please ask a member of staff.",
    ),
    "ticket_not_refundable": Text(
        "该门票已经退过款了。",
        "This ticket has already been refunded.",
    ),
    "ticket_used": Text(
        "该门票已经入园使用，不能退款。",
        "This ticket has been used at a gate and cannot be refunded.",
    ),
    "bad_signature": Text(
        "支付通知的签名无效，已记录。请联系工作人员。",
        "A payment notice had an invalid signature and was logged. Please ask a member of staff.",
    ),
    "forged": Text(
        "这不是本景区的有效票码。",
        "This is not a valid ticket code of this site.",
    ),
    "no_catalog": Text(
        "暂未开售，请到人工窗口咨询。",
        "Tickets are not on sale yet. Please ask at a staffed counter.",
    ),
    "unknown_refund": Text(
        "找不到这笔退款。请联系工作人员。",
        "This refund is not known here. Please ask a member of staff.",
    ),
    "amount_mismatch": Text(
        "付款金额与订单金额不符，将原路退回。请联系工作人员。",
        "The amount paid does not match the order; it will be refunded. "
        "Please ask a member of staff.",
    ),
    "already_paid": Text(
        "这笔支付已经完成，无需再付。",
        "This payment is already made; there is nothing more to pay.",
    ),
    "closed": Text(
        "该支付已关闭（订单已取消或过期）。请重新下单。",
        "This payment was closed (its order was cancelled or expired). Please start a new order.",
    ),
    "no_simulator": Text(
        "此服务器没有模拟支付。请用手机扫码付款。",
        "This server has no simulated payments. Please scan the code with your phone.",
    ),
    # rentals
    "rental_not_pending": Text(
        "该租赁已付押金、已领取或已结束，或已超过付款时限。",
        "This rental is already paid, picked up or over, or its time to pay has passed.",
    ),
    "not_paid": Text(
        "押金尚未支付，请先付押金再领取。",
        "The deposit is not paid yet. Please pay it before pickup.",
    ),
    "voucher_forged": Text(
        "这不是本景区的有效租赁凭证。",
        "This is not a valid rental voucher of this site.",
    ),
    "voucher_used": Text(
        "该凭证已经领取过装备。",
        "This voucher has already been used for a pickup.",
    ),
    "voucher_foreign": Text(
        "该凭证属于另一笔租赁。",
        "This voucher belongs to another rental.",
    ),
    "rental_closed": Text(
        "该租赁已结束。",
        "This rental is over.",
    ),
    "rental_out": Text(
        "装备已领取，不能取消；请先归还装备。",
        "The items are picked up, so the rental cannot be cancelled; please return them.",
    ),
    "not_out": Text(
        "该租赁的装备尚未领取。",
        "The items of this rental have not been picked up.",
    ),
    "unknown_unit": Text(
        "找不到这个装备标签，请重新扫描。",
        "No item has this label. Please scan it again.",
    ),
    "wrong_item": Text(
        "这件装备不属于本次租赁的品类。",
        "This item is not of a type on this rental.",
    ),
    "unit_out": Text(
        "这件装备已被租出。",
        "This item is already out on a rental.",
    ),
    "unit_unavailable": Text(
        "这件装备在维修中或已丢失，请换一件。",
        "This item is in maintenance or lost. Please take another.",
    ),
    "wrong_count": Text(
        "扫描的装备数量与租赁不符，请核对。",
        "The scanned items do not match the rental's quantities. Please check them.",
    ),
    "unit_not_on_rental": Text(
        "这件装备不属于本次租赁。",
        "This item was not part of this rental.",
    ),
    "already_returned": Text(
        "这件装备已经归还。",
        "This item has already been returned.",
    ),
    "settlement_in_flight": Text(
        "该租赁正在结算退款，请稍后再试。",
        "This rental's refund is on its way. Please try again shortly.",
    ),
    "not_available": Text(
        "该装备暂时没有空闲，请减少数量或稍后再来。",
        "Not enough of this item is free now. Please take fewer or come back later.",
    ),
    "bundle_invalid": Text(
        "所用门票已退款或不是今天的门票。",
        "The ticket given for the bundle is refunded or not for today.",
    ),
    "bundle_mismatch": Text(
        "该门票不含所选装备。",
        "That ticket includes none of the items asked for.",
    ),
    "bundle_used": Text(
        "该门票的套餐已用于另一笔租赁。",
        "That ticket's bundle already covers another rental.",
    ),
    "unknown_freeze": Text(
        "找不到这笔押金冻结。请联系工作人员。",
        "This deposit freeze is not known here. Please ask a member of staff.",
    ),
    "already_authorized": Text(
        "押金已经冻结过了。",
        "The deposit is already frozen.",
    ),
    "not_frozen": Text(
        "该押金不是冻结方式。请联系工作人员。",
        "This deposit is not held by a freeze. Please ask a member of staff.",
    ),
    "freeze_lapsed": Text(
        "押金冻结已过期。请联系工作人员。",
        "The deposit freeze has lapsed. Please ask a member of staff.",
    ),
    "unknown_unfreeze": Text(
        "找不到这笔解冻。请联系工作人员。",
        "This unfreeze is not known here. Please ask a member of staff.",
    ),
    "refund_not_requested": Text(
        "这笔退款尚未申请。请联系工作人员。",
        "This refund was not asked for yet. Please ask a member of staff.",
    ),
    "refund_settled": Text(
        "这笔退款已经完成。",
        "This refund is already completed.",
    ),
    # the client side
    "connection_lost": Text(
        "与服务器的连接中断，正在重新连接，请稍候重试（不会重复下单或扣款）。",
        "The connection to the server dropped; reconnecting. Please retry shortly "
        "(nothing is ordered or charged twice).",
    ),
    "no_reply": Text(
        "服务器没有及时回应，请重试（不会重复下单或扣款）。",
        "The server did not answer in time. Please retry (nothing is ordered or charged twice).",
    ),
}

#: a gate's scan reasons (docs/gates.md), for a desk that shows a ticket's scans
SCAN_REASONS: Mapping[str, Text] = {
    "ok": Text("欢迎光临", "Welcome"),
    "forged": Text("无效票码", "Invalid code"),
    "unknown": Text("查无此票", "Unknown ticket"),
    "not_today": Text("非当日门票", "Not valid today"),
    "wrong_slot": Text("未到入园时段", "Not your time slot"),
    "used_up": Text("门票已用完", "Ticket used up"),
    "refunded": Text("门票已退", "Ticket refunded"),
    "passback": Text("请先出园再入园", "Exit first before entering again"),
    "wrong_gate": Text("请走其他闸机", "Please use another gate"),
    "gate_closed": Text("闸机已关闭", "Gate closed"),
}

#: why a payment was refunded (a refund's ``reason`` and ``payment.refunded``'s)
REFUND_REASONS: Mapping[str, Text] = {
    "already_paid": Text(
        "检测到重复付款：订单已支付，这笔多付的款项将原路退回。",
        "A second payment was detected: the order was already paid, so this one is being "
        "refunded to where it came from.",
    ),
    "order_expired": Text(
        "订单已过期，这笔付款将原路退回。",
        "The order had expired, so this payment is being refunded to where it came from.",
    ),
    "order_cancelled": Text(
        "订单已取消，这笔付款将原路退回。",
        "The order was cancelled, so this payment is being refunded to where it came from.",
    ),
    "amount_mismatch": Text(
        "付款金额与订单不符，这笔付款将原路退回。",
        "The amount paid did not match the order, so it is being refunded to where it came from.",
    ),
}


def text(table: Mapping[str, Text], code: str, language: Language) -> str:
    """The message for ``code`` in ``table`` and ``language``; a staff message if none."""
    found = table.get(code)
    if found is None:
        return _unknown(code).in_(language)
    return found.in_(language)


def describe_error(code: str, language: Language) -> str:
    """The message for error ``code`` (from :data:`ERRORS`), for an unknown code a staff message."""
    return text(ERRORS, code, language)


def _unknown(code: str) -> Text:
    return Text(f"出了点问题（{code}）。{_STAFF.zh}", f"Something went wrong ({code}). {_STAFF.en}")
