"""Signing and verifying payment notifications: HMAC-SHA256 over canonical fields.

Modelled on WeChat Pay's API-v2 ``HMAC-SHA256`` sign type: the fields other
than ``signature`` are sorted by name, joined as ``key=value`` with ``&``, and
the merchant key signs the result; the hex digest is upper-cased. Each
delivery carries a fresh ``nonce`` and its ``sign_ts`` (seconds since the
epoch), and a receiver refuses a timestamp further than ``MAX_SKEW_S`` from its
own clock, so a captured notification cannot be replayed days later (within
the window a replay is a duplicate, which the order's rules make harmless).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from server.channels.adapter import BadSignature

#: how far a notification's sign_ts may be from the receiver's clock, in seconds
MAX_SKEW_S = 300.0
#: the fields every notification carries, all covered by the signature
NOTIFICATION_FIELDS = (
    "channel",
    "out_trade_no",
    "channel_txn_id",
    "amount_fen",
    "paid_at",
    "nonce",
    "sign_ts",
)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: sorted ``key=value`` pairs joined by ``&``."""
    parts = []
    for key in sorted(fields):
        if key == "signature" or fields[key] is None:
            continue
        value = fields[key]
        if isinstance(value, float):
            value = repr(value)
        parts.append(f"{key}={value}")
    return "&".join(parts).encode("utf-8")


def sign(fields: Mapping[str, Any], secret: bytes) -> str:
    """The signature of ``fields`` under ``secret``."""
    return hmac.new(secret, canonical(fields), hashlib.sha256).hexdigest().upper()


def signed(fields: Mapping[str, Any], secret: bytes, now_ts: float) -> dict[str, Any]:
    """``fields`` with a fresh nonce, ``sign_ts`` and ``signature`` added."""
    body = {**fields, "nonce": secrets.token_hex(16), "sign_ts": float(now_ts)}
    body.pop("signature", None)
    return {**body, "signature": sign(body, secret)}


def verify(
    fields: Mapping[str, Any],
    secret: bytes,
    now_ts: float,
    signed_fields: tuple[str, ...] = NOTIFICATION_FIELDS,
) -> None:
    """Raise :class:`BadSignature` unless ``fields`` is complete, fresh and signed by ``secret``.

    The signature covers exactly ``signed_fields`` (a payment notification's
    by default; a freeze notification has its own list).
    """
    missing = [name for name in (*signed_fields, "signature") if fields.get(name) is None]
    if missing:
        raise BadSignature(f"notification lacks {', '.join(missing)}")
    signature = fields["signature"]
    if not isinstance(signature, str) or not hmac.compare_digest(
        signature.upper(), sign({k: fields[k] for k in signed_fields}, secret)
    ):
        raise BadSignature("the notification's signature does not match")
    sign_ts = fields["sign_ts"]
    if type(sign_ts) not in (int, float):
        raise BadSignature("the notification's sign_ts is not a number")
    if not abs(sign_ts - now_ts) <= MAX_SKEW_S:  # written so that NaN is refused too
        raise BadSignature(
            f"the notification was signed {sign_ts:.0f}, more than "
            f"{MAX_SKEW_S:.0f}s from now: stale or replayed"
        )
