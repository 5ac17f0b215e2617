"""Serial ports for trio: a non-blocking link, and a port that reopens itself.

pyserial opens and configures the port (raw 8N1, no flow control, so bytes
such as 0x11 and 0x13 pass untouched). Reading and writing go straight to
its file descriptor, which pyserial opens non-blocking, and trio waits for it
to become readable or writable: nothing blocks the event loop. pyserial's own
``write()`` is not used because with ``write_timeout=0`` it spins on a full
output buffer.

:class:`ReconnectingPort` is what every driver builds on: it keeps a port
open, hands each fresh :class:`SerialLink` to the driver's ``serve``
function, and when the device goes away (end of file, I/O error, hangup)
reports a fault, logs it, and reopens the port with backoff, 0.2 s doubling
to 5 s. It never gives up and never crashes on a missing device.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import serial
import trio

from devices.background import background_nursery
from devices.errors import DeviceUnplugged

PortPath = str | Callable[[], str]
"""Where a port is: a path, or a function giving the current path at each (re)open."""

FaultCallback = Callable[[str, str], None]
"""``on_fault(device, reason)``: told once per outage, e.g. ``("scanner", "unplugged")``."""

_RETRY_ERRNOS = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))


def open_serial(path: str, *, baudrate: int = 9600) -> serial.Serial:
    """Open ``path`` as a raw 8N1 serial port with non-blocking reads.

    Raises ``serial.SerialException`` (an OSError) when the port cannot be
    opened. The call may block briefly in the kernel; async code uses
    :meth:`SerialLink.open`, which runs it in a thread.
    """
    return serial.Serial(path, baudrate, timeout=0, xonxoff=False, rtscts=False, dsrdtr=False)


class SerialLink:
    """One open serial port, read and written from trio without blocking.

    One task at a time may read and one at a time may write. Every read or
    write failure means the device is gone and raises :class:`DeviceUnplugged`;
    the link is then useless and the owner closes it.
    """

    def __init__(self, port: serial.Serial, *, device: str = "serial") -> None:
        self._port = port
        self._fd = port.fileno()
        self.device = device
        self.path: str = port.port

    @classmethod
    async def open(cls, path: str, *, baudrate: int = 9600, device: str = "serial") -> SerialLink:
        """Open ``path`` in a worker thread; raises OSError when it cannot be opened."""
        port = await trio.to_thread.run_sync(lambda: open_serial(path, baudrate=baudrate))
        return cls(port, device=device)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return not self._port.is_open

    async def read_some(self, max_bytes: int = 4096) -> bytes:
        """Wait until bytes arrive and return up to ``max_bytes`` of them (never empty).

        Raises DeviceUnplugged on end of file, hangup or an I/O error, and
        when the link is (or gets) closed.
        """
        while True:
            self._check_open()
            try:
                await trio.lowlevel.wait_readable(self._fd)
            except trio.ClosedResourceError as exc:
                raise DeviceUnplugged(self.device, "link closed") from exc
            try:
                data = os.read(self._fd, max_bytes)
            except OSError as exc:
                if exc.errno in _RETRY_ERRNOS:
                    continue
                raise DeviceUnplugged(self.device, f"read failed: {exc}") from exc
            if not data:
                raise DeviceUnplugged(self.device, "end of file (hangup)")
            return data

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting whenever the output buffer is full.

        Raises DeviceUnplugged on an I/O error and when the link is (or gets)
        closed. If cancelled part way, an unknown prefix of ``data`` has been
        written.
        """
        view = memoryview(data)
        waited = False
        while view:
            self._check_open()
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                if exc.errno not in _RETRY_ERRNOS:
                    raise DeviceUnplugged(self.device, f"write failed: {exc}") from exc
                try:
                    await trio.lowlevel.wait_writable(self._fd)
                except trio.ClosedResourceError as closed:
                    raise DeviceUnplugged(self.device, "link closed") from closed
                waited = True
                continue
            view = view[written:]
        if not waited:
            await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close the port; a task waiting on it gets DeviceUnplugged. Idempotent."""
        if self._port.is_open:
            trio.lowlevel.notify_closing(self._fd)
            self._port.close()

    def _check_open(self) -> None:
        # The fd number may already belong to another file: never touch it after close.
        if not self._port.is_open:
            raise DeviceUnplugged(self.device, "link closed")


@attrs.frozen
class Backoff:
    """Waits between reopen attempts: ``initial_s`` doubling up to ``max_s``."""

    initial_s: float = attrs.field(default=0.2, validator=attrs.validators.gt(0.0))
    max_s: float = attrs.field(default=5.0, validator=attrs.validators.gt(0.0))

    def delay_s(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (0 -> ``initial_s``)."""
        return min(self.initial_s * 2 ** min(failures, 32), self.max_s)


@attrs.frozen
class PortStats:
    """Counters of a :class:`ReconnectingPort`: successful opens, failed opens, unplugs."""

    opens: int
    failed_opens: int
    unplugs: int


Serve = Callable[["SerialLink"], Awaitable[None]]


class ReconnectingPort:
    """A device's port, kept open: reopened with backoff whenever the device goes away.

    ``path`` is a string, or a function returning the path at each attempt
    (a USB adapter, or a simulator, may come back under a new name).
    ``on_fault(device, reason)`` is told once per outage: ``"unavailable"``
    when the port cannot be opened, ``"unplugged"`` when an open port dies.
    An exception from ``on_fault`` is logged, never propagated.
    """

    def __init__(
        self,
        device: str,
        path: PortPath,
        *,
        baudrate: int = 9600,
        on_fault: FaultCallback | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.device = device
        self._path = path
        self._baudrate = baudrate
        self._on_fault = on_fault
        self._backoff = backoff or Backoff()
        self._log = logging.getLogger(f"scenic.devices.{device}")
        self._link: SerialLink | None = None
        self._changed = trio.lowlevel.ParkingLot()
        self._counts = {"opens": 0, "failed_opens": 0, "unplugs": 0}

    @property
    def link(self) -> SerialLink | None:
        """The open link, or None while the device is away."""
        return self._link

    @property
    def connected(self) -> bool:
        """Whether the port is open right now."""
        return self._link is not None

    def stats(self) -> PortStats:
        """A snapshot of the counters."""
        return PortStats(**self._counts)

    async def wait_connected(self) -> None:
        """Return once the port is open (at once if it is); bound it with a timeout."""
        while self._link is None:
            await self._changed.park()
        await trio.lowlevel.checkpoint()

    def current_path(self) -> str:
        """The path the next open attempt will use."""
        return self._path() if callable(self._path) else self._path

    @asynccontextmanager
    async def running(self, serve: Serve) -> AsyncIterator[None]:
        """Keep the port open and served for the duration of the block.

        The first open attempt has been made when the block starts: if the
        device was there, :attr:`connected` is true.
        """
        async with background_nursery() as nursery:
            await nursery.start(self.run, serve)
            yield

    async def run(self, serve: Serve, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Open the port, run ``serve(link)``, and start over when it is unplugged. Forever.

        ``serve`` returns or raises DeviceUnplugged when the device goes
        away; any other exception is a bug and propagates. Signals
        ``task_status.started()`` after the first open attempt.
        """
        failures = 0
        in_outage = False  # the fault for this outage has been reported
        started = False
        while True:
            link = await self._open(quiet=in_outage)
            if link is None:
                if not in_outage:
                    in_outage = True
                    self._report_fault("unavailable")
            else:
                failures, in_outage = 0, False
                if not started:
                    started = True
                    task_status.started()
                await self._serve_until_unplugged(link, serve)
                in_outage = True
                self._report_fault("unplugged")
            if not started:
                started = True
                task_status.started()
            await trio.sleep(self._backoff.delay_s(failures))
            failures += 1

    async def _open(self, *, quiet: bool) -> SerialLink | None:
        """One open attempt: the link, or None (logged) when the port cannot be opened."""
        path = "?"
        try:
            path = self.current_path()
            link = await SerialLink.open(path, baudrate=self._baudrate, device=self.device)
        except Exception as exc:
            self._counts["failed_opens"] += 1
            extra = {"port": path, "error": str(exc)}
            if not isinstance(exc, OSError):  # a bad setting or a failing path function
                self._log.exception("port.open_error", extra=extra)
            else:
                self._log.log(
                    logging.DEBUG if quiet else logging.WARNING, "port.open_failed", extra=extra
                )
            return None
        self._counts["opens"] += 1
        self._log.info("port.opened", extra={"port": path})
        self._set_link(link)
        return link

    async def _serve_until_unplugged(self, link: SerialLink, serve: Serve) -> None:
        try:
            await serve(link)
            reason = "serve returned"
        except DeviceUnplugged as exc:
            reason = exc.message
        finally:
            self._set_link(None)
            link.close()
        self._counts["unplugs"] += 1
        self._log.warning("port.unplugged", extra={"port": link.path, "reason": reason})

    def _set_link(self, link: SerialLink | None) -> None:
        self._link = link
        self._changed.unpark_all()

    def _report_fault(self, reason: str) -> None:
        if self._on_fault is None:
            return
        try:
            self._on_fault(self.device, reason)
        except Exception:
            self._log.exception("on_fault.failed", extra={"reason": reason})
