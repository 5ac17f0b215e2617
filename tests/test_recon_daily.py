"""The daily reconciliation's clock: when it runs and which date it reconciles; its settings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import ServerConfig
from server.recon_daily import next_run

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_run_is_at_half_past_ten_site_time_and_reconciles_yesterday():
    before = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    due, bill_date = next_run(before, "10:30", SHANGHAI)
    assert due == datetime(2026, 12, 1, 10, 30, tzinfo=SHANGHAI)
    assert bill_date == date(2026, 11, 30)
    after = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)  # 10:30 exactly: the next day's
    assert next_run(after, "10:30", SHANGHAI) == (
        datetime(2026, 12, 2, 10, 30, tzinfo=SHANGHAI),
        date(2026, 12, 1),
    )


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_the_next_run_is_always_within_a_day_and_reconciles_the_day_before(naive):
    now = naive.replace(tzinfo=UTC)
    due, bill_date = next_run(now, "10:30", SHANGHAI)
    assert now < due <= now + (due - now)
    assert 0 < (due - now).total_seconds() <= 86400
    assert (due.hour, due.minute) == (10, 30) and (due.date() - bill_date).days == 1


@pytest.mark.parametrize("value", ["25:00", "10:3", "1030", "noon", ""])
def test_a_daily_time_that_is_not_hh_mm_is_refused(value):
    with pytest.raises(ValueError, match="SCENIC_RECON_AT"):
        ServerConfig.from_env({"SCENIC_RECON_AT": value})


def test_the_daily_run_can_be_turned_off_and_moved():
    assert ServerConfig.from_env({"SCENIC_RECON_AT": "off"}).recon_at == "off"
    assert ServerConfig.from_env({"SCENIC_RECON_AT": "11:05"}).recon_at == "11:05"
    assert ServerConfig().recon_at == "10:30" and ServerConfig().recon_scratch_s == 1800.0


def test_the_serve_flag_takes_a_daily_time():
    from server.cli import build_parser

    assert build_parser().parse_args(["serve", "--recon-at", "09:45"]).recon_at == "09:45"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--recon-at", "9.45"])


async def test_the_server_runs_it_at_the_configured_time_for_yesterday(dsn, db):
    from datetime import timedelta

    import trio

    from server.app import utc_now
    from tests.helpers import running_server

    real = utc_now()
    due, bill_date = next_run(real, "10:30", SHANGHAI)  # the demo park's time zone
    offset = due - timedelta(seconds=2) - real  # the server's clock reads 10:29:58

    def clock():
        return utc_now() + offset

    async with running_server(dsn, db, {}, clock=clock, recon_scratch_s=0.0):
        with trio.fail_after(20):
            while await db.fetchval("select count(*) from recon_runs") < 2:
                await trio.sleep(0.1)
    runs = await db.fetch("select bill_date, channel, source from recon_runs order by channel")
    assert [tuple(r) for r in runs] == [
        (bill_date, "alipay", "bill"),
        (bill_date, "wechat", "bill"),
    ]
