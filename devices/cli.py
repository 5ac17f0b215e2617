"""The ``scenic gate-agent`` and ``scenic gate-sim`` subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import trio

from server.auth import hash_token, new_token
from server.config import ServerConfig


def add_gate_parsers(subparsers: Any) -> None:
    """Add ``gate-agent`` and ``gate-sim`` to the ``scenic`` command's ``subparsers``."""
    agent = subparsers.add_parser("gate-agent", help="run the agent of one gate")
    agent.add_argument("--gate", required=True, help="the gate's device id (role gate)")
    agent.add_argument("--token", required=True)
    agent.add_argument("--server", default="ws://127.0.0.1:8765")
    agent.add_argument("--scanner", required=True, help="the scanner's serial port")
    agent.add_argument("--turnstile", required=True, help="the turnstile controller's port")
    agent.add_argument("--display", help="the two-line display's serial port")
    agent.add_argument("--direction", choices=("entry", "exit"), default="entry")
    agent.add_argument(
        "--state-dir", type=Path, help="journal and saved config (default <data-dir>/gate-agent)"
    )
    agent.add_argument("--data-dir", type=Path)
    agent.set_defaults(run=_run_agent)

    sim = subparsers.add_parser(
        "gate-sim", help="run N simulated gates (agents with simulated devices)"
    )
    sim.add_argument("--gates", type=int, default=4)
    sim.add_argument("--server", default="ws://127.0.0.1:8765")
    sim.add_argument("--rate", type=float, default=1.0, help="codes per second per gate")
    sim.add_argument("--seconds", type=float, default=60.0)
    sim.add_argument("--rescans", type=float, default=0.1, help="share of second scans")
    sim.add_argument("--forged", type=float, default=0.05, help="share of forged codes")
    sim.add_argument("--product", default="adult")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--dsn", help="the server's database (to register the simulated devices)")
    sim.add_argument("--data-dir", type=Path, help="the server's data directory")
    sim.set_defaults(run=_run_sim)


async def _run_agent(config: ServerConfig, args: argparse.Namespace) -> int:
    from devices.gate_agent import AgentConfig, GateAgent

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
    await agent.run()
    return 0


async def _run_sim(config: ServerConfig, args: argparse.Namespace) -> int:
    from devices.gate_sim import SimPlan, run_gate_sim
    from server.cli import _database
    from server.storage import devices

    if args.gates < 1 or args.gates > 200:
        raise SystemExit("scenic: --gates must be between 1 and 200")
    tokens = {f"G-SIM-{n:02d}": new_token() for n in range(1, args.gates + 1)}
    kiosk_token = new_token()
    async with _database(config) as db:
        for gate_id, token in tokens.items():
            await devices.issue_device(db, gate_id, "gate", hash_token(token))
        await devices.issue_device(db, "kiosk-sim", "kiosk", hash_token(kiosk_token))
    plan = SimPlan(
        args.gates, args.rate, args.seconds, args.rescans, args.forged, args.product, args.seed
    )
    await run_gate_sim(args.server, tokens, ("kiosk-sim", kiosk_token), plan)
    return 0


__all__ = ["add_gate_parsers", "trio"]
