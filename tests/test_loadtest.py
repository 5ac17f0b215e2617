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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rentals]\nshare = 1.5", r"^rentals\.share must be a number from 0\.0 to 1\.0$"),
        ("[rentals]\nshares = 0.1", r"^rentals\.shares is not a rentals setting$"),
        (
            "[rentals]\n[[rentals.kits]]\nitems = { sled = 1 }",
            r"^rentals\.kits\[0\]\.items: the demo park rents no 'sled' \(it rents boat, ",
        ),
        (
            "[rentals]\n[[rentals.kits]]\nitems = { boat = 13 }",
            r"^rentals\.kits\[0\]\.items\.boat must be a whole number from 1 to 12$",
        ),
        (
            "[rentals]\nchannels = { wechat = 0.5, cash = 0.4 }",
            r"^rentals\.channels must add up to 1\.0$",
        ),
        ("[rentals]\nchannels = { paypal = 1.0 }", r"^rentals\.channels\.paypal: a deposit is"),
        (
            "[rentals]\npickups = [8, 14]\nreturns = [13, 17]",
            r"^rentals\.returns must start after rentals\.pickups end$",
        ),
        ("[rentals]\nreturns = [17, 13]", r"^rentals\.returns must be \[from, to\] hours"),
        (
            "[devices]\nrental_desks = 1\n[rentals]\nshare = 0.2",
            r"^rentals\.kits must list what visitors rent",
        ),
        (
            "[rentals]\nshare = 0.2\n[[rentals.kits]]\nitems = { skis = 1 }",
            r"^devices\.rental_desks must be at least 1 when rentals\.share > 0$",
        ),
        ("[rental]\nshare = 0.2", r"^\[rental\] is not a profile table$"),
    ],
)
def test_a_bad_rentals_section_is_refused_in_one_line(text, message):
    with pytest.raises(ValueError, match=message) as refused:
        parse_profile("bad", text)
    assert "\n" not in str(refused.value)


def test_the_bundled_profiles_rent_from_the_demo_park():
    for name in ("smoke", "golden-week"):
        profile = load_profile(name)
        assert profile.rentals.share > 0 and profile.rental_desks > 0
        items = {item for kit in profile.rentals.kits for item, _ in kit.items}
        assert {"skis", "boots", "boat", "life-jacket"} <= items
        assert profile.rentals.pickups[1] <= profile.rentals.returns[0]
        assert dict(profile.rentals.channels).keys() == {"wechat", "alipay", "cash", "card"}
        assert 0 < profile.rentals.preauth < 1


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
        "acknowledged_rentals_recorded",
        "acknowledged_settlements_recorded",
        "settled_deposits_released_once",
        "deposit_pool_matches_holds",
        "units_out_once",
        "freezes_resolved",
    }
    # renting visitors: made at kiosks and desks, paid every way, picked up, returned, settled
    counters = report["summary"]["counters"]
    assert counters["rental.settled"] > 0 and counters["rental.picked_up"] > 0
    assert counters.get("rental.held.preauth", 0) + counters.get("rental.held.cash", 0) > 0
    assert sum(n for k, n in counters.items() if k.startswith("rental.refund_confirmed.")) > 0
    for kind in ("rental.create", "rental.pickup", "rental.return", "rental.held"):
        assert kinds[kind]["count"] > 0 and kinds[kind]["errors"] == 0, kind
    settled = next(
        c for c in report["audit"]["checks"] if c["name"].endswith("settlements_recorded")
    )
    assert f"({counters['rental.settled']})" in settled["promise"]
    assert "## Rentals" in (tmp_path / "report.md").read_text()
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


def test_the_rentals_benchmark_deals_every_desk_its_own_units():
    from loadtest.rental_bench import units_by_desk

    shelves = units_by_desk(32)
    labels = [label for shelf in shelves for label in shelf]
    assert len(labels) == len(set(labels)) == 300  # the demo park's units, each on one shelf
    assert min(len(shelf) for shelf in shelves) >= 9
    with pytest.raises(ValueError, match="only 300 units"):
        units_by_desk(301)


def test_the_rentals_benchmark_settles_every_rental_and_its_checks_hold(capsys):
    from loadtest.cli import rentals_headline
    from loadtest.rental_bench import measure

    status, figures = measure(["--rentals", "40", "--desks", "4"])
    assert status == 0, capsys.readouterr().out
    assert figures["settled"] == 40 and figures["audit_ok"] and not figures["errors"]
    line = rentals_headline(figures, 4000.0)
    assert line.startswith("rentals settled: ") and "of the echo ceiling" in line


async def test_nobody_arrives_while_a_streams_rate_is_zero(autojump_clock):
    import trio

    from loadtest.metrics import Recorder
    from loadtest.scenario import Scenario

    profile = attrs.evolve(load_profile("smoke"), duration_s=10)
    scenario = Scenario(profile, Recorder(), [], [], [], None)
    arrivals: list[float] = []

    async def arrive(at: float) -> None:
        arrivals.append(at)

    began = trio.current_time()
    await scenario._arrivals(lambda elapsed: 0.0 if elapsed < 5 else 4.0, arrive, began)
    assert arrivals and min(arrivals) >= began + 5 and max(arrivals) < began + 10


def test_rentals_come_in_the_pickup_hours_at_their_share_of_the_sales():
    import random

    from actors.catalog import parse_catalog
    from loadtest.rentals import RentalVisitors
    from server.site import demo_catalog_source

    profile = load_profile("golden-week")  # pickups 08:00-11:00 of a day 08:00-17:30
    visitors = RentalVisitors(
        profile, None, [], [], None, None, parse_catalog(demo_catalog_source()), random.Random(1)
    )
    end_of_pickups = 3 / 9.5 * profile.duration_s
    assert visitors.rate(end_of_pickups + 0.01) == 0.0 and visitors.rate(end_of_pickups - 1) > 0
    # at the peak (0.35 of the run is after the pickups): 0.15 x 8 x multiplier / (3 / 9.5)
    at = 0.3 * profile.duration_s
    assert visitors.rate(at) == pytest.approx(0.15 * 8 * profile.multiplier(at) / (3 / 9.5))
