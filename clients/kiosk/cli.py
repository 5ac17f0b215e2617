"""``scenic kiosk``: open the self-service kiosk in this terminal (docs/kiosk.md).

::

    scenic device add kiosk-01 --role kiosk          # prints TOKEN
    scenic kiosk --device kiosk-01 --token TOKEN     # against scenic serve --demo

It runs its own event loop (textual's), so its ``run`` is a plain function.
A server that cannot be reached or refuses the device is shown in the
kiosk's status bar with ``R`` to retry, never as a traceback.
"""

from __future__ import annotations

import argparse
from typing import Any

from server.config import ServerConfig
from server.flags import websocket_url

__all__ = ["add_kiosk_parser"]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 5 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is outside 5..3600 seconds")
    return value


def add_kiosk_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``kiosk`` command to the ``scenic`` command's subparsers."""
    summary = "Open the self-service ticket kiosk in this terminal."
    kiosk = subparsers.add_parser(
        "kiosk",
        help=summary,
        description=f"{summary} Connects as a kiosk device (scenic device add ID --role kiosk).",
    )
    kiosk.add_argument(
        "--url",
        default="ws://127.0.0.1:8765",
        type=websocket_url,
        metavar="URL",
        help="The server's ws:// URL (default ws://127.0.0.1:8765).",
    )
    kiosk.add_argument("--device", required=True, help="The kiosk's device id.")
    kiosk.add_argument("--token", required=True, help="The token scenic device add printed.")
    kiosk.add_argument(
        "--language",
        choices=("zh", "en"),
        default="zh",
        help="The language a visitor first sees (default zh; L switches).",
    )
    kiosk.add_argument(
        "--idle-seconds",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="Back to the start screen after S seconds without a key (default 60).",
    )
    kiosk.add_argument(
        "--pay-seconds",
        type=_seconds,
        default=180.0,
        metavar="S",
        help="How long the pay screen waits for a payment without a key before it cancels "
        "the order and goes back to the start (default 180).",
    )
    kiosk.set_defaults(run=run)
    return kiosk


def run(config: ServerConfig, args: argparse.Namespace) -> int:
    """Run the kiosk until it is closed (Ctrl+Q); returns the exit status."""
    del config
    from clients.kiosk.app import KioskApp  # textual is imported only for the screens

    app = KioskApp(
        args.url,
        args.device,
        args.token,
        language=args.language,
        idle_s=args.idle_seconds,
        pay_s=args.pay_seconds,
    )
    app.run()
    return app.return_code or 0
