"""Money as a cashier handles it: yuan typed in, fen on the wire, change handed back.

All amounts are integer fen. :func:`parse_yuan` is strict (what a cashier
types: ``120``, ``120.5``, ``120.50``), :func:`yuan` shows fen as yuan with
two decimals, :func:`change_due` says what to hand back and
:func:`change_in_notes` in which notes and coins.
"""

from __future__ import annotations

import re

#: the notes and coins of the renminbi a drawer holds, in fen, largest first
DENOMINATIONS_FEN = (10000, 5000, 2000, 1000, 500, 100, 50, 10)
#: the most a cashier may type: 1 million yuan (more is a typo)
MAX_TENDERED_FEN = 100_000_000

_YUAN = re.compile(r"(\d{1,9})(?:\.(\d{1,2}))?")


class NotEnoughCash(ValueError):
    """The visitor handed over less than the total."""

    def __init__(self, total_fen: int, tendered_fen: int) -> None:
        super().__init__(f"{yuan(tendered_fen)} is less than the total {yuan(total_fen)}")
        self.short_fen = total_fen - tendered_fen


def yuan(fen: int) -> str:
    """``fen`` as yuan with two decimals: ``12050`` -> ``"120.50"``, ``-5`` -> ``"-0.05"``."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def parse_yuan(text: str) -> int:
    """The fen a cashier typed as yuan (``"120"``, ``"120.5"``, ``"120.50"``).

    Raises ``ValueError`` for anything else: a sign, a comma, three decimals,
    an empty field, or more than :data:`MAX_TENDERED_FEN`.
    """
    match = _YUAN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an amount in yuan (like 120 or 120.50)")
    whole, part = match.group(1), (match.group(2) or "").ljust(2, "0")
    fen = int(whole) * 100 + int(part)
    if fen > MAX_TENDERED_FEN:
        raise ValueError(f"{text} yuan is more than a counter takes at once")
    return fen


def change_due(total_fen: int, tendered_fen: int) -> int:
    """What to hand back when ``tendered_fen`` pays ``total_fen``.

    Raises :class:`NotEnoughCash` when the visitor handed over less.
    """
    if tendered_fen < total_fen:
        raise NotEnoughCash(total_fen, tendered_fen)
    return tendered_fen - total_fen


def change_in_notes(change_fen: int) -> list[tuple[int, int]]:
    """The fewest notes and coins of :data:`DENOMINATIONS_FEN` that make ``change_fen``.

    A list of (denomination, count), largest first, counts above zero. The
    smallest coin is 1 jiao: a change with odd fen (``change_fen % 10``)
    leaves them out, and the caller rounds (``ValueError`` here).
    """
    if change_fen < 0 or change_fen % 10:
        raise ValueError(f"{change_fen} fen cannot be handed back in notes and coins")
    out = []
    for note in DENOMINATIONS_FEN:
        count, change_fen = divmod(change_fen, note)
        if count:
            out.append((note, count))
    return out
