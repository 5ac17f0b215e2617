"""Device tokens: how they are made, stored and checked.

A token is 32 random bytes, URL-safe base64 text, shown once when the device is
added. Only its SHA-256 is stored: a token has full entropy, so a slow password
hash would add latency to every hello without adding safety. Checks compare
digests in constant time. :func:`authenticate` is the check ``hello`` makes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from server.errors import BadCredentials
from server.storage import devices
from server.storage.database import Database


def new_token() -> str:
    """A fresh device token: 43 URL-safe characters (``A-Z a-z 0-9 - _``), never ``-`` first.

    A leading ``-`` would make ``--token T`` look like an option to a command
    line parser, so such draws are drawn again.
    """
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def hash_token(token: str) -> bytes:
    """The stored form of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_matches(token: str, stored_hash: bytes) -> bool:
    """True when ``token`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_token(token), bytes(stored_hash))


async def authenticate(db: Database, device_id: str, token: str) -> devices.DeviceRecord:
    """The device ``device_id`` if ``token`` is its current token.

    Raises :class:`~server.errors.BadCredentials` for an unknown or revoked
    device or a wrong token, with one message for all three so a prober
    learns nothing.
    """
    device = await devices.get_device(db, device_id)
    if device is None or device.revoked_at is not None:
        raise BadCredentials("unknown device, revoked device or wrong token")
    if not token_matches(token, device.token_hash):
        raise BadCredentials("unknown device, revoked device or wrong token")
    return device
