"""Rentals settled per second, through websockets, then the audit.

Usage::

    python -m loadtest.rental_bench                     # its own server; 3,000 rentals
    python -m loadtest.rental_bench --rentals 10000 --desks 64

It starts a fresh ``scenic serve`` (embedded PostgreSQL, durable settings)
with the demo park on sale in a separate process and registers ``--desks``
rental desks. Each desk serves one visitor at a time, the whole rental
through (timed):

1. ``rental.create`` of one unit (skis, a snowboard, boots, a helmet, a
   boat or a life jacket, in turn);
2. ``rental.record``: the deposit (and any prepaid day) taken in cash;
3. ``rental.pickup`` of one unit by its label, with the voucher of the reply;
4. ``rental.return`` of that unit, ok: the reply says ``settled``, and the
   rest of the deposit goes back through the outbox.

The demo park's units are finite (300), so each desk owns its own units
(at most 300 desks) and no pickup waits for another's return. A rental's
latency runs from its ``rental.create`` to its ``settled`` reply. Then the
outbox is given a bounded time to hand every deposit back, the database is
asked whether every rental settled and every unit is back, and ``scenic
audit`` runs; the exit status is non-zero if any of that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

import trio

from actors.catalog import parse_catalog
from clients.client import Client, stay_connected
from loadtest.local_server import LocalServer, embedded_dsn, local_server, scenic_command
from loadtest.payments import percentile_ms
from server.site import demo_catalog_source

#: requests one rental takes: create, record, pickup, return
REQUESTS_PER_RENTAL = 4


def units_by_desk(desks: int) -> list[list[str]]:
    """The demo park's unit labels dealt out to ``desks`` desks, the items in turn.

    Raises ``ValueError`` when there are more desks than units.
    """
    catalog = parse_catalog(demo_catalog_source())
    by_item: dict[str, list[str]] = {}
    for unit in catalog.rental_units:
        by_item.setdefault(unit.item_id, []).append(unit.label)
    dealt: list[str] = []
    while any(by_item.values()):  # one of each item in turn: the desks see a mix
        for labels in by_item.values():
            if labels:
                dealt.append(labels.pop(0))
    if desks > len(dealt):
        raise ValueError(f"--desks {desks}: the demo park has only {len(dealt)} units")
    return [dealt[n::desks] for n in range(desks)]


async def run_rentals(
    desks: list[Client], shelves: list[list[str]], rentals: int, item_of: dict[str, str]
) -> tuple[list[float], dict[str, list[float]], float, dict[str, int]]:
    """Every rental through; (per-rental latencies, per-op latencies, seconds, errors by code)."""
    latencies: list[float] = []
    ops: dict[str, list[float]] = {
        op: [] for op in ("rental.create", "rental.record", "rental.pickup", "rental.return")
    }
    errors: dict[str, int] = {}
    numbers = iter(range(rentals))

    async def timed(client: Client, op: str, **args) -> dict:
        began = time.perf_counter()
        reply = await client.request(op, timeout=60, **args)
        ops[op].append(time.perf_counter() - began)
        return reply

    async def desk_loop(index: int, desk: Client) -> None:
        shelf = shelves[index]
        turn = 0
        for n in numbers:
            label = shelf[turn % len(shelf)]
            turn += 1
            began = time.perf_counter()
            try:
                rental = await timed(
                    desk,
                    "rental.create",
                    client_key=f"bench-{n}",
                    items=[{"item": item_of[label], "quantity": 1}],
                )
                paid = await timed(
                    desk,
                    "rental.record",
                    rental=rental["rental"],
                    channel="cash",
                    amount_fen=rental["due_now_fen"],
                    key=f"drawer-{n}",
                )
                await timed(desk, "rental.pickup", voucher=paid["voucher"], labels=[label])
                back = await timed(
                    desk,
                    "rental.return",
                    rental=rental["rental"],
                    returns=[{"label": label, "condition": "ok"}],
                )
            except Exception as exc:  # counted by code; the desk goes on with the next visitor
                code = getattr(exc, "code", type(exc).__name__)
                errors[code] = errors.get(code, 0) + 1
                continue
            if back["status"] == "settled":
                latencies.append(time.perf_counter() - began)
            else:
                errors[f"status_{back['status']}"] = errors.get(f"status_{back['status']}", 0) + 1

    began = time.perf_counter()
    with trio.fail_after(1200):
        async with trio.open_nursery() as nursery:
            for index, desk in enumerate(desks):
                nursery.start_soon(desk_loop, index, desk)
    return latencies, ops, time.perf_counter() - began, errors


async def run_bench(server: LocalServer, args: argparse.Namespace) -> bool:
    """The rentals against ``server``; print the figures; True when every one settled."""
    shelves = units_by_desk(args.desks)
    item_of = {u.label: u.item_id for u in parse_catalog(demo_catalog_source()).rental_units}
    desk_ids = sorted(d for d in server.tokens if d.startswith("bench-desk"))
    async with trio.open_nursery() as nursery:
        desks = [
            await nursery.start(stay_connected, server.url, d, server.tokens[d]) for d in desk_ids
        ]
        latencies, ops, seconds, errors = await run_rentals(desks, shelves, args.rentals, item_of)
        nursery.cancel_scope.cancel()
    rate = len(latencies) / seconds
    print(
        f"rentals settled: {rate:,.0f}/s over {seconds:.1f} s ({len(latencies):,} of "
        f"{args.rentals:,} rentals, {args.desks} desks, {REQUESTS_PER_RENTAL} requests each: "
        f"{rate * REQUESTS_PER_RENTAL:,.0f} requests/s)  per rental p50 "
        f"{percentile_ms(latencies, 0.5):.1f} ms  p99 {percentile_ms(latencies, 0.99):.1f} ms  "
        f"errors {sum(errors.values())} {errors or ''}".rstrip()
    )
    for op, values in ops.items():
        print(
            f"  {op}: p50 {percentile_ms(values, 0.5):.1f} ms  "
            f"p99 {percentile_ms(values, 0.99):.1f} ms"
        )
    args.figures = {
        "rate_per_s": rate,
        "requests_per_s": rate * REQUESTS_PER_RENTAL,
        "seconds": seconds,
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "settled": len(latencies),
        "errors": errors,
        "ops": {
            op: {"p50_ms": percentile_ms(v, 0.5), "p99_ms": percentile_ms(v, 0.99)}
            for op, v in ops.items()
        },
    }
    return not errors and len(latencies) == args.rentals


def check_database(dsn: str, rentals: int, timeout_s: float = 120.0) -> list[str]:
    """Wait (bounded) for the outbox to hand the deposits back; what is wrong, if anything."""
    import asyncpg

    async def check() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if not await conn.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL"):
                    break
                await asyncio.sleep(0.5)
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM rentals WHERE status = 'settled') AS settled,
                          (SELECT count(*) FROM rental_units WHERE state <> 'available') AS away,
                          (SELECT count(*) FROM rental_refunds WHERE confirmed_at IS NULL)
                              AS refunds_open,
                          (SELECT count(*) FROM outbox WHERE done_at IS NULL) AS outbox_open"""
            )
        finally:
            await conn.close()
        problems = []
        if row["settled"] != rentals:
            problems.append(f"{row['settled']} rentals settled in the database, not {rentals}")
        if row["away"]:
            problems.append(f"{row['away']} units not back on the shelf")
        if row["refunds_open"] or row["outbox_open"]:
            problems.append(
                f"{row['refunds_open']} deposit refunds unconfirmed, "
                f"{row['outbox_open']} outbox rows open after {timeout_s:.0f} s"
            )
        return problems

    return asyncio.run(check())


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark, print the figures; the exit status."""
    return measure(argv)[0]


def measure(argv: list[str] | None = None) -> tuple[int, dict]:
    """Run the benchmark and the checks as ``argv`` says: (exit status, figures)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rentals", type=int, default=3000)
    parser.add_argument("--desks", type=int, default=32, help="rental desks, one visitor each")
    parser.add_argument("--server-workers", type=int, default=1, help="scenic serve --workers")
    args = parser.parse_args(argv)
    if not 1 <= args.desks <= 300 or args.rentals < 1:
        parser.error("--desks must be 1 to 300 (the demo park's units) and --rentals at least 1")
    devices = {f"bench-desk-{n:03d}": "rental" for n in range(args.desks)}
    with local_server(
        devices,
        catalog=demo_catalog_source(),
        extra_args=("--workers", str(args.server_workers)),
    ) as server:
        ok = trio.run(run_bench, server, args)
        problems = check_database(embedded_dsn(server.data_dir), args.figures["settled"])
        for problem in problems:
            print(f"  database: {problem}")
        audit = subprocess.run(
            scenic_command("audit", "--data-dir", str(server.data_dir)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(audit.stdout.strip().splitlines()[-1] if audit.stdout else audit.stderr)
        args.figures["audit_ok"] = audit.returncode == 0 and not problems
        if audit.returncode != 0:
            print(audit.stdout, file=sys.stderr)
    return (0 if ok and args.figures["audit_ok"] else 1), args.figures


if __name__ == "__main__":
    sys.exit(main())
