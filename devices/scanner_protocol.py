"""The QR/barcode scanner's line protocol, sans-IO.

A scanner sends each code as text followed by CR, LF or CR LF. A code is
UTF-8, printable, at most 512 bytes. :class:`ScanLineDecoder` turns the byte
stream into codes and rejects everything else; it does no I/O.
"""

from __future__ import annotations

import re

import attrs

MAX_CODE_BYTES = 512
_TERMINATOR = re.compile(rb"[\r\n]")
_MAX_KEPT = 64  # bytes of a rejected line kept for logs


@attrs.frozen
class ScanError:
    """A line that is not a code: ``reason`` is a stable code, ``data`` its first 64 bytes.

    Reasons: ``too_long`` (over the byte limit; the rest of the line is
    skipped), ``bad_utf8``, ``non_printable`` (control characters inside) and
    ``incomplete`` (a partial line given up by :meth:`ScanLineDecoder.expire_partial`).
    """

    reason: str
    data: bytes


@attrs.frozen
class ScanStats:
    """Counters of a :class:`ScanLineDecoder` since it was made (``reset`` keeps them)."""

    codes: int = 0
    too_long: int = 0
    bad_utf8: int = 0
    non_printable: int = 0
    incomplete: int = 0

    @property
    def rejected(self) -> int:
        """Lines rejected for any reason."""
        return self.too_long + self.bad_utf8 + self.non_printable + self.incomplete


class ScanLineDecoder:
    """Splits a scanner's byte stream into codes.

    Empty lines (including the empty "line" between CR and LF) are ignored, so
    CR, LF and CR LF all end a code. A line longer than ``max_code_bytes`` is
    rejected once, as soon as it is too long, and its remaining bytes up to
    the next terminator are skipped.
    """

    def __init__(self, max_code_bytes: int = MAX_CODE_BYTES) -> None:
        self.max_code_bytes = max_code_bytes
        self._line = bytearray()
        self._skipping = False
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(ScanStats), 0)

    @property
    def stats(self) -> ScanStats:
        """A snapshot of the counters."""
        return ScanStats(**self._counts)

    @property
    def pending(self) -> bool:
        """Whether part of a line is buffered, waiting for its terminator."""
        return bool(self._line)

    def feed(self, data: bytes) -> list[str | ScanError]:
        """Take ``data`` from the line; return the codes and rejections it completes."""
        out: list[str | ScanError] = []
        start = 0
        for match in _TERMINATOR.finditer(data):
            self._take(data[start : match.start()], out)
            self._end_line(out)
            start = match.end()
        self._take(data[start:], out)
        return out

    def expire_partial(self) -> list[str | ScanError]:
        """Give up a partial line that never got its terminator; returns its rejection."""
        if not self._line:
            return []
        error = self._reject("incomplete", bytes(self._line))
        self._line.clear()
        return [error]

    def reset(self) -> None:
        """Forget any partial line (a new connection starts clean); keeps the counters."""
        self._line.clear()
        self._skipping = False

    def _take(self, chunk: bytes, out: list[str | ScanError]) -> None:
        if self._skipping or not chunk:
            return
        self._line += chunk
        if len(self._line) > self.max_code_bytes:
            out.append(self._reject("too_long", bytes(self._line)))
            self._line.clear()
            self._skipping = True

    def _end_line(self, out: list[str | ScanError]) -> None:
        if self._skipping:
            self._skipping = False
            return
        if not self._line:
            return
        raw = bytes(self._line)
        self._line.clear()
        try:
            code = raw.decode("utf-8")
        except UnicodeDecodeError:
            out.append(self._reject("bad_utf8", raw))
            return
        if not code.isprintable():
            out.append(self._reject("non_printable", raw))
            return
        self._counts["codes"] += 1
        out.append(code)

    def _reject(self, reason: str, data: bytes) -> ScanError:
        self._counts[reason] += 1
        return ScanError(reason, data[:_MAX_KEPT])
