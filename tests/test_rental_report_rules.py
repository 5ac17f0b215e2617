"""The rental report's arithmetic, pure: local days, opening hours, hour buckets, utilization."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import attrs
import matplotlib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.catalog import parse_catalog
from server.rental_report import (
    NO_TICKET,
    Window,
    hourly_counts,
    local_day,
    opening_hours,
    rental_report,
    seconds_out,
    utilization,
    who_rents,
)
from server.rental_report_output import has_chinese_glyphs, report_table, yuan
from server.site import demo_catalog_source
from server.storage.rental_reports import ReportRows, UnitSpan
from tests.rental_support import CATALOG

DEMO = parse_catalog(demo_catalog_source())
DAY = date(2026, 3, 14)
WINDOW = Window(datetime(2026, 3, 14, 0, tzinfo=UTC), datetime(2026, 3, 14, 9, 30, tzinfo=UTC))

moments = st.datetimes(
    min_value=datetime(2026, 3, 13), max_value=datetime(2026, 3, 16), timezones=st.just(UTC)
)


@st.composite
def spans(draw, units=("U1", "U2", "U3")):
    """A unit out from some moment, back later or not yet."""
    out_at = draw(moments)
    back = draw(st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)))
    return UnitSpan(
        "H1", draw(st.sampled_from(units)), "skis", out_at, None if back is None else out_at + back
    )


def test_a_local_day_runs_from_local_midnight_to_the_next():
    day = local_day(DAY, "Asia/Shanghai")
    assert (day.start, day.end) == (
        datetime(2026, 3, 13, 16, tzinfo=UTC),
        datetime(2026, 3, 14, 16, tzinfo=UTC),
    )
    # the day the clocks go forward in Berlin has 23 hours, the one they go back 25
    assert local_day(date(2026, 3, 29), "Europe/Berlin").seconds == 23 * 3600
    assert local_day(date(2026, 10, 25), "Europe/Berlin").seconds == 25 * 3600


def test_the_site_opens_at_its_first_slot_and_closes_when_rentals_are_due_back():
    window = opening_hours(DEMO, DAY)
    shanghai = ZoneInfo("Asia/Shanghai")
    assert window == Window(
        datetime(2026, 3, 14, 8, tzinfo=shanghai).astimezone(UTC),
        datetime(2026, 3, 14, 17, 30, tzinfo=shanghai).astimezone(UTC),
    )
    assert window.seconds == 34200
    # no slots: open from midnight; no rental terms, or a closing before the opening: no window
    assert opening_hours(CATALOG, DAY).seconds == 17 * 3600 + 1800
    assert opening_hours(attrs.evolve(DEMO, rental_terms=None), DAY) is None
    early = attrs.evolve(DEMO, rental_terms=attrs.evolve(DEMO.rental_terms, due_back=time(7)))
    assert opening_hours(early, DAY) is None


@given(st.lists(moments, max_size=40), st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "UTC"]))
def test_hour_buckets_sum_to_the_moments_of_the_day(times, zone):
    day = local_day(DAY, zone)
    counts = hourly_counts(times, zone, day)
    assert len(counts) == 24
    within = [t for t in times if day.start <= t < day.end]
    assert sum(counts) == len(within)
    for hour in range(24):
        assert counts[hour] == sum(t.astimezone(ZoneInfo(zone)).hour == hour for t in within)


@given(st.lists(spans(), max_size=12), moments)
def test_utilization_is_within_zero_and_one(unit_spans, now):
    out = seconds_out(unit_spans, WINDOW, now)
    units = len({span.unit_id for span in unit_spans})
    assert 0 <= out <= units * WINDOW.seconds
    ratio = utilization(out, units, WINDOW.seconds)
    assert ratio is None if units == 0 else 0.0 <= ratio <= 1.0


@given(st.lists(spans(units=("U1",)), min_size=1, max_size=8), moments)
def test_a_unit_out_on_overlapping_spans_counts_once(unit_spans, now):
    out = seconds_out(unit_spans, WINDOW, now)
    assert out <= WINDOW.seconds
    assert out >= max(seconds_out([span], WINDOW, now) for span in unit_spans)


def test_time_out_is_clipped_to_the_window_and_a_unit_still_out_counts_until_now():
    h = timedelta(hours=1)
    start = WINDOW.start
    before_to_one = UnitSpan("H1", "U1", "skis", start - h, start + h)
    still_out = UnitSpan("H2", "U2", "skis", start + 2 * h, None)
    assert seconds_out([before_to_one], WINDOW, start) == 3600
    assert seconds_out([still_out], WINDOW, start + 3 * h) == 3600
    assert seconds_out([still_out], WINDOW, start + 20 * h) == WINDOW.seconds - 7200
    assert seconds_out([still_out], WINDOW, start) == 0  # not out yet at the report's time


def test_utilization_refuses_figures_of_no_one_window():
    assert utilization(0, 0, 100) is None and utilization(0, 5, 0) is None
    assert utilization(250, 5, 100) == 0.5
    with pytest.raises(ValueError):
        utilization(501, 5, 100)
    with pytest.raises(ValueError):
        utilization(-1, 5, 100)


def test_who_rents_counts_ticket_types_most_first_and_no_ticket_after_equals():
    counted = who_rents([None, "adult", "child", "adult", None, "child", "student"])
    assert counted == [("adult", 2), ("child", 2), (None, 2), ("student", 1)]
    assert NO_TICKET == "no ticket named"


def test_fen_print_as_yuan():
    assert [yuan(f) for f in (0, 5, 12345, -250)] == ["0.00", "0.05", "123.45", "-2.50"]


def test_the_box_font_matplotlib_ships_is_no_chinese_font():
    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert not has_chinese_glyphs(fonts / "DejaVuSans.ttf")
    last_resort = fonts / "LastResortHE-Regular.ttf"
    if not last_resort.exists():
        pytest.skip("this matplotlib ships no Last Resort font")
    assert not has_chinese_glyphs(last_resort)


def test_an_empty_report_still_prints_every_section():
    rows = ReportRows((), (), (), (), (), 0, (), {})
    report = rental_report(rows, DEMO, DAY, datetime(2026, 3, 14, 12, tzinfo=UTC))
    table = report_table(report)
    # items, charges, channels, give-backs, hours, who rents
    assert table.count("(none)") == 6
    assert "Rentals of 2026-03-14 (Asia/Shanghai): 0 made, 0 with a deposit held" in table
    assert max(len(line) for line in table.splitlines()) <= 100
