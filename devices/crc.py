"""CRC-16/MODBUS, the checksum of the turnstile controller's frames.

Polynomial 0x8005 processed bit-reflected (0xA001), initial value 0xFFFF, no
final XOR. The check value over ``b"123456789"`` is ``0x4B37``.
"""

from __future__ import annotations


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc16_modbus(data: bytes) -> int:
    """The CRC-16/MODBUS of ``data``, an int in ``0..0xFFFF``.

    On the wire it is sent low byte first (``crc.to_bytes(2, "little")``).
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc
