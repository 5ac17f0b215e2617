"""Load test profiles: readable TOML files saying how many devices, how fast, how naughty.

See ``loadtest/profiles/*.toml``. :func:`load_profile` takes a bundled
profile's name (``smoke``, ``golden-week``) or a path, and raises
``ValueError`` naming the bad field.
"""

from __future__ import annotations

import itertools
import tomllib
from importlib import resources
from pathlib import Path

import attrs

from loadtest.rental_profile import RentalsProfile, parse_rentals


@attrs.frozen
class Profile:
    """One scenario: its size, its arrival curve and its mix of behaviours."""

    name: str
    description: str
    duration_s: float
    seed: int
    order_ttl_s: float
    duplicate_rate: float
    max_delay_s: float
    kiosks: int
    counters: int
    gates: int
    orders_per_s: float
    peak: tuple[tuple[float, float], ...]
    tickets_per_order: tuple[int, int]
    counter_share: float
    double_tap: float
    pay_both: float
    pay_late: float
    refund_one: float
    other_day: float
    scans_per_gate_per_s: float
    presold: int
    rescan: float
    forged: float
    exit: float
    no_walk: float
    rental_desks: int = 0
    rentals: RentalsProfile = attrs.field(factory=RentalsProfile)

    def multiplier(self, elapsed_s: float) -> float:
        """The peak curve at ``elapsed_s``: linear between the profile's points."""
        fraction = min(max(elapsed_s / self.duration_s, 0.0), 1.0)
        points = self.peak
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if x0 <= fraction <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (fraction - x0) / (x1 - x0)
        return points[-1][1]


def bundled_profiles() -> list[str]:
    """The names of the profiles that come with scenic-gate."""
    folder = resources.files("loadtest") / "profiles"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a profile file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        text, name = path.read_text(encoding="utf-8"), path.stem
    else:
        if name_or_path not in bundled_profiles():
            raise ValueError(
                f"no profile {name_or_path!r}; bundled: {', '.join(bundled_profiles())}"
            )
        folder = resources.files("loadtest") / "profiles"
        text, name = (folder / f"{name_or_path}.toml").read_text(encoding="utf-8"), name_or_path
    return parse_profile(name, text)


def parse_profile(name: str, text: str) -> Profile:
    """Parse a profile's TOML text; raises ``ValueError`` naming the bad field."""
    data = tomllib.loads(text)

    def section(key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise ValueError(f"[{key}] must be a table")
        return value

    unknown = sorted(set(data) - {"run", "server", "devices", "sales", "scans", "rentals"})
    if unknown:
        raise ValueError(f"[{unknown[0]}] is not a profile table")
    run, server, devices = section("run"), section("server"), section("devices")
    sales, scans = section("sales"), section("scans")

    def number(table: dict, key: str, where: str, default: float, low: float, high: float):
        value = table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ValueError(f"{where}.{key} must be a number from {low} to {high}")
        return value

    peak = sales.get("peak", [[0.0, 1.0], [1.0, 1.0]])
    if (
        not isinstance(peak, list)
        or len(peak) < 2
        or not all(isinstance(p, list) and len(p) == 2 for p in peak)
        or [p[0] for p in peak] != sorted(p[0] for p in peak)
    ):
        raise ValueError("sales.peak must be [[fraction, multiplier], ...] with rising fractions")
    tickets = sales.get("tickets_per_order", [1, 4])
    if not (
        isinstance(tickets, list) and len(tickets) == 2 and 1 <= tickets[0] <= tickets[1] <= 200
    ):
        raise ValueError("sales.tickets_per_order must be [least, most] within 1..200")
    share = {"low": 0.0, "high": 1.0}
    rentals = parse_rentals(data.get("rentals", {}), demo_rental_items())
    rental_desks = int(number(devices, "rental_desks", "devices", 0, 0, 500))
    if rentals.share > 0 and rental_desks == 0:
        raise ValueError("devices.rental_desks must be at least 1 when rentals.share > 0")
    return Profile(
        name=name,
        description=str(run.get("description", name)),
        duration_s=number(run, "duration_s", "run", 30, 1, 24 * 3600),
        seed=int(number(run, "seed", "run", 1, 0, 2**31)),
        order_ttl_s=number(server, "order_ttl_s", "server", 900, 1, 86400),
        duplicate_rate=number(server, "duplicate_rate", "server", 0.0, **share),
        max_delay_s=number(server, "max_delay_s", "server", 0.0, 0, 600),
        kiosks=int(number(devices, "kiosks", "devices", 2, 0, 500)),
        counters=int(number(devices, "counters", "devices", 1, 0, 500)),
        gates=int(number(devices, "gates", "devices", 2, 0, 500)),
        orders_per_s=number(sales, "orders_per_s", "sales", 1, 0, 100_000),
        peak=tuple((float(x), float(y)) for x, y in peak),
        tickets_per_order=(int(tickets[0]), int(tickets[1])),
        counter_share=number(sales, "counter_share", "sales", 0.0, **share),
        double_tap=number(sales, "double_tap", "sales", 0.0, **share),
        pay_both=number(sales, "pay_both", "sales", 0.0, **share),
        pay_late=number(sales, "pay_late", "sales", 0.0, **share),
        refund_one=number(sales, "refund_one", "sales", 0.0, **share),
        other_day=number(sales, "other_day", "sales", 0.0, **share),
        scans_per_gate_per_s=number(scans, "per_gate_per_s", "scans", 1, 0, 100_000),
        presold=int(number(scans, "presold", "scans", 0, 0, 1_000_000)),
        rescan=number(scans, "rescan", "scans", 0.0, **share),
        forged=number(scans, "forged", "scans", 0.0, **share),
        exit=number(scans, "exit", "scans", 0.0, **share),
        no_walk=number(scans, "no_walk", "scans", 0.0, **share),
        rental_desks=rental_desks,
        rentals=rentals,
    )


def demo_rental_items() -> dict[str, int]:
    """The demo park's rental items (the park a load test sells) and how many units each has."""
    from actors.catalog import parse_catalog
    from server.site import demo_catalog_source

    catalog = parse_catalog(demo_catalog_source())
    counts: dict[str, int] = {item.item_id: 0 for item in catalog.rental_items}
    for unit in catalog.rental_units:
        counts[unit.item_id] += 1
    return counts
