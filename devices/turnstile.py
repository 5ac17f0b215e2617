"""The turnstile controller driver: acknowledged commands, passage events, reconnects.

::

    async with open_turnstile("/dev/ttyS1", on_fault=report) as gate:
        await gate.open_entry(ref=17)          # returns once the controller ACKs
        async for event in gate.events():      # Passed, TimedOut, Fault
            ...

Commands go one at a time. Each is sent and its ACK awaited for
``ack_timeout_s``; without one it is sent again, up to ``retries`` more
times, then :class:`~devices.errors.DeviceTimeout` is raised. Resending is
safe: the controller treats a repeated OPEN with the same ref as the same
passage. A NAK raises :class:`~devices.errors.DeviceRefused`. If the port
dies while a command waits, or is down when one is issued, it raises
:class:`~devices.errors.DeviceUnplugged` at once; the driver reports
``on_fault("turnstile", "unplugged")`` and reopens the port with backoff.

Events (PASSED, TIMEOUT, FAULT) are acknowledged to the controller as they
are queued for :meth:`Turnstile.events`; the controller sends an event again
until it is, so a frame lost on the line is not an event lost. A repeat of
an event received in the last :data:`EVENT_REPEAT_S` seconds is acknowledged
again but not queued twice.

Bad CRCs, garbage and unexpected frames are logged, counted in
:meth:`Turnstile.stats` and dropped. Controller faults arrive as
:class:`Fault` events, not through ``on_fault`` (which is for the link).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from devices.errors import DeviceRefused, DeviceTimeout, DeviceUnplugged
from devices.serial_port import Backoff, FaultCallback, PortPath, ReconnectingPort, SerialLink
from devices.turnstile_protocol import (
    Ack,
    Command,
    DecodeError,
    Direction,
    Fault,
    FrameDecoder,
    Free,
    HostCommand,
    Lock,
    Message,
    Nak,
    Normal,
    OpenEntry,
    OpenExit,
    Passed,
    RequestStatus,
    StatusReport,
    TimedOut,
    event_ack,
)

__all__ = [
    "Direction",
    "Fault",
    "Passed",
    "StatusReport",
    "TimedOut",
    "Turnstile",
    "TurnstileEvent",
    "TurnstileStats",
    "open_turnstile",
]

log = logging.getLogger("scenic.devices.turnstile")

TurnstileEvent = Passed | TimedOut | Fault
EVENT_QUEUE_SIZE = 256
FRAME_GAP_S = 0.1  # a frame arrives in one burst; silence this long mid-frame means it broke
#: an event equal to one received this recently is the controller's resend, not a new event
EVENT_REPEAT_S = 5.0
ACK_WRITE_TIMEOUT_S = 0.5  # an event ACK not written by then is dropped; the event comes again


@attrs.frozen
class TurnstileStats:
    """What a :class:`Turnstile` has seen since it was opened.

    ``commands`` issued, ``retries`` (resends after a missing ACK),
    ``timeouts`` (DeviceTimeout raised), ``refused`` (NAKs), ``events``
    queued and ``events_dropped`` because nobody read :meth:`Turnstile.events`
    (not acknowledged, so the controller sends them again), ``repeats`` of
    events already queued (acknowledged again), ``unmatched`` replies nobody
    waited for (late ACKs), ``bad_frames`` (bad
    CRC, impossible length, unknown or malformed frames, broken-off frames) of
    which ``bad_crc``, ``garbage_bytes`` outside frames, ``unplugs`` and
    ``opens`` of the port.
    """

    commands: int
    retries: int
    timeouts: int
    refused: int
    events: int
    events_dropped: int
    repeats: int
    unmatched: int
    bad_frames: int
    bad_crc: int
    garbage_bytes: int
    unplugs: int
    opens: int


@attrs.define
class _Waiter:
    """The one command in flight, waiting for its reply."""

    cmd: int
    ref: int
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: Ack | Nak | StatusReport | None = None
    unplugged: str | None = None

    def matches(self, message: Message) -> bool:
        """Whether ``message`` answers this command (STATUS is answered by its report)."""
        if isinstance(message, Nak):
            return message.cmd == self.cmd
        if self.cmd == Command.STATUS:
            return isinstance(message, StatusReport)
        return isinstance(message, Ack) and message.cmd == self.cmd and message.ref == self.ref


class Turnstile:
    """A turnstile controller's commands and events. Made by :func:`open_turnstile`."""

    def __init__(
        self, port: ReconnectingPort, *, ack_timeout_s: float = 0.5, retries: int = 3
    ) -> None:
        if ack_timeout_s <= 0 or retries < 0:
            raise ValueError("ack_timeout_s must be positive and retries not negative")
        self._port = port
        self._ack_timeout_s = ack_timeout_s
        self._retries = retries
        self._lock = trio.Lock()  # one command at a time
        self._write_lock = trio.Lock()  # one writer at a time: commands and event ACKs
        self._waiter: _Waiter | None = None
        self._decoder = FrameDecoder()
        self._send, self._receive = trio.open_memory_channel[TurnstileEvent](EVENT_QUEUE_SIZE)
        #: events queued lately -> when they were last received (trio time)
        self._recent: dict[TurnstileEvent, float] = {}
        self._counts = dict.fromkeys(
            (
                "commands",
                "retries",
                "timeouts",
                "refused",
                "events",
                "events_dropped",
                "repeats",
                "unmatched",
            ),
            0,
        )

    async def open_entry(self, ref: int) -> None:
        """Open the gate for one visitor walking in; ``ref`` (0..65535) comes back in the event.

        Returns once the controller has acknowledged. Raises DeviceRefused
        (``locked``, ``busy``), DeviceTimeout or DeviceUnplugged.
        """
        await self._command(OpenEntry(ref), ref)

    async def open_exit(self, ref: int) -> None:
        """Open the gate for one visitor walking out; as :meth:`open_entry`."""
        await self._command(OpenExit(ref), ref)

    async def lock(self) -> None:
        """Lock the gate (OPEN is refused until :meth:`normal` or :meth:`free`)."""
        await self._command(Lock(), 0)

    async def free(self) -> None:
        """Free passage: arms up, no OPEN needed."""
        await self._command(Free(), 0)

    async def normal(self) -> None:
        """Back to normal mode: one passage per OPEN."""
        await self._command(Normal(), 0)

    async def status(self) -> StatusReport:
        """The controller's mode and flags; raises DeviceTimeout or DeviceUnplugged."""
        reply = await self._command(RequestStatus(), 0)
        if not isinstance(reply, StatusReport):  # matches() lets only a report through
            raise TypeError(f"STATUS answered by {reply!r}")
        return reply

    def events(self) -> trio.MemoryReceiveChannel[TurnstileEvent]:
        """Passed, TimedOut and Fault events in arrival order; ``async for`` over it.

        The iteration ends when the turnstile is closed. There is one queue,
        shared between readers. If nobody reads, events beyond
        :data:`EVENT_QUEUE_SIZE` are dropped, logged as errors and not
        acknowledged (the controller sends them again later), so that command
        replies are never held up behind them. An event the controller sent
        again after its ACK was lost is queued once.
        """
        return self._receive

    @property
    def connected(self) -> bool:
        """Whether the controller's port is open right now."""
        return self._port.connected

    async def wait_connected(self) -> None:
        """Return once the port is open; bound it with a timeout."""
        await self._port.wait_connected()

    def stats(self) -> TurnstileStats:
        """A snapshot of the counters."""
        frames = self._decoder.stats
        port = self._port.stats()
        return TurnstileStats(
            **self._counts,
            bad_frames=frames.errors,
            bad_crc=frames.bad_crc,
            garbage_bytes=frames.garbage_bytes,
            unplugs=port.unplugs,
            opens=port.opens,
        )

    async def _command(self, command: HostCommand, ref: int) -> Ack | StatusReport:
        frame = command.to_frame()
        name = command.CMD.name
        async with self._lock:
            self._counts["commands"] += 1
            sent = False  # whether the controller may have the command
            for attempt in range(1 + self._retries):
                link = self._port.link
                if link is None:
                    raise DeviceUnplugged(
                        "turnstile", f"{name}: not connected", may_have_acted=sent
                    )
                if attempt:
                    self._counts["retries"] += 1
                    log.warning("turnstile.retry", extra={"command": name, "attempt": attempt + 1})
                waiter = self._waiter = _Waiter(command.CMD, ref)
                try:
                    with trio.move_on_after(self._ack_timeout_s):
                        async with self._write_lock:
                            sent = True
                            await link.write(frame)
                        await waiter.done.wait()
                except DeviceUnplugged as exc:
                    raise DeviceUnplugged(
                        "turnstile", f"{name}: {exc.message}", may_have_acted=sent
                    ) from None
                finally:
                    self._waiter = None
                if waiter.unplugged is not None:
                    raise DeviceUnplugged(
                        "turnstile", f"{name}: {waiter.unplugged}", may_have_acted=sent
                    )
                if isinstance(waiter.reply, Nak):
                    self._counts["refused"] += 1
                    reason = waiter.reply.reason.name.lower()
                    log.info("turnstile.refused", extra={"command": name, "reason": reason})
                    raise DeviceRefused("turnstile", f"{name} refused: {reason}", reason=reason)
                if waiter.reply is not None:
                    return waiter.reply
            self._counts["timeouts"] += 1
            log.error("turnstile.no_ack", extra={"command": name, "attempts": 1 + self._retries})
            raise DeviceTimeout("turnstile", f"{name}: no ACK after {1 + self._retries} attempts")

    async def _serve(self, link: SerialLink) -> None:
        self._decoder.reset()
        try:
            while True:
                data: bytes | None = None
                if self._decoder.pending:
                    with trio.move_on_after(FRAME_GAP_S):
                        data = await link.read_some()
                    if data is None:  # silence mid-frame: the partial frame is broken
                        await self._handle(link, self._decoder.expire_partial())
                        continue
                else:
                    data = await link.read_some()
                await self._handle(link, self._decoder.feed(data))
        except DeviceUnplugged as exc:
            if self._waiter is not None:
                self._waiter.unplugged = exc.message
                self._waiter.done.set()
            raise

    async def _handle(self, link: SerialLink, items: list[Message | DecodeError]) -> None:
        for item in items:
            if isinstance(item, DecodeError):
                log.warning(
                    "turnstile.bad_frame",
                    extra={"reason": item.reason, "data": item.data.hex(), "cmd": item.cmd},
                )
            elif isinstance(item, Passed | TimedOut | Fault):
                if self._queue_event(item):
                    await self._acknowledge(link, item)
            elif isinstance(item, Ack | Nak | StatusReport):
                waiter = self._waiter
                if waiter is not None and waiter.reply is None and waiter.matches(item):
                    waiter.reply = item
                    waiter.done.set()
                else:
                    self._counts["unmatched"] += 1
                    log.info("turnstile.unmatched_reply", extra={"reply": repr(item)})
            else:
                self._counts["unmatched"] += 1
                log.warning("turnstile.unexpected_message", extra={"received": repr(item)})

    def _queue_event(self, event: TurnstileEvent) -> bool:
        """Queue ``event`` unless it is a repeat; whether to acknowledge it."""
        now = trio.current_time()
        for old in [e for e, at in self._recent.items() if at < now - EVENT_REPEAT_S]:
            del self._recent[old]
        if event in self._recent:
            self._recent[event] = now
            self._counts["repeats"] += 1
            log.debug("turnstile.event_repeated", extra={"repeated_event": repr(event)})
            return True
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._counts["events_dropped"] += 1
            log.error("turnstile.event_dropped", extra={"dropped_event": repr(event)})
            return False
        self._counts["events"] += 1
        self._recent[event] = now
        if isinstance(event, Fault):
            log.warning("turnstile.fault", extra={"code": event.code.name, "detail": event.detail})
        return True

    async def _acknowledge(self, link: SerialLink, event: TurnstileEvent) -> None:
        with trio.move_on_after(ACK_WRITE_TIMEOUT_S):
            async with self._write_lock:
                await link.write(event_ack(event).to_frame())
            return
        log.warning("turnstile.event_ack_timeout", extra={"acked_event": repr(event)})


@asynccontextmanager
async def open_turnstile(
    path: PortPath,
    *,
    on_fault: FaultCallback | None = None,
    ack_timeout_s: float = 0.5,
    retries: int = 3,
    baudrate: int = 9600,
    backoff: Backoff | None = None,
) -> AsyncIterator[Turnstile]:
    """Run a turnstile controller on ``path`` for the duration of the block.

    ``retries`` is the number of resends after the first attempt, so a
    command gives up after ``(1 + retries) * ack_timeout_s`` at most.
    ``path`` may be a function returning the current path. The first open
    attempt has been made when the block starts; a missing controller is
    reported as ``on_fault("turnstile", "unavailable")`` and retried.
    Leaving the block closes the port and ends :meth:`Turnstile.events`.
    """
    port = ReconnectingPort(
        "turnstile", path, baudrate=baudrate, on_fault=on_fault, backoff=backoff
    )
    turnstile = Turnstile(port, ack_timeout_s=ack_timeout_s, retries=retries)
    try:
        async with port.running(turnstile._serve):
            yield turnstile
    finally:
        turnstile._send.close()
