"""The rental catalog: item types, pricing, units, bundles and terms parse; mistakes are named."""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path

import pytest

from actors.catalog import (
    CatalogError,
    PerDay,
    PerHour,
    PerUse,
    RentalTerms,
    RentalUnit,
    parse_catalog,
)
from actors.rentals.pricing import hourly_usage_fen, prepaid_unit_fen
from server.site import demo_catalog_source

BASE = """
[site]
name_zh = "园"
name_en = "Park"
timezone = "Asia/Shanghai"
[capacity]
daily = 100
[[products]]
id = "adult"
name_zh = "成人票"
name_en = "Adult"
price_fen = 12000
"""

RENTALS = """
[rentals]
due_back = "17:30"
[[rental_items]]
id = "boat"
name_zh = "船"
name_en = "Boat"
deposit_fen = 50000
pricing = "per_hour"
hourly_fen = 8000
grace_minutes = 10
lost_fen = 800000
[[rental_items.units]]
id = "BOAT-01"
[[rental_items]]
id = "skis"
name_zh = "雪板"
name_en = "Skis"
deposit_fen = 80000
pricing = "per_day"
daily_fen = 12000
lost_fen = 300000
[[rental_items.units]]
prefix = "SKI-"
count = 3
"""


def test_a_catalog_without_rentals_rents_nothing():
    catalog = parse_catalog(BASE)
    assert (catalog.rental_items, catalog.rental_units, catalog.rental_terms) == ((), (), None)
    assert catalog.product("adult").includes_rentals == ()


def test_rental_items_take_their_defaults():
    catalog = parse_catalog(BASE + RENTALS)
    boat, skis = catalog.rental_items
    assert catalog.rental_terms == RentalTerms(time(17, 30), 15, 7, 20)
    assert boat.pricing == PerHour(8000, 10, None, None, None)
    assert (boat.prepaid, boat.area, boat.late_fen_per_hour, boat.damage_fen) == (
        False,
        "main",
        0,
        0,
    )
    assert skis.pricing == PerDay(12000) and skis.prepaid
    assert catalog.rental_units == (
        RentalUnit("BOAT-01", "BOAT-01", "boat"),
        RentalUnit("SKI-001", "SKI-001", "skis"),
        RentalUnit("SKI-002", "SKI-002", "skis"),
        RentalUnit("SKI-003", "SKI-003", "skis"),
    )
    assert catalog.stock_of("skis") == 3 and catalog.stock_of("helmet") == 0
    assert catalog.unit_by_label("SKI-002").unit_id == "SKI-002"
    assert catalog.unit_by_label("SKI-004") is None


def test_compact_units_number_from_start_with_their_width_and_label_prefix():
    text = (BASE + RENTALS).replace(
        'prefix = "SKI-"\ncount = 3',
        'prefix = "SKI-"\ncount = 3\nstart = 98\ndigits = 4\nlabel_prefix = "8801"',
    )
    units = parse_catalog(text).rental_units[1:]
    assert [(u.unit_id, u.label) for u in units] == [
        ("SKI-0098", "88010098"),
        ("SKI-0099", "88010099"),
        ("SKI-0100", "88010100"),
    ]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (('due_back = "17:30"', 'due_back = "late"'), "rentals.due_back"),
        (('due_back = "17:30"', 'due_back = "17:30"\nhold_minutes = 0'), "rentals.hold_minutes"),
        (("[rentals]", "[rentalz]"), "missing table [rentals]"),
        (('id = "boat"', 'id = "Boat!"'), "rental_items[0].id"),
        (("deposit_fen = 50000", "deposit_fen = 0"), "rental_items[0].deposit_fen"),
        (('pricing = "per_hour"', 'pricing = "per_minute"'), "rental_items[0].pricing"),
        (("hourly_fen = 8000", "hourly_fen = 8000\nprepaid = true"), "rental_items[0].prepaid"),
        (("hourly_fen = 8000", "hourly_fen = 8000\nprepaid = 1"), "rental_items[0].prepaid"),
        (("hourly_fen = 8000", "hourly_fen = 8000\ndaily_fen = 1"), 'only to pricing = "per_day"'),
        (("daily_fen = 12000", "daily_fen = 12000\ngrace_minutes = 5"), "rental_items[1].grace"),
        (("hourly_fen = 8000", "hourly_fen = 8000\nincluded_hours = 2"), "go together"),
        (
            ("hourly_fen = 8000", "hourly_fen = 8000\nincluded_hours = 0\novertime_hourly_fen = 1"),
            "rental_items[0].included_hours",
        ),
        (("hourly_fen = 8000", "hourly_fen = 8000\ndaily_cap_fen = 0"), "daily_cap_fen"),
        (("lost_fen = 800000", "lost = 800000"), "rental_items[0].lost_fen"),
        (('id = "BOAT-01"', 'id = "BOAT 01"'), "rental_items[0].units[0].id"),
        (('id = "BOAT-01"', 'id = "BOAT-01"\nprefix = "B"'), "id and prefix"),
        (('id = "BOAT-01"', 'label = "x"'), "needs an id"),
        (("count = 3", "count = 0"), "rental_items[1].units[0].count"),
        (("count = 3", "count = 3\ndigits = 0"), "rental_items[1].units[0].digits"),
        (('id = "BOAT-01"', 'id = "BOAT-01"\nlabel = "bad label"'), "units[0].label"),
        (('id = "BOAT-01"', 'id = "SKI-002"'), "two rental units have the id SKI-002"),
        (('id = "BOAT-01"', 'id = "BOAT-01"\nlabel = "SKI-001"'), "the label SKI-001"),
        (('[[rental_items.units]]\nid = "BOAT-01"', ""), "rental_items[0] has no units"),
        (('id = "skis"', 'id = "boat"'), "two rental_items have the same id"),
    ],
)
def test_rental_catalog_mistakes_are_named(change, fragment):
    old, new = change
    text = BASE + RENTALS
    assert old in text
    with pytest.raises(CatalogError) as refused:
        parse_catalog(text.replace(old, new, 1))
    assert fragment in refused.value.message


@pytest.mark.parametrize(
    ("bundle", "fragment"),
    [
        ("includes_rentals = { helmet = 1 }", "unknown rental items ['helmet']"),
        ("includes_rentals = { skis = 0 }", "products[0].includes_rentals.skis"),
        ('includes_rentals = ["skis"]', "products[0].includes_rentals must be a table"),
    ],
)
def test_bundle_mistakes_are_named(bundle, fragment):
    text = (BASE + RENTALS).replace("price_fen = 12000", f"price_fen = 12000\n{bundle}")
    with pytest.raises(CatalogError) as refused:
        parse_catalog(text)
    assert fragment in refused.value.message


def test_a_bundle_names_its_items_and_units_per_ticket():
    text = (BASE + RENTALS).replace(
        "price_fen = 12000", "price_fen = 12000\nincludes_rentals = { skis = 2, boat = 1 }"
    )
    assert parse_catalog(text).product("adult").includes_rentals == (("boat", 1), ("skis", 2))


def test_the_demo_park_rents_a_ski_area_and_a_boat_dock():
    catalog = parse_catalog(demo_catalog_source())
    areas = {item.item_id: item.area for item in catalog.rental_items}
    assert areas == {
        "skis": "ski",
        "snowboard": "ski",
        "boots": "ski",
        "helmet": "ski",
        "boat": "lake",
        "life-jacket": "lake",
    }
    assert catalog.rental_item("boat").pricing == PerHour(8000, 10, 2, 10000, 36000)
    assert catalog.rental_item("life-jacket").pricing == PerUse(0)
    assert catalog.product("ski-day-gear").includes_rentals == (("boots", 1), ("skis", 1))
    assert [catalog.stock_of(i) for i in areas] == [60, 30, 90, 60, 12, 48]
    assert catalog.unit_by_label("DOCK-BOAT-12").unit_id == "BOAT-12"
    assert catalog.unit_by_label("880101060").unit_id == "SKI-060"
    # the ticket side is what it was: the gate tests pin its products and gates
    assert len(catalog.gates) == 5 and catalog.gate("G-SKI-1").products == ("ski-4h",)


def _doc_rental_example() -> str:
    text = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```toml rentals\n(.*?)```", text, re.S)
    return example


def test_the_rental_example_in_docs_catalog_md_parses_and_costs_as_it_says():
    catalog = parse_catalog(_doc_rental_example())
    skis, boots, boat = catalog.rental_items
    assert skis.deposit_fen + boots.deposit_fen == 100000
    assert prepaid_unit_fen(skis, 2) + prepaid_unit_fen(boots, 2) == 32000
    assert catalog.product("ski-day-gear").includes_rentals == (("boots", 1), ("skis", 1))
    assert [u.label for u in catalog.rental_units] == [
        "880101001",
        "880101002",
        "880101003",
        "BOOT-42",
        "DOCK-BOAT-01",
    ]
    assert not boat.prepaid and boat.deposit_fen == 50000
    used = hourly_usage_fen(boat.pricing, timedelta(hours=2, minutes=30))
    assert (used, boat.deposit_fen - used) == (26000, 24000)
    assert catalog.rental_terms.due_back == time(17, 30)


def test_the_per_hour_worked_example_in_docs_catalog_md_recomputes():
    rule = PerHour(8000, 10, 2, 10000, 36000)
    minutes = timedelta(minutes=1)
    assert hourly_usage_fen(rule, 10 * minutes) == 0
    assert hourly_usage_fen(rule, 10 * minutes + timedelta(seconds=1)) == 8000
    assert hourly_usage_fen(rule, timedelta(hours=2, minutes=30)) == 26000
    assert hourly_usage_fen(rule, timedelta(hours=4)) == 36000
    assert hourly_usage_fen(rule, timedelta(hours=6)) == 36000
    assert hourly_usage_fen(rule, timedelta(hours=25)) == 46000
