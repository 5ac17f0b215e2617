"""The turnstile frame codec, without any I/O: round trips, garbage, splits, rejections."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import turnstile_protocol as protocol
from devices.crc import crc16_modbus
from devices.turnstile_protocol import (
    MAX_FAULT_DETAIL,
    Ack,
    DecodeError,
    Direction,
    Fault,
    FaultCode,
    FrameDecoder,
    Free,
    Lock,
    Mode,
    Nak,
    NakReason,
    Normal,
    OpenEntry,
    OpenExit,
    Passed,
    RequestStatus,
    StatusReport,
    TimedOut,
    encode_frame,
    event_ack,
)

refs = st.integers(0, 0xFFFF)
messages = st.one_of(
    st.builds(OpenEntry, refs),
    st.builds(OpenExit, refs),
    st.sampled_from([Lock(), Free(), Normal(), RequestStatus()]),
    st.builds(Ack, st.integers(0, 0xFF), refs),
    st.builds(Nak, st.integers(0, 0xFF), st.sampled_from(NakReason)),
    st.builds(Passed, refs, st.sampled_from(Direction)),
    st.builds(TimedOut, refs, st.sampled_from(Direction)),
    st.builds(
        Fault,
        st.sampled_from(FaultCode),
        st.text(st.characters(max_codepoint=0x7F), max_size=MAX_FAULT_DETAIL),
        refs,
    ),
    st.builds(StatusReport, st.sampled_from(Mode), st.integers(0, 0xFF)),
)
# Garbage rich in STX (0x02) and in LEN-looking bytes, the hard cases for resynchronising.
garbage = st.lists(st.one_of(st.sampled_from([0x02, 0x03, 0xC8, 0xFF]), st.integers(0, 0xFF)))
garbage_bytes = garbage.map(bytes)
garbage_without_stx = st.binary().map(lambda data: data.replace(b"\x02", b""))


def decode_all(decoder: FrameDecoder, *chunks: bytes) -> list:
    """Feed every chunk, then give up partial frames until nothing is pending."""
    items = []
    for chunk in chunks:
        items.extend(decoder.feed(chunk))
    while decoder.pending:
        items.extend(decoder.expire_partial())
    return items


def only_messages(items: list) -> list:
    return [item for item in items if not isinstance(item, DecodeError)]


DEVICES_MD = Path(__file__).parent.parent / "docs" / "devices.md"
_EXAMPLE = re.compile(
    r"`((?:OpenEntry|OpenExit|Lock|Free|Normal|RequestStatus|Ack|Nak|Passed|TimedOut|Fault"
    r"|StatusReport)\([^`]*\))`(?: \([^)]*\))?: `([0-9a-f]{2}(?: [0-9a-f]{2})*)`"
)


def documented_examples() -> list[tuple[str, str]]:
    """Every "`Message(...)`: `hex`" example in docs/devices.md."""
    return _EXAMPLE.findall(DEVICES_MD.read_text())


def test_the_docs_give_an_example_frame_of_every_message():
    names = {expression.split("(")[0] for expression, _ in documented_examples()}
    assert names == {
        "OpenEntry", "OpenExit", "Lock", "Free", "Normal", "RequestStatus",
        "Ack", "Nak", "Passed", "TimedOut", "Fault", "StatusReport",
    }  # fmt: skip
    assert len(documented_examples()) >= 20


@pytest.mark.parametrize(("expression", "wire"), documented_examples())
def test_documented_examples_encode_and_decode(expression, wire):
    message = eval(expression, vars(protocol))  # the docs' own words, in the module's names
    assert message.to_frame() == bytes.fromhex(wire)
    assert FrameDecoder().feed(bytes.fromhex(wire)) == [message]


def test_the_docs_crc_code_and_worked_example_agree_with_ours():
    text = DEVICES_MD.read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(code, namespace)
    for data in (b"123456789", bytes.fromhex("03101234"), bytes(range(256))):
        assert namespace["crc16_modbus"](data) == crc16_modbus(data)
    assert crc16_modbus(bytes.fromhex("03101234")) == 0xD20C
    assert "`03 10 12 34` and is 0xD20C" in text.replace("\n", " ")


def test_frame_layout_is_stx_len_cmd_payload_crc_little_endian():
    frame = encode_frame(0x10, b"\x00\x07")
    body = bytes([3, 0x10, 0x00, 0x07])
    assert frame == b"\x02" + body + crc16_modbus(body).to_bytes(2, "little")


def test_encode_frame_refuses_a_payload_over_199_bytes():
    assert len(encode_frame(0x92, bytes(199))) == 204
    with pytest.raises(ValueError):
        encode_frame(0x92, bytes(200))


def test_a_fault_detail_takes_at_most_196_bytes_the_rest_of_the_longest_frame():
    longest = Fault(FaultCode.SENSOR, "x" * MAX_FAULT_DETAIL, number=0xFFFF)
    assert MAX_FAULT_DETAIL == 196
    assert longest.to_frame()[1] == 200  # LEN: CMD, code, number and detail
    assert FrameDecoder().feed(longest.to_frame()) == [longest]
    with pytest.raises(ValueError):
        Fault(FaultCode.SENSOR, "x" * 197)


def test_the_host_acknowledges_an_event_by_its_cmd_and_ref():
    assert event_ack(Passed(0x1234, Direction.ENTRY)) == Ack(0x90, 0x1234)
    assert event_ack(TimedOut(9, Direction.EXIT)) == Ack(0x91, 9)
    assert event_ack(Fault(FaultCode.JAMMED, "ARM2", number=7)) == Ack(0x92, 7)


def test_message_values_are_validated():
    with pytest.raises(ValueError):
        OpenEntry(0x10000)
    with pytest.raises(ValueError):
        Fault(FaultCode.JAMMED, "卡住")
    with pytest.raises(ValueError):
        Nak(0x10, 9)


@given(messages)
def test_any_message_round_trips(message):
    decoder = FrameDecoder()
    assert decoder.feed(message.to_frame()) == [message]
    assert not decoder.pending
    assert decoder.stats.messages == 1


@given(st.lists(st.tuples(garbage_without_stx, messages), max_size=8), garbage_without_stx)
def test_garbage_between_frames_is_skipped_and_counted(pairs, tail):
    stream = b"".join(junk + message.to_frame() for junk, message in pairs) + tail
    decoder = FrameDecoder()
    items = decode_all(decoder, stream)
    assert only_messages(items) == [message for _, message in pairs]
    assert all(item.reason == "garbage" for item in items if isinstance(item, DecodeError))
    assert decoder.stats.garbage_bytes == sum(len(junk) for junk, _ in pairs) + len(tail)


# Garbage containing STX can, once in 65536 candidate frames, carry a matching CRC by
# chance: that is the protocol's limit, not a decoder bug. A fixed seed keeps this
# test deterministic instead of failing at random once in a few hundred runs.
@settings(derandomize=True, max_examples=300)
@given(st.lists(st.tuples(garbage_bytes, messages), max_size=8), garbage_bytes, st.data())
def test_random_garbage_never_crashes_and_every_frame_is_recovered_in_order(pairs, tail, data):
    stream = b"".join(junk + message.to_frame() for junk, message in pairs) + tail
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    items = decode_all(FrameDecoder(), *chunks)
    assert only_messages(items) == [message for _, message in pairs]


@given(st.lists(messages, min_size=1, max_size=4))
def test_frames_split_at_every_position_decode_the_same(batch):
    stream = b"".join(message.to_frame() for message in batch)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == batch
        assert decoder.stats.errors == 0


@given(st.lists(messages, min_size=1, max_size=3))
def test_frames_fed_one_byte_at_a_time_decode_the_same(batch):
    stream = b"".join(message.to_frame() for message in batch)
    decoder = FrameDecoder()
    items = []
    for byte in stream:
        items.extend(decoder.feed(bytes([byte])))
    assert items == batch


@given(messages, messages, st.integers(1, 2))
def test_a_bad_crc_is_rejected_counted_and_the_next_frame_still_decodes(first, second, which):
    broken = bytearray(first.to_frame())
    broken[-which] ^= 0x5A
    decoder = FrameDecoder()
    items = decode_all(decoder, bytes(broken) + second.to_frame())
    assert only_messages(items) == [second]
    assert items[0] == DecodeError("bad_crc", bytes(broken))
    # A 0x02 inside the broken frame is tried as a frame start too, and rejected as well.
    assert decoder.stats.bad_crc >= 1


@pytest.mark.parametrize("length", [0, 201, 255])
def test_an_impossible_length_is_rejected_and_decoding_resumes(length):
    decoder = FrameDecoder()
    items = decoder.feed(bytes([0x02, length]) + Lock().to_frame())
    assert items[0] == DecodeError("bad_length", bytes([0x02, length]))
    assert only_messages(items) == [Lock()]
    assert decoder.stats.bad_length == 1


def test_a_stray_stx_with_a_long_length_holds_frames_until_expired():
    decoder = FrameDecoder()
    assert decoder.feed(b"\x02\xc8" + Lock().to_frame()) == []
    assert decoder.pending
    items = decoder.expire_partial()
    assert items[0].reason == "incomplete"
    assert only_messages(items) == [Lock()]
    assert not decoder.pending
    assert decoder.stats.incomplete == 1


def test_an_unknown_command_with_a_good_crc_names_the_command():
    decoder = FrameDecoder()
    [error] = decoder.feed(encode_frame(0x42, b"\x01"))
    assert (error.reason, error.cmd) == ("unknown_command", 0x42)
    assert decoder.stats.unknown_command == 1


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(0x10, b"\x01"),  # OPEN_ENTRY needs a 2-byte ref
        encode_frame(0x12, b"\x00"),  # LOCK takes no payload
        encode_frame(0x92, b"\x09\x00\x01"),  # fault code 9 is undefined
        encode_frame(0x92, b"\x01\x00\x01\xff"),  # fault detail is ASCII
        encode_frame(0x92, b"\x01"),  # a fault needs its number
        encode_frame(0x93, b"\x07\x00"),  # mode 7 is undefined
        encode_frame(0x90, b"\x02\x00\x01"),  # direction 2 is undefined
    ],
)
def test_a_known_command_with_a_bad_payload_is_rejected(frame):
    decoder = FrameDecoder()
    [error] = decoder.feed(frame)
    assert (error.reason, error.cmd) == ("bad_payload", frame[2])
    assert decoder.stats.bad_payload == 1


def test_reset_drops_a_partial_frame_but_keeps_the_counters():
    decoder = FrameDecoder()
    decoder.feed(b"junk" + Lock().to_frame()[:3])
    decoder.reset()
    assert not decoder.pending
    assert decoder.feed(Free().to_frame()) == [Free()]
    assert decoder.stats.garbage_bytes == 4
