"""The README's story, runnable: a kiosk sells two tickets, the visitor pays twice.

Usage (against ``scenic serve --demo``, whose channels are simulated in-process)::

    scenic device add kiosk-01 --role kiosk        # prints TOKEN
    python -m clients.story --device kiosk-01 --token TOKEN

It creates an order of two adult tickets for tomorrow, starts a WeChat Pay
and an Alipay payment, pays both (as a visitor who scanned both QR codes
would), and prints what the server says: the order is paid once, the
tickets are issued, and the second payment is refunded by Alipay.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import trio

from clients.client import Client, connect


async def _event(client: Client, name: str) -> dict:
    with trio.fail_after(30):
        async for event, data in client.events():
            if event == name:
                return data
    raise RuntimeError(f"the connection closed before {name}")


async def tell_story(url: str, device: str, token: str) -> None:
    """Run the story against the server at ``url`` and print each step."""
    async with connect(url, device, token) as kiosk:
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        order = await kiosk.request(
            "order.create",
            client_key=f"story-{datetime.now(UTC):%H%M%S%f}",
            lines=[{"product": "adult", "quantity": 2, "date": tomorrow}],
        )
        print(f"order {order['order']}: 2 adult tickets, {order['total_fen'] / 100:.2f} yuan")
        wechat = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        alipay = await kiosk.request("payment.start", order=order["order"], channel="alipay")
        print(f"kiosk shows two QR codes: {wechat['qr']} and {alipay['qr']}")
        await kiosk.request("sim.pay", channel="wechat", out_trade_no=wechat["out_trade_no"])
        paid = await _event(kiosk, "order.paid")
        print(f"paid by {paid['channel']}; tickets: {[t['code'] for t in paid['tickets']]}")
        await kiosk.request("sim.pay", channel="alipay", out_trade_no=alipay["out_trade_no"])
        refunded = await _event(kiosk, "payment.refunded")
        print(
            f"the second payment ({refunded['channel']}, {refunded['amount_fen'] / 100:.2f} yuan)"
            f" was refunded: {refunded['out_refund_no']} ({refunded['reason']})"
        )
        final = await kiosk.request("order.get", order=order["order"])
        print(f"order {final['order']} is {final['status']}; refunds: {len(final['refunds'])}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and tell the story."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="ws://127.0.0.1:8765")
    parser.add_argument("--device", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    trio.run(tell_story, args.server, args.device, args.token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
