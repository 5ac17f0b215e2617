"""Deposit vouchers: one HMAC checks them; a forged, altered, foreign-keyed or ticket code fails."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.rentals.vouchers import (
    TAG_LENGTH,
    ForgedVoucher,
    make_voucher,
    rental_id_of_voucher,
    voucher_tag,
)
from actors.tickets.codes import Entitlement, SiteKey, make_code, tag_of

KEY = SiteKey("k4e1", b"a" * 32, b"\x01" * 32)
OLD = SiteKey("k3", b"b" * 32, b"\x02" * 32)
SECRETS = {KEY.key_id: KEY.secret, OLD.key_id: OLD.secret}
RENTAL = "H20261126K3M9Q2XT7V"


def test_a_voucher_names_its_rental_under_any_accepted_key():
    code = make_voucher(RENTAL, KEY)
    assert code.split(".")[:2] == [RENTAL, "k4e1"] and len(code.split(".")[2]) == TAG_LENGTH
    assert rental_id_of_voucher(code, SECRETS) == RENTAL
    assert rental_id_of_voucher(make_voucher(RENTAL, OLD), SECRETS) == RENTAL


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda c: c.replace(RENTAL, "H20261126K3M9Q2XT7W"), "tag does not match"),
        (lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"), "tag does not match"),
        (lambda c: c.replace(".k4e1.", ".k9."), "does not accept"),
        (lambda c: c + "x", "format"),
        (lambda c: c.lower(), "format"),
        (lambda c: "", "format"),
    ],
)
def test_an_altered_voucher_is_forged(mangle, message):
    with pytest.raises(ForgedVoucher, match=message) as refused:
        rental_id_of_voucher(mangle(make_voucher(RENTAL, KEY)), SECRETS)
    assert refused.value.code == "voucher_forged"


def test_a_voucher_of_a_retired_key_is_forged():
    code = make_voucher(RENTAL, OLD)
    with pytest.raises(ForgedVoucher, match="does not accept"):
        rental_id_of_voucher(code, {KEY.key_id: KEY.secret})


def test_a_tickets_tag_is_never_a_vouchers_and_a_ticket_code_is_no_voucher():
    assert voucher_tag(RENTAL, KEY.secret)[:10] != tag_of(RENTAL, KEY.secret)
    ticket = make_code(Entitlement("T20261126SBXZD6EZTWWK", date(2026, 11, 27), None, 1, "a"), KEY)
    with pytest.raises(ForgedVoucher):
        rental_id_of_voucher(ticket, SECRETS)
    forged = f"{RENTAL}.k4e1.{tag_of(RENTAL, KEY.secret)}{'A' * (TAG_LENGTH - 10)}"
    with pytest.raises(ForgedVoucher):
        rental_id_of_voucher(forged, SECRETS)


@given(st.from_regex(r"[A-Z][0-9A-Z]{8,31}", fullmatch=True))
def test_every_rental_id_makes_a_voucher_that_checks_back(rental_id):
    assert rental_id_of_voucher(make_voucher(rental_id, KEY), SECRETS) == rental_id
