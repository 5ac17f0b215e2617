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

DEFAULT_LISTEN_HOST = "127.0.0.1"
DEFAULT_LISTEN_PORT = 8766
KEYS_FILE_NAME = "channel_keys.json"


def default_keys_path(config: ServerConfig) -> Path:
    """Where the server and the simulator keep the merchant keys by default."""
    return Path(config.data_dir) / KEYS_FILE_NAME


def add_channel_sim_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``channel-sim`` subcommand to the ``scenic`` command's ``subparsers``."""
    parser = subparsers.add_parser("channel-sim", help="run the payment channel simulator")
    parser.add_argument("--server", required=True, help="the scenic server's ws:// url")
    parser.add_argument("--device", required=True, help="this simulator's device id (role channel)")
    parser.add_argument("--token", required=True, help="the device's token")
    parser.add_argument("--listen-host", default=DEFAULT_LISTEN_HOST, help="API address")
    parser.add_argument(
        "--listen-port", type=int, default=DEFAULT_LISTEN_PORT, help="API port (0: any free)"
    )
    parser.add_argument(
        "--keys", type=Path, help=f"merchant keys file (default <data-dir>/{KEYS_FILE_NAME})"
    )
    parser.add_argument("--data-dir", type=Path, help="the server's data directory")
    parser.add_argument(
        "--duplicate-rate", type=_rate, default=0.0, help="chance a notification is sent twice"
    )
    parser.add_argument(
        "--max-delay-s", type=_non_negative, default=0.0, help="longest random notification delay"
    )
    parser.add_argument("--refund-mode", choices=REFUND_MODES, default="instant")
    parser.add_argument("--seed", type=int, help="seed the simulator's randomness")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.set_defaults(run=run)
    return parser


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
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
