"""What a load test measured: latency histograms, error tallies, counters and a timeline.

A :class:`Recorder` is told about every completed request (its kind, its
latency, and its error code when it failed) and about free-form events
(``count("scan.granted")``). It keeps, per request kind:

* the whole run's latency in an HDR histogram (microseconds, 1 µs to 60 s,
  three significant figures: a percentile is within 0.1 % of a recorded value),
  and the failed requests' latency in a separate one;
* a timeline of fixed intervals (``interval_s`` of its clock): for each one the
  completions, the errors, and p50 / p99 / max of that interval alone.

The timeline rolls lazily: each call looks at the clock and closes the
intervals that have passed, so there is no background task and a test can
drive it with a fake clock. Nothing here does I/O or knows about trio; the
live display (:mod:`loadtest.progress`) reads :meth:`Recorder.snapshot` and
the report (:mod:`loadtest.report`) reads :meth:`Recorder.summary`.

Counting: a kind's ``count`` is every completed request, failed or not;
``errors`` is the failed part of it. Latency percentiles describe the
successful requests only, so fast refusals don't flatter them.

A percentile ``p`` is the recorded value at rank ``round(p / 100 * n)``
(half up, at least 1) of the ``n`` values, as HDR histograms define it.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

import attrs
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000  # a minute: anything slower is clamped to it
SIGNIFICANT_FIGURES = 3
WINDOW_S = 5.0  # the live p50 / p99 look this far back

_SUMMARY_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds, 1 µs to 60 s, 3 significant figures."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def to_us(latency_s: float) -> int:
    """``latency_s`` in whole microseconds, clamped into the histograms' range."""
    return min(max(round(latency_s * 1_000_000), LOWEST_US), HIGHEST_US)


def _ms(us: float) -> float:
    return round(us / 1000, 3)


def percentiles_ms(histogram: HdrHistogram, percentiles: Iterable[float]) -> dict[float, float]:
    """Each of ``percentiles`` of ``histogram`` in milliseconds (empty histogram: empty dict)."""
    if not histogram.get_total_count():
        return {}
    values = histogram.get_percentile_to_value_dict(list(percentiles))
    return {p: _ms(us) for p, us in values.items()}


def max_ms(histogram: HdrHistogram) -> float | None:
    """The largest value of ``histogram`` in milliseconds, or None when it is empty."""
    return _ms(histogram.get_max_value()) if histogram.get_total_count() else None


@attrs.frozen
class IntervalStats:
    """One kind's requests that completed within one timeline interval."""

    count: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @classmethod
    def of(cls, count: int, errors: int, latency: HdrHistogram | None) -> IntervalStats:
        """The stats of an interval with ``count`` completions and this latency histogram."""
        if latency is None or not latency.get_total_count():
            return cls(count, errors, None, None, None)
        ps = percentiles_ms(latency, (50.0, 99.0))
        return cls(count, errors, ps[50.0], ps[99.0], max_ms(latency))


IDLE = IntervalStats(0, 0, None, None, None)


@attrs.frozen
class IntervalRow:
    """One closed timeline interval: where it starts and each active kind's stats."""

    index: int
    kinds: dict[str, IntervalStats]


@attrs.define
class KindTally:
    """Everything recorded so far about one request kind (mutable, owned by a Recorder)."""

    window_intervals: int
    latency: HdrHistogram = attrs.Factory(new_histogram)
    error_latency: HdrHistogram = attrs.Factory(new_histogram)
    count: int = 0
    errors: int = 0
    errors_by_code: Counter[str] = attrs.Factory(Counter)
    latency_sum_us: int = 0  # of the clamped values, so the mean agrees with the rest
    interval_latency: HdrHistogram | None = None  # created on the interval's first success
    interval_count: int = 0
    interval_errors: int = 0
    recent: deque[HdrHistogram | None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.recent = deque(maxlen=self.window_intervals)

    def add(self, us: int, error: str | None) -> None:
        """Count one completed request of ``us`` microseconds; ``error`` when it failed."""
        self.count += 1
        self.interval_count += 1
        if error is not None:
            self.errors += 1
            self.interval_errors += 1
            self.errors_by_code[error] += 1
            self.error_latency.record_value(us)
            return
        self.latency_sum_us += us
        self.latency.record_value(us)
        if self.interval_latency is None:
            self.interval_latency = new_histogram()
        self.interval_latency.record_value(us)

    def close_interval(self) -> IntervalStats:
        """End the current interval: its stats; its histogram joins the recent window."""
        stats = (
            IntervalStats.of(self.interval_count, self.interval_errors, self.interval_latency)
            if self.interval_count
            else IDLE
        )
        self.recent.append(self.interval_latency)
        self.interval_latency = None
        self.interval_count = self.interval_errors = 0
        return stats

    def window_latency(self) -> HdrHistogram:
        """The recent closed intervals' histograms and the current one's, merged."""
        merged = new_histogram()
        for histogram in (*self.recent, self.interval_latency):
            if histogram is not None:
                merged.add(histogram)
        return merged

    def summary(self, elapsed_s: float) -> dict:
        """This kind over the whole run, JSON-safe (see :meth:`Recorder.summary`)."""
        ok = self.count - self.errors
        ps = percentiles_ms(self.latency, _SUMMARY_PERCENTILES)
        return {
            "count": self.count,
            "ok": ok,
            "errors": self.errors,
            "errors_by_code": dict(sorted(self.errors_by_code.items())),
            "rate_per_s": round(self.count / elapsed_s, 3) if elapsed_s > 0 else 0.0,
            "p50_ms": ps.get(50.0),
            "p90_ms": ps.get(90.0),
            "p99_ms": ps.get(99.0),
            "p999_ms": ps.get(99.9),
            "max_ms": max_ms(self.latency),
            "mean_ms": _ms(self.latency_sum_us / ok) if ok else None,
            "error_max_ms": max_ms(self.error_latency),
        }


class Recorder:
    """Measures a load test: per-kind latency and errors, counters, and a timeline.

    ``kinds`` are the request kinds known up front (they appear in every
    snapshot and summary even when nothing of them completed); any other kind
    is added on its first :meth:`record`. ``interval_s`` is the timeline's
    resolution, ``clock`` a monotonic clock in seconds (injectable for tests).
    Time zero is the construction, or the last :meth:`started`.

    Not thread-safe; meant to be called from one trio run.
    """

    def __init__(
        self,
        kinds: Sequence[str] = (),
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, not {interval_s!r}")
        self.interval_s = interval_s
        self.clock = clock
        self._window_intervals = max(1, math.ceil(WINDOW_S / interval_s))
        self._initial_kinds = tuple(kinds)
        self._reset(clock())

    def _reset(self, now: float) -> None:
        self._t0 = now
        self._index = 0  # the interval in progress
        self._tallies: dict[str, KindTally] = {}
        self._counters: Counter[str] = Counter()
        self._timeline: list[IntervalRow] = []
        for kind in self._initial_kinds:
            self._tally(kind)

    def started(self) -> None:
        """Mark time zero now: elapsed time, rates and the timeline start here.

        Whatever was recorded or counted before (a warm-up, the set-up) is
        forgotten; the kinds given up front stay known.
        """
        self._reset(self.clock())

    def record(self, kind: str, latency_s: float, *, error: str | None = None) -> None:
        """Count one completed request of ``kind`` that took ``latency_s`` seconds.

        ``error`` is the error code when the request failed: it counts as an
        error of that code and its latency goes to the errors' own histogram,
        not into the kind's latency percentiles. Latencies outside 1 µs .. 60 s
        are clamped into that range.
        """
        self._roll(self.clock())
        self._tally(kind).add(to_us(latency_s), error)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the free-form counter ``name`` (e.g. ``"scan.reason.passback"``)."""
        self._counters[name] += n

    def snapshot(self) -> dict:
        """The live view: elapsed time, and per kind its recent rate and latency so far.

        Returns ``{"elapsed_s", "kinds": {kind: {"rate", "p50_ms", "p99_ms",
        "count", "errors"}}, "counters"}``. ``rate`` is the completions per
        second of the last full interval (or of the whole run before the first
        interval ends); p50 / p99 are over roughly the last five seconds, None
        when no request of that kind succeeded in them.
        """
        now = self.clock()
        self._roll(now)
        elapsed = max(now - self._t0, 0.0)
        return {
            "elapsed_s": round(elapsed, 3),
            "kinds": {
                kind: self._live(kind, tally, elapsed) for kind, tally in self._tallies.items()
            },
            "counters": dict(sorted(self._counters.items())),
        }

    def summary(self) -> dict:
        """The whole run, JSON-safe, for the report.

        Returns ``{"elapsed_s", "interval_s", "kinds": {kind: {"count", "ok",
        "errors", "errors_by_code", "rate_per_s", "p50_ms", "p90_ms", "p99_ms",
        "p999_ms", "max_ms", "mean_ms", "error_max_ms"}}, "counters",
        "timeline"}``. Milliseconds are None when nothing of that kind
        succeeded. ``timeline`` lists every interval from time zero to now,
        the last one possibly partial (``duration_s`` shorter): ``{"t_s",
        "duration_s", "kinds": {kind: {"count", "rate_per_s", "p50_ms",
        "p99_ms", "max_ms", "errors"}}}`` with every kind in every row; its
        counts add up to the kinds' counts. ``rate_per_s`` is the count over
        ``interval_s``, so a partial last interval understates its rate.
        """
        now = self.clock()
        self._roll(now)
        elapsed = max(now - self._t0, 0.0)
        return {
            "elapsed_s": round(elapsed, 3),
            "interval_s": self.interval_s,
            "kinds": {kind: tally.summary(elapsed) for kind, tally in self._tallies.items()},
            "counters": dict(sorted(self._counters.items())),
            "timeline": self._timeline_rows(elapsed),
        }

    def _tally(self, kind: str) -> KindTally:
        tally = self._tallies.get(kind)
        if tally is None:
            tally = self._tallies[kind] = KindTally(self._window_intervals)
        return tally

    def _roll(self, now: float) -> None:
        """Close every interval that ended by ``now``."""
        index = max(0, int((now - self._t0) // self.interval_s))
        while self._index < index:
            stats = {kind: tally.close_interval() for kind, tally in self._tallies.items()}
            active = {kind: s for kind, s in stats.items() if s.count}
            self._timeline.append(IntervalRow(self._index, active))
            self._index += 1

    def _live(self, kind: str, tally: KindTally, elapsed: float) -> dict:
        if self._timeline:
            last = self._timeline[-1].kinds.get(kind, IDLE)
            rate = last.count / self.interval_s
        else:
            rate = tally.count / elapsed if elapsed > 0 else 0.0
        ps = percentiles_ms(tally.window_latency(), (50.0, 99.0))
        return {
            "rate": round(rate, 3),
            "p50_ms": ps.get(50.0),
            "p99_ms": ps.get(99.0),
            "count": tally.count,
            "errors": tally.errors,
        }

    def _timeline_rows(self, elapsed: float) -> list[dict]:
        kinds = list(self._tallies)
        rows = [
            _row(row.index * self.interval_s, self.interval_s, self.interval_s, row.kinds, kinds)
            for row in self._timeline
        ]
        start = self._index * self.interval_s
        current = {
            kind: IntervalStats.of(t.interval_count, t.interval_errors, t.interval_latency)
            for kind, t in self._tallies.items()
            if t.interval_count
        }
        if elapsed > start or current:
            rows.append(_row(start, max(elapsed - start, 0.0), self.interval_s, current, kinds))
        return rows


def _row(
    t_s: float,
    duration_s: float,
    interval_s: float,
    active: dict[str, IntervalStats],
    kinds: list[str],
) -> dict:
    """One timeline interval, JSON-safe, with every kind (idle ones as zeros)."""
    return {
        "t_s": round(t_s, 3),
        "duration_s": round(duration_s, 3),
        "kinds": {kind: _interval_dict(active.get(kind, IDLE), interval_s) for kind in kinds},
    }


def _interval_dict(stats: IntervalStats, interval_s: float) -> dict:
    # a fixed denominator: a final sliver of an interval must not show an absurd rate
    return {
        "count": stats.count,
        "rate_per_s": round(stats.count / interval_s, 3),
        "p50_ms": stats.p50_ms,
        "p99_ms": stats.p99_ms,
        "max_ms": stats.max_ms,
        "errors": stats.errors,
    }
