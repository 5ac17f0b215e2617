"""Structured logging: one JSON object per line, with the device and request in context.

Code logs with the standard :mod:`logging` module, naming the event as the
message and putting details in ``extra``::

    log.warning("frame.rejected", extra={"code": "bad_frame", "detail": "..."})

:data:`device_var` and :data:`request_var` are context variables the session
sets; trio copies the context into tasks it spawns, so every line a request's
task logs carries its device id and request id without passing them around.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

device_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("device", default=None)
request_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("request", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLineFormatter(logging.Formatter):
    """Formats a record as one line of JSON: time, level, logger, event, context, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single JSON line (exceptions included, escaped)."""
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        device = device_var.get()
        if device is not None:
            line["device"] = device
        request = request_var.get()
        if request is not None:
            line["request"] = request
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Send all ``scenic.*`` logs to ``stream`` (stderr) as JSON lines at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("scenic")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
