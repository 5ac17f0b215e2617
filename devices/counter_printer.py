"""The counter's receipts on a serial ESC/POS printer, through devices/printer's driver.

:class:`SerialPrinter` prints the counter's receipts
(:mod:`clients.counter.receipt`) on a receipt printer: each line as text
(bold, centred; Chinese in GB18030), each ticket's QR as a QR symbol, the
paper cut after each (docs/devices.md, "Receipt printer", states the bytes).
:func:`printer_for` picks it or a :class:`~clients.counter.printing.FilePrinter`
by the path given to ``scenic counter --printer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from clients.counter.printing import FilePrinter
from clients.counter.receipt import Qr, Receipt
from devices.printer import Line as PrinterLine
from devices.printer import PrinterError, QrCode, ReceiptPrinter
from devices.printer import Receipt as PrinterReceipt
from devices.printer.escpos_driver import is_serial_path


def escpos_receipt(receipt: Receipt, kind: str = "sale") -> PrinterReceipt:
    """The counter's ``receipt`` as the ESC/POS driver's receipt (devices.printer)."""
    blocks: list[Any] = []
    for block in receipt:
        if isinstance(block, Qr):
            blocks.append(QrCode(block.data))
            if block.caption:
                blocks.append(PrinterLine(block.caption, align="center"))
        else:
            align = "center" if block.center else "left"
            blocks.append(PrinterLine(block.text, align=align, bold=block.bold))
    return PrinterReceipt(kind, blocks)


class SerialPrinter:
    """Print receipts on a serial ESC/POS printer (devices.printer's :class:`ReceiptPrinter`).

    The port is opened at the first receipt (and again after a failure), so
    a printer switched on after the counter still prints. A failure raises
    ``OSError`` with the driver's words, which the screen shows.
    """

    def __init__(self, port: str) -> None:
        self.port = port
        self._printer: ReceiptPrinter | None = None

    def describe(self) -> str:
        """What the screen says about this printer."""
        return f"ESC/POS {self.port}"

    def close(self) -> None:
        """Close the port (the next receipt opens it again)."""
        printer, self._printer = self._printer, None
        if printer is not None:
            printer.close()

    async def print_receipt(self, receipt: Receipt) -> None:
        """Print ``receipt`` and cut; raises ``OSError`` when the printer fails."""
        try:
            if self._printer is None:
                self._printer = await trio.to_thread.run_sync(ReceiptPrinter.open, self.port)
            await self._printer.print_receipt_async(escpos_receipt(receipt))
        except PrinterError as exc:
            self.close()
            raise OSError(str(exc)) from exc


def printer_for(path: str) -> FilePrinter | SerialPrinter:
    """A serial ESC/POS printer for a serial port path (``/dev/tty...``), else a file."""
    return SerialPrinter(path) if is_serial_path(path) else FilePrinter(Path(path))
