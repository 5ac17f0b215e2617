"""Where a counter's receipts go: a serial ESC/POS printer, or a file.

:class:`SerialPrinter` prints on a receipt printer through devices/printer's
driver (ESC/POS, Chinese in GB18030, a QR code per ticket, the paper cut).
:class:`FilePrinter` appends each receipt as :func:`clients.counter.receipt.as_text`
renders it, followed by a form feed: a receipt is on disk when
:meth:`FilePrinter.print_receipt` returns. :func:`printer_for` picks one
by the path given to ``--printer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from clients.counter.receipt import Qr, Receipt, as_text
from devices.printer import Line as PrinterLine
from devices.printer import PrinterError, QrCode, ReceiptPrinter
from devices.printer import Receipt as PrinterReceipt
from devices.printer.escpos_driver import is_serial_path

#: what separates two receipts in the file (a form feed: the cut)
CUT = "\f\n"


class FilePrinter:
    """Print receipts to ``path`` as plain text, appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        """What the screen says about this printer."""
        return f"file {self.path}"

    async def print_receipt(self, receipt: Receipt) -> None:
        """Append ``receipt`` (and a cut) to the file; raises ``OSError`` if it cannot."""
        text = as_text(receipt) + CUT

        def write() -> None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(text)

        await trio.to_thread.run_sync(write)


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

    async def print_receipt(self, receipt: Receipt) -> None:
        """Print ``receipt`` and cut; raises ``OSError`` when the printer fails."""
        try:
            if self._printer is None:
                self._printer = await trio.to_thread.run_sync(ReceiptPrinter.open, self.port)
            await self._printer.print_receipt_async(escpos_receipt(receipt))
        except PrinterError as exc:
            printer, self._printer = self._printer, None
            if printer is not None:
                printer.close()
            raise OSError(str(exc)) from exc


def printer_for(path: str) -> FilePrinter | SerialPrinter:
    """A serial ESC/POS printer for a serial port path (``/dev/tty...``), else a file."""
    return SerialPrinter(path) if is_serial_path(path) else FilePrinter(Path(path))
