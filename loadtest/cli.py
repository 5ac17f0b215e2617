"""``scenic loadtest``: profiles, a live view, a report, an audit; ``--bench`` for headlines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from server.config import ServerConfig
from server.flags import seconds, websocket_url, whole_number

#: the targets the benchmarks are measured against (2-core machine, generator included)
SCAN_TARGET = {"rate_per_s": 5000, "p99_ms": 50}
PAYMENT_TARGET = {"rate_per_s": 2000, "p99_ms": 100}


def add_loadtest_parser(subparsers: Any) -> None:
    """Add ``loadtest`` to the ``scenic`` command's ``subparsers``."""
    from loadtest.profile import bundled_profiles

    summary = "Drive a server like a Golden Week morning, then report and audit."
    parser = subparsers.add_parser(
        "loadtest",
        help=summary,
        description=f"{summary} It starts its own server on loopback unless given --server "
        "and --dsn. stdout gets the verdict and the report's path; the live progress and the "
        "details go to stderr. Exit status 1 when a check fails.",
    )
    parser.add_argument(
        "--profile",
        help=f"Run this bundled profile ({', '.join(bundled_profiles())}) or profile TOML file "
        "(default smoke; chaos with --chaos).",
    )
    parser.add_argument(
        "--server",
        type=websocket_url,
        metavar="URL",
        help="Drive the running server at this ws:// URL (default: start one).",
    )
    parser.add_argument(
        "--dsn",
        metavar="URL",
        help="That server's database, to register devices and audit (needed with --server).",
    )
    parser.add_argument(
        "--channel-sim-url",
        type=websocket_url,
        metavar="URL",
        help="That server's scenic channel-sim API, if it uses one.",
    )
    parser.add_argument(
        "--channel-keys",
        type=Path,
        metavar="FILE",
        help="The merchant keys file shared with that channel-sim.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("loadtest-report"),
        metavar="DIR",
        help="Write the report here (default loadtest-report).",
    )
    parser.add_argument(
        "--duration",
        type=seconds,
        metavar="S",
        help="Run this many seconds instead of the profile's duration.",
    )
    parser.add_argument("--quiet", action="store_true", help="Show no live progress.")
    parser.add_argument(
        "--chaos",
        action="store_true",
        help="Break the run's own server, PostgreSQL and channel simulator while it runs "
        "(kill -9, immediate stop, restarts), then audit every acknowledgement.",
    )
    parser.add_argument(
        "--kill-every",
        type=seconds,
        default=15.0,
        metavar="S",
        help="With --chaos: kill -9 a server process every S seconds (default 15).",
    )
    parser.add_argument(
        "--server-workers",
        type=whole_number,
        default=1,
        metavar="N",
        help="With --chaos: run N server processes on one port; one is killed at a time "
        "(default 1).",
    )
    parser.add_argument(
        "--pg-restarts",
        type=whole_number,
        default=1,
        metavar="N",
        help="With --chaos: restart PostgreSQL (immediate stop, then start) N times (default 1).",
    )
    parser.add_argument(
        "--bench",
        action="store_true",
        help="Run the fixed benchmarks instead and print one headline line each.",
    )
    parser.set_defaults(run=_run)


async def _run(config: ServerConfig, args: argparse.Namespace) -> int:
    import attrs
    import trio

    from server.startup import UsageError, check_database

    if args.bench:
        return await trio.to_thread.run_sync(run_benchmarks)
    from loadtest.chaos import ChaosPlan
    from loadtest.profile import load_profile
    from loadtest.run import run_profile

    chaos = None
    if args.chaos:
        if args.server is not None:
            raise UsageError(
                "--chaos breaks processes it started itself: leave out --server and --dsn"
            )
        if args.server_workers < 1 or args.pg_restarts < 0:
            raise UsageError("--server-workers must be 1 or more, --pg-restarts 0 or more")
        chaos = ChaosPlan(
            kill_every_s=args.kill_every,
            server_workers=args.server_workers,
            pg_restarts=args.pg_restarts,
        )
    elif args.server_workers != 1 or args.pg_restarts != 1 or args.kill_every != 15.0:
        raise UsageError("--kill-every, --server-workers and --pg-restarts go with --chaos")
    args.profile = args.profile or ("chaos" if args.chaos else "smoke")
    try:
        profile = load_profile(args.profile)
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot use the profile {args.profile!r}: {exc}") from exc
    if args.server is not None and args.dsn is None:
        raise UsageError("--server needs --dsn: the audit reads that server's database")
    if args.dsn is not None:
        if args.server is None:
            raise UsageError("--dsn goes with --server (without them loadtest starts its own)")
        await check_database(args.dsn)
        await check_server(args.server)
    if args.duration:
        profile = attrs.evolve(profile, duration_s=args.duration)
    ok = await trio.to_thread.run_sync(
        lambda: run_profile(
            profile,
            args.out,
            server=args.server,
            dsn=args.dsn,
            channel_sim_url=args.channel_sim_url,
            keys_path=args.channel_keys,
            progress=not args.quiet,
            chaos=chaos,
        )
    )
    verdict = "passed: every check holds" if ok else "FAILED: see the failed checks above"
    print(f"loadtest {profile.name} {verdict}")
    print(f"report: {args.out / 'report.md'}")
    return 0 if ok else 1


async def check_server(url: str, timeout_s: float = 10.0) -> None:
    """Raise :class:`~server.startup.StartupError` unless something accepts TCP at ``url``."""
    from urllib.parse import urlsplit

    import trio

    from server.startup import StartupError

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        with trio.fail_after(timeout_s):
            stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", port)
        await stream.aclose()
    except (OSError, trio.TooSlowError) as exc:
        raise StartupError(
            f"cannot reach the server at {url}: {getattr(exc, 'strerror', None) or exc}; "
            "start it (scenic serve), or give --server its ws:// URL"
        ) from exc


def run_benchmarks() -> int:
    """The fixed benchmarks; prints one headline line each; 0 when every run was clean.

    The websocket echo ceiling (:mod:`loadtest.echo_ceiling`) is measured in
    the same run and printed beside them, with each benchmark's requests a
    second as a share of it.
    """
    from loadtest import payments, rental_bench, scans
    from loadtest.echo_ceiling import measure_echo_ceiling

    print("benchmark: the websocket echo ceiling (a bare trio-websocket + cbor2 echo server)")
    ceiling, how = measure_echo_ceiling()
    print("benchmark: gate scans, 20 gates x 2 in flight, 60 s, every grant checked durable")
    scan_status, scan = scans.measure(
        ["--gates", "20", "--window", "2", "--tickets", "120000", "--seconds", "60"]
    )
    print("benchmark: payment confirmations, 30% duplicate notifications, 2 x 16 in flight")
    pay_status, pay = payments.measure(
        ["--orders", "20000", "--connections", "2", "--window", "16", "--duplicates", "0.3"]
    )
    print("benchmark: rentals settled, 32 rental desks x 1 visitor, create-cash-pickup-return")
    rent_status, rent = rental_bench.measure(["--rentals", "3000", "--desks", "32"])
    print(
        _headline(
            "gate scans", scan, SCAN_TARGET, "durable" if scan.get("durable") else "NOT DURABLE"
        )
    )
    print(
        _headline(
            "payment confirmations",
            pay,
            PAYMENT_TARGET,
            "audit clean" if pay.get("audit_ok") else "AUDIT FAILED",
        )
    )
    print(rentals_headline(rent, ceiling))
    print(f"echo ceiling: {ceiling:,.0f} requests/s ({how})" if ceiling else f"echo ceiling: {how}")
    return 0 if scan_status == 0 and pay_status == 0 and rent_status == 0 else 1


def rentals_headline(figures: dict, ceiling: float | None) -> str:
    """The rentals benchmark's headline, its requests a second beside the echo ceiling."""
    share = f" = {figures['requests_per_s'] / ceiling:.0%} of the echo ceiling" if ceiling else ""
    return (
        f"rentals settled: {figures['rate_per_s']:,.1f}/s sustained {figures['seconds']:.0f} s "
        f"({figures['settled']:,} rentals, 4 requests each: "
        f"{figures['requests_per_s']:,.0f} requests/s{share}), per rental p50 "
        f"{figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms; "
        f"{'audit clean' if figures.get('audit_ok') else 'AUDIT FAILED'}"
    )


def _headline(name: str, figures: dict, target: dict, note: str) -> str:
    met = figures["rate_per_s"] >= target["rate_per_s"] and figures["p99_ms"] < target["p99_ms"]
    return (
        f"{name}: {figures['rate_per_s']:,.0f}/s sustained {figures['seconds']:.0f} s, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms; {note}; target "
        f"{target['rate_per_s']:,}/s at p99 < {target['p99_ms']} ms: "
        f"{'met' if met else 'NOT met'}"
    )
