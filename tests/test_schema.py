"""Declared op arguments: strict types, ranges, unknown names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.errors import BadRequest
from server.schema import Arg, parse_args

SPEC = (
    Arg("order", "text", max_len=8, pattern=r"o-[0-9]+"),
    Arg("quantity", "int", low=1, high=100),
    Arg("at", "number", required=False),
    Arg("paid", "bool", required=False, default=False),
    Arg(
        "lines",
        "list",
        required=False,
        max_len=3,
        fields=(Arg("product", "text"), Arg("qty", "int", low=1)),
        default=[],
    ),
)


def test_valid_args_are_returned_with_defaults():
    assert parse_args(SPEC, {"order": "o-1", "quantity": 2}) == {
        "order": "o-1",
        "quantity": 2,
        "at": None,
        "paid": False,
        "lines": [],
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"quantity": 2}, "missing argument 'order'"),
        ({"order": "o-1", "quantity": 2, "bogus": 1}, "unknown argument 'bogus'"),
        ({"order": 5, "quantity": 2}, "'order' must be a text string"),
        ({"order": "x-1", "quantity": 2}, "invalid format"),
        ({"order": "o-123456789", "quantity": 2}, "longer than 8"),
        ({"order": "o-1", "quantity": True}, "'quantity' must be an integer"),
        ({"order": "o-1", "quantity": 2.0}, "'quantity' must be an integer"),
        ({"order": "o-1", "quantity": 0}, "at least 1"),
        ({"order": "o-1", "quantity": 10**30}, "at most 100"),
        ({"order": "o-1", "quantity": 1, "at": float("nan")}, "finite number"),
        ({"order": "o-1", "quantity": 1, "at": "now"}, "finite number"),
        ({"order": "o-1", "quantity": 1, "paid": 1}, "boolean"),
        ({"order": "o-1", "quantity": 1, "lines": [{"product": "a"}]}, "lines[0].qty"),
        ({"order": "o-1", "quantity": 1, "lines": [{"product": "a", "qty": 1}] * 4}, "longer"),
        ({"order": "o-1", "quantity": 1, "lines": ["a"]}, "must be a map"),
        ({"order": "", "quantity": 1}, "must not be empty"),
    ],
)
def test_bad_args_are_refused_naming_the_argument(args, fragment):
    with pytest.raises(BadRequest) as refused:
        parse_args(SPEC, args)
    assert fragment in refused.value.message
    assert refused.value.code == "bad_request"


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text() | st.none(), max_size=6))
def test_parse_args_either_accepts_or_raises_bad_request(args):
    try:
        parsed = parse_args(SPEC, args)
    except BadRequest:
        return
    assert set(parsed) == {arg.name for arg in SPEC}
    assert 1 <= parsed["quantity"] <= 100
