"""Where a counter's receipts go when they go to a file.

:class:`FilePrinter` appends each receipt as :func:`clients.counter.receipt.as_text`
renders it, followed by a form feed: a receipt is on disk when
:meth:`FilePrinter.print_receipt` returns. The screen takes any object with
``describe()`` and ``async print_receipt(receipt)`` raising ``OSError``;
the serial ESC/POS one is :class:`devices.counter_printer.SerialPrinter`
(devices/ may import clients/, not the reverse).
"""

from __future__ import annotations

from pathlib import Path

import trio

from clients.counter.receipt import Receipt, as_text

#: what separates two receipts in the file (a form feed: the cut)
CUT = "\f\n"


class FilePrinter:
    """Print receipts to ``path`` as plain text, appended."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        """What the screen says about this printer."""
        return f"file {self.path}"

    def close(self) -> None:
        """Nothing stays open between receipts."""

    async def print_receipt(self, receipt: Receipt) -> None:
        """Append ``receipt`` (and a cut) to the file; raises ``OSError`` if it cannot."""
        text = as_text(receipt) + CUT

        def write() -> None:
            with self.path.open("a", encoding="utf-8") as out:
                out.write(text)

        await trio.to_thread.run_sync(write)
