"""Ticket codes: genuine ones are recognised online and offline, any change is caught."""

from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from actors.tickets.codes import (
    Entitlement,
    ForgedCode,
    SiteKey,
    make_code,
    parse_code,
    ticket_id_of,
    verify_offline,
)


def site_key(key_id: str, fill: bytes) -> SiteKey:
    return SiteKey(key_id, fill * 32, Ed25519PrivateKey.generate().private_bytes_raw())


K1, K2 = site_key("k1", b"a"), site_key("k2", b"b")
SECRETS = {"k1": K1.secret, "k2": K2.secret}
PUBLIC = {"k1": K1.public_key, "k2": K2.public_key}
ADULT = Entitlement("T20261001ABCDEFGH1234", date(2026, 10, 1), None, 1, "adult")


def test_a_genuine_code_names_its_ticket_online_and_its_entitlement_offline():
    code = make_code(ADULT, K1)
    assert ticket_id_of(code, SECRETS) == ADULT.ticket_id
    assert verify_offline(code, PUBLIC) == ADULT
    assert len(code) <= 180  # a version 9 QR code at most


@pytest.mark.parametrize(
    "entitlement",
    [
        Entitlement("T20261001ABCDEFGH1234", date(2026, 10, 1), "AM", 1, "adult-slot"),
        Entitlement("T20261001ABCDEFGH1234", date(2026, 10, 1), None, None, "annual_pass"),
        Entitlement("T20261001ABCDEFGH1234", date(2026, 2, 28), "PM", 12, "ski-10"),
    ],
)
def test_every_kind_of_entitlement_round_trips(entitlement):
    assert verify_offline(make_code(entitlement, K2), PUBLIC) == entitlement


def test_codes_of_an_older_key_still_verify_until_it_is_retired():
    code = make_code(ADULT, K2)
    assert ticket_id_of(code, SECRETS) == ADULT.ticket_id
    with pytest.raises(ForgedCode):
        ticket_id_of(code, {"k1": K1.secret})
    with pytest.raises(ForgedCode):
        verify_offline(code, {"k1": K1.public_key})


@pytest.mark.parametrize(
    "code",
    ["", "hello", "T20261001ABCDEFGH1234.k1", "T20261001ABCDEFGH1234.k1.AAAAAAAAAA", "x" * 400],
)
def test_malformed_codes_are_forged(code):
    with pytest.raises(ForgedCode):
        ticket_id_of(code, SECRETS)
    with pytest.raises(ForgedCode):
        verify_offline(code, PUBLIC)


def test_a_truncated_code_is_forged():
    code = make_code(ADULT, K1)
    for cut in (len(code) - 1, len(code) // 2, 30):
        with pytest.raises(ForgedCode):
            ticket_id_of(code[:cut], SECRETS)


def test_a_changed_entitlement_fails_the_signature_but_not_the_tag():
    # The server trusts its own record of the ticket; the gate agent trusts the signature.
    code = make_code(ADULT, K1)
    upgraded = code.replace(".1.adult.", ".U.adult.")
    assert ticket_id_of(upgraded, SECRETS) == ADULT.ticket_id
    with pytest.raises(ForgedCode):
        verify_offline(upgraded, PUBLIC)


def test_a_code_signed_by_a_foreign_key_is_forged():
    foreign = SiteKey("k1", b"z" * 32, Ed25519PrivateKey.generate().private_bytes_raw())
    code = make_code(ADULT, foreign)
    with pytest.raises(ForgedCode):
        ticket_id_of(code, SECRETS)
    with pytest.raises(ForgedCode):
        verify_offline(code, PUBLIC)


@given(position=st.integers(0, 165), char=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
def test_changing_any_one_character_is_caught_somewhere(position, char):
    code = make_code(ADULT, K1)
    position %= len(code)
    if code[position] == char or code[position] == ".":
        return
    changed = code[:position] + char + code[position + 1 :]
    online_ok = offline_ok = True
    try:
        online_ok = ticket_id_of(changed, SECRETS) == ADULT.ticket_id
    except ForgedCode:
        online_ok = False
    try:
        offline_ok = verify_offline(changed, PUBLIC) == ADULT
    except ForgedCode:
        offline_ok = False
    # The signature covers every field but the tag; the tag covers the ticket id.
    tag_starts = code.index(".", len(ADULT.ticket_id) + 1) + 1
    in_tag = tag_starts <= position < tag_starts + 10
    in_ticket_id_or_tag = position < len(ADULT.ticket_id) or in_tag
    assert offline_ok == in_tag
    if in_ticket_id_or_tag:
        assert not online_ok


def test_parse_code_exposes_the_fields():
    parsed = parse_code(make_code(ADULT, K1))
    assert parsed.key_id == "k1" and parsed.entitlement == ADULT


def test_every_spelling_of_the_last_signature_character_but_one_is_forged():
    code = make_code(ADULT, K1)
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567":
        changed = code[:-1] + char
        if changed == code:
            continue
        with pytest.raises(ForgedCode):
            verify_offline(changed, PUBLIC)
