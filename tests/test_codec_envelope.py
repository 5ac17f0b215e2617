"""The wire codec and the request envelope, without any socket."""

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.codec import MAX_DEPTH, decode_frame, encode
from server.envelope import Rejected, Request, error_frame, event_frame, ok_frame, read_request

LIMIT = 64 * 1024


def frame(value) -> bytes:
    return cbor2.dumps(value)


def test_a_well_formed_request_is_read_with_its_id_op_and_args():
    parsed = read_request(frame({"id": 7, "op": "ping", "args": {"x": 1}}), max_bytes=LIMIT)
    assert parsed == Request(7, "ping", {"x": 1})


def test_args_may_be_left_out_and_default_to_an_empty_map():
    assert read_request(frame({"id": 1, "op": "ping"}), max_bytes=LIMIT) == Request(1, "ping", {})


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\x00garbage", "bad_frame"),
        (b"", "bad_frame"),
        (frame([1, 2, 3]), "bad_frame"),
        (frame("hello"), "bad_frame"),
        (frame({"id": 1, "op": "ping"})[:-2], "bad_frame"),
        (frame({"id": 1, "op": "ping"}) + b"\x00", "bad_frame"),
        (frame({"id": 1, "op": "ping", "args": {"at": cbor2.CBORTag(1, 1700000000)}}), "bad_frame"),
        (
            frame({"id": 1, "op": "ping", "args": {"n": cbor2.CBORTag(2, b"\x01" * 40)}}),
            "bad_frame",
        ),
        (frame({"id": 1, "op": "ping", "args": {"x": cbor2.CBORTag(40000, 1)}}), "bad_frame"),
        (frame({"id": 1, "op": "ping", "args": {"x": cbor2.undefined}}), "bad_frame"),
        (frame({"id": 1, "op": "ping", "args": {"x": cbor2.CBORSimpleValue(99)}}), "bad_frame"),
        (frame({1: "a"}), "bad_frame"),
        (b"\xa2\x62id\x01\x62id\x02", "bad_frame"),  # duplicate key
        (frame({"id": 1, "op": "ping", "args": {"x": [[[[[[[[[[1]]]]]]]]]]}}), "bad_frame"),
        (frame({"id": "1", "op": "ping"}), "bad_request"),
        (frame({"id": -1, "op": "ping"}), "bad_request"),
        (frame({"id": True, "op": "ping"}), "bad_request"),
        (frame({"id": 2**64, "op": "ping"}), "bad_frame"),  # a bignum tag
        (frame({"id": 2**63, "op": "ping"}), "bad_request"),
        (frame({"op": "ping"}), "bad_request"),
        (frame({"id": 1}), "bad_request"),
        (frame({"id": 1, "op": ""}), "bad_request"),
        (frame({"id": 1, "op": "x" * 65}), "bad_request"),
        (frame({"id": 1, "op": "ping", "args": [1]}), "bad_request"),
        (frame({"id": 1, "op": "ping", "extra": 1}), "bad_request"),
        (b"\x62\xff\xfe", "bad_frame"),  # invalid UTF-8
    ],
)
def test_malformed_frames_are_rejected_with_a_code(data, code):
    parsed = read_request(data, max_bytes=LIMIT)
    assert isinstance(parsed, Rejected)
    assert parsed.error.code == code
    assert parsed.error.message


def test_an_oversized_frame_is_too_large_before_it_is_decoded():
    parsed = read_request(
        frame({"id": 1, "op": "ping", "args": {"b": b"x" * LIMIT}}), max_bytes=LIMIT
    )
    assert isinstance(parsed, Rejected)
    assert parsed.error.code == "too_large"


def test_the_request_id_is_kept_when_only_the_rest_is_wrong():
    parsed = read_request(frame({"id": 42, "op": 5}), max_bytes=LIMIT)
    assert isinstance(parsed, Rejected)
    assert parsed.id == 42


def test_nesting_up_to_the_limit_is_accepted():
    value = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    assert decode_frame(frame(value), max_bytes=LIMIT) == value
    with pytest.raises(Exception, match="nested deeper"):
        decode_frame(frame([value]), max_bytes=LIMIT)


def test_a_depth_bomb_is_refused_without_recursion_trouble():
    bomb = b"\x81" * 60000 + b"\x00"
    parsed = read_request(bomb, max_bytes=LIMIT)
    assert isinstance(parsed, Rejected)
    assert parsed.error.code == "bad_frame"


def test_a_huge_declared_length_does_not_allocate_it():
    parsed = read_request(b"\x5b\x00\x00\x00\x0f\xff\xff\xff\xff", max_bytes=LIMIT)
    assert isinstance(parsed, Rejected)
    assert parsed.error.code == "bad_frame"


def test_reply_and_event_frames_have_the_documented_shape():
    assert cbor2.loads(ok_frame(3, {"a": 1})) == {"id": 3, "ok": {"a": 1}}
    assert cbor2.loads(error_frame(None, "bad_frame", "no")) == {
        "id": None,
        "error": {"code": "bad_frame", "message": "no"},
    }
    assert cbor2.loads(event_frame("order.paid", {"order": "o1"})) == {
        "event": "order.paid",
        "data": {"order": "o1"},
    }
    assert decode_frame(encode({"x": [1, 2.5, b"z", None, True]}), max_bytes=LIMIT) == {
        "x": [1, 2.5, b"z", None, True]
    }


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_any_bytes_give_a_request_or_a_rejection_never_an_exception(data):
    parsed = read_request(data, max_bytes=256)
    assert isinstance(parsed, Request | Rejected)
    if isinstance(parsed, Rejected):
        assert parsed.error.code in {"bad_frame", "too_large", "bad_request"}


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["id", "op", "args", "x"]), plain, max_size=4))
def test_any_map_gives_a_request_or_a_rejection(value):
    parsed = read_request(cbor2.dumps(value), max_bytes=LIMIT)
    if isinstance(parsed, Request):
        assert type(parsed.id) is int and isinstance(parsed.op, str)
        assert isinstance(parsed.args, dict)
    else:
        assert parsed.error.code in {"bad_frame", "bad_request"}


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_corrupting_a_valid_frame_never_raises(noise, position):
    data = bytearray(frame({"id": 1, "op": "ticket.scan", "args": {"code": "Q" * 64, "at": 1.5}}))
    data[position % len(data)] ^= noise[0]
    parsed = read_request(bytes(data), max_bytes=LIMIT)
    assert isinstance(parsed, Request | Rejected)
