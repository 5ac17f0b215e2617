"""The load test: profiles parse, the smoke profile runs clean and reports, the CLI works."""

from __future__ import annotations

import json

import attrs
import pytest

from loadtest.profile import bundled_profiles, load_profile, parse_profile
from loadtest.run import run_profile


def test_the_bundled_profiles_parse():
    assert {"smoke", "golden-week"} <= set(bundled_profiles())
    smoke = load_profile("smoke")
    assert smoke.duration_s < 30
    golden = load_profile("golden-week")
    assert golden.multiplier(0.35 * golden.duration_s) == pytest.approx(2.0)
    assert golden.multiplier(0) == pytest.approx(0.3)
    assert golden.multiplier(golden.duration_s * 2) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[run]\nduration_s = -1", "run.duration_s"),
        ("[sales]\ndouble_tap = 2", "sales.double_tap"),
        ("[sales]\npeak = [[0.5, 1], [0.1, 1]]", "sales.peak"),
        ("[sales]\ntickets_per_order = [3, 1]", "sales.tickets_per_order"),
        ("[scans]\nper_gate_per_s = 'fast'", "scans.per_gate_per_s"),
    ],
)
def test_bad_profiles_name_the_field(text, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        parse_profile("bad", text)


def test_an_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="no profile"):
        load_profile("rush-hour-on-mars")


def test_the_smoke_profile_runs_on_its_own_server_and_its_audit_holds(tmp_path):
    profile = attrs.evolve(load_profile("smoke"), duration_s=8)
    assert run_profile(profile, tmp_path, progress=False)
    report = json.loads((tmp_path / "report.json").read_text())
    kinds = report["summary"]["kinds"]
    assert kinds["ticket.scan"]["count"] > 0 and kinds["order.create"]["count"] > 0
    assert kinds["payment.confirmed"]["count"] > 0
    assert report["audit"]["ok"]
    assert {c["name"] for c in report["audit"]["checks"]} >= {
        "collected_once",
        "ledger_balances",
        "tickets_within_entitlement",
        "acknowledged_grants_recorded",
    }
    assert (tmp_path / "throughput.png").read_bytes().startswith(b"\x89PNG")
    assert "scenic loadtest: smoke" in (tmp_path / "report.md").read_text()


async def test_the_smoke_profile_drives_a_running_server_through_its_dsn(dsn, db, tmp_path):
    import trio

    from tests.helpers import running_server

    profile = attrs.evolve(load_profile("smoke"), duration_s=4, order_ttl_s=900, pay_late=0)
    async with running_server(dsn, db, {}) as server:
        ok = await trio.to_thread.run_sync(
            lambda: run_profile(profile, tmp_path, server=server.url, dsn=dsn, progress=False)
        )
    assert ok
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["kinds"]["payment.confirmed"]["count"] > 0
    assert await db.fetchval("SELECT count(*) FROM devices WHERE device_id LIKE 'G-LT-%'") == 4
