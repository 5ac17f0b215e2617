"""``scenic loadtest``: run a profile against a server, watch it live, report, audit.

Either it starts everything itself on loopback (a fresh ``scenic serve``
with its own embedded PostgreSQL and a catalog sized for the run, and a
``scenic channel-sim`` process standing in for WeChat Pay and Alipay, with
the profile's duplicates and delays), or it targets a running server
(``--server URL --dsn DSN``, and ``--channel-sim-url`` if that server uses a
channel-sim process; otherwise visitors pay through its in-process
simulator). The devices it needs are registered in the server's database.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import trio

from actors.channels import QR_CHANNELS
from clients.client import stay_connected
from loadtest.audit import audit_run
from loadtest.chaos import ChaosCluster, ChaosPlan, Fault, FaultLog, fault_schedule, fault_summary
from loadtest.chaos_gates import AgentScans, run_agent_gate, wait_merged
from loadtest.chaos_report import chaos_markdown, plot_chaos_timeline
from loadtest.local_server import (
    embedded_dsn,
    register_devices,
    scenic_command,
    stop_process,
    wait_for_listening,
)
from loadtest.metrics import Recorder
from loadtest.profile import Profile
from loadtest.progress import show_progress
from loadtest.rentals import RENTAL_KINDS
from loadtest.report import write_report
from loadtest.resilient import ResilientClient, Tally
from loadtest.scenario import Scenario, expected_sales
from server.channels.adapter import ChannelError, ChannelUnavailable
from server.channels.keys import load_or_create_channel_keys
from server.channels.remote import RemoteChannel
from server.site import demo_catalog_source
from server.workers import free_port

KINDS = (
    "order.create",
    "payment.start",
    "channel.pay",
    "payment.confirmed",
    "payment.record",
    "order.refund",
    "ticket.scan",
    "gate.passage",
    *RENTAL_KINDS,
)


@attrs.frozen
class Target:
    """The server under test and how to reach its parts."""

    url: str
    dsn: str
    tokens: dict[str, str]
    channel_sim_url: str | None
    keys_path: Path | None


#: the real gate agents (simulated devices) of a chaos run, beside the profile's gates
AGENT_GATES = ("G-LTA-01", "G-LTA-02")
#: how many visitors a second each agent gate's scanner reads
AGENT_RATE_PER_S = 3.0


def device_plan(profile: Profile, *, agents: bool = False) -> dict[str, str]:
    """The devices a profile needs, by id and role (``agents``: the chaos run's agent gates)."""
    devices = {f"lt-kiosk-{n:02d}": "kiosk" for n in range(profile.kiosks)}
    devices |= {gate: "gate" for gate in (AGENT_GATES if agents else ())}
    devices |= {f"lt-counter-{n:02d}": "counter" for n in range(profile.counters)}
    devices |= {f"G-LT-{n:02d}": "gate" for n in range(profile.gates)}
    devices |= {f"lt-desk-{n:02d}": "rental" for n in range(profile.rental_desks)}
    devices |= {"lt-channel": "channel"}
    return devices


def run_catalog(profile: Profile) -> str:
    """The demo park with capacity enough for every ticket the run may sell."""
    most = expected_sales(profile) * profile.tickets_per_order[1] * 3 + 1000
    text = demo_catalog_source()
    return text.replace("daily = 20000", f"daily = {max(most, 20000)}", 1)


@contextmanager
def own_target(profile: Profile, workdir: Path) -> Iterator[Target]:
    """A fresh server and channel simulator on loopback, stopped (by their pids) on exit."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    processes: list[subprocess.Popen] = []
    env = {**os.environ, "SCENIC_ORDER_TTL_S": str(profile.order_ttl_s)}
    catalog = workdir / "catalog.toml"
    catalog.write_text(run_catalog(profile), encoding="utf-8")
    try:
        subprocess.run(
            scenic_command("catalog", "load", str(catalog), "--data-dir", str(data_dir)),
            check=True,
            capture_output=True,
            timeout=120,
        )
        sim_port = free_port()
        sim_url = f"ws://127.0.0.1:{sim_port}"
        server_log = workdir / "server.log"
        with open(server_log, "w") as log_file:
            processes.append(
                subprocess.Popen(
                    scenic_command(
                        "serve",
                        "--data-dir",
                        str(data_dir),
                        "--port",
                        "0",
                        "--channel-sim-url",
                        sim_url,
                    ),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        url = wait_for_listening(server_log, processes[-1], time.perf_counter() + 120)
        dsn = embedded_dsn(data_dir)
        tokens = register_devices(dsn, device_plan(profile))
        sim_log = workdir / "channel-sim.log"
        with open(sim_log, "w") as log_file:
            processes.append(
                subprocess.Popen(
                    scenic_command(
                        "channel-sim",
                        "--server",
                        url,
                        "--device",
                        "lt-channel",
                        "--token",
                        tokens["lt-channel"],
                        "--listen-port",
                        str(sim_port),
                        "--keys",
                        str(data_dir / "channel_keys.json"),
                        "--duplicate-rate",
                        str(profile.duplicate_rate),
                        "--max-delay-s",
                        str(profile.max_delay_s),
                        "--seed",
                        str(profile.seed),
                    ),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        wait_for_listening(
            sim_log, processes[-1], time.perf_counter() + 60, event="channel_sim.listening"
        )
        yield Target(url, dsn, tokens, sim_url, data_dir / "channel_keys.json")
    finally:
        for process in reversed(processes):
            stop_process(process)


def external_target(
    profile: Profile, url: str, dsn: str, channel_sim_url: str | None, keys_path: Path | None
) -> Target:
    """A running server: its devices for this run are registered through ``dsn``."""
    return Target(url, dsn, register_devices(dsn, device_plan(profile)), channel_sim_url, keys_path)


async def drive(
    profile: Profile, target: Target, *, progress: bool = True, chaos: ChaosRun | None = None
) -> tuple[dict, dict]:
    r"""Run the scenario against ``target``; returns (metrics summary, audit).

    With ``chaos`` the devices are :class:`~loadtest.resilient.ResilientClient`\ s
    (they reconnect and retry), the faults of ``chaos.schedule`` are injected
    while the scenario runs, and the summary gets a ``chaos`` section.
    """
    recorder = Recorder(KINDS)
    tokens = target.tokens
    tally = Tally()
    faults = FaultLog()
    tally.on_success = faults.success
    async with trio.open_nursery() as nursery:

        async def opened(device: str):
            if chaos is None:
                return await nursery.start(stay_connected, target.url, device, tokens[device])
            client = ResilientClient(target.url, device, tokens[device], tally)
            return await nursery.start(client.run)

        kiosks = [await opened(d) for d in sorted(tokens) if d.startswith("lt-kiosk")]
        counters = [await opened(d) for d in sorted(tokens) if d.startswith("lt-counter")]
        gates = [(d, await opened(d)) for d in sorted(tokens) if d.startswith("G-LT-")]
        desks = [await opened(d) for d in sorted(tokens) if d.startswith("lt-desk")]
        pay, authorize = await _payer(nursery, target, kiosks)
        if chaos is not None:
            pay, authorize = _patient(pay), _patient(authorize)
        scenario = Scenario(profile, recorder, kiosks, counters, gates, pay, desks, authorize)
        await scenario.presell()
        agent_scans = AgentScans()
        if chaos is not None:
            for n, gate in enumerate(AGENT_GATES):
                await nursery.start(
                    run_agent_gate,
                    gate,
                    tokens[gate],
                    target.url,
                    chaos.agent_dir,
                    scenario.world,
                    agent_scans,
                    AGENT_RATE_PER_S,
                    random.Random(profile.seed + 100 + n),
                )
        recorder.started()
        faults.began = trio.current_time()
        counted_from = (tally.sent, tally.answered)
        if progress:
            nursery.start_soon(show_progress, recorder, profile.duration_s)
        async with trio.open_nursery() as breaking:
            if chaos is not None:
                breaking.start_soon(inject_faults, chaos, faults)
            await scenario.run()
            breaking.cancel_scope.cancel()
        if chaos is not None:
            await wait_merged(agent_scans)
            for name, n in agent_scans.tally.items():
                recorder.count(name, n)
        await _settle_outbox(target.dsn, 30.0 if chaos is None else 120.0)
        nursery.cancel_scope.cancel()
    world = scenario.world
    audit = await trio.to_thread.run_sync(  # asyncpg wants asyncio: its own loop, in a thread
        lambda: asyncio.run(
            audit_run(
                target.dsn,
                world.acknowledged_orders,
                world.paid_orders,
                world.granted_scans,
                scenario.rentals.world,
                chaos=world if chaos is not None else None,
                agents=agent_scans if chaos is not None else None,
            )
        )
    )
    summary = recorder.summary()
    if chaos is not None:
        summary["chaos"] = {
            "plan": attrs.asdict(chaos.cluster.plan),
            "faults": faults.rows(),
            "by_kind": fault_summary(faults.rows()),
            "requests_sent": tally.sent - counted_from[0],
            "requests_answered": tally.answered - counted_from[1],
            "retried": tally.retried,
            "given_up": tally.given_up,
            "reconnects": tally.reconnects,
            "acknowledged_writes_lost": audit["lost_writes"],
            "refund_waits": audit["refund_waits"],
        }
    return summary, audit


@attrs.frozen
class ChaosRun:
    """A chaos run's processes and its plan of faults."""

    cluster: ChaosCluster
    schedule: list[Fault]
    #: where the agent gates keep their journals and saved configs
    agent_dir: Path


async def inject_faults(chaos: ChaosRun, faults: FaultLog) -> None:
    """Do each fault of ``chaos.schedule`` at its time from ``faults.began``.

    Meanwhile, like a supervisor, start again at once any worker that exited by itself.
    """
    cluster = chaos.cluster
    workers = trio.Lock()  # one worker (re)start at a time
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_supervise, cluster, faults, workers)
        await _scheduled(chaos, faults, workers)
        nursery.cancel_scope.cancel()


async def _supervise(cluster: ChaosCluster, faults: FaultLog, workers: trio.Lock) -> None:
    while True:
        await trio.sleep(0.2)
        async with workers:
            for index in cluster.exited_workers():
                row = faults.fault("server_exit", f"worker-{index}", trio.current_time())
                back = await trio.to_thread.run_sync(cluster.start_worker, index)
                row["back_after_s"] = round(back, 3)


async def _scheduled(chaos: ChaosRun, faults: FaultLog, workers: trio.Lock) -> None:
    cluster = chaos.cluster
    for fault in chaos.schedule:
        await trio.sleep_until(faults.began + fault.at_s)
        if fault.kind == "server_kill":
            index = int(fault.target.rsplit("-", 1)[1])
            async with workers:
                row = faults.fault(fault.kind, fault.target, trio.current_time())
                back = await trio.to_thread.run_sync(cluster.kill_worker, index)
        else:
            row = faults.fault(fault.kind, fault.target, trio.current_time())
            work = cluster.restart_postgres if fault.kind == "postgres_restart" else None
            back = await trio.to_thread.run_sync(work or cluster.restart_sim)
        row["back_after_s"] = round(back, 3)


def _patient(call):
    """``call`` (a visitor paying at the channel) tried again while the channel is unreachable."""

    async def patient(*args):
        deadline = trio.current_time() + 60.0
        while True:
            try:
                return await call(*args)
            except ChannelUnavailable:
                if trio.current_time() > deadline:
                    raise
            except ChannelError as exc:
                if exc.code == "already_paid":  # the first try went through
                    return {}
                raise
            await trio.sleep(0.5)

    return patient


async def _payer(nursery: trio.Nursery, target: Target, kiosks):
    """How a visitor pays and approves a freeze: (pay, authorize).

    Through the channel-sim's API, or the server's ``sim.pay`` and ``sim.authorize``.
    """
    if target.channel_sim_url:
        keys = load_or_create_channel_keys(target.keys_path) if target.keys_path else {}
        channels = {}
        for name in QR_CHANNELS:
            channels[name] = await nursery.start(
                _remote, name, target.channel_sim_url, keys.get(name, b"")
            )

        async def pay(channel: str, out_trade_no: str) -> dict:
            return await channels[channel].pay(out_trade_no)

        async def authorize(out_order_no: str, out_request_no: str) -> dict:
            return await channels["alipay"].authorize_freeze(out_order_no, out_request_no)

        return pay, authorize

    async def pay_in_process(channel: str, out_trade_no: str) -> dict:
        return await kiosks[0].request("sim.pay", channel=channel, out_trade_no=out_trade_no)

    async def authorize_in_process(out_order_no: str, out_request_no: str) -> dict:
        return await kiosks[0].request(
            "sim.authorize",
            channel="alipay",
            out_order_no=out_order_no,
            out_request_no=out_request_no,
        )

    return pay_in_process, authorize_in_process


async def _remote(name: str, url: str, key: bytes, task_status=trio.TASK_STATUS_IGNORED):
    async with RemoteChannel(name, url, key) as channel:
        task_status.started(channel)
        await trio.sleep_forever()


async def _settle_outbox(dsn: str, timeout_s: float) -> None:
    """Give refunds already decided a bounded time to reach their channels."""
    deadline = trio.current_time() + timeout_s
    while trio.current_time() < deadline:
        if await trio.to_thread.run_sync(_outbox_pending, dsn) == 0:
            return
        await trio.sleep(0.5)


def _outbox_pending(dsn: str) -> int:
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL")
        finally:
            await conn.close()

    return asyncio.run(count())


def run_profile(
    profile: Profile,
    out_dir: Path,
    *,
    server: str | None = None,
    dsn: str | None = None,
    channel_sim_url: str | None = None,
    keys_path: Path | None = None,
    progress: bool = True,
    chaos: ChaosPlan | None = None,
) -> bool:
    """Run ``profile`` (on its own loopback server unless ``server``); write the report.

    With ``chaos`` it runs its own processes and breaks them as the plan says
    (:mod:`loadtest.chaos`). Returns True when the audit holds.
    """
    workdir = Path(tempfile.mkdtemp(prefix="scenic-loadtest-"))
    began = time.time()
    try:
        if chaos is not None:
            summary, audit = _run_chaos(profile, workdir, chaos, progress)
        elif server is not None:
            if dsn is None:
                raise ValueError("--server needs --dsn (the audit reads the database)")
            target = external_target(profile, server, dsn, channel_sim_url, keys_path)
            summary, audit = trio.run(lambda: drive(profile, target, progress=progress))
        else:
            with own_target(profile, workdir) as target:
                summary, audit = trio.run(lambda: drive(profile, target, progress=progress))
        meta = {
            "profile": profile.name,
            "description": profile.description,
            "duration_s": profile.duration_s,
            "server": server
            or "own (loopback, embedded PostgreSQL)"
            + (f", {chaos.server_workers} worker(s), chaos" if chaos else ""),
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(began)),
            "wall_s": round(time.time() - began, 1),
        }
        chaos_parts = {}
        if "chaos" in summary:
            chaos_parts = {
                "sections": [chaos_markdown(summary["chaos"])],
                "charts": {"chaos.png": ("Faults and throughput", plot_chaos_timeline)},
            }
        paths = write_report(
            out_dir,
            title=f"scenic loadtest: {profile.name}",
            summary=summary,
            audit=audit,
            meta=meta,
            **chaos_parts,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(_headline(summary, audit), file=sys.stderr)
    for check in audit["checks"]:
        if not check["ok"]:
            print(f"AUDIT FAIL {check['name']}: {check['promise']}", file=sys.stderr)
            for row in check["offenders"][:20]:
                print(f"    {row}", file=sys.stderr)
    print(f"report: {paths['report.md']}", file=sys.stderr)
    return bool(audit["ok"])


def _run_chaos(profile: Profile, workdir: Path, plan: ChaosPlan, progress: bool):
    catalog = workdir / "catalog.toml"
    catalog.write_text(run_catalog(profile), encoding="utf-8")
    cluster = ChaosCluster(
        workdir, plan, env={"SCENIC_ORDER_TTL_S": str(profile.order_ttl_s)}, seed=profile.seed
    )
    try:
        tokens = cluster.start(
            catalog,
            device_plan(profile, agents=True),
            [
                "--duplicate-rate",
                str(profile.duplicate_rate),
                "--max-delay-s",
                str(profile.max_delay_s),
                "--seed",
                str(profile.seed),
            ],
        )
        target = Target(cluster.url, cluster.dsn, tokens, cluster.sim_url, cluster.keys_path)
        chaos = ChaosRun(cluster, fault_schedule(plan, profile.duration_s), workdir / "agents")
        return trio.run(lambda: drive(profile, target, progress=progress, chaos=chaos))
    except BaseException:
        print(cluster.logs_tail(), file=sys.stderr)
        raise
    finally:
        cluster.close()


def _headline(summary: dict, audit: dict) -> str:
    parts = []
    for kind in ("ticket.scan", "payment.confirmed", "order.create"):
        figures = summary["kinds"].get(kind)
        if figures and figures["count"] and figures["p99_ms"] is not None:
            parts.append(
                f"{kind} {figures['rate_per_s']:,.0f}/s p99 {figures['p99_ms']:.0f} ms"
                f" ({figures['errors']} errors)"
            )
    counters = summary.get("counters", {})
    if counters.get("rental.created"):
        parts.append(
            f"rentals {counters['rental.created']} made, {counters.get('rental.settled', 0)}"
            " settled"
        )
    held = sum(c["ok"] for c in audit["checks"])
    parts.append(f"audit {held}/{len(audit['checks'])} hold")
    return "; ".join(parts)
