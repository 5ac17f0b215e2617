"""Identifiers the shells mint: orders, payments, refunds, tickets.

Each is a letter saying what it is, the UTC date it was made, and random
Crockford base32 characters, so ids sort by day, read aloud without
ambiguity at a service desk, and fit the channels' 32-character limit on
``out_trade_no`` and ``out_refund_no``. Minting draws randomness, so only
shells call these (the rules get ids inside their commands); a derived
number (:func:`derived_out_trade_no`) is drawn from a key instead.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_POOL_BYTES = 4096
_pool = b""


def _random_bytes(count: int) -> bytes:
    # The OS's randomness, fetched a page at a time: one syscall per id was a hot spot.
    global _pool
    if len(_pool) < count:
        _pool = secrets.token_bytes(_POOL_BYTES)
    taken, _pool = _pool[:count], _pool[count:]
    return taken


def _random(length: int) -> str:
    # 5 bits per character from one draw (secrets.choice per character costs ten times more).
    number = int.from_bytes(_random_bytes((5 * length + 7) // 8), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def _minted(prefix: str, at: datetime, length: int) -> str:
    return f"{prefix}{at:%Y%m%d}{_random(length)}"


def new_order_id(at: datetime) -> str:
    """A fresh order id, e.g. ``O20261124K3M9Q2XT7V``."""
    return _minted("O", at, 10)


def new_out_trade_no(at: datetime) -> str:
    """A fresh merchant transaction number for one payment attempt."""
    return _minted("P", at, 14)


def derived_out_trade_no(at: datetime, key: str) -> str:
    """The merchant transaction number of the payment ``key`` names, dated ``at``.

    The same key and date give the same number, so asking twice at once for
    the payment of one record (a desk's double tap) starts one payment.
    """
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:9])
    chars = []
    for _ in range(14):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return f"P{at:%Y%m%d}{''.join(chars)}"


def new_out_refund_no(at: datetime) -> str:
    """A fresh refund number, the idempotency key of a refund at its channel."""
    return _minted("R", at, 14)


def new_ticket_id(at: datetime) -> str:
    """A fresh ticket id (the ticket code carries it, with a tag)."""
    return _minted("T", at, 12)


def new_rental_id(at: datetime) -> str:
    """A fresh rental id (``H`` for hire), e.g. ``H20261126K3M9Q2XT7V``; its voucher carries it."""
    return _minted("H", at, 10)


def new_out_order_no(at: datetime) -> str:
    """A fresh merchant number of one pre-authorisation (a freeze) at its channel."""
    return _minted("F", at, 14)
