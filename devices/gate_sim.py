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
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import attrs
import trio
from trio_websocket import HandshakeError

from clients.client import Client, ConnectionLost, RemoteError, connect
from devices.gate_agent import AgentConfig, GateAgent, ScanResult
from devices.simulators import DisplaySimulator, ScannerSimulator, TurnstileSimulator


class SimError(Exception):
    """The simulation cannot run; the message says what is wrong and what to do."""


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


async def check_server(url: str) -> None:
    """Raise SimError unless something listens at ``url`` (before touching any database)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise SimError(f"--server {url!r} is not a ws:// or wss:// URL")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(parts.hostname, port)
    except (OSError, trio.TooSlowError) as exc:
        raise SimError(
            f"no server at {url}: start one with 'scenic serve --demo', or give --server"
        ) from exc
    await stream.aclose()


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
    opened = result.turnstile == "opened"
    mark = ("✓" if opened else "!") if result.granted else "✗"
    where = "" if result.online else " [offline]"
    trouble = "" if result.turnstile in (None, "opened") else f" [turnstile {result.turnstile}]"
    zh, en = result.shown
    return f"{gate_id:<10} {mark} {result.reason:<11} {zh} {en}{where}{trouble}"


class GateSim:
    """N simulated gates and their visitors; :attr:`tally` counts the verdicts by reason.

    :attr:`not_opened` counts the grants whose turnstile did not open, by why.
    """

    def __init__(self, plan: SimPlan, *, out=sys.stdout, state_dir: Path | None = None) -> None:
        self.plan = plan
        self.out = out
        self.state_dir = state_dir
        self.tally: Counter = Counter()
        self.not_opened: Counter = Counter()

    def summary(self, *, interrupted: bool = False) -> str:
        """The last line: scans by reason, and any grant the turnstile did not open."""
        counts = ", ".join(f"{reason} {count}" for reason, count in self.tally.most_common())
        line = f"gate-sim: {sum(self.tally.values())} scans"
        if counts:
            line += f": {counts}"
        if self.not_opened:
            why = ", ".join(f"{reason} {count}" for reason, count in self.not_opened.most_common())
            line += f"; turnstile did not open: {why}"
        return line + (" (interrupted)" if interrupted else "")

    async def run(
        self, server_url: str, gate_tokens: dict[str, str], kiosk: tuple[str, str]
    ) -> Counter:
        """Buy tickets, run the gates for ``plan.seconds``, print the summary; the tally.

        Raises SimError when the server cannot be reached, refuses the
        simulated devices, or does not sell the demo park's tickets.
        """
        plan = self.plan
        rng = random.Random(plan.seed)
        state = self.state_dir or Path(tempfile.mkdtemp(prefix="scenic-gate-sim-"))
        codes = await self._buy(server_url, kiosk)
        print(f"gate-sim: {len(codes)} tickets bought; {plan.gates} gates scanning", file=self.out)
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
                    self.tally[result.reason] += 1
                    if result.turnstile not in (None, "opened"):
                        self.not_opened[result.turnstile] += 1
                    print(_line(gate_id, result), file=self.out, flush=True)

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
        print(self.summary(), file=self.out)
        return self.tally

    async def _buy(self, server_url: str, kiosk: tuple[str, str]) -> list[str]:
        plan = self.plan
        wanted = max(1, int(plan.gates * plan.rate * plan.seconds))
        try:
            async with connect(server_url, *kiosk) as kiosk_client:
                return await buy_tickets(kiosk_client, min(wanted, 10_000), plan.product)
        except RemoteError as exc:
            if exc.code == "bad_credentials":
                raise SimError(
                    f"the server at {server_url} does not know the simulated devices: give"
                    " gate-sim the server's own --data-dir or --dsn"
                ) from exc
            raise SimError(
                f"the server at {server_url} would not sell {plan.product!r} tickets"
                f" ({exc.code}: {exc.message}): run it with 'scenic serve --demo'"
            ) from exc
        except (OSError, trio.TooSlowError, HandshakeError, ConnectionLost) as exc:
            raise SimError(
                f"the server at {server_url} did not answer as a scenic server"
                f" ({_why(exc)}): check --server"
            ) from exc


def _why(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


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
    return await GateSim(plan, out=out, state_dir=state_dir).run(server_url, gate_tokens, kiosk)
