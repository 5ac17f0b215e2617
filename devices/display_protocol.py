"""The two-line customer display's protocol, sans-IO.

Each update is ``ESC 'C'`` (0x1B 0x43, clear) followed by ``line1 CR LF line2
CR LF`` in UTF-8. The display shows at most ``width`` characters a line
(characters, not bytes: a Chinese character counts as one). Control
characters would break the framing, so :func:`fit_line` turns them into
spaces before a line goes out.
"""

from __future__ import annotations

import attrs

CLEAR = b"\x1bC"
LINE_END = b"\r\n"
DEFAULT_WIDTH = 20
_MAX_LINE_BYTES = 1024  # a "line" longer than this is noise, not an update


def fit_line(text: str, width: int = DEFAULT_WIDTH) -> str:
    """``text`` as the display will show it: control characters as spaces, cut to ``width``."""
    return "".join(ch if ch.isprintable() else " " for ch in text[:width])


def encode_update(line1: str, line2: str, *, width: int = DEFAULT_WIDTH) -> bytes:
    """The bytes that make the display show ``line1`` over ``line2`` (both fitted)."""
    return (
        CLEAR
        + fit_line(line1, width).encode("utf-8")
        + LINE_END
        + fit_line(line2, width).encode("utf-8")
        + LINE_END
    )


@attrs.frozen
class DisplayStats:
    """Counters of a :class:`DisplayParser`: updates shown, bytes outside any update."""

    updates: int = 0
    garbage_bytes: int = 0


class DisplayParser:
    """The display's side: turns the byte stream into ``(line1, line2)`` updates.

    Bytes before a CLEAR are ignored (counted as garbage); a CLEAR in the
    middle of an update starts over; bytes after the second line, up to the
    next CLEAR, are ignored. Invalid UTF-8 shows as U+FFFD, as a real display
    would show a blob.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._in_update = False
        self._counts = {"updates": 0, "garbage_bytes": 0}

    @property
    def stats(self) -> DisplayStats:
        """A snapshot of the counters."""
        return DisplayStats(**self._counts)

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """Take ``data``; return every update it completes, oldest first."""
        self._buffer += data
        out: list[tuple[str, str]] = []
        while True:
            clear = self._buffer.find(CLEAR)
            if not self._in_update:
                if clear < 0:
                    # Keep a trailing ESC: it may be the first half of a CLEAR.
                    keep = 1 if self._buffer.endswith(CLEAR[:1]) else 0
                    self._skip(len(self._buffer) - keep)
                    return out
                self._skip(clear)
                del self._buffer[: len(CLEAR)]
                self._in_update, self._lines = True, []
                continue
            end = self._buffer.find(LINE_END)
            if clear >= 0 and (end < 0 or clear < end):
                self._in_update = False  # restart at the new CLEAR
                continue
            if end < 0:
                if len(self._buffer) > _MAX_LINE_BYTES:
                    self._in_update = False
                    self._skip(len(self._buffer))
                return out
            self._lines.append(self._buffer[:end].decode("utf-8", errors="replace"))
            del self._buffer[: end + len(LINE_END)]
            if len(self._lines) == 2:
                self._counts["updates"] += 1
                out.append((self._lines[0], self._lines[1]))
                self._in_update = False

    def _skip(self, count: int) -> None:
        self._counts["garbage_bytes"] += count
        del self._buffer[:count]
