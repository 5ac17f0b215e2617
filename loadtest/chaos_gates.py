"""Real gate agents in the chaos run: simulated devices, the agent of devices/, a server that dies.

Each agent gate is a :class:`~devices.gate_agent.GateAgent` driving a
simulated scanner, turnstile and display over real pseudo-terminals (as
``scenic gate-sim`` does). Visitors present tickets sold in the run (first
entries, and a share of second scans) at ``rate_per_s`` per gate. When the
server is killed the agent loses it and judges by signature (offline,
journalled), and it merges its journal when the server is back. The run
remembers every verdict an agent gave (:class:`AgentScans`); the audit
checks each is a scan row of that gate (:func:`agent_checks`), that every
entry admitted offline beyond its ticket is a reported conflict, and that no
journal entry is left unmerged at the end.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import asyncpg
import attrs
import trio

from devices.gate_agent import AgentConfig, GateAgent, ScanResult
from devices.simulators import DisplaySimulator, ScannerSimulator, TurnstileSimulator


@attrs.define
class AgentScans:
    """What the agent gates did: every verdict (gate, scan id, granted, online)."""

    verdicts: list[tuple[str, str, bool, bool]] = attrs.field(factory=list)
    tally: Counter = attrs.field(factory=Counter)
    agents: list[GateAgent] = attrs.field(factory=list)

    def pending_journal(self) -> int:
        """Journal entries not merged yet, over every agent."""
        return sum(len(agent.journal.pending()) for agent in self.agents)


async def run_agent_gate(
    gate_id: str,
    token: str,
    url: str,
    state_dir: Path,
    world,
    scans: AgentScans,
    rate_per_s: float,
    rng: random.Random,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """One agent gate presenting the run's tickets until cancelled (started once online)."""
    async with (
        ScannerSimulator() as scanner,
        TurnstileSimulator(walk_delay_s=0.2, walk_probability=0.97, rng=rng) as turnstile,
        DisplaySimulator() as display,
    ):

        def seen(result: ScanResult) -> None:
            scans.verdicts.append((gate_id, result.scan_id, result.granted, result.online))
            where = "online" if result.online else "offline"
            scans.tally[f"agent.{where}.{result.reason}"] += 1

        agent = GateAgent(
            AgentConfig(
                gate_id,
                token,
                url,
                lambda: scanner.port,
                lambda: turnstile.port,
                lambda: display.port,
                state_dir,
                reconnect_max_s=1.0,
            ),
            on_scan=seen,
        )
        scans.agents.append(agent)
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            with trio.fail_after(60):
                await agent.online.wait()
            task_status.started(agent)
            while True:
                await trio.sleep(rng.expovariate(rate_per_s))
                code = _next_code(world, rng)
                if code is not None:
                    scanner.scan(code)


def _next_code(world, rng: random.Random) -> str | None:
    """A fresh ticket of the run (taken from the gates' queue), or now and then a used one."""
    if world.used and rng.random() < 0.1:
        return rng.choice(world.used)
    if world.fresh:
        code = world.fresh.popleft()
        world.used.append(code)
        return code
    return None


async def wait_merged(scans: AgentScans, timeout_s: float = 60.0) -> None:
    """Wait (bounded) until every agent is online with nothing left in its journal."""
    with trio.move_on_after(timeout_s):
        while True:  # the journals are files the agents move aside: look again and again
            if not scans.pending_journal() and all(a.client for a in scans.agents):
                return
            await trio.sleep(0.25)


async def agent_checks(conn: asyncpg.Connection, scans: AgentScans) -> list[dict]:
    """Every agent verdict is a scan row of its gate; no journal entry is left unmerged."""
    verdicts = sorted(set(scans.verdicts))
    rows = await conn.fetch(
        """SELECT v.gate_id, v.scan_id, v.granted, v.online
             FROM unnest($1::text[], $2::text[], $3::bool[], $4::bool[])
                  AS v(gate_id, scan_id, granted, online)
            WHERE NOT EXISTS (SELECT 1 FROM scans s
                               WHERE s.gate_id = v.gate_id AND s.scan_id = v.scan_id
                                 AND (NOT v.online OR s.granted = v.granted))
            LIMIT 100""",
        [v[0] for v in verdicts],
        [v[1] for v in verdicts],
        [v[2] for v in verdicts],
        [v[3] for v in verdicts],
    )
    unreported = await conn.fetch(
        """SELECT s.gate_id, s.scan_id, s.ticket_id FROM scans s
            WHERE s.offline AND s.granted AND NOT s.consumed AND s.direction = 'entry'
              AND s.ticket_id IS NOT NULL
              -- a grant nobody walked through uses nothing and is no conflict (merge_offline)
              AND s.passed IS DISTINCT FROM false
              AND NOT EXISTS (SELECT 1 FROM gate_conflicts c
                               WHERE c.gate_id = s.gate_id AND c.scan_id = s.scan_id)
            LIMIT 100"""
    )
    offline = sum(1 for v in verdicts if not v[3])
    pending = scans.pending_journal()
    return [
        {
            "name": "acknowledged_agent_scans_recorded",
            "promise": f"every verdict the gate agents gave ({len(verdicts)}, {offline} offline) "
            "is a scan of that gate (online: with the same verdict; offline: merged)",
            "ok": not rows,
            "offenders": [dict(row) for row in rows],
        },
        {
            "name": "offline_conflicts_reported",
            "promise": "every entry admitted offline that its ticket no longer had is a conflict "
            "for the service desk",
            "ok": not unreported,
            "offenders": [dict(row) for row in unreported],
        },
        {
            "name": "agent_journals_merged",
            "promise": "no gate agent's journal holds an entry not merged by the end",
            "ok": pending == 0,
            "offenders": [{"pending_entries": pending}] if pending else [],
        },
    ]
