"""The desk's pure rules: how a payer is masked, when a refund's money arrives, a rental's steps."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.rentals import events as ev
from actors.rentals.state import ConversionRecord, Resolution, ResolutionKind, Split
from server.payer_mask import mask_payer
from server.refund_arrival import add_business_days, expected_arrival
from server.storage.desk import rental_step

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


def _example(cls):
    """An instance of rental event ``cls`` with plain values in every field."""
    at = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)
    plain = {
        "str": "x",
        "int": 100,
        "bool": True,
        "datetime": at,
        "time": time(17, 30),
        "Split": Split(100, 60, 60, 40, 0),
        "Resolution": Resolution(ResolutionKind.SETTLED, 60, 40, at),
        "ConversionRecord": ConversionRecord("P1", 100, 0, True, at),
    }
    values = {}
    for field in attrs.fields(cls):
        kind = field.type if isinstance(field.type, str) else field.type.__name__
        if kind.startswith("tuple"):
            values[field.name] = ()
        elif kind.endswith("| None"):
            values[field.name] = None
        else:
            values[field.name] = plain[kind]
    return cls(**values)


@pytest.mark.parametrize("cls", typing.get_args(ev.Event), ids=lambda cls: cls.__name__)
def test_every_rental_event_is_a_story_step_in_the_documented_words(cls):
    at = datetime(2026, 1, 10, 1, 0, 30, tzinfo=UTC)
    step = rental_step(_example(cls), at, {"x": 700})
    assert step is not None and set(step) == {"at", "what", "amount_fen", "ref"}
    assert step["at"] == at.timestamp()
    assert step["what"].split(":")[0].split(" (")[0] in STORY_WORDS


#: the first words of each step docs/protocol.md lists for a rental (``desk.lookup``)
STORY_WORDS = {
    "created",
    "payment started",
    "freeze started",
    "deposit paid",
    "deposit frozen",
    "voucher issued",
    "payment received, to refund",
    "freeze received, to release",
    "picked up",
    "returned",
    "settled",
    "refund requested",
    "refund confirmed",
    "refund failed",
    "overdue",
    "expired",
    "cancelled",
    "extended",
    "deposit forfeited",
    "freeze converting",
    "freeze converted",
    "unfreeze confirmed",
    "freeze lapsed",
}
