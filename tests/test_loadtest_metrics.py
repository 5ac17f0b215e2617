"""The load test's recorder and live progress line, driven by a fake clock."""

from __future__ import annotations

import io

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from loadtest.metrics import Recorder
from loadtest.progress import format_progress, show_progress

KINDS = ("order.create", "payment.notify", "ticket.scan")


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0  # not zero: the recorder must measure from its own start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def exact_percentile_ms(latencies_s: list[float], percentile: float) -> float:
    """The value at rank round(p/100 * n), half up and at least 1, as HDR defines it."""
    ordered = sorted(latencies_s)
    rank = max(1, int(percentile * len(ordered) / 100 + 0.5))
    return ordered[rank - 1] * 1000


def recorder_at_zero(**kwargs) -> tuple[Recorder, FakeClock]:
    clock = FakeClock()
    return Recorder(KINDS, clock=clock, **kwargs), clock


# --- precision and counting -----------------------------------------------------------


@given(st.lists(st.floats(min_value=0.001, max_value=60.0), min_size=1, max_size=300))
def test_percentiles_are_within_one_percent_of_the_exact_ones(latencies: list[float]) -> None:
    recorder, _ = recorder_at_zero()
    for latency in latencies:
        recorder.record("ticket.scan", latency)

    scan = recorder.summary()["kinds"]["ticket.scan"]

    for key, percentile in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("p999_ms", 99.9)):
        assert scan[key] == pytest.approx(exact_percentile_ms(latencies, percentile), rel=0.01)
    assert scan["max_ms"] == pytest.approx(max(latencies) * 1000, rel=0.01)
    assert scan["mean_ms"] == pytest.approx(sum(latencies) / len(latencies) * 1000, rel=0.01)
    assert scan["count"] == len(latencies)


events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.5),  # seconds since the previous completion
        st.sampled_from([*KINDS, "gate.passage"]),
        st.sampled_from([None, None, None, "ticket_used", "forged"]),
    ),
    max_size=200,
)


@given(events, st.sampled_from([0.25, 1.0, 3.0]))
def test_counts_add_up_and_the_timeline_sums_to_the_totals(run, interval_s) -> None:
    recorder, clock = recorder_at_zero(interval_s=interval_s)
    for pause, kind, error in run:
        clock.advance(pause)
        recorder.record(kind, 0.01, error=error)

    summary = recorder.summary()

    for kind in {*KINDS, *(kind for _, kind, _ in run)}:
        mine = [error for _, k, error in run if k == kind]
        figures = summary["kinds"][kind]
        assert figures["count"] == len(mine)
        assert figures["errors"] == sum(error is not None for error in mine)
        assert figures["ok"] == sum(error is None for error in mine)
        assert sum(figures["errors_by_code"].values()) == figures["errors"]
        timeline = summary["timeline"]
        assert sum(row["kinds"][kind]["count"] for row in timeline) == figures["count"]
        assert sum(row["kinds"][kind]["errors"] for row in timeline) == figures["errors"]
    starts = [row["t_s"] for row in summary["timeline"]]
    assert starts == pytest.approx([n * interval_s for n in range(len(starts))])


def test_failed_requests_are_errors_by_code_and_stay_out_of_the_latency() -> None:
    recorder, _ = recorder_at_zero()
    recorder.record("ticket.scan", 0.010)
    recorder.record("ticket.scan", 0.500, error="ticket_used")
    recorder.record("ticket.scan", 0.700, error="ticket_used")
    recorder.record("ticket.scan", 0.900, error="forged")

    scan = recorder.summary()["kinds"]["ticket.scan"]

    assert (scan["count"], scan["ok"], scan["errors"]) == (4, 1, 3)
    assert scan["errors_by_code"] == {"forged": 1, "ticket_used": 2}
    assert scan["max_ms"] == pytest.approx(10, rel=0.01)
    assert scan["p99_ms"] == pytest.approx(10, rel=0.01)
    assert scan["error_max_ms"] == pytest.approx(900, rel=0.01)


def test_kinds_given_up_front_are_reported_even_when_idle_and_others_join_on_first_use() -> None:
    recorder, _ = recorder_at_zero()
    recorder.record("gate.passage", 0.02)

    kinds = recorder.summary()["kinds"]

    assert list(kinds) == [*KINDS, "gate.passage"]
    assert kinds["payment.notify"]["count"] == 0
    assert kinds["payment.notify"]["p50_ms"] is None
    assert kinds["gate.passage"]["count"] == 1


def test_latencies_outside_the_range_are_clamped_into_it() -> None:
    recorder, _ = recorder_at_zero()
    recorder.record("order.create", 0.0)
    recorder.record("order.create", 3600.0)

    create = recorder.summary()["kinds"]["order.create"]

    assert create["p50_ms"] == pytest.approx(0.001, abs=0.001)
    assert create["max_ms"] == pytest.approx(60_000, rel=0.01)


def test_counters_add_up_by_name() -> None:
    recorder, _ = recorder_at_zero()
    recorder.count("scan.granted")
    recorder.count("scan.granted", 4)
    recorder.count("scan.reason.passback")

    assert recorder.summary()["counters"] == {"scan.granted": 5, "scan.reason.passback": 1}
    assert recorder.snapshot()["counters"] == {"scan.granted": 5, "scan.reason.passback": 1}


def test_started_forgets_the_warm_up_and_restarts_the_clock() -> None:
    recorder, clock = recorder_at_zero()
    clock.advance(30)
    recorder.record("order.create", 0.05)
    recorder.count("sale.double_tap")

    recorder.started()
    clock.advance(2)
    recorder.record("order.create", 0.01)
    summary = recorder.summary()

    assert summary["elapsed_s"] == pytest.approx(2)
    assert summary["kinds"]["order.create"]["count"] == 1
    assert summary["counters"] == {}
    assert [row["kinds"]["order.create"]["count"] for row in summary["timeline"]] == [0, 0, 1]


# --- the timeline ----------------------------------------------------------------------


def test_the_timeline_rolls_into_a_new_interval_as_the_clock_passes() -> None:
    recorder, clock = recorder_at_zero(interval_s=1.0)
    clock.advance(0.1)
    recorder.record("order.create", 0.005)
    clock.advance(0.4)
    recorder.record("order.create", 0.015)
    clock.advance(0.7)  # 1.2
    recorder.record("order.create", 0.100, error="order_expired")
    recorder.record("order.create", 0.100)
    clock.advance(2.3)  # 3.5: the interval [2, 3) saw nothing
    recorder.record("ticket.scan", 0.002)

    timeline = recorder.summary()["timeline"]

    assert [row["t_s"] for row in timeline] == [0.0, 1.0, 2.0, 3.0]
    assert [row["duration_s"] for row in timeline] == pytest.approx([1, 1, 1, 0.5])
    creates = [row["kinds"]["order.create"] for row in timeline]
    assert [c["count"] for c in creates] == [2, 2, 0, 0]
    assert [c["errors"] for c in creates] == [0, 1, 0, 0]
    assert creates[0]["p50_ms"] == pytest.approx(5, rel=0.01)
    assert creates[0]["p99_ms"] == pytest.approx(15, rel=0.01)
    assert creates[0]["max_ms"] == pytest.approx(15, rel=0.01)
    assert creates[1]["p99_ms"] == pytest.approx(100, rel=0.01)
    assert creates[2]["p50_ms"] is None
    assert creates[0]["rate_per_s"] == 2
    assert timeline[3]["kinds"]["ticket.scan"]["count"] == 1


def test_each_interval_has_its_own_latency_not_the_run_so_far() -> None:
    recorder, clock = recorder_at_zero(interval_s=1.0)
    recorder.record("ticket.scan", 2.0)
    clock.advance(1.0)
    recorder.record("ticket.scan", 0.003)

    timeline = recorder.summary()["timeline"]

    assert timeline[1]["kinds"]["ticket.scan"]["max_ms"] == pytest.approx(3, rel=0.01)


# --- the live snapshot -----------------------------------------------------------------


def test_snapshot_rate_is_the_run_so_far_until_the_first_interval_ends() -> None:
    recorder, clock = recorder_at_zero(interval_s=1.0)
    for _ in range(10):
        clock.advance(0.05)
        recorder.record("ticket.scan", 0.004)

    snapshot = recorder.snapshot()

    assert snapshot["elapsed_s"] == pytest.approx(0.5)
    assert snapshot["kinds"]["ticket.scan"]["rate"] == pytest.approx(20)
    assert snapshot["kinds"]["ticket.scan"]["count"] == 10


def test_snapshot_rate_is_the_last_full_interval() -> None:
    recorder, clock = recorder_at_zero(interval_s=0.5)
    for _ in range(30):  # 30 in [0, 0.5)
        recorder.record("ticket.scan", 0.004)
    clock.advance(0.5)
    for _ in range(7):  # 7 in [0.5, 1.0)
        recorder.record("ticket.scan", 0.004, error="ticket_used")
    clock.advance(0.7)  # 1.2: [0.5, 1.0) is the last full interval

    scan = recorder.snapshot()["kinds"]["ticket.scan"]

    assert scan["rate"] == pytest.approx(14)
    assert (scan["count"], scan["errors"]) == (37, 7)


def test_snapshot_latency_looks_only_at_the_last_few_seconds() -> None:
    recorder, clock = recorder_at_zero(interval_s=1.0)
    recorder.record("order.create", 1.5)
    clock.advance(3)
    recorder.record("order.create", 0.020)

    assert recorder.snapshot()["kinds"]["order.create"]["p99_ms"] == pytest.approx(1500, rel=0.01)

    clock.advance(8)
    recorder.record("order.create", 0.020)
    live = recorder.snapshot()["kinds"]["order.create"]

    assert live["p99_ms"] == pytest.approx(20, rel=0.01)
    assert recorder.summary()["kinds"]["order.create"]["max_ms"] == pytest.approx(1500, rel=0.01)


# --- the progress line -----------------------------------------------------------------


def half_way_snapshot() -> dict:
    recorder, clock = recorder_at_zero()
    for _ in range(50):
        recorder.record("ticket.scan", 0.003)
    recorder.record("ticket.scan", 0.2, error="forged")
    recorder.record("order.create", 0.040, error="sold_out")
    clock.advance(30)
    return recorder.snapshot()


def test_progress_line_shows_the_bar_elapsed_and_planned_time() -> None:
    line = format_progress(half_way_snapshot(), 60)

    assert "[##########----------]" in line
    assert "50%" in line
    assert "30s/60s" in line
    assert "\n" not in line


def test_progress_line_names_each_active_kind_with_its_figures_and_the_total_errors() -> None:
    line = format_progress(half_way_snapshot(), 60, title="weekend")

    assert line.startswith("weekend")
    assert "ticket.scan " in line
    assert "err 1" in line
    assert "order.create " in line
    assert "p50 -" in line  # no order.create succeeded, so it has no latency
    assert "payment.notify" not in line  # nothing completed yet
    assert line.endswith("errors 2")


def test_progress_bar_is_full_and_stops_at_100_percent_when_overrunning() -> None:
    recorder, clock = recorder_at_zero()
    clock.advance(75)

    line = format_progress(recorder.snapshot(), 60)

    assert "[####################]" in line
    assert "100%" in line


class Terminal(io.StringIO):
    """A stream that claims to be a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


async def run_progress_for(stream: io.StringIO, seconds: float) -> None:
    recorder = Recorder(KINDS, clock=trio.current_time)
    recorder.record("ticket.scan", 0.003)
    with trio.move_on_after(seconds):
        await show_progress(recorder, 60, stream=stream)


async def test_progress_prints_a_plain_line_every_five_seconds_when_not_a_terminal(
    autojump_clock,
) -> None:
    stream = io.StringIO()

    await run_progress_for(stream, 12)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # at 5 s, at 10 s, and the final state when cancelled
    assert all(line.startswith("[") and "ticket.scan" in line for line in lines)
    assert "\r" not in stream.getvalue()


async def test_progress_redraws_in_place_on_a_terminal_and_ends_the_line(autojump_clock) -> None:
    stream = Terminal()

    await run_progress_for(stream, 3.5)

    text = stream.getvalue()
    assert text.count("\r\x1b[2K") == 4  # at 1, 2 and 3 s, and the final state
    assert text.endswith("\n")
    assert text.count("\n") == 1
