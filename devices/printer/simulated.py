"""A simulated receipt printer on a pseudo-terminal: it decodes what it receives.

::

    async with PrinterSimulator() as sim:
        with ReceiptPrinter.open(sim.port) as printer:
            await printer.print_receipt_async(receipt)
        await sim.wait_for_cuts(1)
        print("\\n".join(sim.receipts()[0]))   # [center bold 2x2] 西湖风景名胜区 ...

It is a :class:`devices.simulators.PtySimulator`: :attr:`port` is the pty's
slave, ``unplug()`` closes the pty (the driver's next read or write fails),
``replug()`` makes a new one. What it receives is kept as bytes
(:attr:`received`) and decoded (:mod:`devices.printer.decoder`) into
:attr:`events` and readable :meth:`lines`, split into receipts at each cut
(:meth:`receipts`); ``on_line`` is called with each readable line as it is
printed.

It answers the real-time status queries ``DLE EOT n`` with one byte, as an
Epson-style printer does (bits 1 and 4 always set):

| n | asks | with paper | out of paper |
| --- | --- | --- | --- |
| 1 | printer status (bit 3: offline) | ``0x12`` | ``0x1a`` |
| 2 | offline cause (bit 5: paper end stop) | ``0x12`` | ``0x32`` |
| 3 | error cause | ``0x12`` | ``0x12`` |
| 4 | paper sensors (bits 2-3 near end, 5-6 end) | ``0x12`` | ``0x7e`` |

Failure injection: :meth:`paper_out` (it answers as above and holds what it
is sent, printing it once :meth:`load_paper` is called, as a printer's
buffer does) and :meth:`stall` (it stops reading the port altogether, so
status queries go unanswered and the driver's writes fill the pty and block:
a hung printer), undone by :meth:`resume`.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from devices.printer.decoder import (
    Cut,
    EscPosDecoder,
    Event,
    StatusQuery,
    readable,
)
from devices.simulators import PtySimulator, _Pty

_STATUS_OK = {1: 0x12, 2: 0x12, 3: 0x12, 4: 0x12}
_STATUS_NO_PAPER = {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}


class PrinterSimulator(PtySimulator):
    """An ESC/POS receipt printer on a pty; see the module docstring."""

    def __init__(self, *, on_line: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.on_line = on_line
        self.received = bytearray()
        self.events: list[Event] = []
        self.status_queries: list[int] = []
        self.has_paper = True
        self._held: list[Event] = []
        self._decoder = EscPosDecoder()
        self._resumed: trio.Event | None = None
        self._printed = trio.lowlevel.ParkingLot()

    def paper_out(self) -> None:
        """The roll ran out: report it, and hold what comes until :meth:`load_paper`."""
        self.has_paper = False

    def load_paper(self) -> None:
        """A new roll: print what was held."""
        self.has_paper = True
        held, self._held = self._held, []
        for event in held:
            self._print(event)

    def stall(self) -> None:
        """Stop reading the port (a hung printer) until :meth:`resume`."""
        if self._resumed is None:
            self._resumed = trio.Event()

    def resume(self) -> None:
        """Read the port again."""
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.set()

    def lines(self) -> list[str]:
        """Every readable line printed so far (see :func:`devices.printer.decoder.readable`)."""
        return [line for line in map(readable, self.events) if line is not None]

    def receipts(self) -> list[list[str]]:
        """The readable lines of each receipt finished by a cut (the ``[cut]`` line included)."""
        done: list[list[str]] = []
        current: list[str] = []
        for event in self.events:
            line = readable(event)
            if line is not None:
                current.append(line)
            if isinstance(event, Cut):
                done.append(current)
                current = []
        return done

    @property
    def cuts(self) -> int:
        """How many cuts it has made (one per receipt)."""
        return sum(isinstance(event, Cut) for event in self.events)

    async def wait_for_cuts(self, count: int, *, timeout_s: float = 5.0) -> None:
        """Return once :attr:`cuts` reaches ``count``; ``trio.TooSlowError`` after ``timeout_s``."""
        with trio.fail_after(timeout_s):
            while self.cuts < count:
                await self._printed.park()

    async def _serve(self, pty: _Pty) -> None:
        while True:
            while self._resumed is not None:
                await self._resumed.wait()
            data = await self._read(pty)
            self.received += data
            for event in self._decoder.feed(data):
                if isinstance(event, StatusQuery):
                    self.status_queries.append(event.n)
                    answers = _STATUS_OK if self.has_paper else _STATUS_NO_PAPER
                    if event.n in answers:
                        self._queue(bytes((answers[event.n],)))
                elif self.has_paper:
                    self._print(event)
                else:
                    self._held.append(event)

    def _print(self, event: Event) -> None:
        self.events.append(event)
        self._printed.unpark_all()
        line = readable(event)
        if line is not None and self.on_line is not None:
            self.on_line(line)

    def _on_unplug(self) -> None:
        self._decoder = EscPosDecoder()  # a power cut loses a half-received command
        self._held = []
