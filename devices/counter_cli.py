"""``scenic counter``: open the cashier's screen against a server.

::

    scenic counter --url ws://127.0.0.1:8765 --device counter-1 --token TOKEN \\
        --printer receipts.txt --float 500

The screen (:mod:`clients.counter`) runs in the terminal (textual); it
owns the process's main thread and event loop, so the command is run
outside the CLI's trio run (``run`` is a plain function). It lives in devices/ because it
wires the screen to its receipt printer (devices/ may import clients/, not
the reverse), as the gate agent wires its hardware.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from clients.counter.money import parse_yuan
from server.config import ServerConfig
from server.flags import websocket_url


def add_counter_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``scenic counter`` to the ``scenic`` command's subparsers."""
    summary = "Open the cashier's screen: sell, look up, refund, rentals, the shift report."
    parser = subparsers.add_parser("counter", help=summary, description=summary)
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:8765",
        type=websocket_url,
        metavar="URL",
        help="The server's ws:// URL (default ws://127.0.0.1:8765).",
    )
    parser.add_argument("--device", required=True, help="The counter's (or rental desk's) id.")
    parser.add_argument("--token", required=True, help="The token scenic device add printed.")
    parser.add_argument(
        "--printer",
        metavar="PATH",
        help="Print receipts on the ESC/POS printer at this serial port (/dev/ttyUSB0), "
        "or to this file (plain text, appended).",
    )
    parser.add_argument(
        "--float",
        dest="float_yuan",
        default="0",
        metavar="YUAN",
        help="The cash the drawer opens with, in yuan (default 0).",
    )
    parser.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="Write the program's log lines to this file (default: none; the screen is the "
        "terminal, so nothing is logged to it).",
    )
    parser.set_defaults(run=run)
    return parser


def run(config: ServerConfig, args: argparse.Namespace) -> int:
    """Run the screen until the cashier quits (Ctrl+Q); returns the exit status."""
    del config
    from clients.counter.app import CounterApp
    from devices.counter_printer import printer_for

    try:
        float_fen = parse_yuan(args.float_yuan)
    except ValueError as exc:
        print(f"scenic counter: --float: {exc}", file=sys.stderr)
        return 2
    printer = printer_for(args.printer) if args.printer else None
    _log_away_from_the_screen(args.log)
    app = CounterApp(args.url, args.device, args.token, printer=printer, float_fen=float_fen)
    try:
        app.run()
    finally:
        if printer is not None:
            printer.close()
    return 0


def _log_away_from_the_screen(path: Path | None) -> None:
    """Log lines would be drawn over the screen: send them to ``path``, or nowhere."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter if root.handlers else None
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if path is None:
        root.addHandler(logging.NullHandler())
        return
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(formatter)
    root.addHandler(to_file)
