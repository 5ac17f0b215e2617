"""A receipt as the ESC/POS bytes sent to the printer (pure: no port, no clock).

The commands come from python-escpos (its ``Escpos`` methods writing into a
``Dummy`` printer), except the text. python-escpos's text path
(``MagicEncode``) sends a string as GB18030 only when it holds a character in
U+4E00..U+9FA5 and otherwise switches code pages with ``ESC t`` (so a line of
Chinese punctuation alone, ``（已作废）``, would print as ``?``), and it never
selects the printer's Chinese mode. So text is encoded here, one rule for
every line:

- a line of ASCII only is sent as its ASCII bytes;
- a line with any other character is sent as ``FS &`` (``1c 26``, Chinese
  character mode on), the line in **GB18030**, ``FS .`` (``1c 2e``, off).

Control characters in a text become spaces, so a text can never hold a
command. docs/devices.md, "Receipt printer", lists every sequence.
"""

from __future__ import annotations

import contextlib
import io

from escpos.constants import QR_ECLEVEL_M
from escpos.printer import Dummy

from devices.printer.receipts import Barcode, Feed, Line, QrCode, Receipt

CHINESE_ON = b"\x1c\x26"  # FS &
CHINESE_OFF = b"\x1c\x2e"  # FS .
LF = b"\n"

_ALIGN = {"left": "left", "center": "center", "right": "right"}


def encode_text(text: str) -> bytes:
    """One line's text as sent (without its LF): ASCII as is, else FS & GB18030 FS ."""
    clean = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in text)
    if clean.isascii():
        return clean.encode("ascii")
    return CHINESE_ON + clean.encode("gb18030") + CHINESE_OFF


def encode_line(line: Line) -> bytes:
    """A line: ``GS !`` size, ``ESC E`` bold, ``ESC a`` alignment, the text, LF.

    (The modes in python-escpos's ``set()`` order, all three before every line.)
    """
    printer = Dummy()
    printer.set(
        align=_ALIGN[line.align],
        bold=line.bold,
        custom_size=True,
        width=line.size,
        height=line.size,
    )
    return printer.output + encode_text(line.text) + LF


def encode_qr(qr: QrCode) -> bytes:
    """A QR code, centred: ``ESC a 1`` then python-escpos's native ``GS ( k`` sequence.

    Model 2, ``qr.module`` dots a module, error correction M, the payload in
    UTF-8, then "print the symbol".
    """
    printer = Dummy()
    printer.set(align="center")
    printer.qr(qr.payload, ec=QR_ECLEVEL_M, size=qr.module, native=True)
    return printer.output


def encode_barcode(barcode: Barcode) -> bytes:
    """A CODE128 barcode (code set B), centred, 64 dots high, its text below in font A."""
    printer = Dummy()
    with contextlib.redirect_stdout(io.StringIO()):  # python-escpos prints a note on stdout
        printer.barcode(
            "{B" + barcode.data, "CODE128", height=64, width=2, pos="BELOW", function_type="B"
        )
    return printer.output


def encode_feed(feed: Feed) -> bytes:
    """``ESC d n``: print what is buffered and feed ``n`` lines."""
    printer = Dummy()
    printer.print_and_feed(feed.lines)
    return printer.output


def encode_receipt(receipt: Receipt) -> bytes:
    """Every byte of ``receipt``: ``ESC @``, the blocks in order, then feed 6 lines and cut.

    ``ESC @`` (``1b 40``) resets the printer's modes first; the end is
    python-escpos's ``cut()``: ``ESC d 6`` (``1b 64 06``), ``GS V 0``
    (``1d 56 00``, full cut).
    """
    printer = Dummy()
    printer.hw("INIT")
    out = [printer.output]
    for block in receipt.blocks:
        if isinstance(block, Line):
            out.append(encode_line(block))
        elif isinstance(block, QrCode):
            out.append(encode_qr(block))
        elif isinstance(block, Barcode):
            out.append(encode_barcode(block))
        elif isinstance(block, Feed):
            out.append(encode_feed(block))
        else:  # pragma: no cover - Block is a closed union
            raise TypeError(f"not a receipt block: {block!r}")
    cut = Dummy()
    cut.cut()
    out.append(cut.output)
    return b"".join(out)
