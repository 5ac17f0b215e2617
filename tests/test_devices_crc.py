"""CRC-16/MODBUS: the check value, and agreement with a bit-by-bit definition."""

from hypothesis import given
from hypothesis import strategies as st

from devices.crc import crc16_modbus


def bitwise_crc16_modbus(data: bytes) -> int:
    """The textbook definition: reflected poly 0xA001, init 0xFFFF, one bit at a time."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_check_value_of_123456789_is_4b37():
    assert crc16_modbus(b"123456789") == 0x4B37


def test_empty_input_is_the_initial_value():
    assert crc16_modbus(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_table_crc_equals_bitwise_definition(data):
    assert crc16_modbus(data) == bitwise_crc16_modbus(data)


@given(st.binary(max_size=300))
def test_data_followed_by_its_crc_little_endian_has_zero_residue(data):
    assert crc16_modbus(data + crc16_modbus(data).to_bytes(2, "little")) == 0


@given(st.binary(min_size=1, max_size=64), st.data())
def test_any_single_bit_flip_changes_the_crc(data, draw):
    bit = draw.draw(st.integers(0, len(data) * 8 - 1))
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert crc16_modbus(bytes(flipped)) != crc16_modbus(data)
