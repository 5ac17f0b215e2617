"""Ticket codes: what a ticket's QR holds, checked cheaply online and by signature offline.

A code is seven fields joined by dots::

    T20261126SBXZD6EZTWWK.k4e1.WQXHR44PBP.20261127.AM.1.adult.<signature>
    ticket id            key  tag        date     slot entries product

- the *key id* names the site key that made the code (keys rotate; old ones
  stay valid for verification until retired);
- the *tag* is the first 10 base32 characters (50 bits) of HMAC-SHA256 of the
  ticket id under the key's secret. The server checks only this: one HMAC,
  about 2.4 us, well inside the per-scan budget, and a forger without the
  secret has one chance in 2^50 per guess. What the ticket entitles comes
  from the server's own record of it, never from the code;
- the *entitlement* (visit date, slot or ``-`` for the whole day, entries or
  ``U`` for unlimited, product) and the *signature*: Ed25519 over
  ``ticket id|date|slot|entries|product|key id``, base32 without padding.
  A gate agent that has lost the server checks this with the site's public
  key (about 120 us, spread over the gates) and so tells a genuine ticket
  from a forged one offline.

About 170 characters: a version 9 QR code, which a cheap scanner reads at
once. Pure: keys come in as arguments.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import date

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from actors.errors import DomainError

TAG_LENGTH = 10
_CODE = re.compile(
    r"(T[0-9A-Z]{8,24})\.([a-z0-9]{1,8})\.([A-Z2-7]{10})\."
    r"(\d{8})\.([A-Za-z0-9]{1,8}|-)\.([1-9]\d{0,3}|U)\.([a-z0-9][a-z0-9_-]{0,31})\.([A-Z2-7]{103})"
)


class ForgedCode(DomainError):
    """The code is malformed, names an unknown or retired key, or does not verify."""

    code = "forged"


@attrs.frozen
class Entitlement:
    """What a ticket admits to: the part of a code the signature covers."""

    ticket_id: str
    visit_date: date
    slot: str | None
    entries: int | None  # None: unlimited on its day
    product_id: str


@attrs.frozen
class SiteKey:
    """One site key: the HMAC secret and the Ed25519 signing key, under one key id."""

    key_id: str
    secret: bytes
    signing_key: bytes  # 32-byte Ed25519 private key

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key gate agents verify with."""
        return _private_key(self.signing_key).public_key().public_bytes_raw()


@attrs.frozen
class ParsedCode:
    """A code split into its fields, not yet verified."""

    key_id: str
    tag: str
    entitlement: Entitlement
    signature: str  # base32, unpadded; decoded only by the offline check


def tag_of(ticket_id: str, secret: bytes) -> str:
    """The keyed tag of ``ticket_id`` under ``secret``."""
    digest = hmac.new(secret, ticket_id.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:TAG_LENGTH]


def _signed_bytes(entitlement: Entitlement, key_id: str) -> bytes:
    return "|".join(
        (
            entitlement.ticket_id,
            entitlement.visit_date.isoformat(),
            entitlement.slot or "-",
            "U" if entitlement.entries is None else str(entitlement.entries),
            entitlement.product_id,
            key_id,
        )
    ).encode("ascii")


@functools.lru_cache(maxsize=32)
def _private_key(signing_key: bytes) -> Ed25519PrivateKey:
    # Loading the key costs as much as a tenth of a signature: keep the few a site has.
    return Ed25519PrivateKey.from_private_bytes(signing_key)


@functools.lru_cache(maxsize=32)
def _public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def make_code(entitlement: Entitlement, key: SiteKey) -> str:
    """The code printed on the ticket's QR, made with ``key``."""
    signature = _private_key(key.signing_key).sign(_signed_bytes(entitlement, key.key_id))
    return ".".join(
        (
            entitlement.ticket_id,
            key.key_id,
            tag_of(entitlement.ticket_id, key.secret),
            entitlement.visit_date.strftime("%Y%m%d"),
            entitlement.slot or "-",
            "U" if entitlement.entries is None else str(entitlement.entries),
            entitlement.product_id,
            base64.b32encode(signature).decode("ascii").rstrip("="),
        )
    )


def parse_code(code: str) -> ParsedCode:
    """Split ``code`` into its fields; raises :class:`ForgedCode` if it is malformed."""
    match = _CODE.fullmatch(code)
    if match is None:
        raise ForgedCode("not a ticket code of this site's format")
    ticket_id, key_id, tag, day, slot, entries, product, signature = match.groups()
    try:
        visit_date = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        raise ForgedCode("the code's date is not a date") from None
    entitlement = Entitlement(
        ticket_id,
        visit_date,
        None if slot == "-" else slot,
        None if entries == "U" else int(entries),
        product,
    )
    return ParsedCode(key_id, tag, entitlement, signature)


def ticket_id_of(code: str, secrets: Mapping[str, bytes]) -> str:
    """The ticket a genuine ``code`` names, by its tag (the server's check).

    ``secrets`` maps the key ids still valid to their HMAC secrets. Raises
    :class:`ForgedCode` when the code is malformed, its key is unknown or
    retired, or its tag is wrong.
    """
    parsed = parse_code(code)
    secret = secrets.get(parsed.key_id)
    if secret is None:
        raise ForgedCode("the code was made with a key this site does not accept")
    ticket_id = parsed.entitlement.ticket_id
    if not hmac.compare_digest(parsed.tag, tag_of(ticket_id, secret)):
        raise ForgedCode("the code's tag does not match")
    return ticket_id


def verify_offline(code: str, public_keys: Mapping[str, bytes]) -> Entitlement:
    """What a genuine ``code`` entitles, by its signature (the offline gate's check).

    ``public_keys`` maps the key ids still valid to their Ed25519 public keys.
    Raises :class:`ForgedCode` when the code is malformed, its key is unknown
    or retired, or the signature does not verify.
    """
    parsed = parse_code(code)
    public = public_keys.get(parsed.key_id)
    if public is None:
        raise ForgedCode("the code was made with a key this site does not accept")
    try:
        signature = base64.b32decode(parsed.signature + "=" * (-len(parsed.signature) % 8))
        if base64.b32encode(signature).decode("ascii").rstrip("=") != parsed.signature:
            # the last character carries 3 spare bits: only the canonical spelling counts
            raise ValueError("not the canonical encoding of a signature")
        _public_key(public).verify(signature, _signed_bytes(parsed.entitlement, parsed.key_id))
    except (InvalidSignature, binascii.Error, ValueError):
        raise ForgedCode("the code's signature does not verify") from None
    return parsed.entitlement
