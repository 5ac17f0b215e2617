"""Deposit vouchers: the code a visitor shows at the rental desk, checked with one HMAC.

A voucher is three fields joined by dots::

    H20261126K3M9Q2XT7V.k4e1.MFRGGZDFMZTWQ2LKNNWG23TP
    rental id           key  tag

- the *key id* names the site key that made it (the same keys as ticket
  codes, :mod:`actors.tickets.codes`; keys rotate, old ones stay valid
  until retired);
- the *tag* is the first 24 base32 characters (120 bits) of HMAC-SHA256,
  under that key's secret, of ``rental-voucher|`` and the rental id. The
  prefix keeps a voucher's tag from ever being a ticket's, and the rental
  id inside the HMAC keeps a voucher from being altered to another rental.

What the voucher entitles (which units, paid or not, used or not) is the
rental's own state, never the code's. Pure: keys come in as arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from actors.errors import DomainError
from actors.tickets.codes import SiteKey

TAG_LENGTH = 24
_DOMAIN = b"rental-voucher|"
_VOUCHER = re.compile(r"([A-Z][0-9A-Z]{8,31})\.([a-z0-9]{1,8})\.([A-Z2-7]{24})")


class ForgedVoucher(DomainError):
    """The voucher is malformed, names an unknown or retired key, or its tag is wrong."""

    code = "voucher_forged"


def voucher_tag(rental_id: str, secret: bytes) -> str:
    """The keyed tag of ``rental_id``'s voucher under ``secret``."""
    digest = hmac.new(secret, _DOMAIN + rental_id.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:TAG_LENGTH]


def make_voucher(rental_id: str, key: SiteKey) -> str:
    """The voucher code of ``rental_id``, made with ``key``."""
    return f"{rental_id}.{key.key_id}.{voucher_tag(rental_id, key.secret)}"


def rental_id_of_voucher(code: str, secrets: Mapping[str, bytes]) -> str:
    """The rental a genuine voucher ``code`` names (one HMAC).

    ``secrets`` maps the key ids still valid to their HMAC secrets. Raises
    :class:`ForgedVoucher` when the code is malformed, its key is unknown or
    retired, or its tag does not match.
    """
    match = _VOUCHER.fullmatch(code)
    if match is None:
        raise ForgedVoucher("not a deposit voucher of this site's format")
    rental_id, key_id, tag = match.groups()
    secret = secrets.get(key_id)
    if secret is None:
        raise ForgedVoucher("the voucher was made with a key this site does not accept")
    if not hmac.compare_digest(tag, voucher_tag(rental_id, secret)):
        raise ForgedVoucher("the voucher's tag does not match")
    return rental_id
