"""Simulated devices on real pseudo-terminals, for tests, demos and the load test.

Each simulator makes a pty pair, puts the slave in raw mode so bytes pass
unchanged, and plays the device on the master side inside its own nursery.
A driver opens :attr:`port` (the slave's path) exactly as it would open a
real serial port::

    async with TurnstileSimulator(walk_delay_s=0.1) as sim:
        async with open_turnstile(lambda: sim.port) as gate:
            await gate.open_entry(7)

Unplugging closes the master, so the driver sees the port die the way a
pulled USB adapter dies (end of file, then the path vanishes). A pty cannot
be brought back, so :meth:`replug` makes a *new* pair and :attr:`port`
changes; a driver follows it when given ``lambda: sim.port`` as its path.
(Given a plain string it keeps retrying the old path, reporting the outage,
which is what a driver does when a device comes back under another name.)

Everything a simulator sends goes through one writer task, in order; the
injection methods (:meth:`ScannerSimulator.scan`, :meth:`TurnstileSimulator.fault`,
...) only queue bytes, and raise RuntimeError while unplugged.
"""

from __future__ import annotations

import logging
import os
import random
import tty
from contextlib import AsyncExitStack
from typing import Self

import attrs
import trio

from devices.background import background_nursery
from devices.display_protocol import DisplayParser
from devices.turnstile_protocol import (
    FLAG_ARMS_OPEN,
    FLAG_FAULT,
    Ack,
    DecodeError,
    Direction,
    Fault,
    FaultCode,
    FrameDecoder,
    Free,
    Lock,
    Message,
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
)

log = logging.getLogger("scenic.devices.simulators")

_OUTGOING_QUEUE = 4096  # queued writes; more raise trio.WouldBlock
FRAME_GAP_S = 0.1  # silence this long in the middle of a frame gives the partial frame up


@attrs.define(eq=False)
class _Pty:
    """One plugged-in period: the pty pair, its tasks' scope, and the outgoing queue."""

    master: int
    slave: int
    path: str
    scope: trio.CancelScope
    outgoing: trio.MemorySendChannel[bytes]
    nursery: trio.Nursery | None = None


class PtySimulator:
    """The shared machinery: a pty pair served on the master side, unplug and replug.

    Subclasses implement :meth:`_serve` (read and answer) and may override
    :meth:`_on_unplug`. Use as ``async with``; :attr:`port` is valid inside.
    """

    def __init__(self) -> None:
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._pty: _Pty | None = None
        self._path: str | None = None

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(background_nursery())
        self._stack = stack
        self.replug()
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        stack, self._stack = self._stack, None
        self.unplug()
        assert stack is not None
        return await stack.__aexit__(*exc_info)

    @property
    def port(self) -> str:
        """The path a driver opens (the pty slave); changes at every :meth:`replug`.

        While unplugged it is the last path, which no longer exists.
        """
        if self._path is None:
            raise RuntimeError("use the simulator as 'async with'")
        return self._path

    @property
    def plugged(self) -> bool:
        """Whether the simulated device is plugged in."""
        return self._pty is not None

    def unplug(self) -> None:
        """Pull the plug: stop answering and close the pty; the driver sees a hangup."""
        pty, self._pty = self._pty, None
        if pty is None:
            return
        log.info("simulator.unplugged", extra={"port": pty.path})
        pty.scope.cancel()
        pty.outgoing.close()
        self._on_unplug()

    def replug(self) -> None:
        """Plug the device back in, on a new pty (so :attr:`port` changes)."""
        if self._nursery is None:
            raise RuntimeError("use the simulator as 'async with'")
        if self._pty is not None:
            raise RuntimeError(f"{type(self).__name__} is already plugged in")
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        send, receive = trio.open_memory_channel[bytes](_OUTGOING_QUEUE)
        self._path = os.ttyname(slave)
        self._pty = _Pty(master, slave, self._path, trio.CancelScope(), send)
        log.info("simulator.plugged", extra={"port": self._pty.path})
        self._nursery.start_soon(self._run_plugged, self._pty, receive)

    def _queue(self, data: bytes) -> None:
        """Queue ``data`` for the port; RuntimeError while unplugged."""
        if self._pty is None:
            raise RuntimeError(f"{type(self).__name__} is unplugged")
        self._pty.outgoing.send_nowait(data)

    async def _run_plugged(self, pty: _Pty, outgoing: trio.MemoryReceiveChannel[bytes]) -> None:
        # This task owns the fds: they are closed only after every task using them has ended,
        # so no task can touch a closed (or already reused) fd number.
        try:
            with pty.scope:
                async with trio.open_nursery() as nursery:
                    pty.nursery = nursery
                    nursery.start_soon(self._write_outgoing, pty, outgoing)
                    await self._serve(pty)
        finally:
            os.close(pty.master)
            os.close(pty.slave)

    async def _write_outgoing(self, pty: _Pty, outgoing: trio.MemoryReceiveChannel[bytes]) -> None:
        async for data in outgoing:
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(pty.master, view) :]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(pty.master)

    async def _read(self, pty: _Pty) -> bytes:
        """The next bytes the driver wrote."""
        while True:
            await trio.lowlevel.wait_readable(pty.master)
            try:
                data = os.read(pty.master, 4096)
            except BlockingIOError:
                continue
            if data:
                return data

    async def _serve(self, pty: _Pty) -> None:
        """Read and answer what the driver sends; the default reads and ignores it."""
        while True:
            await self._read(pty)

    def _on_unplug(self) -> None:
        """Forget whatever a device loses when its power goes."""


class ScannerSimulator(PtySimulator):
    """A QR/barcode scanner: each :meth:`scan` sends a code and CR LF."""

    def scan(self, code: str) -> None:
        """Send ``code`` as a scanner would (UTF-8, then CR LF)."""
        self._queue(code.encode("utf-8") + b"\r\n")

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` exactly as given (line noise, a broken scanner)."""
        self._queue(data)


class TurnstileSimulator(PtySimulator):
    """A turnstile controller: answers commands, walks visitors through, fails on request.

    An OPEN is checked in this order: a repeat of the most recent OPEN (same
    direction and ref), pending or finished, is acknowledged again without
    opening again, so a driver's resend after a lost ACK is harmless; then
    OPEN is refused while locked (NAK 2); in free passage it is acknowledged
    and PASSED follows at once (the arms are up); then another OPEN while a
    passage is pending is refused as busy (NAK 1). Otherwise it is
    acknowledged, and with probability ``walk_probability`` the visitor
    walks through and PASSED is sent after ``walk_delay_s``; else TIMEOUT is
    sent after ``window_s``. A fault does not stop an OPEN. STATUS is
    answered by a STATUS_REPORT. A partial frame followed by 0.1 s of silence
    is given up, as the host does.

    Every event (PASSED, TIMEOUT, FAULT) is sent again every
    ``event_resend_s`` until the host acknowledges it (an ACK naming its CMD
    and ref, a fault's ref being its number); at most
    :data:`MAX_UNACKNOWLEDGED` wait, the oldest is given up beyond that.
    Unplugging is a power cut: the pending passage and the unacknowledged
    events are lost.

    :attr:`received` lists every command decoded, :attr:`acknowledged` the
    host's ACKs of events, :attr:`sent` every message put on the wire (not
    the dropped or corrupted ones; resent events each time), for tests to
    inspect.
    """

    #: events kept for resending until the host acknowledges them
    MAX_UNACKNOWLEDGED = 16

    def __init__(
        self,
        *,
        walk_probability: float = 1.0,
        walk_delay_s: float = 0.3,
        window_s: float = 3.0,
        event_resend_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.walk_probability = walk_probability
        self.walk_delay_s = walk_delay_s
        self.window_s = window_s
        self.event_resend_s = event_resend_s
        self.rng = rng or random.Random()
        self.mode = Mode.NORMAL
        self.received: list[Message] = []
        self.acknowledged: list[Ack] = []
        self.sent: list[Message] = []
        self._passage: Passed | None = None  # the pending passage (its ref and direction)
        self._last_opened: Passed | None = None  # the most recent OPEN acknowledged
        self._unacknowledged: list[Passed | TimedOut | Fault] = []
        self._fault_numbers = 0
        self._faulted = False
        self._drop_replies = 0
        self._corrupt = 0

    def drop_acks(self, n: int) -> None:
        """Do not send the next ``n`` replies (ACK, NAK or STATUS_REPORT); still act on them."""
        self._drop_replies += n

    def corrupt_next(self, n: int) -> None:
        """Send the next ``n`` frames of any kind (resent events too) with a wrong CRC."""
        self._corrupt += n

    @property
    def unacknowledged(self) -> list[Passed | TimedOut | Fault]:
        """The events sent and not yet acknowledged by the host, oldest first."""
        return list(self._unacknowledged)

    def send_garbage(self, data: bytes) -> None:
        """Send ``data`` as it is, between frames."""
        self._queue(data)

    def fault(self, code: FaultCode | int, detail: str = "") -> Fault:
        """Report a mechanism fault (jammed, power, sensor, forced); sets the fault flag.

        Faults are numbered 1, 2, ... (after 65535 comes 1); returns the event sent.
        """
        self._fault_numbers = self._fault_numbers % 0xFFFF + 1
        event = Fault(code, detail, self._fault_numbers)
        self._faulted = True
        self._send_event(event)
        return event

    def _send_event(self, event: Passed | TimedOut | Fault) -> None:
        self._emit(event)  # raises while unplugged: then there is nothing to resend
        self._unacknowledged.append(event)
        del self._unacknowledged[: -self.MAX_UNACKNOWLEDGED]

    def _emit(self, message: Message, *, reply: bool = False) -> None:
        if reply and self._drop_replies:
            self._drop_replies -= 1
            log.info("simulator.reply_dropped", extra={"reply": repr(message)})
            return
        frame = message.to_frame()
        if self._corrupt:
            self._corrupt -= 1
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        else:
            self.sent.append(message)
        self._queue(frame)

    async def _serve(self, pty: _Pty) -> None:
        assert pty.nursery is not None
        pty.nursery.start_soon(self._resend_events)
        decoder = FrameDecoder()
        while True:
            items: list[Message | DecodeError] | None = None
            with trio.move_on_after(FRAME_GAP_S if decoder.pending else float("inf")):
                items = decoder.feed(await self._read(pty))
            for item in decoder.expire_partial() if items is None else items:
                self._answer(pty, item)

    async def _resend_events(self) -> None:
        while True:
            await trio.sleep(self.event_resend_s)
            for event in list(self._unacknowledged):
                log.debug("simulator.event_resent", extra={"resent_event": repr(event)})
                self._emit(event)

    def _answer(self, pty: _Pty, item: Message | DecodeError) -> None:
        if isinstance(item, DecodeError):
            if item.cmd is not None:  # a well-formed frame we do not understand
                self._emit(Nak(item.cmd, NakReason.BAD_COMMAND), reply=True)
            return
        if isinstance(item, Ack):  # the host has an event: stop sending it; no answer
            self.acknowledged.append(item)
            self._unacknowledged = [
                e for e in self._unacknowledged if (e.CMD, e.ref) != (item.cmd, item.ref)
            ]
            return
        self.received.append(item)
        if isinstance(item, OpenEntry | OpenExit):
            self._open(pty, item)
        elif isinstance(item, Lock | Free | Normal):
            self.mode = {Lock: Mode.LOCKED, Free: Mode.FREE, Normal: Mode.NORMAL}[type(item)]
            self._faulted = False
            self._emit(Ack(item.CMD, 0), reply=True)
        elif isinstance(item, RequestStatus):
            flags = (FLAG_ARMS_OPEN if self._passage else 0) | (FLAG_FAULT if self._faulted else 0)
            self._emit(StatusReport(self.mode, flags), reply=True)
        else:  # a controller's message sent to the controller
            self._emit(Nak(item.CMD, NakReason.BAD_COMMAND), reply=True)

    def _open(self, pty: _Pty, command: OpenEntry | OpenExit) -> None:
        direction = Direction.ENTRY if isinstance(command, OpenEntry) else Direction.EXIT
        passage = Passed(command.ref, direction)
        if passage == self._last_opened:
            self._emit(Ack(command.CMD, command.ref), reply=True)  # a resend: same passage
        elif self.mode is Mode.LOCKED:
            self._emit(Nak(command.CMD, NakReason.LOCKED), reply=True)
        elif self.mode is Mode.FREE:  # the arms are up: whoever comes walks through
            self._emit(Ack(command.CMD, command.ref), reply=True)
            self._last_opened = passage
            self._send_event(passage)
        elif self._passage is not None:
            self._emit(Nak(command.CMD, NakReason.BUSY), reply=True)
        else:
            self._emit(Ack(command.CMD, command.ref), reply=True)
            self._passage = self._last_opened = passage
            assert pty.nursery is not None
            pty.nursery.start_soon(self._walk, passage)

    async def _walk(self, passage: Passed) -> None:
        if self.rng.random() < self.walk_probability:
            await trio.sleep(self.walk_delay_s)
            outcome: Passed | TimedOut = passage
        else:
            await trio.sleep(self.window_s)
            outcome = TimedOut(passage.ref, passage.direction)
        self._passage = None
        self._send_event(outcome)

    def _on_unplug(self) -> None:
        self._passage = None
        self._unacknowledged = []


class DisplaySimulator(PtySimulator):
    """A two-line display: :attr:`lines` is what it shows, :attr:`history` every update.

    Unplugging blanks it, as losing power does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines: tuple[str, str] = ("", "")
        self.history: list[tuple[str, str]] = []
        self.parser = DisplayParser()

    async def _serve(self, pty: _Pty) -> None:
        while True:
            for update in self.parser.feed(await self._read(pty)):
                self.lines = update
                self.history.append(update)

    def _on_unplug(self) -> None:
        self.lines = ("", "")
        self.parser = DisplayParser()
