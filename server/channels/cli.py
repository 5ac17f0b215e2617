"""``scenic channel-sim``: run the simulated WeChat Pay and Alipay as their own process.

The simulator serves its merchant API (for ``RemoteChannel``, the load test
and visitor-side ``pay`` calls) and delivers payment notifications to the
scenic server as a ``channel`` device. The merchant keys come from the same
keys file the server reads (created on first use).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from server.channels.keys import load_or_create_channel_keys
from server.channels.notifier import NotifyPolicy
from server.channels.simulator import REFUND_MODES
from server.config import ServerConfig
from server.flags import log_level, port_number, websocket_url, whole_number

DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_LISTEN_PORT = 8766
KEYS_FILE_NAME = "channel_keys.json"


def default_keys_path(config: ServerConfig) -> Path:
    """Where the server and the simulator keep the merchant keys by default."""
    return Path(config.data_dir) / KEYS_FILE_NAME


def add_channel_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``channel-sim`` subcommand to the ``scenic`` command's ``subparsers``."""
    summary = "Run the simulated WeChat Pay and Alipay as their own process."
    parser = subparsers.add_parser(
        "channel-sim",
        help=summary,
        description=f"{summary} It serves their merchant API (give its URL to scenic serve "
        "--channel-sim-url) and delivers payment notifications to the server as a device "
        "with the role channel.",
    )
    parser.add_argument(
        "--server",
        required=True,
        type=websocket_url,
        metavar="URL",
        help="Deliver notifications to the scenic server at this ws:// URL.",
    )
    parser.add_argument(
        "--device",
        required=True,
        metavar="ID",
        help="Connect to the server as this device (registered with --role channel).",
    )
    parser.add_argument(
        "--token", required=True, help="The device's token, as scenic device add printed it."
    )
    parser.add_argument(
        "--listen-host",
        default=DEFAULT_LISTEN_HOST,
        metavar="ADDRESS",
        help=f"Serve the merchant API on this address (default {DEFAULT_LISTEN_HOST}).",
    )
    parser.add_argument(
        "--listen-port",
        type=port_number,
        default=DEFAULT_LISTEN_PORT,
        metavar="PORT",
        help=f"Serve the merchant API on this port, 0 for any free one "
        f"(default {DEFAULT_LISTEN_PORT}).",
    )
    parser.add_argument(
        "--keys",
        type=Path,
        metavar="FILE",
        help=f"Sign with the merchant keys in this file (default <data-dir>/{KEYS_FILE_NAME}, "
        "created if missing).",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="The server's data directory, where the keys file is by default.",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=_rate,
        default=0.0,
        metavar="P",
        help="Send each notification twice with this probability, 0-1 (default 0).",
    )
    parser.add_argument(
        "--max-delay-s",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="Delay each notification by a random time up to this many seconds (default 0).",
    )
    parser.add_argument(
        "--refund-mode",
        choices=REFUND_MODES,
        default="instant",
        help="How refunds settle: one of " + ", ".join(REFUND_MODES) + " (default instant).",
    )
    parser.add_argument(
        "--seed", type=whole_number, help="Seed the simulator's randomness, for repeatable runs."
    )
    parser.add_argument(
        "--log-level",
        type=log_level,
        metavar="LEVEL",
        help="Log at this level: DEBUG, INFO, WARNING or ERROR (default INFO).",
    )
    parser.set_defaults(run=run)
    return parser


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


async def run(config: ServerConfig, args: argparse.Namespace) -> int:
    """Run the simulator until interrupted; returns the exit status.

    Raises :class:`~server.channels.keys.BadChannelKeys` when the keys file is
    unusable (the ``scenic`` command prints it and exits with 1).
    """
    from server.channels.sim_server import run_channel_sim

    keys = load_or_create_channel_keys(args.keys or default_keys_path(config))
    policy = NotifyPolicy(duplicate_rate=args.duplicate_rate, max_delay_s=args.max_delay_s)
    await run_channel_sim(
        args.server,
        args.device,
        args.token,
        args.listen_host,
        args.listen_port,
        keys,
        policy,
        args.refund_mode,
        rng=random.Random(args.seed),
    )
    return 0
