"""A live progress line for a running load test.

On a terminal the line is redrawn in place once a second::

    [#########-----------] 45%  27s/60s  order.create 212/s p50 3.1 p99 12.0 | ... | errors 0

Anywhere else (a CI log, a file) a plain line is printed every five seconds
instead, so the log stays readable. :func:`format_progress` builds the line
from a :meth:`~loadtest.metrics.Recorder.snapshot` without any I/O.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

import trio

from loadtest.metrics import Recorder

BAR_WIDTH = 20
PLAIN_EVERY_S = 5.0  # how often a non-terminal stream gets a line
CLEAR_LINE = "\r\x1b[2K"


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """``[####------]`` filled to ``fraction`` (clamped to 0..1) over ``width`` cells."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def format_kind(kind: str, live: dict) -> str:
    """One kind of a snapshot, compactly: ``kind 212/s p50 3.1 p99 12.0 err 2``."""
    text = (
        f"{kind} {live['rate']:.0f}/s p50 {_number(live['p50_ms'])} p99 {_number(live['p99_ms'])}"
    )
    return text + (f" err {live['errors']}" if live["errors"] else "")


def format_progress(snapshot: dict, duration_s: float, *, title: str = "") -> str:
    """The progress line for ``snapshot`` of a run meant to last ``duration_s``.

    Shows the bar, percentage and elapsed / planned seconds, then every kind
    that has completed something (rate, p50 and p99 in ms, errors if any),
    then the total errors. One line, no newline.
    """
    elapsed = snapshot["elapsed_s"]
    fraction = elapsed / duration_s if duration_s > 0 else 1.0
    parts = [
        f"{progress_bar(fraction)} {min(fraction, 1.0):4.0%}  {elapsed:.0f}s/{duration_s:.0f}s"
    ]
    if title:
        parts.insert(0, title)
    kinds = snapshot["kinds"]
    active = [format_kind(kind, live) for kind, live in kinds.items() if live["count"]]
    errors = sum(live["errors"] for live in kinds.values())
    return "  ".join(parts) + "  " + " | ".join([*active, f"errors {errors}"])


async def show_progress(
    recorder: Recorder,
    duration_s: float,
    *,
    stream: TextIO = sys.stderr,
    every_s: float = 1.0,
    title: str = "",
) -> None:
    """Show ``recorder``'s progress on ``stream`` until cancelled.

    On a terminal (``stream.isatty()``) the line is redrawn in place every
    ``every_s`` seconds; otherwise a plain line is printed every five seconds
    (or every ``every_s`` if that is longer). When cancelled it draws the
    final state once more and ends the line, then lets the cancellation
    propagate. Run it in the load test's nursery and cancel it when done.
    """
    tty = _isatty(stream)
    period = every_s if tty else max(every_s, PLAIN_EVERY_S)
    next_at = trio.current_time() + period
    try:
        while True:
            await trio.sleep_until(next_at)
            next_at += period
            _draw(stream, format_progress(recorder.snapshot(), duration_s, title=title), tty)
    finally:
        _draw(stream, format_progress(recorder.snapshot(), duration_s, title=title), tty)
        if tty:
            stream.write("\n")
            stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


def _draw(stream: TextIO, line: str, tty: bool) -> None:
    if tty:
        # a line wider than the terminal wraps, and \r would then redraw only its tail
        width = shutil.get_terminal_size().columns
        stream.write(CLEAR_LINE + line[: max(width - 1, 10)])
    else:
        stream.write(line + "\n")
    stream.flush()
