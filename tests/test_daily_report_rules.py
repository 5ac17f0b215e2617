"""The daily report's arithmetic, pure: refund reasons, rankings, hours, occupancy, the table."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from actors.catalog import parse_catalog
from actors.orders.state import RefundReason
from server.daily_report import (
    REFUND_REASONS,
    daily_report,
    ranked,
    refund_reason_of,
    zone_occupancy,
)
from server.daily_report_output import chart_paths, report_csv_rows, report_pngs, report_table
from server.rental_report_output import cjk_font
from server.site import demo_catalog_source
from server.storage.daily_reports import DailyRows, PassageRow, RefundRow, SaleRow, TicketRow

DEMO = parse_catalog(demo_catalog_source())
DAY = date(2026, 3, 14)
#: local midnight of DAY in Asia/Shanghai, in UTC
MIDNIGHT = datetime(2026, 3, 13, 16, tzinfo=UTC)
GATES = {"G-MAIN-1": "main", "G-MAIN-2": "main", "G-CABLE-1": "cablecar", "G-LAKE-1": "lake"}

passages = st.lists(
    st.tuples(
        st.sampled_from(sorted(GATES)),
        st.sampled_from(["entry", "exit"]),
        st.integers(min_value=-3600, max_value=26 * 3600),  # seconds after local midnight
    ),
    max_size=60,
).map(
    lambda rows: tuple(
        PassageRow(gate, GATES[gate], direction, MIDNIGHT + timedelta(seconds=s))
        for gate, direction, s in sorted(rows, key=lambda r: r[2])
    )
)


def _rows(**parts) -> DailyRows:
    empty = {
        "sales": (),
        "tickets": (),
        "refunds": (),
        "passages": (),
        "gate_scans": (),
        "holds": (),
        "rental_entries": (),
        "receivable_end_fen": 0,
        "reconciliation": None,
    }
    return DailyRows(**{**empty, **parts})


def test_each_stored_refund_reason_has_its_report_reason():
    assert [refund_reason_of(r.value, staff=False) for r in RefundReason if r.value != "staff"] == [
        "duplicate_payment",
        "expiry",
        "cancelled",
        "amount_mismatch",
    ]
    assert refund_reason_of("rain", staff=True) == "staff"
    assert refund_reason_of("already_paid", staff=True) == "staff"  # the staff flag decides
    assert refund_reason_of("something new", staff=False) == "other"


def test_other_refunds_are_shown_only_when_there_are_some():
    def refund(reason: str, fen: int) -> RefundRow:
        return RefundRow("R" + reason, "O1", "wechat", fen, reason, False, MIDNIGHT, None, None)

    plain = daily_report(_rows(refunds=(refund("order_expired", 500),)), DEMO, DAY, MIDNIGHT)
    assert [r["reason"] for r in plain["refunds"]["by_reason"]] == list(REFUND_REASONS)
    odd = daily_report(_rows(refunds=(refund("mystery", 700),)), DEMO, DAY, MIDNIGHT)
    assert odd["refunds"]["by_reason"][-1] == {
        "reason": "other",
        "count": 1,
        "amount_fen": 700,
        "confirmed_fen": 0,
        "failed_fen": 0,
    }


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 10**6)), max_size=30))
def test_ranking_keeps_every_fen_and_puts_the_most_money_first(pairs):
    out = ranked(pairs)
    assert sum(n for _, n, _ in out) == len(pairs)
    assert sum(fen for _, _, fen in out) == sum(fen for _, fen in pairs)
    assert [fen for _, _, fen in out] == sorted((fen for _, _, fen in out), reverse=True)
    assert ranked(list(reversed(pairs))) == out  # the order never depends on input order


@given(passages)
def test_hourly_passages_sum_to_the_days_entries_and_exits(rows):
    gates = daily_report(_rows(passages=rows), DEMO, DAY, MIDNIGHT)["gates"]
    within = [r for r in rows if MIDNIGHT <= r.at < MIDNIGHT + timedelta(days=1)]
    assert len(gates["by_hour"]) == 24
    assert sum(h["entries"] for h in gates["by_hour"]) == gates["entries"]
    assert sum(h["exits"] for h in gates["by_hour"]) == gates["exits"]
    assert gates["entries"] == sum(r.direction == "entry" for r in within)
    assert gates["exits"] == sum(r.direction == "exit" for r in within)
    assert sum(g["entries"] for g in gates["by_gate"]) == gates["entries"]
    assert sum(g["exits"] for g in gates["by_gate"]) == gates["exits"]


@given(st.lists(st.sampled_from(["entry", "exit"]), max_size=80))
def test_peak_occupancy_is_never_below_zero_nor_below_the_final_count(directions):
    times = [MIDNIGHT + timedelta(minutes=n) for n in range(len(directions))]
    day = zone_occupancy(list(zip(directions, times, strict=True)))
    assert 0 <= day.final <= day.peak <= day.entries
    assert (day.entries, day.exits) == (directions.count("entry"), directions.count("exit"))
    assert day.final == max(day.entries - day.exits, 0)
    assert (day.peak_at is None) == (day.peak == 0)
    # the peak is reached: after the passage at peak_at, that many are inside
    if day.peak_at is not None:
        upto = directions[: times.index(day.peak_at) + 1]
        assert upto.count("entry") - upto.count("exit") == day.peak


def test_occupancy_counts_as_the_live_count_does():
    # two exits first (visitors who came in before a restart of counting) never go below 0
    day = zone_occupancy(
        [(d, MIDNIGHT + timedelta(minutes=n)) for n, d in enumerate(["exit", "exit", "entry"])]
    )
    assert (day.peak, day.final) == (0, 0)  # inside is entries less exits, never below zero


def _sample_report() -> dict:
    sales = (
        SaleRow("O1", "kiosk-1", "wechat", 24000, MIDNIGHT + timedelta(hours=1)),
        SaleRow("O2", "counter-1", "cash", 6000, MIDNIGHT + timedelta(hours=2)),
    )
    tickets = (
        TicketRow("O1", "adult", 12000),
        TicketRow("O1", "adult", 12000),
        TicketRow("O2", "child", 6000),
    )
    rows = (
        PassageRow("G-MAIN-1", "main", "entry", MIDNIGHT + timedelta(hours=9)),
        PassageRow("G-MAIN-1", "main", "exit", MIDNIGHT + timedelta(hours=11)),
    )
    return daily_report(
        _rows(sales=sales, tickets=tickets, passages=rows), DEMO, DAY, MIDNIGHT + timedelta(1)
    )


def test_the_table_shows_yuan_within_100_columns_and_the_csv_every_figure_once():
    report = _sample_report()
    table = report_table(report)
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "Sales: 2 orders, 3 tickets, 300.00 yuan" in table
    assert "Reconciliation: no reconciliation run" in table
    rows = list(report_csv_rows(report))
    keys = [tuple(r[1:4]) for r in rows[1:]]
    assert len(keys) == len(set(keys))
    assert ["2026-03-14", "sales_product", "adult", "amount_fen", 24000] in rows
    assert ["2026-03-14", "occupancy", "main", "peak", 1] in rows


def test_charts_go_in_a_directory_or_next_to_a_prefix(tmp_path):
    assert chart_paths(tmp_path, "2026-03-14") == {
        "entries": tmp_path / "daily-2026-03-14-entries.png",
        "sales": tmp_path / "daily-2026-03-14-sales.png",
    }
    assert chart_paths(tmp_path / "m", "2026-03-14") == {
        "entries": tmp_path / "m-entries.png",
        "sales": tmp_path / "m-sales.png",
    }


def test_charts_never_draw_a_glyph_their_font_lacks(tmp_path):
    # With no Chinese font (this machine's case) the labels are English: matplotlib
    # warns of every glyph it must draw as a box, and here it warns of none.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = report_pngs(_sample_report(), tmp_path / "c")
    assert [p.read_bytes()[:8] for p in paths] == [b"\x89PNG\r\n\x1a\n"] * 2
    assert cjk_font() is None or all(p.stat().st_size > 0 for p in paths)


def test_a_stored_reconciliation_run_is_shown_as_read():
    rows = _rows(reconciliation={"status": "clean", "unresolved": 0})
    report = daily_report(rows, DEMO, DAY, MIDNIGHT)
    assert report["reconciliation"] == {"run": True, "status": "clean", "unresolved": 0}
    assert "Reconciliation: status clean, unresolved 0" in report_table(report)
    none = daily_report(_rows(), DEMO, DAY, MIDNIGHT)["reconciliation"]
    assert none == {"run": False, "status": "no reconciliation run"}
