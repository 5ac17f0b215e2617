"""The README's rental story, runnable: skis against a deposit paid by WeChat Pay, a helmet frozen.

Usage (against ``scenic serve --demo``, whose channels are simulated in-process)::

    scenic device add kiosk-02 --role kiosk        # prints KIOSK_TOKEN
    scenic device add desk-01 --role rental        # prints DESK_TOKEN
    python -m clients.rental_story --device kiosk-02 --token KIOSK_TOKEN \\
        --desk desk-01 --desk-token DESK_TOKEN

At the ski area's kiosk a visitor rents skis and boots for the day: the
kiosk reads the deposit and the prices from ``catalog.list``, makes the
rental, and the visitor pays deposit and prepaid usage by WeChat Pay
(simulated). The kiosk gets the voucher; the rental desk scans it and the
units' labels, and later takes them back, the boots damaged. The story
prints the settlement and the ``deposit.refunded`` events until the refund
of the rest is confirmed. Then a second visitor rents a helmet on the Alipay
pre-authorisation route: the deposit is frozen, not paid; at the return the
usage is converted into a payment and the rest unfrozen. Every amount is
printed in yuan; docs/protocol.md (*Rentals*) says how each is made.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import trio

from clients.client import Client, RemoteError, connect
from clients.story import what_went_wrong

#: the demo park's labels: skis 880101001.., boots 880103001.., helmets 880104001..
SKI_LABELS = "880101{:03d}"
BOOT_LABELS = "880103{:03d}"
HELMET_LABELS = "880104{:03d}"
#: pickup refusals that mean "take another unit from the rack"
TAKEN = ("unit_out", "unit_unavailable")


class DeviceRefused(Exception):
    """The server refused one of the story's two devices at hello."""

    def __init__(self, device: str, role: str) -> None:
        super().__init__(device, role)
        self.device, self.role = device, role


def yuan(fen: int) -> str:
    """``fen`` as yuan with two decimals: 116000 -> ``1160.00``."""
    return f"{fen / 100:.2f}"


async def _event(client: Client, name: str) -> dict:
    with trio.fail_after(30):
        async for event, data in client.events():
            if event == name:
                return data
    raise RuntimeError(f"the connection closed before {name}")


async def _until_confirmed(client: Client, rental_id: str) -> None:
    """Print the rental's ``deposit.refunded`` events until one says ``confirmed``."""
    while True:
        told = await _event(client, "deposit.refunded")
        if told["rental"] != rental_id:
            continue
        print(
            f"deposit.refunded: {yuan(told['amount_fen'])} yuan by {told['how']}"
            f" {told['reference']}, {told['state']}"
        )
        if told["state"] == "confirmed":
            return


def _price(item: dict) -> str:
    pricing = item["pricing"]
    if pricing["rule"] == "per_day":
        return f"{yuan(pricing['daily_fen'])} yuan a day"
    if pricing["rule"] == "per_use":
        return f"{yuan(pricing['price_fen'])} yuan a rental"
    return f"{yuan(pricing['hourly_fen'])} yuan an hour"


def _charges(settled: dict) -> str:
    parts = []
    for charge in settled["charges"]:
        named = [
            f"{what} {yuan(charge[key])}"
            for what, key in (
                ("usage", "usage_fen"),
                ("late", "late_fen"),
                ("damage", "damage_fen"),
                ("lost", "lost_fen"),
            )
            if charge[key] and not (key == "usage_fen" and charge["covered"])
        ]
        parts.append(f"{charge['item']}: {', '.join(named) or 'nothing'}")
    return "; ".join(parts)


async def _pick_up(desk: Client, voucher: str, racks: list[str]) -> dict:
    """Scan ``voucher`` and one free unit from each rack (a label pattern); the units go out."""
    for n in range(1, 61):
        labels = [rack.format(n) for rack in racks]
        try:
            return await desk.request("rental.pickup", voucher=voucher, labels=labels)
        except RemoteError as exc:
            if exc.code not in TAKEN:
                raise
    raise RuntimeError("no free units left on the demo park's racks")


def _local(epoch: float, timezone: str) -> str:
    moment = datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _settlement(back: dict) -> None:
    money = back["settlement"]
    print(f"charges {yuan(money['charges_fen'])} yuan ({_charges(back)})")
    print(
        f"settlement: paid {yuan(money['paid_fen'])}, kept {yuan(money['kept_fen'])},"
        f" released {yuan(money['released_fen'])}, compensation"
        f" {yuan(money['compensation_fen'])} yuan"
    )


async def tell_story(url: str, device: str, token: str, desk_id: str, desk_token: str) -> None:
    """Run the rental story against the server at ``url`` and print each step."""
    async with _session(url, device, token, "kiosk") as kiosk:
        async with _session(url, desk_id, desk_token, "rental") as desk:
            await _ski_rental(kiosk, desk)
            await _helmet_rental(kiosk, desk)


@asynccontextmanager
async def _session(url: str, device: str, token: str, role: str) -> AsyncIterator[Client]:
    """``connect``, with a refused hello said as which device to register with which role."""
    entered = False
    try:
        async with connect(url, device, token) as client:
            entered = True
            yield client
    except RemoteError as exc:
        if not entered and exc.code == "bad_credentials":
            raise DeviceRefused(device, role) from None
        raise


async def _ski_rental(kiosk: Client, desk: Client) -> None:
    catalog = await kiosk.request("catalog.list")
    timezone = catalog["timezone"]
    items = {item["item"]: item for item in catalog["rental_items"]}
    for name in ("skis", "boots"):
        item = items[name]
        print(
            f"the kiosk shows {item['name_en']}: deposit {yuan(item['deposit_fen'])} yuan,"
            f" {_price(item)}, damaged {yuan(item['damage_fen'])}, lost {yuan(item['lost_fen'])}"
        )
    rental = await kiosk.request(
        "rental.create",
        client_key=f"rental-story-{datetime.now(UTC):%H%M%S%f}",
        items=[{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}],
    )
    rental_id = rental["rental"]
    print(
        f"rental {rental_id}: skis and boots for {rental['days']} day; deposit"
        f" {yuan(rental['deposit_fen'])} + prepaid {yuan(rental['prepaid_fen'])}"
        f" = {yuan(rental['due_now_fen'])} yuan due now"
    )
    start = await kiosk.request("rental.pay", rental=rental_id, channel="wechat")
    print(f"kiosk shows a WeChat Pay QR code for {yuan(start['amount_fen'])} yuan: {start['qr']}")
    await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
    voucher = await _event(kiosk, "rental.voucher")
    print(f"paid by wechat; the voucher: {voucher['voucher']}")
    out = await _pick_up(desk, voucher["voucher"], [SKI_LABELS, BOOT_LABELS])
    labels = {unit["item"]: unit["label"] for unit in out["units"]}
    print(
        f"the desk scanned the voucher and units {labels['skis']}, {labels['boots']}:"
        f" {out['status']}, due back {_local(out['due_at'], timezone)} ({timezone})"
    )
    back = await desk.request(
        "rental.return",
        rental=rental_id,
        returns=[
            {"label": labels["skis"], "condition": "ok"},
            {"label": labels["boots"], "condition": "damaged"},
        ],
    )
    print(f"returned: skis ok, boots damaged; the rental is {back['status']}")
    _settlement(back)
    await _until_confirmed(kiosk, rental_id)


async def _helmet_rental(kiosk: Client, desk: Client) -> None:
    rental = await kiosk.request(
        "rental.create",
        client_key=f"rental-story-helmet-{datetime.now(UTC):%H%M%S%f}",
        items=[{"item": "helmet", "quantity": 1}],
    )
    rental_id = rental["rental"]
    start = await kiosk.request("rental.pay", rental=rental_id, channel="alipay", route="preauth")
    print(
        f"rental {rental_id}: a helmet; Alipay pre-authorisation of {yuan(start['amount_fen'])}"
        f" yuan (deposit {yuan(rental['deposit_fen'])} + prepaid {yuan(rental['prepaid_fen'])}):"
        f" {start['qr']}"
    )
    frozen = await kiosk.request(
        "sim.authorize",
        channel="alipay",
        out_order_no=start["out_order_no"],
        out_request_no=start["out_request_no"],
    )
    voucher = await _event(kiosk, "rental.voucher")
    print(
        f"frozen by alipay (auth_no {frozen['auth_no']}), nothing paid; the voucher:"
        f" {voucher['voucher']}"
    )
    out = await _pick_up(desk, voucher["voucher"], [HELMET_LABELS])
    (unit,) = out["units"]
    back = await desk.request(
        "rental.return", rental=rental_id, returns=[{"label": unit["label"], "condition": "ok"}]
    )
    print(f"helmet {unit['label']} out and back ok; the rental is {back['status']}")
    _settlement(back)
    await _until_confirmed(kiosk, rental_id)
    final = await kiosk.request("rental.get", rental=rental_id)
    resolution = final["hold"]["resolution"]
    print(
        f"rental {rental_id} is {final['status']}: {yuan(resolution['posted_fen'])} yuan converted"
        f" into a payment, {yuan(resolution['voided_fen'])} yuan unfrozen"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and tell the story; returns the exit status.

    A server that cannot be reached or refuses a device is one line on
    stderr saying what to do, with exit status 1 (2 for a bad command line).
    """
    parser = argparse.ArgumentParser(
        prog="python -m clients.rental_story", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--server",
        default="ws://127.0.0.1:8765",
        metavar="URL",
        help="The server's ws:// URL (default ws://127.0.0.1:8765).",
    )
    parser.add_argument(
        "--device", required=True, help="The kiosk's device id (scenic device add ID --role kiosk)."
    )
    parser.add_argument("--token", required=True, help="The token scenic device add printed.")
    parser.add_argument(
        "--desk",
        required=True,
        help="The rental desk's device id (scenic device add ID --role rental).",
    )
    parser.add_argument("--desk-token", required=True, help="The desk's token.")
    args = parser.parse_args(argv)
    if not args.server.startswith(("ws://", "wss://")):
        parser.error(f"--server {args.server!r} is not a ws:// URL")
    try:
        trio.run(tell_story, args.server, args.device, args.token, args.desk, args.desk_token)
    except BaseException as exc:  # sorted by _what_went_wrong; anything else as it was
        line = _what_went_wrong(exc, args.server)
        if line is None:
            raise
        print(f"rental story: {line}", file=sys.stderr)
        return 1
    return 0


def _what_went_wrong(exc: BaseException, url: str) -> str | None:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, DeviceRefused):
        return (
            f"the server refused device {exc.device!r} with this token; register it with "
            f"scenic device add {exc.device} --role {exc.role} and pass the token it prints"
        )
    return what_went_wrong(exc, url, "?")


if __name__ == "__main__":
    sys.exit(main())
