"""The ``scenic gate-agent`` and ``scenic gate-sim`` subcommands.

A mistake a person can fix (no server at ``--server``, a wrong token, bad
numbers) is one line on stderr saying what is wrong and what to do, and a
non-zero exit: 2 for usage, 1 for a failure; ``--log-level DEBUG`` adds the
traceback as a log line. Ctrl-C stops either command without a traceback
(exit 130); ``gate-sim`` prints its summary first.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from devices.background import background_nursery
from server.auth import hash_token, new_token
from server.config import ServerConfig
from server.errors import ScenicError

log = logging.getLogger("scenic.devices.cli")

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_gate_parsers(subparsers: Any) -> None:
    """Add ``gate-agent`` and ``gate-sim`` to the ``scenic`` command's ``subparsers``."""
    agent = subparsers.add_parser(
        "gate-agent",
        help="Run the agent of one gate: its scanner, turnstile and display on serial ports.",
        description="Run one gate's agent: scanner, turnstile and display on serial ports,"
        " talking to the server; it keeps admitting by signature when the server is away.",
    )
    agent.add_argument("--gate", required=True, help="the gate's device id (role gate)")
    agent.add_argument(
        "--token", required=True, help="the gate's token, as 'scenic device add' printed it"
    )
    agent.add_argument(
        "--server", default="ws://127.0.0.1:8765", help="the server (default ws://127.0.0.1:8765)"
    )
    agent.add_argument(
        "--scanner",
        required=True,
        help="the scanner's serial port; use a stable /dev/serial/by-id/... name",
    )
    agent.add_argument(
        "--turnstile", required=True, help="the turnstile controller's serial port (by-id name)"
    )
    agent.add_argument("--display", help="the two-line display's serial port (by-id name)")
    agent.add_argument(
        "--direction",
        choices=("entry", "exit"),
        default="entry",
        help="which way visitors pass this gate (default entry)",
    )
    agent.add_argument(
        "--state-dir", type=Path, help="journal and saved config (default <data-dir>/gate-agent)"
    )
    agent.add_argument("--data-dir", type=Path, help="where the default --state-dir lives")
    agent.add_argument(
        "--log-level", type=str.upper, choices=_LEVELS, help="log lines on stderr (default INFO)"
    )
    agent.set_defaults(run=_run_agent)

    sim = subparsers.add_parser(
        "gate-sim",
        help="Run N simulated gates: real agents driving simulated devices.",
        description="Run N gate agents, each driving a simulated scanner, turnstile and display"
        " on pseudo-terminals, against a server started with 'scenic serve --demo'. Prints"
        " every verdict and a summary; Ctrl-C stops early (summary, then exit 130).",
    )
    sim.add_argument("--gates", type=int, default=4, help="how many gates, 1..200 (default 4)")
    sim.add_argument(
        "--server", default="ws://127.0.0.1:8765", help="the server (default ws://127.0.0.1:8765)"
    )
    sim.add_argument(
        "--rate", type=float, default=1.0, help="codes scanned per second per gate (default 1)"
    )
    sim.add_argument(
        "--seconds", type=float, default=60.0, help="how long the gates scan (default 60)"
    )
    sim.add_argument(
        "--rescans",
        type=float,
        default=0.1,
        help="share of codes that are a ticket scanned before, 0..1 (default 0.1)",
    )
    sim.add_argument(
        "--forged", type=float, default=0.05, help="share of forged codes, 0..1 (default 0.05)"
    )
    sim.add_argument(
        "--product", default="adult", help="the product of the tickets bought (default adult)"
    )
    sim.add_argument("--seed", type=int, help="seed of the visitors' randomness (default: random)")
    sim.add_argument(
        "--dsn", help="the server's database, where the simulated devices are registered"
    )
    sim.add_argument(
        "--data-dir", type=Path, help="the server's data directory (when it has no --dsn)"
    )
    sim.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        help="log lines on stderr at this level (default: none)",
    )
    sim.set_defaults(run=_run_sim)


async def _run_agent(config: ServerConfig, args: argparse.Namespace) -> int:
    from devices.gate_agent import AgentConfig, GateAgent, GateStartError

    agent = GateAgent(
        AgentConfig(
            args.gate,
            args.token,
            args.server,
            args.scanner,
            args.turnstile,
            args.display,
            args.state_dir or config.data_dir / "gate-agent",
            direction=args.direction,
        )
    )
    try:
        stopped_by = await _until_signalled(agent.run)
    except GateStartError as exc:
        return _failed("gate-agent", exc)
    return 0 if stopped_by is None else 128 + stopped_by


async def _run_sim(config: ServerConfig, args: argparse.Namespace) -> int:
    from devices.gate_sim import GateSim, SimError, SimPlan, check_server

    if args.log_level is None:  # the screen shows the verdicts, nothing else
        logging.getLogger("scenic").setLevel(logging.CRITICAL + 1)
    usage = _sim_usage_error(args)
    if usage is not None:
        print(f"scenic gate-sim: {usage}", file=sys.stderr)
        return 2
    plan = SimPlan(
        args.gates, args.rate, args.seconds, args.rescans, args.forged, args.product, args.seed
    )
    sim = GateSim(plan)

    async def simulate() -> None:
        await check_server(args.server)
        tokens = await _register_sim_devices(config, plan.gates)
        kiosk = ("kiosk-sim", tokens.pop("kiosk-sim"))
        await sim.run(args.server, tokens, kiosk)

    try:
        stopped_by = await _until_signalled(simulate, signal.SIGINT)
    except SimError as exc:
        return _failed("gate-sim", exc)
    if stopped_by is None:
        return 0
    print(sim.summary(interrupted=True), flush=True)
    return 128 + stopped_by


def _sim_usage_error(args: argparse.Namespace) -> str | None:
    if not 1 <= args.gates <= 200:
        return "--gates must be between 1 and 200"
    if args.rate <= 0 or args.seconds <= 0:
        return "--rate and --seconds must be positive"
    if not (0 <= args.rescans <= 1 and 0 <= args.forged <= 1 and args.rescans + args.forged <= 1):
        return "--rescans and --forged are shares between 0 and 1 (together at most 1)"
    return None


async def _register_sim_devices(config: ServerConfig, gates: int) -> dict[str, str]:
    """Register G-SIM-01.. and kiosk-sim in the server's database; their new tokens."""
    from devices.gate_sim import SimError
    from server.storage import devices
    from server.storage.command import command_database

    tokens = {f"G-SIM-{n:02d}": new_token() for n in range(1, gates + 1)}
    tokens["kiosk-sim"] = new_token()
    where = "--dsn" if config.dsn else f"--data-dir {config.data_dir}"
    try:
        async with command_database(config) as db:
            for device_id, token in tokens.items():
                role = "kiosk" if device_id == "kiosk-sim" else "gate"
                await devices.issue_device(db, device_id, role, hash_token(token))
    except ScenicError as exc:
        raise SimError(f"cannot register the simulated devices: {exc.message}") from exc
    except Exception as exc:  # a DSN or data directory that holds no usable database
        raise SimError(
            f"cannot open the server's database ({where}: {exc}): give gate-sim the"
            " server's own --dsn or --data-dir"
        ) from exc
    return tokens


async def _until_signalled(
    body: Callable[[], Awaitable[Any]], *signums: int
) -> signal.Signals | None:
    """Run ``body`` until it returns or a signal (SIGINT, SIGTERM) stops it; which one did."""
    stopped_by: list[signal.Signals] = []
    async with background_nursery() as nursery:

        async def watch() -> None:
            with trio.open_signal_receiver(*(signums or (signal.SIGINT, signal.SIGTERM))) as got:
                async for signum in got:
                    stopped_by.append(signal.Signals(signum))
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        await body()
        nursery.cancel_scope.cancel()
    return stopped_by[0] if stopped_by else None


def _failed(command: str, exc: Exception) -> int:
    """One line for a person, the traceback for ``--log-level DEBUG``; exit status 1."""
    log.debug(f"{command}.failed", exc_info=exc)
    print(f"scenic {command}: {exc}", file=sys.stderr)
    return 1


__all__ = ["add_gate_parsers", "trio"]
