"""The two-line customer display driver: always shows the latest text, never raises.

::

    async with open_display("/dev/ttyS2", on_fault=report) as display:
        await display.show("欢迎光临", "请扫码入园")

:meth:`Display.show` records the text and wakes the writer task, which sends
it (see :mod:`devices.display_protocol`). Texts are coalesced: if several
arrive while one is being written, only the latest is sent next. When the
display is unplugged the driver reports ``on_fault("display", "unplugged")``,
reopens the port with backoff and re-sends the latest text as soon as the
display is back. A caller never sees an exception from a display.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from devices.display_protocol import DEFAULT_WIDTH, encode_update, fit_line
from devices.errors import DeviceUnplugged
from devices.serial_port import Backoff, FaultCallback, PortPath, ReconnectingPort, SerialLink

log = logging.getLogger("scenic.devices.display")

WRITE_TIMEOUT_S = 1.0  # an update is ~100 bytes: at 9600 baud about 0.1 s


@attrs.frozen
class DisplayStats:
    """What a :class:`Display` has done: updates ``written``, ``write_timeouts``, port counters."""

    written: int
    write_timeouts: int
    unplugs: int
    opens: int


class Display:
    """A two-line display showing the latest text. Made by :func:`open_display`."""

    def __init__(
        self,
        port: ReconnectingPort,
        *,
        width: int = DEFAULT_WIDTH,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        if width < 1:
            raise ValueError("width must be at least 1")
        self._port = port
        self.width = width
        self._write_timeout_s = write_timeout_s
        self._wanted: tuple[str, str] | None = None
        self._version = 0  # bumped by every show()
        self._written = 0  # the version last written on the current link
        self._shown: tuple[str, str] | None = None
        self._serving = False  # a link is open and its writer running
        self._changed = trio.lowlevel.ParkingLot()
        self._counts = {"written": 0, "write_timeouts": 0}

    async def show(self, line1: str, line2: str) -> None:
        """Show ``line1`` over ``line2``, each cut to :attr:`width` characters.

        Returns once the text is written to the port, or at once if the
        display is away (it is sent when the display comes back), or after
        the write timeout. Never raises a device error.
        """
        self._wanted = (fit_line(line1, self.width), fit_line(line2, self.width))
        self._version += 1
        mine = self._version
        self._changed.unpark_all()
        with trio.move_on_after(self._write_timeout_s):
            while self._written < mine and self._serving:
                await self._changed.park()
        await trio.lowlevel.checkpoint()

    @property
    def shown(self) -> tuple[str, str] | None:
        """The text last written to the display, as fitted; None before the first write."""
        return self._shown

    @property
    def connected(self) -> bool:
        """Whether the display's port is open right now."""
        return self._port.connected

    async def wait_connected(self) -> None:
        """Return once the port is open; bound it with a timeout."""
        await self._port.wait_connected()

    def stats(self) -> DisplayStats:
        """A snapshot of the counters."""
        port = self._port.stats()
        return DisplayStats(**self._counts, unplugs=port.unplugs, opens=port.opens)

    async def _serve(self, link: SerialLink) -> None:
        """Write updates and watch for hangup until the display goes away."""
        self._written = 0  # a display that was away shows nothing: send the latest again
        self._serving = True
        unplugged: list[DeviceUnplugged] = []

        async def guard(task) -> None:
            try:
                await task(link)
            except DeviceUnplugged as exc:
                unplugged.append(exc)
                nursery.cancel_scope.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(guard, self._write_updates)
                nursery.start_soon(guard, self._watch_hangup)
        finally:
            self._serving = False
            self._changed.unpark_all()  # show() stops waiting for a write that won't come
        raise unplugged[0] if unplugged else DeviceUnplugged("display", "link ended")

    async def _write_updates(self, link: SerialLink) -> None:
        while True:
            while self._written >= self._version:
                await self._changed.park()
            version, text = self._version, self._wanted
            assert text is not None  # a version above 0 comes with a text
            with trio.move_on_after(self._write_timeout_s):
                await link.write(encode_update(*text, width=self.width))
                self._written, self._shown = version, text
                self._counts["written"] += 1
                self._changed.unpark_all()
                continue
            self._counts["write_timeouts"] += 1
            log.warning("display.write_timeout", extra={"timeout_s": self._write_timeout_s})
            raise DeviceUnplugged("display", "write timed out (display not reading)")

    async def _watch_hangup(self, link: SerialLink) -> None:
        # A display sends nothing useful; reading is how a pulled plug is noticed when idle.
        while True:
            data = await link.read_some()
            log.debug("display.ignored_input", extra={"data": data[:64].hex()})


@asynccontextmanager
async def open_display(
    path: PortPath,
    *,
    width: int = DEFAULT_WIDTH,
    on_fault: FaultCallback | None = None,
    baudrate: int = 9600,
    backoff: Backoff | None = None,
) -> AsyncIterator[Display]:
    """Run a ``width``-character two-line display on ``path`` for the duration of the block.

    ``path`` may be a function returning the current path. The first open
    attempt has been made when the block starts; a missing display is
    reported as ``on_fault("display", "unavailable")`` and retried.
    """
    port = ReconnectingPort("display", path, baudrate=baudrate, on_fault=on_fault, backoff=backoff)
    display = Display(port, width=width)
    async with port.running(display._serve):
        yield display
