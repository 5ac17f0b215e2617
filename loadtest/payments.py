"""Payment confirmations per second and their latency, through websockets, then the audit.

Usage::

    python -m loadtest.payments                    # its own server; 4,000 orders
    python -m loadtest.payments --orders 10000 --duplicates 0.3 --connections 8

It starts a fresh ``scenic serve --demo`` (embedded PostgreSQL, durable
settings) in a separate process, then in two phases:

1. *setup* (not timed): kiosks create ``--orders`` orders of two tickets and
   start a WeChat or Alipay payment on each;
2. *confirmations* (timed): the load generator plays the channels' gateway
   (role ``channel``) and sends each payment's signed notification, plus a
   ``--duplicates`` share of replays, pipelined over ``--connections``
   connections with ``--window`` in flight on each. Each reply comes after
   the confirmation committed, so its latency is the honest figure.

Then it runs ``scenic audit`` against the server's database and exits
non-zero if the audit fails or any order was collected twice. Traffic goes
to loopback only; every phase is bounded in count and time.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import trio

from clients.client import Client, stay_connected
from loadtest.local_server import LocalServer, local_server, scenic_command
from server.channels.keys import load_or_create_channel_keys
from server.channels.signing import signed
from server.site import demo_catalog_source


def percentile_ms(latencies: list[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``latencies`` (seconds), in milliseconds."""
    ordered = sorted(latencies)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


async def setup_orders(clients: list[Client], orders: int, window: int) -> list[dict]:
    """Create ``orders`` orders and start one QR payment on each; return the payments."""
    visit = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    payments: list[dict] = []
    limiter = trio.Semaphore(window * len(clients))

    async def one(n: int) -> None:
        client = clients[n % len(clients)]
        async with limiter:
            order = await client.request(
                "order.create",
                client_key=f"bench-{n}",
                lines=[{"product": "adult", "quantity": 2, "date": visit}],
            )
            channel = "wechat" if n % 2 else "alipay"
            start = await client.request("payment.start", order=order["order"], channel=channel)
            payments.append(
                {
                    "channel": channel,
                    "out_trade_no": start["out_trade_no"],
                    "channel_txn_id": f"{channel[:2].upper()}{n:026d}",
                    "amount_fen": start["amount_fen"],
                    "paid_at": time.time(),
                }
            )

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for n in range(orders):
                nursery.start_soon(one, n)
    return payments


async def confirm_all(
    gateways: list[Client], notifications: list[dict], keys: dict[str, bytes], window: int
) -> tuple[list[float], float, int]:
    """Send every notification, ``window`` in flight per gateway: (latencies, seconds, errors)."""
    latencies: list[float] = []
    errors = 0
    queue = list(enumerate(notifications))

    async def gateway_loop(index: int, gateway: Client) -> None:
        nonlocal errors
        slots = trio.Semaphore(window)

        async def await_reply(pending, sent: float) -> None:
            nonlocal errors
            try:
                await pending.wait(60)
                latencies.append(time.perf_counter() - sent)
            except Exception:
                errors += 1
            finally:
                slots.release()

        async with trio.open_nursery() as replies:
            for _, fields in queue[index :: len(gateways)]:
                await slots.acquire()
                body = signed(fields, keys[fields["channel"]], time.time())
                sent = time.perf_counter()
                pending = await gateway.start_request("payment.notify", body)
                replies.start_soon(await_reply, pending, sent)

    began = time.perf_counter()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for index, gateway in enumerate(gateways):
                nursery.start_soon(gateway_loop, index, gateway)
    return latencies, time.perf_counter() - began, errors


async def run_bench(server: LocalServer, args: argparse.Namespace) -> bool:
    """Both phases against ``server``; print the figures; True when nothing failed."""
    keys = load_or_create_channel_keys(server.data_dir / "channel_keys.json")
    kiosk_ids = sorted(d for d in server.tokens if d.startswith("bench-kiosk"))
    gateway_ids = sorted(d for d in server.tokens if d.startswith("bench-gw"))
    async with trio.open_nursery() as nursery:
        kiosks, gateways = [], []
        for device in kiosk_ids:
            kiosks.append(
                await nursery.start(stay_connected, server.url, device, server.tokens[device])
            )
        for device in gateway_ids:
            gateways.append(
                await nursery.start(stay_connected, server.url, device, server.tokens[device])
            )
        began = time.perf_counter()
        payments = await setup_orders(kiosks, args.orders, args.window)
        print(
            f"setup: {len(payments):,} orders created and payments started in "
            f"{time.perf_counter() - began:.1f} s"
        )
        rng = random.Random(7)
        notifications = payments + [p for p in payments if rng.random() < args.duplicates]
        rng.shuffle(notifications)
        latencies, seconds, errors = await confirm_all(gateways, notifications, keys, args.window)
        nursery.cancel_scope.cancel()
    duplicates = len(notifications) - len(payments)
    print(
        f"payment confirmations: {len(latencies) / seconds:,.0f}/s over {seconds:.1f} s "
        f"({len(payments):,} payments + {duplicates:,} duplicate notifications, "
        f"{len(gateways)} connections x window {args.window})  "
        f"p50 {percentile_ms(latencies, 0.50):.1f} ms  p99 {percentile_ms(latencies, 0.99):.1f} ms"
        f"  errors {errors}"
    )
    args.figures = {
        "rate_per_s": len(latencies) / seconds,
        "seconds": seconds,
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "errors": errors,
        "duplicates": duplicates,
    }
    return errors == 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, print the figures; the exit status."""
    return measure(argv)[0]


def measure(argv: list[str] | None = None) -> tuple[int, dict]:
    """Run the benchmark and the audit as ``argv`` says: (exit status, figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--duplicates", type=float, default=0.3, help="share replayed")
    parser.add_argument("--connections", type=int, default=4, help="gateway connections")
    parser.add_argument("--kiosks", type=int, default=4)
    parser.add_argument("--window", type=int, default=64, help="in flight per connection")
    parser.add_argument("--server-workers", type=int, default=1, help="scenic serve --workers")
    args = parser.parse_args(argv)
    devices = {f"bench-kiosk-{n}": "kiosk" for n in range(args.kiosks)}
    devices |= {f"bench-gw-{n}": "channel" for n in range(args.connections)}
    catalog = demo_catalog_source().replace(
        "daily = 20000", f"daily = {max(20000, args.orders * 2 + 1000)}"
    )
    with local_server(
        devices, catalog=catalog, extra_args=("--workers", str(args.server_workers))
    ) as server:
        ok = trio.run(run_bench, server, args)
        audit = subprocess.run(
            scenic_command("audit", "--data-dir", str(server.data_dir)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(audit.stdout.strip().splitlines()[-1] if audit.stdout else audit.stderr)
        args.figures["audit_ok"] = audit.returncode == 0
        if audit.returncode != 0:
            print(audit.stdout, file=sys.stderr)
            return 1, args.figures
    return (0 if ok else 1), args.figures


if __name__ == "__main__":
    sys.exit(main())
