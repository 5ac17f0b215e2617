"""The payment channels' names, written once (actors.channels) and read everywhere."""

from __future__ import annotations

import re

from actors.channels import COUNTER_CHANNELS, QR_CHANNELS, Channel, pattern_of


def test_each_channel_is_its_stored_name_and_says_whether_it_notifies():
    assert [c.value for c in Channel] == ["wechat", "alipay", "cash", "card"]
    assert Channel("wechat") == "wechat" and Channel.WECHAT.notifies
    assert not Channel.CASH.notifies
    assert set(QR_CHANNELS) | set(COUNTER_CHANNELS) == set(Channel)
    assert not set(QR_CHANNELS) & set(COUNTER_CHANNELS)


def test_an_argument_pattern_takes_exactly_the_names_of_its_channels():
    qr = re.compile(pattern_of(QR_CHANNELS))
    every = re.compile(pattern_of())
    assert [name for name in ("wechat", "alipay", "cash", "card") if qr.fullmatch(name)] == [
        "wechat",
        "alipay",
    ]
    assert all(every.fullmatch(c.value) for c in Channel)
    assert not every.fullmatch("paypal") and not every.fullmatch("wechat|cash")
