"""``scenic loadtest``: profiles, a live view, a report, an audit; ``--bench`` for headlines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from server.config import ServerConfig

#: the targets the benchmarks are measured against (2-core machine, generator included)
SCAN_TARGET = {"rate_per_s": 5000, "p99_ms": 50}
PAYMENT_TARGET = {"rate_per_s": 2000, "p99_ms": 100}


def add_loadtest_parser(subparsers: Any) -> None:
    """Add ``loadtest`` to the ``scenic`` command's ``subparsers``."""
    from loadtest.profile import bundled_profiles

    parser = subparsers.add_parser(
        "loadtest", help="drive a server like a Golden Week morning; report and audit"
    )
    parser.add_argument(
        "--profile",
        default="smoke",
        help=f"a bundled profile ({', '.join(bundled_profiles())}) or a TOML file",
    )
    parser.add_argument("--server", help="ws:// URL of a running server (default: start one)")
    parser.add_argument("--dsn", help="that server's database, for devices and the audit")
    parser.add_argument("--channel-sim-url", help="its scenic channel-sim API, if it uses one")
    parser.add_argument("--channel-keys", type=Path, help="the merchant keys file, with it")
    parser.add_argument("--out", type=Path, default=Path("loadtest-report"))
    parser.add_argument("--duration", type=float, help="override the profile's duration (s)")
    parser.add_argument("--quiet", action="store_true", help="no live progress")
    parser.add_argument(
        "--bench", action="store_true", help="fixed benchmarks; one headline line each"
    )
    parser.set_defaults(run=_run)


async def _run(config: ServerConfig, args: argparse.Namespace) -> int:
    import attrs
    import trio

    if args.bench:
        return await trio.to_thread.run_sync(run_benchmarks)
    from loadtest.profile import load_profile
    from loadtest.run import run_profile

    try:
        profile = load_profile(args.profile)
    except (ValueError, OSError) as exc:
        print(f"scenic: {exc}", file=sys.stderr)
        return 2
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
        )
    )
    return 0 if ok else 1


def run_benchmarks() -> int:
    """The fixed benchmarks; prints one headline line each; 0 when every run was clean."""
    from loadtest import payments, scans

    print("benchmark: gate scans, 20 gates x 2 in flight, 60 s, every grant checked durable")
    scan_status, scan = scans.measure(
        ["--gates", "20", "--window", "2", "--tickets", "120000", "--seconds", "60"]
    )
    print("benchmark: payment confirmations, 30% duplicate notifications, 2 x 16 in flight")
    pay_status, pay = payments.measure(
        ["--orders", "20000", "--connections", "2", "--window", "16", "--duplicates", "0.3"]
    )
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
    return 0 if scan_status == 0 and pay_status == 0 else 1


def _headline(name: str, figures: dict, target: dict, note: str) -> str:
    met = figures["rate_per_s"] >= target["rate_per_s"] and figures["p99_ms"] < target["p99_ms"]
    return (
        f"{name}: {figures['rate_per_s']:,.0f}/s sustained {figures['seconds']:.0f} s, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms; {note}; target "
        f"{target['rate_per_s']:,}/s at p99 < {target['p99_ms']} ms: "
        f"{'met' if met else 'NOT met'}"
    )
