"""The desk's pure rules: how a payer is masked, and when a refund's money arrives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.payer_mask import mask_payer
from server.refund_arrival import add_business_days, expected_arrival

SHANGHAI = "Asia/Shanghai"


def test_an_openid_shows_its_first_four_and_last_two_characters():
    assert mask_payer("o6_bmjrPTlm6_2sgVt7hMZOPfL2xk") == "o6_b***xk"
    assert mask_payer("2088102146225135") == "2088***35"
    assert mask_payer("159****5620") == "***"  # under 12 characters: nothing of it shows
    assert mask_payer(None) is None and mask_payer("") is None


@given(st.text(min_size=1, max_size=200))
def test_a_masked_payer_never_shows_more_than_six_of_its_characters(identifier):
    masked = mask_payer(identifier)
    assert masked is not None and len(masked) <= 9
    shown = masked.replace("***", "", 1)
    assert len(shown) <= 6
    if len(identifier) >= 12:
        assert masked == identifier[:4] + "***" + identifier[-2:]
    else:
        assert masked == "***"


def test_business_days_skip_the_weekend_at_the_site():
    friday_evening = datetime(2026, 10, 9, 10, 0, tzinfo=UTC)  # 18:00 Friday in Shanghai
    assert add_business_days(friday_evening, 3, SHANGHAI) == datetime(
        2026, 10, 14, 10, 0, tzinfo=UTC
    )
    saturday = datetime(2026, 10, 10, 2, 0, tzinfo=UTC)  # 10:00 Saturday: counts from Monday 00:00
    assert add_business_days(saturday, 1, SHANGHAI) == datetime(2026, 10, 12, 16, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        add_business_days(friday_evening, -1, SHANGHAI)


@given(
    st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=30),
)
def test_adding_business_days_lands_on_a_weekday_that_many_weekdays_later(moment, days):
    later = add_business_days(moment, days, SHANGHAI)
    local_start = moment.astimezone(ZoneInfo(SHANGHAI)).date()
    local_end = later.astimezone(ZoneInfo(SHANGHAI)).date()
    assert later >= moment and local_end.weekday() < 5
    weekdays_after = sum(
        (local_start + timedelta(days=n)).weekday() < 5
        for n in range(1, (local_end - local_start).days + 1)
    )
    assert weekdays_after == days or (local_start.weekday() >= 5 and weekdays_after == days + 1)


def test_what_comes_back_when_follows_the_channels_published_times():
    done = datetime(2026, 10, 1, 0, 32, 2, tzinfo=UTC)  # a Thursday, 08:32:02 in Shanghai
    wechat = expected_arrival("wechat", "confirmed", done, SHANGHAI)
    assert wechat == {
        "arrival": "on its way",
        "earliest_at": done.timestamp(),
        "latest_at": datetime(2026, 10, 6, 0, 32, 2, tzinfo=UTC).timestamp(),
        "note": "to WeChat change within 5 minutes; to a bank card within 1-3 business days",
    }
    alipay = expected_arrival("alipay", "confirmed", done, SHANGHAI)
    assert (alipay["earliest_at"], alipay["latest_at"]) == (done.timestamp(), None)
    cash = expected_arrival("cash", "confirmed", done, SHANGHAI)
    assert (cash["arrival"], cash["latest_at"]) == ("handed back", done.timestamp())
    assert expected_arrival("wechat", "requested", None, SHANGHAI)["arrival"] == "not yet"
    assert expected_arrival("alipay", "failed", None, SHANGHAI)["arrival"] == "owed"
