"""Argument types of the ``scenic`` flags: each refuses a bad value with one line.

argparse calls them with the flag's text; a value that cannot be used raises
``argparse.ArgumentTypeError`` saying what the flag takes, which the command
prints as its usage error (exit status 2). The rules are the configuration's
(:func:`server.config.setting_problem`), so a flag and its ``SCENIC_*``
variable refuse the same values.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from server.config import setting_problem


def report_date(text: str) -> date:
    """A calendar date written YYYY-MM-DD (a business date to report)."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: give it as YYYY-MM-DD") from None


def port_number(text: str) -> int:
    """A TCP port, 0-65535 (0 picks a free one)."""
    return _setting("port", whole_number(text))


def worker_count(text: str) -> int:
    """A number of server processes, at least 1."""
    return _setting("workers", whole_number(text))


def log_level(text: str) -> str:
    """DEBUG, INFO, WARNING or ERROR, in any case; returned in capitals."""
    return _setting("log_level", text).upper()


def daily_time(text: str) -> str:
    """A time of day as ``HH:MM``, or ``off`` (the daily reconciliation's time)."""
    return _setting("recon_at", text)


def seconds(text: str) -> float:
    """A duration in seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: give more than 0 seconds")
    return value


def websocket_url(text: str) -> str:
    """A ``ws://`` or ``wss://`` URL."""
    if not text.startswith(("ws://", "wss://")) or len(text.split("://", 1)[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ws:// URL, e.g. ws://127.0.0.1:8765")
    return text


def whole_number(text: str) -> int:
    """An integer written in decimal."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _setting(name: str, value: Any) -> Any:
    problem = setting_problem(name, value)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{value!r} cannot be used: {problem}")
    return value
