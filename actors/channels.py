"""The payment channels: how a visitor pays, and how the server learns of it.

WeChat Pay and Alipay are QR channels: the visitor scans a code and the
channel confirms with a signed notification. Cash and bank card are counter
channels: the cashier takes the money and records it. Each channel's name is
its value (``"wechat"``), as stored, sent and signed; :class:`Channel` is a
``str`` enum, so a member equals its name.
"""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    """One way to pay."""

    WECHAT = "wechat"
    ALIPAY = "alipay"
    CASH = "cash"
    CARD = "card"

    @property
    def notifies(self) -> bool:
        """True for a QR channel, which confirms payments by its own signed notification."""
        return self in QR_CHANNELS


#: the channels that confirm payments by their own signed notification
QR_CHANNELS = (Channel.WECHAT, Channel.ALIPAY)
#: the channels a cashier confirms (``payment.record``)
COUNTER_CHANNELS = (Channel.CASH, Channel.CARD)


def pattern_of(channels: tuple[Channel, ...] = tuple(Channel)) -> str:
    """A regular expression matching exactly the names of ``channels`` (for op arguments)."""
    return "|".join(channel.value for channel in channels)
