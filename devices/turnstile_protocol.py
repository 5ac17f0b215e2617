"""The turnstile controller's framed binary protocol, sans-IO.

A frame on the wire::

    STX 0x02 | LEN | CMD | PAYLOAD ... | CRC lo | CRC hi

``LEN`` is ``len(CMD + PAYLOAD)``, 1..200. ``CRC`` is CRC-16/MODBUS over
``LEN + CMD + PAYLOAD``, little-endian. Refs are u16 big-endian.

Commands go host -> controller and are answered (ACK, NAK, STATUS_REPORT);
events (PASSED, TIMEOUT, FAULT) go controller -> host and are acknowledged
by the host with an ACK naming the event's CMD and ref (a FAULT's ref is its
number), which the controller does not answer. The controller sends an event
again until it is acknowledged.

This module turns messages into frames (:func:`encode_frame`, ``to_frame()`` on
every message class) and bytes into messages (:class:`FrameDecoder`). It does
no I/O and reads no clock: the driver and the simulator both build on it, and
the tests exercise it without a serial port. docs/devices.md has the command
table with examples.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

from devices.crc import crc16_modbus

STX = 0x02
MAX_LEN = 200  # the largest LEN: CMD plus at most 199 payload bytes
_MAX_GARBAGE_KEPT = 64  # bytes of an offending input kept in a DecodeError, for logs


class Command(enum.IntEnum):
    """The CMD byte of every message, host -> controller (0x1_) and back (0x8_, 0x9_)."""

    OPEN_ENTRY = 0x10
    OPEN_EXIT = 0x11
    LOCK = 0x12
    FREE = 0x13
    NORMAL = 0x14
    STATUS = 0x15
    ACK = 0x80
    NAK = 0x81
    PASSED = 0x90
    TIMEOUT = 0x91
    FAULT = 0x92
    STATUS_REPORT = 0x93


class Direction(enum.IntEnum):
    """Which way a visitor walks through the gate."""

    ENTRY = 0
    EXIT = 1


class NakReason(enum.IntEnum):
    """Why the controller refused a command."""

    BUSY = 1
    LOCKED = 2
    BAD_COMMAND = 3


class FaultCode(enum.IntEnum):
    """What went wrong in the gate mechanism."""

    JAMMED = 1
    POWER = 2
    SENSOR = 3
    FORCED = 4


class Mode(enum.IntEnum):
    """The gate's operating mode: normal (opens per command), locked, or free passage."""

    NORMAL = 0
    LOCKED = 1
    FREE = 2


# Bits of StatusReport.flags.
FLAG_ARMS_OPEN = 0x01  # a passage is open and waiting for the visitor
FLAG_FAULT = 0x02  # a fault was reported and not cleared by a mode change


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """The complete frame for ``cmd`` and ``payload``.

    Raises ValueError when ``cmd`` is not a byte or the payload is longer than
    199 bytes (LEN would exceed 200).
    """
    if not 0 <= cmd <= 0xFF:
        raise ValueError(f"cmd {cmd} is not a byte")
    if len(payload) + 1 > MAX_LEN:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the frame limit")
    body = bytes((len(payload) + 1, cmd)) + payload
    return bytes((STX,)) + body + crc16_modbus(body).to_bytes(2, "little")


_u16 = attrs.validators.and_(
    attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(0xFFFF)
)
_byte = attrs.validators.and_(
    attrs.validators.instance_of(int), attrs.validators.ge(0), attrs.validators.le(0xFF)
)


#: the longest fault detail: LEN 200 less CMD, code and number
MAX_FAULT_DETAIL = MAX_LEN - 4


def _ascii_detail(_instance: object, _attribute: object, value: str) -> None:
    if not value.isascii() or len(value) > MAX_FAULT_DETAIL:
        raise ValueError(f"fault detail must be ASCII, at most {MAX_FAULT_DETAIL} characters")


@attrs.frozen
class OpenEntry:
    """Host -> controller: open the gate for one visitor walking in; ``ref`` names the passage."""

    CMD: ClassVar[Command] = Command.OPEN_ENTRY
    ref: int = attrs.field(validator=_u16)

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD, self.ref.to_bytes(2, "big"))


@attrs.frozen
class OpenExit:
    """Host -> controller: open the gate for one visitor walking out; ``ref`` names the passage."""

    CMD: ClassVar[Command] = Command.OPEN_EXIT
    ref: int = attrs.field(validator=_u16)

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD, self.ref.to_bytes(2, "big"))


@attrs.frozen
class Lock:
    """Host -> controller: lock the gate; OPEN commands are refused until NORMAL or FREE."""

    CMD: ClassVar[Command] = Command.LOCK

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD)


@attrs.frozen
class Free:
    """Host -> controller: free passage, arms up (evacuation, staff crowds)."""

    CMD: ClassVar[Command] = Command.FREE

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD)


@attrs.frozen
class Normal:
    """Host -> controller: back to normal mode, one passage per OPEN command."""

    CMD: ClassVar[Command] = Command.NORMAL

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD)


@attrs.frozen
class RequestStatus:
    """Host -> controller: report the mode; answered by a :class:`StatusReport`, not an ACK."""

    CMD: ClassVar[Command] = Command.STATUS

    def to_frame(self) -> bytes:
        """This command as a frame."""
        return encode_frame(self.CMD)


@attrs.frozen
class Ack:
    """An acknowledgement of message ``cmd``; ``ref`` names which one (0 if it has none).

    Controller -> host: command ``cmd`` was accepted, ``ref`` echoes its ref.
    Host -> controller: event ``cmd`` (PASSED, TIMEOUT, FAULT) was received,
    ``ref`` is the event's ref (a fault's number); the controller stops
    sending that event again and does not answer.
    """

    CMD: ClassVar[Command] = Command.ACK
    cmd: int = attrs.field(validator=_byte)
    ref: int = attrs.field(default=0, validator=_u16)

    def to_frame(self) -> bytes:
        """This reply as a frame."""
        return encode_frame(self.CMD, bytes((self.cmd,)) + self.ref.to_bytes(2, "big"))


@attrs.frozen
class Nak:
    """Controller -> host: command ``cmd`` was refused for ``reason``."""

    CMD: ClassVar[Command] = Command.NAK
    cmd: int = attrs.field(validator=_byte)
    reason: NakReason = attrs.field(converter=NakReason)

    def to_frame(self) -> bytes:
        """This reply as a frame."""
        return encode_frame(self.CMD, bytes((self.cmd, self.reason)))


@attrs.frozen
class Passed:
    """Controller -> host: the visitor of passage ``ref`` walked through in ``direction``."""

    CMD: ClassVar[Command] = Command.PASSED
    ref: int = attrs.field(validator=_u16)
    direction: Direction = attrs.field(converter=Direction)

    def to_frame(self) -> bytes:
        """This event as a frame (direction byte first, then the ref)."""
        return encode_frame(self.CMD, bytes((self.direction,)) + self.ref.to_bytes(2, "big"))


@attrs.frozen
class TimedOut:
    """Controller -> host: passage ``ref`` was opened but nobody walked through in the window."""

    CMD: ClassVar[Command] = Command.TIMEOUT
    ref: int = attrs.field(validator=_u16)
    direction: Direction = attrs.field(converter=Direction)

    def to_frame(self) -> bytes:
        """This event as a frame (direction byte first, then the ref)."""
        return encode_frame(self.CMD, bytes((self.direction,)) + self.ref.to_bytes(2, "big"))


@attrs.frozen
class Fault:
    """Controller -> host: the mechanism reports ``code``, with an optional ASCII ``detail``.

    ``number`` is the controller's own count of its faults (after 65535 comes
    1): the ref the host acknowledges the fault by. On the wire the number
    comes before the detail.
    """

    CMD: ClassVar[Command] = Command.FAULT
    code: FaultCode = attrs.field(converter=FaultCode)
    detail: str = attrs.field(default="", validator=_ascii_detail)
    number: int = attrs.field(default=0, validator=_u16)

    @property
    def ref(self) -> int:
        """What the host's ACK names: the fault's number."""
        return self.number

    def to_frame(self) -> bytes:
        """This event as a frame: code, number (u16 big-endian), detail."""
        payload = bytes((self.code,)) + self.number.to_bytes(2, "big") + self.detail.encode("ascii")
        return encode_frame(self.CMD, payload)


@attrs.frozen
class StatusReport:
    """Controller -> host: the answer to STATUS: ``mode`` and ``flags`` (FLAG_* bits)."""

    CMD: ClassVar[Command] = Command.STATUS_REPORT
    mode: Mode = attrs.field(converter=Mode)
    flags: int = attrs.field(default=0, validator=_byte)

    def to_frame(self) -> bytes:
        """This reply as a frame."""
        return encode_frame(self.CMD, bytes((self.mode, self.flags)))


HostCommand = OpenEntry | OpenExit | Lock | Free | Normal | RequestStatus
ControllerMessage = Ack | Nak | Passed | TimedOut | Fault | StatusReport
ControllerEvent = Passed | TimedOut | Fault
"""What the controller sends of its own accord, again until the host acknowledges it."""


def event_ack(event: ControllerEvent) -> Ack:
    """The host's acknowledgement of ``event``: an ACK naming its CMD and ref."""
    return Ack(event.CMD, event.ref)


Message = HostCommand | ControllerMessage


@attrs.frozen
class DecodeError:
    """Bytes that did not make a message; ``reason`` is a stable code, ``data`` the bytes.

    Reasons: ``garbage`` (bytes outside any frame), ``bad_length`` (LEN 0 or
    over 200), ``bad_crc``, ``unknown_command`` (a well-formed frame with a CMD
    byte this protocol does not define; ``cmd`` says which), ``bad_payload``
    (a known CMD with a payload of the wrong size or an undefined value) and
    ``incomplete`` (a partial frame given up by :meth:`FrameDecoder.expire_partial`).
    ``data`` is cut to its first 64 bytes.
    """

    reason: str
    data: bytes = b""
    cmd: int | None = None


def decode_message(cmd: int, payload: bytes) -> Message:
    """The message a CRC-checked frame carries.

    Raises ValueError when ``cmd`` is not defined or the payload does not fit
    it (wrong size, an undefined enum value, a non-ASCII fault detail).
    """
    command = Command(cmd)
    if command in (Command.OPEN_ENTRY, Command.OPEN_EXIT):
        _expect_size(payload, 2)
        ref = int.from_bytes(payload, "big")
        return OpenEntry(ref) if command is Command.OPEN_ENTRY else OpenExit(ref)
    if command in _NO_PAYLOAD:
        _expect_size(payload, 0)
        return _NO_PAYLOAD[command]
    if command is Command.ACK:
        _expect_size(payload, 3)
        return Ack(payload[0], int.from_bytes(payload[1:], "big"))
    if command is Command.NAK:
        _expect_size(payload, 2)
        return Nak(payload[0], payload[1])
    if command in (Command.PASSED, Command.TIMEOUT):
        _expect_size(payload, 3)
        cls = Passed if command is Command.PASSED else TimedOut
        return cls(ref=int.from_bytes(payload[1:], "big"), direction=payload[0])
    if command is Command.FAULT:
        if len(payload) < 3:
            raise ValueError("FAULT needs a code byte and a number")
        return Fault(payload[0], payload[3:].decode("ascii"), int.from_bytes(payload[1:3], "big"))
    _expect_size(payload, 2)
    return StatusReport(payload[0], payload[1])


_NO_PAYLOAD: dict[Command, Message] = {
    Command.LOCK: Lock(),
    Command.FREE: Free(),
    Command.NORMAL: Normal(),
    Command.STATUS: RequestStatus(),
}


_KNOWN_COMMANDS = frozenset(int(command) for command in Command)


def _expect_size(payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise ValueError(f"payload of {len(payload)} bytes, expected {size}")


@attrs.frozen
class DecoderStats:
    """Counters of a :class:`FrameDecoder` since it was made (``reset`` keeps them)."""

    messages: int = 0
    garbage_bytes: int = 0
    bad_length: int = 0
    bad_crc: int = 0
    unknown_command: int = 0
    bad_payload: int = 0
    incomplete: int = 0

    @property
    def errors(self) -> int:
        """Rejected frames of any kind (garbage bytes are counted separately)."""
        rejected = (self.bad_length, self.bad_crc, self.unknown_command, self.bad_payload)
        return sum(rejected) + self.incomplete


class FrameDecoder:
    """Turns a byte stream into messages, resynchronising after anything broken.

    Feed it whatever the port delivered; frames may be split across feeds in
    any way. Bytes before an STX are garbage. A candidate frame with an
    impossible LEN or a wrong CRC is rejected and the search for the next STX
    restarts one byte after the rejected STX, so a real frame hidden behind a
    stray 0x02 is still found. Every rejection comes out as a
    :class:`DecodeError` in order with the messages, and is counted in
    :attr:`stats`.

    A stray 0x02 followed by a large LEN makes the decoder wait for bytes that
    will never come. Serial framing ends that with silence: when the line has
    been quiet for a while with :attr:`pending` bytes, the I/O layer calls
    :meth:`expire_partial`.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._counts: dict[str, int] = dict.fromkeys(attrs.fields_dict(DecoderStats), 0)

    @property
    def stats(self) -> DecoderStats:
        """A snapshot of the counters."""
        return DecoderStats(**self._counts)

    @property
    def pending(self) -> bool:
        """Whether part of a frame is buffered, waiting for the rest."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[Message | DecodeError]:
        """Take ``data`` from the line; return the messages and rejections it completes."""
        self._buffer += data
        return self._drain()

    def expire_partial(self) -> list[Message | DecodeError]:
        """Give up the buffered partial frame's start and decode what follows it.

        Returns an ``incomplete`` DecodeError followed by anything the rest of
        the buffer holds. Does nothing when nothing is pending.
        """
        if not self._buffer:
            return []
        out: list[Message | DecodeError] = [self._reject("incomplete", bytes(self._buffer), 1)]
        out.extend(self._drain())
        return out

    def reset(self) -> None:
        """Forget any buffered bytes (a new connection starts clean); keeps the counters."""
        self._buffer.clear()

    def _drain(self) -> list[Message | DecodeError]:
        out: list[Message | DecodeError] = []
        buffer = self._buffer
        while buffer:
            start = buffer.find(STX)
            if start != 0:
                skipped = len(buffer) if start < 0 else start
                out.append(DecodeError("garbage", bytes(buffer[: min(skipped, _MAX_GARBAGE_KEPT)])))
                self._counts["garbage_bytes"] += skipped
                del buffer[:skipped]
                continue
            if len(buffer) < 2:
                break
            length = buffer[1]
            if not 1 <= length <= MAX_LEN:
                out.append(self._reject("bad_length", bytes(buffer[:2]), 1))
                continue
            end = 2 + length + 2
            if len(buffer) < end:
                break
            frame = bytes(buffer[:end])
            body = frame[1 : 2 + length]
            if crc16_modbus(body) != int.from_bytes(frame[-2:], "little"):
                out.append(self._reject("bad_crc", frame, 1))
                continue
            del buffer[:end]
            out.append(self._decode(body[1], body[2:], frame))
        return out

    def _reject(self, reason: str, data: bytes, drop: int, cmd: int | None = None) -> DecodeError:
        self._counts[reason] += 1
        del self._buffer[:drop]
        return DecodeError(reason, data[:_MAX_GARBAGE_KEPT], cmd)

    def _decode(self, cmd: int, payload: bytes, frame: bytes) -> Message | DecodeError:
        try:
            message = decode_message(cmd, payload)
        except ValueError:
            reason = "bad_payload" if cmd in _KNOWN_COMMANDS else "unknown_command"
            return self._reject(reason, frame, 0, cmd)
        self._counts["messages"] += 1
        return message
