"""``scenic desk lookup``: the service desk's question from a terminal.

It connects as a counter (or admin) device, sends ``desk.lookup`` with the
one number given, and prints the visitor's three answers, the payments and
refunds as their channels report them, and the story, in the site's time
zone (read with ``catalog.list``); ``--json`` prints the reply itself.
Nothing found, or a refusal, is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from clients.client import RemoteError, connect
from clients.story import what_went_wrong
from server.config import ServerConfig
from server.flags import websocket_url

#: the flags that name what to look up, and the desk.lookup arg each gives
KEY_FLAGS = {
    "--order": "order",
    "--out-trade-no": "out_trade_no",
    "--channel-txn-id": "channel_txn_id",
    "--out-refund-no": "out_refund_no",
    "--ticket": "ticket",
    "--ticket-id": "ticket_id",
    "--voucher": "voucher",
    "--rental": "rental",
    "--out-order-no": "out_order_no",
}


def add_desk_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``desk`` command group (``desk lookup``) to the ``scenic`` command's subparsers."""
    summary = "The service desk: look a visitor's payment, refund, ticket or rental up."
    desk = subparsers.add_parser("desk", help=summary, description=summary)
    commands = desk.add_subparsers(dest="desk_command", required=True, metavar="COMMAND")
    lookup_summary = "Find an order or rental by any of its numbers and print its story."
    lookup = commands.add_parser(
        "lookup",
        help=lookup_summary,
        description=f"{lookup_summary} Give exactly one number; connects as a counter or "
        "admin device (scenic device add ID --role counter).",
    )
    lookup.add_argument(
        "--server",
        default="ws://127.0.0.1:8765",
        type=websocket_url,
        metavar="URL",
        help="The server's ws:// URL (default ws://127.0.0.1:8765).",
    )
    lookup.add_argument("--device", required=True, help="The counter's or admin's device id.")
    lookup.add_argument("--token", required=True, help="The token scenic device add printed.")
    keys = lookup.add_mutually_exclusive_group(required=True)
    for flag, arg in KEY_FLAGS.items():
        keys.add_argument(flag, dest=arg, metavar="NUMBER", help=f"Find by {arg}.")
    lookup.add_argument("--json", action="store_true", help="Print the reply as JSON.")
    lookup.set_defaults(run=run)
    return desk


async def run(config: ServerConfig, args: argparse.Namespace) -> int:
    """Look the number up and print the answer; returns the exit status (1: not answered)."""
    del config
    (arg,) = [name for name in KEY_FLAGS.values() if getattr(args, name, None) is not None]
    try:
        async with connect(args.server, args.device, args.token) as desk:
            reply = await desk.request("desk.lookup", **{arg: getattr(args, arg)})
            timezone = (await desk.request("catalog.list"))["timezone"]
    except BaseException as exc:  # sorted by _refusal; anything else as it was
        line = _refusal(exc, args)
        if line is None:
            raise
        print(f"scenic desk lookup: {line}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, ensure_ascii=False, indent=2))
    else:
        print("\n".join(render_lookup(reply, timezone)))
    return 0


def _refusal(exc: BaseException, args: argparse.Namespace) -> str | None:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, RemoteError) and exc.code == "bad_credentials":
        return (
            f"the server refused device {args.device!r} with this token; register it with "
            f"scenic device add {args.device} --role counter and pass the token it prints"
        )
    if isinstance(exc, RemoteError) and exc.code == "forbidden":
        return f"device {args.device!r} may not look stories up: only counter and admin may"
    if isinstance(exc, RemoteError) and exc.code == "not_found":
        return f"{exc.message}; check the number and which kind it is"
    return what_went_wrong(exc, args.server, args.device)


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen / 100:.2f}"


def _local(epoch: float | None, zone: ZoneInfo) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def render_lookup(reply: dict[str, Any], timezone: str) -> list[str]:
    """A ``desk.lookup`` reply as lines for a terminal, times in ``timezone``."""
    zone = ZoneInfo(timezone)
    subject = reply["order"] if reply["subject"] == "order" else reply["rental"]
    number = subject["order"] if reply["subject"] == "order" else subject["rental"]
    answers = reply["answers"]
    times = answers["collections"]
    lines = [
        f"{reply['subject']} {number} ({subject['status']}), found by {reply['by']}",
        "charged: "
        + (
            f"yes, {times} time{'s' if times != 1 else ''}, "
            f"{_yuan(answers['collected_fen'])} yuan in all"
            if answers["charged"]
            else "no"
        ),
    ]
    if answers["frozen_fen"]:
        lines.append(f"frozen at the channel: {_yuan(answers['frozen_fen'])} yuan (not a charge)")
    lines.append("comes back:" if answers["comes_back"] else "comes back: nothing")
    for back in answers["comes_back"]:
        latest = "" if back["latest_at"] is None else f"; by {_local(back['latest_at'], zone)}"
        lines.append(
            f"  {_yuan(back['amount_fen'])} yuan by {back['channel']} ({back['out_refund_no']}): "
            f"{back['state']}, {back['arrival']} - {back['note']}{latest}"
        )
    lines.append("payments:")
    for payment in reply["payments"]:
        taken = ", ".join(
            f"{'kept' if c['kept'] else 'refunded'} {c['channel_txn_id']}"
            for c in payment["collections"]
        )
        lines.append(
            f"  {payment['out_trade_no']} {payment['channel']} {_yuan(payment['amount_fen'])} "
            f"yuan: {taken or 'not paid'}; {_at_channel(payment['at_channel'])}"
        )
    lines.append("story:")
    for step in reply["story"]:
        amount = "" if step["amount_fen"] is None else f"  {_yuan(step['amount_fen'])}"
        ref = "" if step["ref"] is None else f"  {step['ref']}"
        lines.append(f"  {_local(step['at'], zone)}  {step['what']}{amount}{ref}")
    reconciliation = reply["reconciliation"]
    lines.append(
        "reconciliation: "
        + ("no run yet" if reconciliation is None else json.dumps(reconciliation))
    )
    return lines


def _at_channel(at_channel: dict[str, Any]) -> str:
    if not at_channel["asked"]:
        return f"the channel was not asked: {at_channel['message']}"
    payer = at_channel.get("payer")
    return f"at the channel {at_channel['state']}" + (f", payer {payer}" if payer else "")
