"""The receipt printer: receipts laid out from the server's maps, ESC/POS bytes, a simulator.

- :mod:`devices.printer.receipts` lays a receipt out (pure): a sale, a rental
  voucher, a refund, a test page, in Chinese or English.
- :mod:`devices.printer.wire` turns a receipt into the ESC/POS bytes sent
  (pure; Chinese text in GB18030 inside FS & ... FS .).
- :mod:`devices.printer.decoder` turns ESC/POS bytes back into readable text
  (sans-IO; the simulator and print-to-file use it).
- :mod:`devices.printer.escpos_driver` is :class:`ReceiptPrinter`: a serial
  ESC/POS printer (python-escpos over pyserial) or a file.
- :mod:`devices.printer.simulated` is :class:`PrinterSimulator`, a printer on
  a pseudo-terminal.

docs/devices.md, "Receipt printer", states every byte sent.
"""

from devices.printer.escpos_driver import (
    PrinterError,
    PrinterOffline,
    PrinterOutOfPaper,
    PrinterTimeout,
    PrinterUnavailable,
    ReceiptPrinter,
)
from devices.printer.receipts import (
    Barcode,
    Feed,
    Line,
    QrCode,
    Receipt,
    printer_test_receipt,
    refund_receipt,
    rental_voucher_receipt,
    sale_receipt,
)
from devices.printer.simulated import PrinterSimulator
from devices.printer.wire import encode_receipt

__all__ = [
    "Barcode",
    "Feed",
    "Line",
    "PrinterError",
    "PrinterOffline",
    "PrinterOutOfPaper",
    "PrinterSimulator",
    "PrinterTimeout",
    "PrinterUnavailable",
    "QrCode",
    "Receipt",
    "ReceiptPrinter",
    "encode_receipt",
    "printer_test_receipt",
    "refund_receipt",
    "rental_voucher_receipt",
    "sale_receipt",
]
