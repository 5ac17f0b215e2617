"""Ticket codes: genuine ones are recognised, any change is caught."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.tickets.codes import ForgedCode, make_code, ticket_id_of

KEYS = {"k1": b"a" * 32, "k2": b"b" * 32}


def test_a_genuine_code_names_its_ticket():
    code = make_code("T20261001ABCDEFGH1234", "k1", KEYS["k1"])
    assert ticket_id_of(code, KEYS) == "T20261001ABCDEFGH1234"
    assert len(code) < 48


def test_codes_of_an_older_key_still_verify_until_it_is_retired():
    code = make_code("T20261001ABCDEFGH1234", "k2", KEYS["k2"])
    assert ticket_id_of(code, KEYS) == "T20261001ABCDEFGH1234"
    with pytest.raises(ForgedCode):
        ticket_id_of(code, {"k1": KEYS["k1"]})


@pytest.mark.parametrize(
    "code",
    [
        "",
        "hello",
        "T20261001ABCDEFGH1234.k1",
        "T20261001ABCDEFGH1234.k1.AAAAAAAAAA",
        "T20261001ABCDEFGH1234.k9.AAAAAAAAAA",
    ],
)
def test_malformed_unknown_key_and_wrong_tag_are_forged(code):
    with pytest.raises(ForgedCode) as refused:
        ticket_id_of(code, KEYS)
    assert refused.value.code == "forged"


@given(st.integers(min_value=0, max_value=40), st.characters(min_codepoint=33, max_codepoint=126))
def test_changing_any_character_makes_a_code_forged(position, replacement):
    code = make_code("T20261001ABCDEFGH1234", "k1", KEYS["k1"])
    position %= len(code)
    if code[position] == replacement:
        return
    changed = code[:position] + replacement + code[position + 1 :]
    with pytest.raises(ForgedCode):
        ticket_id_of(changed, KEYS)
