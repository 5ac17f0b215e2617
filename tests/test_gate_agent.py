"""The gate agent end to end: simulated devices on real ptys, a real server, losing it."""

from __future__ import annotations

import trio

from devices.gate_agent import AgentConfig, GateAgent
from devices.simulators import DisplaySimulator, ScannerSimulator, TurnstileSimulator
from devices.turnstile_protocol import OpenEntry
from server.workers import free_port
from tests.helpers import running_server
from tests.test_gates import GATES, buy


class Rig:
    """One gate: its simulated devices, its agent, and what the agent reported."""

    def __init__(self, gate_id: str, token: str, url: str, state_dir) -> None:
        self.gate_id, self.token, self.url, self.state_dir = gate_id, token, url, state_dir
        self.results = []
        self.changed = trio.Event()

    def seen(self, result) -> None:
        self.results.append(result)
        self.changed.set()
        self.changed = trio.Event()

    async def scan(self, code: str):
        """Present a code to the scanner and wait for the agent's verdict."""
        before = len(self.results)
        self.scanner.scan(code)
        with trio.fail_after(10):
            while len(self.results) == before:
                await self.changed.wait()
            while self.agent._opened:  # the visitor walks through before the next one scans
                await trio.sleep(0.01)
        return self.results[-1]

    async def shows(self, first: str, second: str | None = None) -> None:
        """Wait (bounded) until the display shows these lines: its bytes take a moment."""
        with trio.fail_after(5):
            while self.display.lines[0] != first or (
                second is not None and self.display.lines[1] != second
            ):
                await trio.sleep(0.01)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED):
        async with (
            ScannerSimulator() as self.scanner,
            TurnstileSimulator(walk_delay_s=0.05) as self.turnstile,
            DisplaySimulator() as self.display,
        ):
            config = AgentConfig(
                self.gate_id,
                self.token,
                self.url,
                lambda: self.scanner.port,
                lambda: self.turnstile.port,
                lambda: self.display.port,
                self.state_dir,
                scan_timeout_s=1.0,
                reconnect_max_s=0.5,
            )
            self.agent = GateAgent(config, on_scan=self.seen)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.agent.run)
                with trio.fail_after(10):
                    await self.agent.online.wait()
                task_status.started(self)
                await trio.sleep_forever()


async def test_the_agent_admits_a_genuine_ticket_and_refuses_a_forged_one(dsn, db, tmp_path):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with trio.open_nursery() as nursery:
            rig = await nursery.start(
                Rig("G-MAIN-1", server.tokens["G-MAIN-1"], server.url, tmp_path).run
            )
            granted = await rig.scan(ticket["code"])
            assert any(isinstance(m, OpenEntry) for m in rig.turnstile.received)
            await rig.shows("欢迎光临")
            with trio.fail_after(10):
                while not await db.fetchval("SELECT passed FROM scans WHERE granted"):
                    await trio.sleep(0.05)
            opened_before = len(rig.turnstile.received)
            forged = await rig.scan("T2026NOTAREALCODE")
            await rig.shows("无效票码", "Invalid code")
            assert not any(isinstance(m, OpenEntry) for m in rig.turnstile.received[opened_before:])
            again = await rig.scan(ticket["code"])
            nursery.cancel_scope.cancel()
    assert granted.online and granted.granted and granted.reason == "ok"
    assert (forged.granted, forged.reason) == (False, "forged")
    assert (again.granted, again.reason) == (False, "passback")


async def test_a_turnstile_fault_reaches_the_server(dsn, db, tmp_path):
    from clients.client import connect
    from tests.test_orders import next_event

    async with running_server(dsn, db, GATES) as server:
        async with (
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
            trio.open_nursery() as nursery,
        ):
            rig = await nursery.start(
                Rig("G-MAIN-1", server.tokens["G-MAIN-1"], server.url, tmp_path).run
            )
            rig.turnstile.fault(1, "arm stuck")
            fault = await next_event(admin, "gate.fault")
            nursery.cancel_scope.cancel()
    assert fault["gate"] == "G-MAIN-1" and fault["device"] == "turnstile"
    assert fault["fault"] == "jammed"


async def serve_until(stop, dsn, db, devices, port, task_status=trio.TASK_STATUS_IGNORED):
    async with running_server(dsn, db, devices, port=port) as server:
        task_status.started(server)
        await stop.wait()


async def test_offline_the_agent_admits_by_signature_and_merges_on_reconnect(dsn, db, tmp_path):
    port = free_port()
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        server = await nursery.start(serve_until, stop, dsn, db, GATES, port)
        tickets = await buy(server, quantity=2)
        tokens = server.tokens
        rig_1 = await nursery.start(
            Rig("G-MAIN-1", tokens["G-MAIN-1"], server.url, tmp_path / "g1").run
        )
        rig_2 = await nursery.start(
            Rig("G-MAIN-2", tokens["G-MAIN-2"], server.url, tmp_path / "g2").run
        )
        stop.set()  # the server goes away; both gates keep working on their own
        with trio.fail_after(10):
            while rig_1.agent.client is not None or rig_2.agent.client is not None:
                await trio.sleep(0.05)
        offline_1 = await rig_1.scan(tickets[0]["code"])
        offline_again = await rig_1.scan(tickets[0]["code"])
        offline_forged = await rig_1.scan("T2026NOTAREALCODE")
        offline_2 = await rig_2.scan(tickets[0]["code"])  # the same ticket at another gate
        offline_3 = await rig_2.scan(tickets[1]["code"])
        assert rig_1.agent.journal.path.exists()
        back = trio.Event()
        await nursery.start(serve_until, back, dsn, db, {}, port)
        with trio.fail_after(20):
            while rig_1.agent.journal.path.exists() or rig_2.agent.journal.path.exists():
                await trio.sleep(0.05)
        back.set()
        nursery.cancel_scope.cancel()
    assert not offline_1.online and offline_1.granted
    assert (offline_again.granted, offline_again.reason) == (False, "passback")
    assert (offline_forged.granted, offline_forged.reason) == (False, "forged")
    assert offline_2.granted and offline_3.granted
    rows = await db.fetch(
        "SELECT gate_id, granted, reason FROM scans WHERE offline ORDER BY scan_pk"
    )
    assert len(rows) == 5
    conflicts = await db.fetch("SELECT gate_id, ticket_id, kind FROM gate_conflicts")
    assert [(c["ticket_id"], c["kind"]) for c in conflicts] in (
        [(tickets[0]["ticket"], "passback")],
        [(tickets[0]["ticket"], "used_up")],
    )
    used = {
        r["ticket_id"]: r["entries_used"]
        for r in await db.fetch("SELECT ticket_id, entries_used FROM tickets")
    }
    assert used == {tickets[0]["ticket"]: 1, tickets[1]["ticket"]: 1}, (used, tickets)


async def test_gate_sim_runs_gates_that_grant_and_refuse_with_reasons(dsn, db, tmp_path):
    import io

    from devices.gate_sim import SimPlan, run_gate_sim
    from server.auth import hash_token, new_token
    from server.storage import devices

    async with running_server(dsn, db, {}) as server:
        tokens = {f"G-SIM-{n}": new_token() for n in range(3)}
        for gate_id, token in tokens.items():
            await devices.issue_device(db, gate_id, "gate", hash_token(token))
        kiosk = new_token()
        await devices.issue_device(db, "kiosk-sim", "kiosk", hash_token(kiosk))
        out = io.StringIO()
        plan = SimPlan(gates=3, rate=5.0, seconds=3.0, rescans=0.2, forged=0.1, seed=3)
        tally = await run_gate_sim(
            server.url, tokens, ("kiosk-sim", kiosk), plan, out=out, state_dir=tmp_path
        )
    assert tally["ok"] > 0 and tally["forged"] > 0
    assert set(tally) <= {"ok", "forged", "passback", "used_up"}
    assert "✓ ok" in out.getvalue() and "✗ forged" in out.getvalue()
    assert await db.fetchval("SELECT count(*) FROM scans") == sum(tally.values())
