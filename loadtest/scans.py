"""Gate scans per second and their latency from many gate connections, every grant durable.

Usage::

    python -m loadtest.scans                         # 20 gates, 10,000 tickets
    python -m loadtest.scans --gates 40 --tickets 20000 --window 16

It starts a fresh ``scenic serve --demo`` (embedded PostgreSQL with durable
settings) in a separate process, sells ``--tickets`` adult tickets for today
through a kiosk (orders of 200, paid through the simulated channel), then
every gate connection streams pipelined ``ticket.scan`` requests, ``--window``
in flight each: each ticket's entry at a random gate, plus ``--rescans`` of
codes already used (refused: passback or used up) and ``--forged`` codes
(refused: forged); each grant's passage is reported. Then it counts the
database's scan rows: every acknowledged scan must be there, every grant
with its ticket's entry used. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import trio

from clients.client import Client, stay_connected
from loadtest.local_server import LocalServer, local_server
from loadtest.payments import percentile_ms
from server.site import demo_catalog_source


async def sell_tickets(kiosk: Client, count: int) -> list[str]:
    """Sell ``count`` adult tickets for today (site time); return their codes."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    codes: list[str] = []

    async def one(n: int, quantity: int) -> None:
        order = await kiosk.request(
            "order.create",
            client_key=f"scan-bench-{n}",
            lines=[{"product": "adult", "quantity": quantity, "date": today}],
        )
        start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
        with trio.fail_after(60):
            while True:
                got = await kiosk.request("order.get", order=order["order"])
                if got["status"] == "paid":
                    codes.extend(t["code"] for t in got["tickets"])
                    return
                await trio.sleep(0.05)

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for n, first in enumerate(range(0, count, 200)):
                nursery.start_soon(one, n, min(200, count - first))
    return codes


def scan_plan(codes: list[str], gates: int, rescans: float, forged: float, seed: int = 7):
    """Per gate, the codes it scans: every ticket once, some again, some forged."""
    rng = random.Random(seed)
    work = [(code, "entry") for code in codes]
    work += [(rng.choice(codes), "entry") for _ in range(int(len(codes) * rescans))]
    work += [
        (f"T20260101FAKE{n:08d}.k0.AAAAAAAAAA", "entry") for n in range(int(len(codes) * forged))
    ]
    rng.shuffle(work)
    return [work[g::gates] for g in range(gates)]


async def stream(
    gate: Client, gate_id: str, work, window: int, stats: dict, deadline: float | None = None
) -> None:
    """Send this gate's scans, ``window`` in flight, until done or ``deadline`` (trio time)."""
    slots = trio.Semaphore(window)

    async def finish(pending, sent: float, scan_id: str) -> None:
        try:
            reply = await pending.wait(60)
            stats["latencies"].append(time.perf_counter() - sent)
            stats["granted" if reply["granted"] else "denied"] += 1
            if reply["granted"]:
                passage = await gate.start_request(
                    "gate.passage", {"scan_id": scan_id, "passed": True}
                )
                await passage.wait(60)
        except Exception:
            stats["errors"] += 1
        finally:
            slots.release()

    async with trio.open_nursery() as replies:
        for n, (code, direction) in enumerate(work):
            await slots.acquire()
            if deadline is not None and trio.current_time() >= deadline:
                slots.release()
                break
            scan_id = f"{gate_id}-{n}"
            sent = time.perf_counter()
            pending = await gate.start_request(
                "ticket.scan",
                {"scan_id": scan_id, "code": code, "at": time.time(), "direction": direction},
            )
            replies.start_soon(finish, pending, sent, scan_id)


async def run_bench(server: LocalServer, args: argparse.Namespace) -> bool:
    """Sell, scan, check durability; print the figures; True when all held."""
    gate_ids = sorted(d for d in server.tokens if d.startswith("G-BENCH"))
    async with trio.open_nursery() as nursery:
        kiosk = await nursery.start(
            stay_connected, server.url, "bench-kiosk", server.tokens["bench-kiosk"]
        )
        began = time.perf_counter()
        codes = await sell_tickets(kiosk, args.tickets)
        print(f"setup: {len(codes):,} tickets sold in {time.perf_counter() - began:.1f} s")
        gates = [
            await nursery.start(stay_connected, server.url, g, server.tokens[g]) for g in gate_ids
        ]
        admin = await nursery.start(
            stay_connected, server.url, "bench-admin", server.tokens["bench-admin"]
        )
        plan = scan_plan(codes, len(gates), args.rescans, args.forged)
        stats = {"latencies": [], "granted": 0, "denied": 0, "errors": 0}
        before = (await admin.request("server.stats"))["commits"]
        began = time.perf_counter()
        deadline = None if args.seconds is None else trio.current_time() + args.seconds
        with trio.fail_after(900):
            async with trio.open_nursery() as streams:
                for gate, gate_id, work in zip(gates, gate_ids, plan, strict=True):
                    streams.start_soon(stream, gate, gate_id, work, args.window, stats, deadline)
        seconds = time.perf_counter() - began
        after = (await admin.request("server.stats"))["commits"]
        nursery.cancel_scope.cancel()
    latencies = stats["latencies"]
    print(
        f"gate scans: {len(latencies) / seconds:,.0f}/s over {seconds:.1f} s "
        f"({len(latencies):,} scans: {stats['granted']:,} granted, {stats['denied']:,} denied; "
        f"{len(gate_ids)} gates x window {args.window})  "
        f"p50 {percentile_ms(latencies, 0.5):.1f} ms  p99 {percentile_ms(latencies, 0.99):.1f} ms"
        f"  errors {stats['errors']}"
    )
    batches = after["batches"] - before["batches"]
    writes = after["writes"] - before["writes"]
    print(
        f"group commit: {batches:,} commits for {writes:,} writes "
        f"({writes / max(batches, 1):.1f} per commit, largest {after['largest_batch']}, "
        f"{after['failed_batches'] - before['failed_batches']} retried); mean commit "
        f"{(after['commit_ms_total'] - before['commit_ms_total']) / max(batches, 1):.1f} ms, "
        f"mean wait for a batch "
        f"{(after['queued_ms_total'] - before['queued_ms_total']) / max(writes, 1):.1f} ms"
    )
    durable = await trio.to_thread.run_sync(_count_durable, server)
    ok = (
        stats["errors"] == 0
        and durable["scans"] == len(latencies)
        and durable["granted"] == stats["granted"]
        and durable["used"] == stats["granted"]
        and durable["overdrawn"] == 0
    )
    print(
        f"durable: {durable['scans']:,} scan rows, {durable['granted']:,} grants, "
        f"{durable['used']:,} entries used, {durable['overdrawn']} tickets beyond entitlement"
        f" -> {'every acknowledged scan is recorded' if ok else 'MISMATCH'}"
    )
    args.figures = {
        "rate_per_s": len(latencies) / seconds,
        "seconds": seconds,
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "durable": ok,
    }
    return ok


def _count_durable(server: LocalServer) -> dict[str, int]:
    async def count() -> dict[str, int]:
        dsn = f"postgresql://postgres:@/postgres?host={server.data_dir / 'postgres'}"
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM scans) AS scans,
                          (SELECT count(*) FROM scans WHERE granted) AS granted,
                          (SELECT coalesce(sum(entries_used), 0) FROM tickets) AS used,
                          (SELECT count(*) FROM tickets
                            WHERE entries_used > coalesce(entries_allowed, 1000000)) AS overdrawn"""
            )
            return {key: int(value) for key, value in row.items()}
        finally:
            await conn.close()

    import asyncio

    return asyncio.run(count())


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, print the figures; the exit status."""
    return measure(argv)[0]


def measure(argv: list[str] | None = None) -> tuple[int, dict]:
    """Run the benchmark as ``argv`` says: (exit status, figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gates", type=int, default=20)
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=16, help="scans in flight per gate")
    parser.add_argument("--rescans", type=float, default=0.1, help="share scanned again")
    parser.add_argument("--forged", type=float, default=0.05, help="share of forged codes")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: all)")
    parser.add_argument("--server-workers", type=int, default=1, help="scenic serve --workers")
    args = parser.parse_args(argv)
    devices = {f"G-BENCH-{n:02d}": "gate" for n in range(args.gates)}
    devices |= {"bench-kiosk": "kiosk", "bench-admin": "admin"}
    catalog = demo_catalog_source().replace("daily = 20000", f"daily = {args.tickets + 1000}")
    with local_server(
        devices, catalog=catalog, extra_args=("--workers", str(args.server_workers))
    ) as server:
        ok = trio.run(run_bench, server, args)
    return (0 if ok else 1), args.figures


if __name__ == "__main__":
    sys.exit(main())
