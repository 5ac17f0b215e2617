"""Ticket codes: what a ticket's QR holds, and how the server recognises a genuine one.

A code is ``<ticket id>.<key id>.<tag>``: the ticket id, the id of the site
key that made it, and the first 10 characters (50 bits) of the base32
HMAC-SHA256 of the ticket id under that key. Checking a code costs one HMAC
(about 2.4 us), well inside the per-scan budget; a forger who does not hold
the key has one chance in 2^50 per guess. Old keys stay in the key ring for
verification until they are retired. Pure: keys come in as arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from server.errors import ScenicError

TAG_LENGTH = 10
_CODE = re.compile(r"(T[0-9A-Z]{8,24})\.([a-z0-9]{1,8})\.([A-Z2-7]{10})")


class ForgedCode(ScenicError):
    """The code is malformed, names an unknown key, or its tag does not match."""

    code = "forged"


def tag_of(ticket_id: str, secret: bytes) -> str:
    """The keyed tag of ``ticket_id`` under ``secret``."""
    digest = hmac.new(secret, ticket_id.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:TAG_LENGTH]


def make_code(ticket_id: str, key_id: str, secret: bytes) -> str:
    """The code printed on ``ticket_id``'s QR, tagged with key ``key_id``."""
    return f"{ticket_id}.{key_id}.{tag_of(ticket_id, secret)}"


def ticket_id_of(code: str, keys: Mapping[str, bytes]) -> str:
    """The ticket id a genuine ``code`` names.

    Raises :class:`ForgedCode` when the code is malformed, its key is not in
    ``keys`` (unknown or retired), or its tag is wrong.
    """
    match = _CODE.fullmatch(code)
    if match is None:
        raise ForgedCode("not a ticket code")
    ticket_id, key_id, tag = match.groups()
    secret = keys.get(key_id)
    if secret is None:
        raise ForgedCode("the code was made with a key this site does not know")
    if not hmac.compare_digest(tag, tag_of(ticket_id, secret)):
        raise ForgedCode("the code's tag does not match")
    return ticket_id
