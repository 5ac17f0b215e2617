"""The ``scenic printer-sim`` and ``scenic print-test`` subcommands.

``scenic printer-sim`` runs the simulated receipt printer on a pseudo-terminal:
its first line on stdout names the port (``printer-sim: port /dev/pts/7``),
then every line it prints follows, as readable text, until Ctrl-C (exit 130).

``scenic print-test --port P`` prints a test receipt (every kind of block, in
both languages) on the serial printer at ``P``, or into the file ``P``
(``--readable`` writes the text the simulator would show instead of the
bytes). A printer that is not there, offline or out of paper is one line on
stderr and exit status 1, as :mod:`devices.cli` does for the gate commands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import trio

from devices.cli import _LEVELS, _until_signalled
from devices.printer.escpos_driver import (
    STATUS_TIMEOUT_S,
    WRITE_TIMEOUT_S,
    PrinterError,
    ReceiptPrinter,
    is_serial_path,
)
from devices.printer.receipts import DEFAULT_WIDTH, printer_test_receipt
from devices.printer.simulated import PrinterSimulator
from server.config import ServerConfig


def add_printer_parsers(subparsers: Any) -> None:
    """Add ``printer-sim`` and ``print-test`` to the ``scenic`` command's ``subparsers``."""
    sim = subparsers.add_parser(
        "printer-sim",
        help="Run a simulated receipt printer on a pseudo-terminal and show what it prints.",
        description="Run a simulated ESC/POS receipt printer on a pseudo-terminal. The first"
        " line names its port (give it to the counter or to print-test --port); every line"
        " printed follows as readable text. Ctrl-C stops it.",
    )
    sim.add_argument(
        "--paper-out",
        action="store_true",
        help="Start with no paper: its status says paper end until it is loaded.",
    )
    sim.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        help="Write log lines on stderr at this level (default: none).",
    )
    sim.set_defaults(run=_run_sim)

    test = subparsers.add_parser(
        "print-test",
        help="Print a test receipt on a serial receipt printer, or into a file.",
        description="Print a test receipt: text in both languages, alignments, bold, double"
        " size, a QR code, a barcode, then a cut. --port is a serial port (/dev/...) or a file.",
    )
    test.add_argument(
        "--port",
        required=True,
        help="The printer's serial port (a /dev/serial/by-id/... name), or a file to print into.",
    )
    test.add_argument(
        "--readable",
        action="store_true",
        help="Into a file: write the readable text instead of the ESC/POS bytes.",
    )
    test.add_argument(
        "--baud", type=int, default=9600, help="The port's speed in baud (default 9600)."
    )
    test.add_argument(
        "--width",
        type=int,
        choices=(32, 48),
        default=DEFAULT_WIDTH,
        help="Columns: 32 for 58 mm paper (default), 48 for 80 mm.",
    )
    test.add_argument(
        "--no-status",
        action="store_true",
        help="Do not ask the printer's status first (a printer wired to send nothing back).",
    )
    test.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        help="Write log lines on stderr at this level (default: none).",
    )
    test.set_defaults(run=_run_print_test)


async def _run_sim(config: ServerConfig, args: argparse.Namespace) -> int:
    del config
    if args.log_level is None:  # the screen shows what is printed, nothing else
        logging.getLogger("scenic").setLevel(logging.CRITICAL + 1)

    def show(line: str) -> None:
        print(line, flush=True)

    async def simulate() -> None:
        async with PrinterSimulator(on_line=show) as sim:
            if args.paper_out:
                sim.paper_out()
            print(f"printer-sim: port {sim.port}", flush=True)
            await trio.sleep_forever()

    stopped_by = await _until_signalled(simulate)
    return 0 if stopped_by is None else 128 + stopped_by


async def _run_print_test(config: ServerConfig, args: argparse.Namespace) -> int:
    del config
    if args.log_level is None:  # a failure is its one line on stderr, nothing else
        logging.getLogger("scenic").setLevel(logging.CRITICAL + 1)
    if args.readable and is_serial_path(args.port):
        print(
            "scenic print-test: --readable is for a file; a serial printer gets ESC/POS bytes",
            file=sys.stderr,
        )
        return 2
    receipt = printer_test_receipt(printed_at=datetime.now(UTC), width=args.width)
    try:
        printer = await trio.to_thread.run_sync(
            lambda: ReceiptPrinter.open(
                args.port,
                readable=args.readable,
                baudrate=args.baud,
                write_timeout_s=WRITE_TIMEOUT_S,
                status_timeout_s=STATUS_TIMEOUT_S,
                check_status=not args.no_status,
            )
        )
        with printer:
            await printer.print_receipt_async(receipt)
    except PrinterError as exc:
        print(f"scenic print-test: {exc.message}", file=sys.stderr)
        return 1
    print(f"print-test: a test receipt went to {args.port}")
    return 0
