"""When a refund's money reaches the visitor, as the channels say it does.

What the channels publish (kept here so the desk says the same every time):

- **WeChat Pay** (APIv3 *查询单笔退款*, pay.weixin.qq.com/wiki/doc/apiv3/apis/
  chapter4_2_10.shtml, updated 2022-08-29): "一般来说零钱支付的退款5分钟内到账,
  银行卡支付的退款1-3个工作日到账" - a refund of a payment made from WeChat
  change arrives within 5 minutes, one paid by bank card within 1 to 3
  business days. Both count from the refund's success at the channel.
- **Alipay** (alipay.trade.refund FAQ, opendocs.alipay.com): paid from the
  Alipay balance (and the like), the money is back as soon as the refund
  succeeds; paid by bank card, it arrives when the bank books it, which
  Alipay estimates per refund (``est_bank_receipt_time``) and publishes no
  fixed figure for.
- **cash**: handed back at the counter when the refund is confirmed.
- **card** (a card terminal's reversal): the card issuer's own time; no figure.

The server does not know what the visitor paid *from* (change or bank card),
so it gives both bounds: ``earliest_at`` (the fastest route) and
``latest_at`` (the slowest route with a published figure, ``None`` when
there is none). Business days are Monday to Friday at the site; public
holidays are not known to the server and are not skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: what the desk says of a refund, by channel, once the channel confirmed it
ARRIVAL_NOTES = {
    "wechat": "to WeChat change within 5 minutes; to a bank card within 1-3 business days",
    "alipay": "to the Alipay balance at once; to a bank card when the bank books it",
    "cash": "handed back in cash at the counter",
    "card": "back on the card when the card issuer books the reversal",
}
PENDING_NOTE = "not confirmed by the channel yet; the money leaves when it is"
FAILED_NOTE = "the channel refused this refund; the money is still owed: refund it another way"

#: WeChat Pay's change route: within 5 minutes of the refund's success
WECHAT_CHANGE = timedelta(minutes=5)
#: WeChat Pay's bank card route: up to 3 business days after the refund's success
WECHAT_CARD_BUSINESS_DAYS = 3


def add_business_days(moment: datetime, days: int, timezone: str) -> datetime:
    """``moment`` moved ``days`` business days later (Saturdays and Sundays at the
    site skipped; the same local time of day). From a weekend, the count starts
    on the Monday after. ``days`` must not be negative."""
    if days < 0:
        raise ValueError(f"days must not be negative, not {days}")
    local = moment.astimezone(ZoneInfo(timezone))
    while local.weekday() >= 5:
        local = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    left = days
    while left:
        local += timedelta(days=1)
        if local.weekday() < 5:
            left -= 1
    return local.astimezone(moment.tzinfo)


def expected_arrival(
    channel: str, state: str, succeeded_at: datetime | None, timezone: str
) -> dict[str, Any]:
    """What comes back when, for one refund: ``arrival``, ``earliest_at``,
    ``latest_at`` (epoch seconds or ``None``) and ``note`` (text for people).

    ``state`` is the refund's state as the desk knows it: ``confirmed`` (the
    channel confirmed it at ``succeeded_at``), ``failed``, or anything else
    (requested, not confirmed yet). ``arrival`` is ``"on its way"`` once
    confirmed (``"handed back"`` for cash), ``"not yet"`` before, ``"owed"``
    after a failure.
    """
    if state == "failed":
        return {"arrival": "owed", "earliest_at": None, "latest_at": None, "note": FAILED_NOTE}
    if state != "confirmed" or succeeded_at is None:
        return {"arrival": "not yet", "earliest_at": None, "latest_at": None, "note": PENDING_NOTE}
    at = succeeded_at.timestamp()
    if channel == "wechat":
        latest = add_business_days(succeeded_at, WECHAT_CARD_BUSINESS_DAYS, timezone).timestamp()
    elif channel == "cash":
        latest = at
    else:
        latest = None
    return {
        "arrival": "handed back" if channel == "cash" else "on its way",
        "earliest_at": at,
        "latest_at": latest,
        "note": ARRIVAL_NOTES.get(channel, "the channel's own time"),
    }
