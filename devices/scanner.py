"""The QR/barcode scanner driver: codes in, garbage out, survives unplugging.

::

    async with open_scanner("/dev/ttyUSB0", on_fault=report) as scanner:
        async for code in scanner.codes():
            ...

The scanner sends lines (see :mod:`devices.scanner_protocol`). Codes go into a
bounded queue that :meth:`Scanner.codes` reads; anything that is not a code is
logged, counted in :meth:`Scanner.stats` and skipped. When the scanner is
unplugged the driver reports ``on_fault("scanner", "unplugged")`` and reopens
the port with backoff; codes resume when it is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from devices.scanner_protocol import MAX_CODE_BYTES, ScanError, ScanLineDecoder
from devices.serial_port import Backoff, FaultCallback, PortPath, ReconnectingPort, SerialLink

log = logging.getLogger("scenic.devices.scanner")

QUEUE_SIZE = 32
LINE_GAP_S = 1.0  # a scanner sends a code in one burst; a partial line this old is noise


@attrs.frozen
class ScannerStats:
    """What a :class:`Scanner` has seen since it was opened.

    ``codes`` delivered to the queue; ``dropped`` codes lost because nobody
    read the queue; rejected lines by reason (``too_long``, ``bad_utf8``,
    ``non_printable``, ``incomplete``); ``unplugs`` and ``opens`` of the port.
    """

    codes: int
    dropped: int
    too_long: int
    bad_utf8: int
    non_printable: int
    incomplete: int
    unplugs: int
    opens: int

    @property
    def rejected(self) -> int:
        """Lines skipped as garbage, for any reason."""
        return self.too_long + self.bad_utf8 + self.non_printable + self.incomplete


class Scanner:
    """A scanner's codes, as they are read. Made by :func:`open_scanner`."""

    def __init__(
        self,
        port: ReconnectingPort,
        *,
        max_code_bytes: int = MAX_CODE_BYTES,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._port = port
        self._decoder = ScanLineDecoder(max_code_bytes)
        self._send, self._receive = trio.open_memory_channel[str](queue_size)
        self._dropped = 0

    def codes(self) -> trio.MemoryReceiveChannel[str]:
        """The codes, in the order scanned; ``async for`` over it.

        The iteration ends when the scanner is closed. There is one queue:
        codes are shared out between readers, not copied to each. If nobody
        reads, the newest codes are dropped once :data:`QUEUE_SIZE` wait.
        """
        return self._receive

    @property
    def connected(self) -> bool:
        """Whether the scanner's port is open right now."""
        return self._port.connected

    async def wait_connected(self) -> None:
        """Return once the port is open; bound it with a timeout."""
        await self._port.wait_connected()

    def stats(self) -> ScannerStats:
        """A snapshot of the counters."""
        lines = self._decoder.stats
        port = self._port.stats()
        return ScannerStats(
            codes=lines.codes - self._dropped,
            dropped=self._dropped,
            too_long=lines.too_long,
            bad_utf8=lines.bad_utf8,
            non_printable=lines.non_printable,
            incomplete=lines.incomplete,
            unplugs=port.unplugs,
            opens=port.opens,
        )

    async def _serve(self, link: SerialLink) -> None:
        self._decoder.reset()
        while True:
            if self._decoder.pending:
                with trio.move_on_after(LINE_GAP_S):
                    self._deliver(self._decoder.feed(await link.read_some()))
                    continue
                self._deliver(self._decoder.expire_partial())
            else:
                self._deliver(self._decoder.feed(await link.read_some()))

    def _deliver(self, items: list[str | ScanError]) -> None:
        for item in items:
            if isinstance(item, ScanError):
                log.warning(
                    "scanner.garbage", extra={"reason": item.reason, "data": item.data.hex()}
                )
                continue
            try:
                self._send.send_nowait(item)
            except trio.WouldBlock:
                self._dropped += 1
                log.error("scanner.queue_full", extra={"dropped": self._dropped})


@asynccontextmanager
async def open_scanner(
    path: PortPath,
    *,
    on_fault: FaultCallback | None = None,
    baudrate: int = 9600,
    max_code_bytes: int = MAX_CODE_BYTES,
    backoff: Backoff | None = None,
) -> AsyncIterator[Scanner]:
    """Run a scanner on ``path`` for the duration of the block.

    ``path`` may be a function returning the current path (see
    :class:`devices.serial_port.ReconnectingPort`). The first open attempt
    has been made when the block starts; a missing scanner is reported as
    ``on_fault("scanner", "unavailable")`` and retried, never raised.
    Leaving the block closes the port and ends :meth:`Scanner.codes`.
    """
    port = ReconnectingPort("scanner", path, baudrate=baudrate, on_fault=on_fault, backoff=backoff)
    scanner = Scanner(port, max_code_bytes=max_code_bytes)
    try:
        async with port.running(scanner._serve):
            yield scanner
    finally:
        scanner._send.close()
