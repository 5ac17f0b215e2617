"""QR codes as terminal text: two modules per character with half blocks (▀ ▄ █).

Dark modules are spaces and light ones are drawn, so shown light on dark
(white on black) the code reads dark on light, as scanners expect, whatever
the terminal's own colours. A ticket code of about 170 characters is a version 9
code: 57 columns and 29 lines with its quiet zone.
"""

from __future__ import annotations

import segno

__all__ = ["qr_lines"]

# (top module dark, bottom module dark) -> the character drawn in the light colour
_HALVES = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}


def qr_lines(data: str, border: int = 2) -> list[str]:
    """The QR code of ``data`` as lines of text (show it white on black)."""
    rows = [
        [bool(m) for m in row] for row in segno.make(data, error="m").matrix_iter(border=border)
    ]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    return [
        "".join(_HALVES[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]
