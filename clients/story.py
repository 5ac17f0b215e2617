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
from trio_websocket import ConnectionRejected, ConnectionTimeout, HandshakeError

from clients.client import Client, ConnectionLost, RemoteError, connect


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
    """Parse the command line and tell the story; returns the exit status.

    A server that cannot be reached or refuses the kiosk is one line on
    stderr saying what to do, with exit status 1 (2 for a bad command line).
    """
    parser = argparse.ArgumentParser(
        prog="python -m clients.story", description=__doc__.splitlines()[0]
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
    args = parser.parse_args(argv)
    if not args.server.startswith(("ws://", "wss://")):
        parser.error(f"--server {args.server!r} is not a ws:// URL")
    try:
        trio.run(tell_story, args.server, args.device, args.token)
    except BaseException as exc:  # sorted by what_went_wrong; anything else as it was
        line = what_went_wrong(exc, args.server, args.device)
        if line is None:
            raise
        print(f"story: {line}", file=sys.stderr)
        return 1
    return 0


def what_went_wrong(exc: BaseException, url: str, device: str) -> str | None:
    """One line for a person: why the story could not be told; ``None`` for a bug."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, ConnectionRejected):
        return (
            f"{url} refused the websocket handshake (HTTP {exc.status_code}); "
            "is it a scenic server? give --server its ws:// URL"
        )
    if isinstance(exc, HandshakeError):
        if isinstance(exc, ConnectionTimeout):
            reason = "no answer in time"
        elif _refused(exc.__cause__):
            reason = "connection refused"
        else:
            reason = str(exc.__cause__ or exc) or type(exc).__name__
        return (
            f"cannot reach the server at {url}: {reason}; start it (scenic serve --demo) "
            "or give --server its ws:// URL"
        )
    if isinstance(exc, OSError):
        return f"cannot reach the server at {url}: {exc.strerror or exc}"
    if isinstance(exc, RemoteError) and exc.code == "bad_credentials":
        return (
            f"the server refused device {device!r} with this token; register it with "
            f"scenic device add {device} --role kiosk and pass the token it prints"
        )
    if isinstance(exc, RemoteError):
        return f"the server refused: {exc.message} ({exc.code})"
    if isinstance(exc, ConnectionLost):
        return f"the connection to {url} closed before the story ended: {exc.message}"
    if isinstance(exc, trio.TooSlowError):
        return f"the server at {url} stopped answering; see its log"
    return None


def _refused(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was caused by, connections refused (trio groups the attempts)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_refused(inner) for inner in exc.exceptions)
    return exc is not None and _refused(exc.__cause__)


if __name__ == "__main__":
    sys.exit(main())
