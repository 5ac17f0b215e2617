"""``scenic channel-sim``: the simulated WeChat Pay and Alipay as a process of their own.

A payment channel's gateway, seen from the server, is a client: it serves
the channels' merchant API (:mod:`server.channels.sim_api`, which the
server's ``RemoteChannel`` calls) and delivers each payment's signed
notification to the scenic server as ``payment.notify`` over one client
connection with the ``channel`` role (:class:`ServerLink`), reconnecting
with backoff when it is lost; a notification whose connection is gone is not
acknowledged, so its :class:`~server.channels.notifier.Notifier` retries.
The merchant keys come from the same keys file the server reads (created on
first use).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import random
import signal
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.channels import QR_CHANNELS
from clients.client import ConnectionLost, RemoteError, connect
from server.channels.keys import load_or_create_channel_keys
from server.channels.notifier import Notifier, NotifyPolicy
from server.channels.sim_api import serve_channel_api
from server.channels.simulator import REFUND_MODES, ChannelSimulator, utc_now
from server.config import ServerConfig
from server.flags import log_level, port_number, websocket_url, whole_number

log = logging.getLogger("scenic.channels.sim")

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
        "--drop-every-s",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="Drop the connection to the server after a random time averaging this many "
        "seconds, again and again (a flaky link; default 0: never).",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="Keep the channels' books and undelivered notifications here across restarts: "
        "read at start if it exists, written at SIGTERM/SIGINT.",
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
    keys = load_or_create_channel_keys(args.keys or default_keys_path(config))
    policy = NotifyPolicy(duplicate_rate=args.duplicate_rate, max_delay_s=args.max_delay_s)
    state = load_state(args.state) if args.state else None
    sim = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
            sim = await nursery.start(
                partial(
                    run_channel_sim,
                    args.server,
                    args.device,
                    args.token,
                    args.listen_host,
                    args.listen_port,
                    keys,
                    policy,
                    args.refund_mode,
                    rng=random.Random(args.seed),
                    drop_every_s=args.drop_every_s,
                    state=state,
                )
            )
    finally:
        if args.state and sim is not None:
            save_state(args.state, sim)
    return 0


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


#: the simulator attributes that are its books (what a real channel keeps on disk)
BOOKS = (
    "_payments",
    "_refunds",
    "_issued_ids",
    "_freezes",
    "_order_of_auth",
    "_order_of_conversion",
    "_rng",
)


def save_state(path: Path, sim: ChannelSim) -> None:
    """Write ``sim``'s books and undelivered notifications to ``path`` (replaced at once)."""
    state = {
        "books": {
            name: {key: getattr(each, key) for key in BOOKS}
            for name, each in sim.simulators.items()
        },
        "notifications": {name: n.outstanding() for name, n in sim.notifiers.items()},
    }
    partial_path = path.with_name(path.name + ".tmp")
    partial_path.write_bytes(pickle.dumps(state))
    os.replace(partial_path, path)
    log.info(
        "channel_sim.saved",
        extra={"state": str(path), "notifications": sum(map(len, state["notifications"].values()))},
    )


def load_state(path: Path) -> dict | None:
    """What :func:`save_state` wrote to ``path``, or None when there is no such file."""
    try:
        return pickle.loads(path.read_bytes())
    except FileNotFoundError:
        return None


class ServerLink:
    """The simulator's connection to the scenic server, as a ``channel`` device.

    :meth:`run` keeps it connected, reconnecting with exponential backoff;
    :meth:`deliver` sends one notification over it and says whether the
    server acknowledged it.
    """

    def __init__(
        self,
        url: str,
        device_id: str,
        token: str,
        *,
        request_timeout_s: float = 10.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        drop_every_s: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.drop_every_s = drop_every_s
        self._rng = rng or random.Random()
        self.url = url
        self.device_id = device_id
        self._token = token
        self.request_timeout_s = request_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._client = None
        self._connected = trio.Event()

    @property
    def connected(self) -> bool:
        """Whether a connection to the server is up now."""
        return self._client is not None

    async def wait_connected(self) -> None:
        """Wait until a connection to the server is up."""
        await self._connected.wait()

    async def run(self) -> None:
        """Stay connected to the server until cancelled."""
        delay = self.backoff_base_s
        while True:
            try:
                async with connect(
                    self.url, self.device_id, self._token, timeout=self.request_timeout_s
                ) as client:
                    self._client = client
                    self._connected.set()
                    delay = self.backoff_base_s
                    log.info("channel_sim.connected", extra={"server": self.url})
                    lifetime = (
                        self._rng.expovariate(1 / self.drop_every_s)
                        if self.drop_every_s
                        else math.inf
                    )
                    with trio.move_on_after(lifetime) as dropping:
                        async for _event in client.events():
                            pass  # nothing is pushed to channels; ends when the connection does
                    if dropping.cancelled_caught:
                        log.warning("channel_sim.dropped", extra={"server": self.url})
                        continue  # at once: the channel reconnects as soon as it notices
                log.warning("channel_sim.disconnected", extra={"server": self.url})
            except Exception as exc:
                log.warning(
                    "channel_sim.connection_failed",
                    extra={"server": self.url, "error": repr(exc), "retry_in_s": delay},
                )
            finally:
                self._client = None
                if self._connected.is_set():
                    self._connected = trio.Event()
            await trio.sleep(delay)
            delay = min(delay * 2, self.backoff_max_s)

    async def deliver(self, fields: dict[str, Any]) -> bool:
        """Send one signed notification; ``True`` if acknowledged.

        A payment's goes as ``payment.notify``, a freeze's (``kind`` is
        ``"freeze"``) as ``freeze.notify``. ``False`` when there is no
        connection, it is lost before the reply, the reply is late, or the
        server refuses the notification.
        """
        client = self._client
        if client is None:
            return False
        op = "freeze.notify" if fields.get("kind") == "freeze" else "payment.notify"
        try:
            await client.request(op, timeout=self.request_timeout_s, **fields)
        except RemoteError as exc:
            log.warning(
                "channel_sim.notify_refused",
                extra={
                    "op": op,
                    "reference": fields.get("out_trade_no") or fields.get("out_order_no"),
                    "code": exc.code,
                },
            )
            return False
        except (ConnectionLost, trio.TooSlowError):
            return False
        return True


@attrs.frozen
class ChannelSim:
    """A running simulator (:func:`run_channel_sim`): its API url and its parts."""

    url: str
    simulators: Mapping[str, ChannelSimulator]
    notifiers: Mapping[str, Notifier]
    link: ServerLink


async def run_channel_sim(
    server_url: str,
    device_id: str,
    token: str,
    api_host: str,
    api_port: int,
    keys: Mapping[str, bytes],
    policy: NotifyPolicy,
    refund_mode: str = "instant",
    *,
    clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
    drop_every_s: float = 0.0,
    state: dict | None = None,
    task_status: trio.TaskStatus[ChannelSim] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the simulated WeChat Pay and Alipay until cancelled.

    Serves the API on ``api_host``:``api_port`` (0: a free port), delivers
    notifications to ``server_url`` as device ``device_id``, and logs
    ``channel_sim.listening`` with the API url. ``task_status.started``
    receives a :class:`ChannelSim`. ``drop_every_s`` makes the link to the
    server drop now and then (:class:`ServerLink`); ``state`` (what
    :func:`save_state` wrote) gives back the books and the notifications
    still to deliver from before a restart. Raises ``KeyError`` if ``keys`` lacks a
    QR channel's key, ``ValueError`` for an unknown ``refund_mode``.
    """
    rng = rng or random.Random()
    link = ServerLink(
        server_url,
        device_id,
        token,
        request_timeout_s=policy.timeout_s,
        drop_every_s=drop_every_s,
        rng=random.Random(rng.random()),
    )
    simulators = {
        name: ChannelSimulator(name, keys[name], clock, refund_mode=refund_mode, rng=rng)
        for name in QR_CHANNELS
    }
    notifiers = {
        name: Notifier(link.deliver, keys[name], clock, policy, rng) for name in QR_CHANNELS
    }
    if state is not None:
        for name, books in state["books"].items():
            for key, value in books.items():
                setattr(simulators[name], key, value)
        for name, pending in state["notifications"].items():
            for fields in pending:
                notifiers[name].submit(fields)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.run)
        for notifier in notifiers.values():
            nursery.start_soon(notifier.run)
        url = await nursery.start(
            partial(serve_channel_api, simulators, api_host, api_port, notifiers=notifiers)
        )
        log.info("channel_sim.listening", extra={"url": url, "server": server_url})
        task_status.started(ChannelSim(url, simulators, notifiers, link))
