"""The chaos load test: its fault plan, its fault log, and a short real run with every fault."""

from __future__ import annotations

import json
import math

import attrs
from hypothesis import given
from hypothesis import strategies as st

from loadtest.chaos import ChaosPlan, FaultLog, fault_schedule, fault_summary
from loadtest.profile import load_profile
from loadtest.run import run_profile
from tests.test_cli_errors import scenic, the_line


def test_the_documented_schedule_of_a_five_minute_run():
    faults = fault_schedule(ChaosPlan(), 300)
    kills = [f for f in faults if f.kind == "server_kill"]
    assert [f.at_s for f in kills] == [15.0 * k for k in range(1, 20)]
    assert [f.at_s for f in faults if f.kind == "postgres_restart"] == [155.0]
    assert [f.at_s for f in faults if f.kind == "channel_sim_restart"] == [190.0]


@given(
    every=st.floats(1.0, 60.0),
    duration=st.floats(5.0, 900.0),
    workers=st.integers(1, 4),
    pg=st.integers(0, 4),
    sim=st.integers(0, 2),
)
def test_every_fault_falls_inside_the_run_and_kills_take_the_workers_in_turn(
    every, duration, workers, pg, sim
):
    plan = ChaosPlan(kill_every_s=every, server_workers=workers, pg_restarts=pg, sim_restarts=sim)
    faults = fault_schedule(plan, duration)
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    assert all(0 < f.at_s < duration for f in faults)
    kills = [f for f in faults if f.kind == "server_kill"]
    assert (len(kills) + 1) * every >= duration  # no kill left out before the end
    assert [f.target for f in kills] == [f"worker-{k % workers}" for k in range(len(kills))]
    others = [f for f in faults if f.kind != "server_kill"]
    for fault in others:  # between two kills, a third of an interval from the nearest
        offset = fault.at_s / every - math.floor(fault.at_s / every)
        assert math.isclose(min(offset, 1 - offset), 1 / 3, abs_tol=1e-6)
    assert len([f for f in others if f.kind == "postgres_restart"]) <= pg
    assert len([f for f in others if f.kind == "channel_sim_restart"]) <= sim


def test_the_first_success_after_each_fault_is_measured_from_it():
    log = FaultLog(began=100.0)
    log.success(101.0)  # before any fault: nothing waits for it
    log.fault("server_kill", "worker-0", 110.0)
    log.fault("postgres_restart", "postgres", 111.0)
    log.success(110.5)  # after the kill, not after the restart
    log.success(113.25)
    rows = log.rows()
    assert rows == [
        {"kind": "server_kill", "target": "worker-0", "at_s": 10.0, "first_success_s": 0.5},
        {"kind": "postgres_restart", "target": "postgres", "at_s": 11.0, "first_success_s": 2.25},
    ]
    summary = fault_summary(rows)
    assert summary["server_kill"]["first_success_p50_s"] == 0.5
    assert summary["channel_sim_restart"] == {
        "count": 0,
        "first_success_p50_s": None,
        "first_success_max_s": None,
        "without_success": 0,
    }


def test_chaos_flags_without_chaos_and_chaos_against_a_running_server_are_refused():
    alone = scenic("loadtest", "--kill-every", "5")
    assert alone.returncode == 2
    assert "go with --chaos" in the_line(alone)
    remote = scenic("loadtest", "--chaos", "--server", "ws://127.0.0.1:1", "--dsn", "x")
    assert remote.returncode == 2
    assert "leave out --server" in the_line(remote)


def test_a_short_chaos_run_kills_and_restarts_everything_and_loses_nothing(tmp_path):
    # the smoke mix (every misbehaviour, rentals) for 20 s: 3 kills -9 of two workers in
    # turn, one PostgreSQL crash restart, one channel-sim restart, its link dropping
    profile = attrs.evolve(load_profile("smoke"), duration_s=20)
    plan = ChaosPlan(kill_every_s=5.0, server_workers=2, pg_restarts=1, sim_drop_every_s=4.0)
    assert run_profile(profile, tmp_path, progress=False, chaos=plan)
    report = json.loads((tmp_path / "report.json").read_text())
    chaos = report["summary"]["chaos"]
    by_kind = chaos["by_kind"]
    assert by_kind["server_kill"]["count"] == 3
    assert by_kind["postgres_restart"]["count"] == 1
    assert by_kind["channel_sim_restart"]["count"] == 1
    assert chaos["acknowledged_writes_lost"] == 0
    assert chaos["requests_answered"] > 0 and chaos["requests_sent"] >= chaos["requests_answered"]
    assert chaos["refund_waits"]["pending"] == 0
    assert report["audit"]["ok"]
    names = {c["name"] for c in report["audit"]["checks"]}
    assert names >= {
        "collected_once",
        "ledger_balances",
        "tickets_within_entitlement",
        "ticket_use_matches_scans",
        "acknowledged_orders_recorded",
        "acknowledged_grants_recorded",
        "acknowledged_denials_recorded",
        "acknowledged_cash_recorded",
        "refunds_confirmed",
        "settled_deposits_released_once",
    }
    text = (tmp_path / "report.md").read_text()
    assert "## Chaos" in text and "acknowledged writes lost (must be 0) | **0**" in text
    assert (tmp_path / "chaos.png").read_bytes().startswith(b"\x89PNG")


def test_the_chaos_profile_is_the_golden_week_mix_for_five_minutes_with_faster_gates():
    chaos, golden = load_profile("chaos"), load_profile("golden-week")
    assert chaos.duration_s == 300
    assert chaos.scans_per_gate_per_s == 17 > golden.scans_per_gate_per_s
    differ = {"name", "description", "duration_s", "seed", "scans_per_gate_per_s"}
    same = [f.name for f in attrs.fields(type(chaos)) if f.name not in differ]
    assert {name: getattr(chaos, name) for name in same} == {
        name: getattr(golden, name) for name in same
    }
