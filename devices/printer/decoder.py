"""ESC/POS bytes back into what a printer would print, without I/O (sans-IO).

:class:`EscPosDecoder` takes bytes in any pieces (:meth:`EscPosDecoder.feed`)
and gives events out: :class:`PrintedLine` (a line of text and the modes it
was printed in), :class:`PrintedQr` (the payload stored by ``GS ( k`` when the
symbol is printed), :class:`PrintedBarcode`, :class:`Fed`, :class:`Cut`,
:class:`StatusQuery` (a real-time ``DLE EOT n`` the printer must answer),
:class:`Reset` and :class:`Unknown` (a command it does not know, skipped).
:func:`readable` writes an event as one line of text, the form the simulated
printer shows and print-to-file writes:

- a line of default modes is its text; otherwise its modes in brackets come
  first: ``[center bold 2x2] 西湖风景名胜区`` (alignment, ``bold``, width x
  height), the modes in force when its first character arrived;
- ``[qr] T-0001...`` (the payload), ``[barcode CODE128] O2026...`` (the data,
  without CODE128's code-set prefix ``{B``), ``[feed 6]``, ``[cut]``,
  ``[partial cut]``, ``[unknown 1b 58]``; a reset and a status query show
  nothing.

It understands what :mod:`devices.printer.wire` sends and the common commands
around it (docs/devices.md, "Receipt printer"). Text outside Chinese mode is
read as code page 437 (the printers' default), inside ``FS &`` ... ``FS .`` as
GB18030.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class PrintedLine:
    """A line of text, ended by LF (or by a command that prints the buffer)."""

    text: str
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1


@attrs.frozen
class PrintedQr:
    """A QR symbol printed: its ``payload``, ``module`` size in dots, error correction level."""

    payload: str
    module: int | None = None
    ec: str | None = None


@attrs.frozen
class PrintedBarcode:
    """A barcode printed: its symbology (``CODE128``, ``EAN13``...) and data."""

    kind: str
    data: str


@attrs.frozen
class Fed:
    """``ESC d n``: ``lines`` lines of paper fed."""

    lines: int


@attrs.frozen
class Cut:
    """The paper cut (``GS V``); ``partial`` for a partial cut."""

    partial: bool = False


@attrs.frozen
class StatusQuery:
    """``DLE EOT n``: the host asks status ``n`` (1 printer, 2 offline, 3 error, 4 paper)."""

    n: int


@attrs.frozen
class Reset:
    """``ESC @``: modes back to their defaults."""


@attrs.frozen
class Unknown:
    """A command the decoder does not know; ``data`` are the bytes it skipped."""

    data: bytes


Event = PrintedLine | PrintedQr | PrintedBarcode | Fed | Cut | StatusQuery | Reset | Unknown

ESC, GS, FS, DLE, LF, CR = 0x1B, 0x1D, 0x1C, 0x10, 0x0A, 0x0D
_ALIGNS = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
_BARCODES = ("UPC-A", "UPC-E", "EAN13", "EAN8", "CODE39", "ITF", "NW7")
_BARCODES_B = {**{65 + i: name for i, name in enumerate(_BARCODES)}, 72: "CODE93", 73: "CODE128"}
_QR_EC = {48: "L", 49: "M", 50: "Q", 51: "H"}
#: ESC commands with one parameter byte that only change a mode we do not show
_ESC_ONE_ARG = frozenset(b"-2tMGJR{V3 U")
_GS_ONE_ARG = frozenset(b"hwHfBLb")


@attrs.define
class _Modes:
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1
    chinese: bool = False


class EscPosDecoder:
    """A streaming ESC/POS decoder: :meth:`feed` bytes, get the events they complete."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._modes = _Modes()
        self._line: list[tuple[bytes, bool]] = []  # text runs and whether in Chinese mode
        self._line_modes: _Modes | None = None
        self._qr_payload = b""
        self._qr_module: int | None = None
        self._qr_ec: str | None = None

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished command, or text without its LF, are held."""
        return bool(self._buffer or self._line)

    def feed(self, data: bytes) -> list[Event]:
        """Take ``data`` (any piece of the stream); the events it completes, in order."""
        self._buffer += data
        events: list[Event] = []
        while self._buffer:
            used = self._step(events)
            if used == 0:
                break  # an unfinished command: wait for more bytes
            del self._buffer[:used]
        return events

    def flush(self) -> list[Event]:
        """The text waiting for its LF, as a line (at the end of a stream); clears it."""
        events: list[Event] = []
        self._end_line(events, force=False)
        return events

    # -- one command ---------------------------------------------------------------------

    def _step(self, events: list[Event]) -> int:
        buf = self._buffer
        first = buf[0]
        if first == LF:
            self._end_line(events, force=True)
            return 1
        if first == CR:
            return 1
        if first == ESC:
            return self._esc(events)
        if first == GS:
            return self._gs(events)
        if first == FS:
            if len(buf) < 2:
                return 0
            if buf[1] in (0x26, 0x2E):  # FS & / FS .
                self._modes.chinese = buf[1] == 0x26
                return 2
            events.append(Unknown(bytes(buf[:2])))
            return 2
        if first == DLE:
            if len(buf) < 2:
                return 0
            if buf[1] == 0x04:
                if len(buf) < 3:
                    return 0
                events.append(StatusQuery(buf[2]))
                return 3
            events.append(Unknown(bytes(buf[:2])))
            return 2
        if first < 0x20:
            events.append(Unknown(bytes(buf[:1])))
            return 1
        end = next((i for i, byte in enumerate(buf) if byte < 0x20), len(buf))
        if self._line_modes is None:
            self._line_modes = attrs.evolve(self._modes)
        self._line.append((bytes(buf[:end]), self._modes.chinese))
        return end

    def _esc(self, events: list[Event]) -> int:
        buf = self._buffer
        if len(buf) < 2:
            return 0
        command = buf[1]
        if command == ord("@"):
            self._end_line(events, force=False)
            self._modes = _Modes()
            events.append(Reset())
            return 2
        if command in (ord("E"), ord("a"), ord("!"), ord("d")) or command in _ESC_ONE_ARG:
            if command == ord("2"):
                return 2
            if len(buf) < 3:
                return 0
            value = buf[2]
            if command == ord("E"):
                self._modes.bold = bool(value & 1)
            elif command == ord("a"):
                self._modes.align = _ALIGNS.get(value, self._modes.align)
            elif command == ord("!"):
                self._modes.bold = bool(value & 0x08)
                self._modes.height = 2 if value & 0x10 else 1
                self._modes.width = 2 if value & 0x20 else 1
            elif command == ord("d"):
                self._end_line(events, force=False)
                events.append(Fed(value))
            return 3
        events.append(Unknown(bytes(buf[:2])))
        return 2

    def _gs(self, events: list[Event]) -> int:
        buf = self._buffer
        if len(buf) < 2:
            return 0
        command = buf[1]
        if command == ord("!"):
            if len(buf) < 3:
                return 0
            self._modes.width = (buf[2] >> 4 & 0x07) + 1
            self._modes.height = (buf[2] & 0x07) + 1
            return 3
        if command == ord("V"):
            return self._cut(events)
        if command == ord("k"):
            return self._barcode(events)
        if command == ord("("):
            return self._gs_paren(events)
        if command in _GS_ONE_ARG:
            return 3 if len(buf) >= 3 else 0
        events.append(Unknown(bytes(buf[:2])))
        return 2

    def _cut(self, events: list[Event]) -> int:
        buf = self._buffer
        if len(buf) < 3:
            return 0
        mode = buf[2]
        used = 3
        if mode in (65, 66):  # feed n and cut
            if len(buf) < 4:
                return 0
            used = 4
        elif mode not in (0, 1, 48, 49):
            events.append(Unknown(bytes(buf[:3])))
            return 3
        self._end_line(events, force=False)
        events.append(Cut(partial=mode in (1, 49, 66)))
        return used

    def _barcode(self, events: list[Event]) -> int:
        buf = self._buffer
        if len(buf) < 3:
            return 0
        kind = buf[2]
        if kind <= 6:  # function A: the data ends with NUL
            try:
                end = buf.index(0, 3)
            except ValueError:
                return 0
            data, used, name = bytes(buf[3:end]), end + 1, _BARCODES[kind]
        elif kind in _BARCODES_B:
            if len(buf) < 4 or len(buf) < 4 + buf[3]:
                return 0
            data, used, name = bytes(buf[4 : 4 + buf[3]]), 4 + buf[3], _BARCODES_B[kind]
        else:
            events.append(Unknown(bytes(buf[:3])))
            return 3
        text = data.decode("ascii", "replace")
        if name == "CODE128" and text[:2] in ("{A", "{B", "{C"):
            text = text[2:]
        self._end_line(events, force=False)
        events.append(PrintedBarcode(name, text))
        return used

    def _gs_paren(self, events: list[Event]) -> int:
        buf = self._buffer
        if len(buf) < 5:
            return 0
        size = buf[3] | buf[4] << 8
        used = 5 + size
        if len(buf) < used:
            return 0
        body = bytes(buf[5:used])
        if buf[2] != ord("k") or len(body) < 2 or body[0] != ord("1"):
            events.append(Unknown(bytes(buf[:used])))
            return used
        function = body[1]
        if function == ord("C") and len(body) >= 3:
            self._qr_module = body[2]
        elif function == ord("E") and len(body) >= 3:
            self._qr_ec = _QR_EC.get(body[2])
        elif function == ord("P") and len(body) >= 3:
            self._qr_payload = body[3:]
        elif function == ord("Q"):
            self._end_line(events, force=False)
            payload = self._qr_payload.decode("utf-8", "replace")
            events.append(PrintedQr(payload, self._qr_module, self._qr_ec))
        elif function != ord("A"):
            events.append(Unknown(bytes(buf[:used])))
        return used

    def _end_line(self, events: list[Event], *, force: bool) -> None:
        """Emit the buffered text as a line; an empty line only for a real LF (``force``)."""
        if not self._line and not force:
            return
        modes = self._line_modes or self._modes
        merged: list[tuple[bytearray, bool]] = []  # a character may arrive in two pieces
        for run, chinese in self._line:
            if merged and merged[-1][1] == chinese:
                merged[-1][0].extend(run)
            else:
                merged.append((bytearray(run), chinese))
        text = "".join(
            run.decode("gb18030" if chinese else "cp437", "replace") for run, chinese in merged
        )
        events.append(PrintedLine(text, modes.align, modes.bold, modes.width, modes.height))
        self._line, self._line_modes = [], None


def readable(event: Event) -> str | None:
    """``event`` as one line of readable text (see the module docstring), or None."""
    if isinstance(event, PrintedLine):
        marks = [event.align] if event.align != "left" else []
        if event.bold:
            marks.append("bold")
        if (event.width, event.height) != (1, 1):
            marks.append(f"{event.width}x{event.height}")
        return f"[{' '.join(marks)}] {event.text}" if marks else event.text
    if isinstance(event, PrintedQr):
        return f"[qr] {event.payload}"
    if isinstance(event, PrintedBarcode):
        return f"[barcode {event.kind}] {event.data}"
    if isinstance(event, Fed):
        return f"[feed {event.lines}]"
    if isinstance(event, Cut):
        return "[partial cut]" if event.partial else "[cut]"
    if isinstance(event, Unknown):
        return f"[unknown {event.data.hex(' ')}]"
    return None


def decode_readable(data: bytes) -> list[str]:
    """Every readable line of a whole stream ``data`` (text without LF at the end included)."""
    decoder = EscPosDecoder()
    events = decoder.feed(data) + decoder.flush()
    return [line for line in map(readable, events) if line is not None]
