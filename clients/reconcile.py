"""``scenic reconcile``: reconcile a business date with the channels' bills, through the server.

The run happens inside the server (``recon.run``), where the channels and the
actors are, so what it fixes goes through the same actors and outbox as live
traffic. This command asks for it as an ``admin`` device and prints the run;
with ``--show`` it prints the stored result (``recon.report``) without
running. It exits 0 when no difference of the date is open, 1 while one is
(or when the run could not be done), 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from datetime import date
from pathlib import Path
from typing import Any

from clients.client import connect
from clients.story import what_went_wrong
from server.channels.statement import BILL_CHANNELS
from server.config import ServerConfig
from server.flags import websocket_url

DEFAULT_SERVER = "ws://127.0.0.1:8765"
#: a bill file larger than this does not fit the server's default frame limit
MAX_FILE_BYTES = 60 * 1024
#: the bytes of one part of a larger bill sent with recon.upload
PART_BYTES = 48 * 1024


def add_reconcile_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reconcile`` subcommand to the ``scenic`` command's ``subparsers``."""
    summary = "Reconcile a business date with WeChat Pay's and Alipay's bills."
    parser = subparsers.add_parser(
        "reconcile",
        help=summary,
        description=f"{summary} The running server fetches each bill (or reads --statement), "
        "fixes what is safe through the orders' and rentals' actors and lists the rest; "
        "exits 1 while a difference is open.",
    )
    parser.add_argument(
        "--date",
        required=True,
        type=_date,
        metavar="YYYY-MM-DD",
        help="The business date (Beijing time) to reconcile.",
    )
    parser.add_argument(
        "--channel",
        choices=BILL_CHANNELS,
        help="Only this channel (default: every channel with a bill).",
    )
    parser.add_argument(
        "--statement",
        type=Path,
        metavar="FILE",
        help="Reconcile against this bill file (as downloaded) instead of "
        "fetching it; needs --channel.",
    )
    parser.add_argument(
        "--show", action="store_true", help="Print the stored result of the date without running."
    )
    parser.add_argument(
        "--server",
        type=websocket_url,
        default=os.environ.get("SCENIC_SERVER", DEFAULT_SERVER),
        metavar="URL",
        help=f"The scenic server's ws:// URL (default {DEFAULT_SERVER}; SCENIC_SERVER).",
    )
    parser.add_argument(
        "--device",
        default=os.environ.get("SCENIC_DEVICE"),
        metavar="ID",
        help="An admin device (scenic device add ID --role admin; SCENIC_DEVICE).",
    )
    parser.add_argument(
        "--token", default=os.environ.get("SCENIC_TOKEN"), help="The device's token (SCENIC_TOKEN)."
    )
    parser.set_defaults(run=run)
    return parser


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


async def run(config: ServerConfig, args: argparse.Namespace) -> int:
    """Run (or show) the reconciliation and print it; returns the exit status."""
    problem = _usage_problem(args)
    if problem:
        print(f"scenic reconcile: {problem}; see scenic reconcile --help", file=sys.stderr)
        return 2
    request: dict[str, Any] = {"date": args.date.isoformat()}
    if args.channel:
        request["channel"] = args.channel
    if args.statement is not None:
        try:
            request["statement"] = args.statement.read_bytes()
        except OSError as exc:
            print(
                f"scenic reconcile: cannot read {args.statement}: {exc.strerror}", file=sys.stderr
            )
            return 1
    try:
        async with connect(args.server, args.device, args.token) as client:
            if args.show:
                report = await client.request("recon.report", timeout=60, **request)
                return print_report(report)
            if len(request.get("statement", b"")) > MAX_FILE_BYTES:
                request["upload"] = await upload_bill(client, request.pop("statement"))
            result = await client.request("recon.run", timeout=600, **request)
    except BaseException as exc:
        line = what_went_wrong(exc, args.server, args.device)
        if line is None:
            raise
        print(f"scenic reconcile: {line.replace('--role kiosk', '--role admin')}", file=sys.stderr)
        return 1
    return print_run(result)


async def upload_bill(client: Any, data: bytes) -> str:
    """Send a bill file larger than one request in parts (``recon.upload``); its upload id."""
    upload_id = secrets.token_hex(8)
    parts = [data[i : i + PART_BYTES] for i in range(0, len(data), PART_BYTES)]
    for number, part in enumerate(parts):
        await client.request(
            "recon.upload",
            timeout=60,
            upload=upload_id,
            part=number,
            data=part,
            last=number == len(parts) - 1,
        )
    return upload_id


def _usage_problem(args: argparse.Namespace) -> str | None:
    if not args.device or not args.token:
        return "give --device and --token of an admin device (or SCENIC_DEVICE, SCENIC_TOKEN)"
    if args.statement is not None and not args.channel:
        return "--statement is one channel's bill: give --channel too"
    if args.show and args.statement is not None:
        return "--show prints the stored result; it takes no --statement"
    return None


def print_run(result: dict[str, Any]) -> int:
    """Print a ``recon.run`` reply; 1 if a difference is open, else 0."""
    still_open = 0
    for run in result["runs"]:
        print(
            f"reconcile {run['date']} {run['channel']} ({run['source']}, {run['lines']} lines): "
            f"{len(run['differences'])} differences: {run['fixed']} fixed, {run['open']} open, "
            f"{run['waiting']} waiting"
        )
        for difference in run["differences"]:
            print(_difference_line(difference))
        still_open += run["open"]
    return _verdict(still_open)


def print_report(report: dict[str, Any]) -> int:
    """Print a ``recon.report`` reply; 1 if a difference is open, else 0."""
    if report["date"] is None:
        print("reconcile: no run stored yet")
        return 0
    for run in report["runs"]:
        print(
            f"reconcile {report['date']} {run['channel']} (last run {run['run_id']}, "
            f"{run['source']}, {run['lines']} lines): {run['found']} differences: "
            f"{run['fixed']} fixed, {run['open']} open, {run['waiting']} waiting"
        )
    for difference in report["differences"]:
        print(_difference_line(difference))
    return _verdict(sum(d["status"] == "open" for d in report["differences"]))


def _difference_line(d: dict[str, Any]) -> str:
    owner = f"{d['owner_kind']} {d['owner_id']}" if d.get("owner_kind") else "-"
    settled = f" [{d['fix']}]" if d.get("fix") and d["status"] == "fixed" else ""
    return f"  {d['status']:<8} {d['kind']:<20} {owner:<28} {d['detail']}{settled}"


def _verdict(still_open: int) -> int:
    if still_open:
        print(f"reconcile: {still_open} open for a person; see docs/reconciliation.md")
        return 1
    return 0
