"""``scenic gate-sim``: N simulated gates, each a real gate agent with simulated devices.

For demos and load: each gate is a :class:`~devices.gate_agent.GateAgent`
driving a simulated scanner, turnstile and display over real pseudo-terminals,
talking to the server like any gate. Simulated visitors present codes at
each gate: tickets bought for today through a simulated kiosk (so the
server must sell the demo park and simulate the payment channels: start it
with ``scenic serve --demo``), with a share of second scans (refused:
passback or used up) and of forged codes (refused: forged). Every verdict is
printed as it happens, and a summary by reason at the end.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import attrs
import trio

from clients.client import Client, connect
from devices.gate_agent import AgentConfig, GateAgent, ScanResult
from devices.simulators import DisplaySimulator, ScannerSimulator, TurnstileSimulator


@attrs.frozen
class SimPlan:
    """How the simulated visitors behave."""

    gates: int = 4
    rate: float = 1.0  # codes per second per gate
    seconds: float = 60.0
    rescans: float = 0.1
    forged: float = 0.05
    product: str = "adult"
    seed: int | None = None


async def buy_tickets(kiosk: Client, count: int, product: str) -> list[str]:
    """Buy ``count`` tickets for today through the simulated channel; return their codes."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    codes: list[str] = []
    for first in range(0, count, 200):
        order = await kiosk.request(
            "order.create",
            client_key=f"gate-sim-{time.time_ns()}-{first}",
            lines=[{"product": product, "quantity": min(200, count - first), "date": today}],
        )
        start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
        with trio.fail_after(30):
            async for event, data in kiosk.events():
                if event == "order.paid" and data["order"] == order["order"]:
                    codes += [t["code"] for t in data["tickets"]]
                    break
    return codes


def _line(gate_id: str, result: ScanResult) -> str:
    mark = "✓" if result.granted else "✗"
    left = "" if result.entries_left is None else f" ({result.entries_left} left)"
    where = "" if result.online else " [offline]"
    return (
        f"{gate_id:<10} {mark} {result.reason:<11} {result.text_zh} {result.text_en}{left}{where}"
    )


async def run_gate_sim(
    server_url: str,
    gate_tokens: dict[str, str],
    kiosk: tuple[str, str],
    plan: SimPlan,
    *,
    out=sys.stdout,
    state_dir: Path | None = None,
) -> Counter:
    """Run the simulated gates for ``plan.seconds``; returns the count of verdicts by reason."""
    rng = random.Random(plan.seed)
    state = state_dir or Path(tempfile.mkdtemp(prefix="scenic-gate-sim-"))
    tally: Counter = Counter()
    async with connect(server_url, *kiosk) as kiosk_client:
        wanted = max(1, int(plan.gates * plan.rate * plan.seconds))
        codes = await buy_tickets(kiosk_client, min(wanted, 10_000), plan.product)
    print(f"gate-sim: {len(codes)} tickets bought; {plan.gates} gates scanning", file=out)
    used: list[str] = []

    def next_code() -> str:
        roll = rng.random()
        if roll < plan.forged:
            return f"T20260101FAKE{rng.randrange(10**8):08d}.k0.AAAAAAAAAA"
        if (roll < plan.forged + plan.rescans or not codes) and used:
            return rng.choice(used)
        if codes:
            code = codes.pop()
            used.append(code)
            return code
        return rng.choice(used)

    async def one_gate(gate_id: str, token: str) -> None:
        async with (
            ScannerSimulator() as scanner,
            TurnstileSimulator(walk_delay_s=0.2, walk_probability=0.97, rng=rng) as turnstile,
            DisplaySimulator() as display,
        ):

            def seen(result: ScanResult) -> None:
                tally[result.reason] += 1
                print(_line(gate_id, result), file=out, flush=True)

            agent = GateAgent(
                AgentConfig(
                    gate_id,
                    token,
                    server_url,
                    lambda: scanner.port,
                    lambda: turnstile.port,
                    lambda: display.port,
                    state,
                ),
                on_scan=seen,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(agent.run)
                with trio.fail_after(30):
                    await agent.online.wait()
                deadline = trio.current_time() + plan.seconds
                while trio.current_time() < deadline:
                    scanner.scan(next_code())
                    await trio.sleep(rng.expovariate(plan.rate) if plan.rate > 0 else 1.0)
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as gates:
        for gate_id, token in gate_tokens.items():
            gates.start_soon(one_gate, gate_id, token)
    summary = ", ".join(f"{reason} {count}" for reason, count in tally.most_common())
    print(f"gate-sim: {sum(tally.values())} scans: {summary}", file=out)
    return tally
