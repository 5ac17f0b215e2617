"""Catalog files: the demo park parses; every kind of mistake is named."""

from datetime import date
from importlib.resources import files

import pytest

from actors.catalog import WHOLE_DAY, CatalogError, parse_catalog

DEMO = files("server.catalog").joinpath("demo_park.toml").read_text()

MINIMAL = """
[site]
name_zh = "园"
name_en = "Park"
timezone = "Asia/Shanghai"
[[slots]]
id = "AM"
starts = "08:00"
ends = "12:00"
[capacity]
daily = 100
per_slot = { AM = 40 }
[[capacity.dates]]
date = 2026-10-01
daily = 50
[[products]]
id = "adult"
name_zh = "成人票"
name_en = "Adult"
price_fen = 12000
entries = 1
"""


def test_the_demo_park_parses_with_its_products_and_holiday_cap():
    catalog = parse_catalog(DEMO)
    assert catalog.product("adult").price_fen == 12000
    assert catalog.product("day-pass").entries_allowed is None
    assert catalog.product("adult-slot").needs_slot
    assert catalog.capacity_of(date(2026, 10, 1), WHOLE_DAY) == 15000
    assert catalog.capacity_of(date(2026, 10, 2), "AM") == 8000


def test_capacity_falls_back_to_the_default_and_unknown_slots_have_none():
    catalog = parse_catalog(MINIMAL)
    assert catalog.capacity_of(date(2026, 10, 1), WHOLE_DAY) == 50
    assert catalog.capacity_of(date(2026, 10, 1), "AM") == 0
    assert catalog.capacity_of(date(2026, 10, 2), "AM") == 40
    assert catalog.capacity_of(date(2026, 10, 2), "PM") == 0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (("price_fen = 12000", "price_fen = -1"), "products[0].price_fen"),
        (("price_fen = 12000", 'price_fen = "12"'), "products[0].price_fen"),
        (("entries = 1", "entries = 0"), "products[0].entries"),
        (('id = "adult"', 'id = "Adult Ticket"'), "products[0].id"),
        (('timezone = "Asia/Shanghai"', 'timezone = "Mars/Olympus"'), "site.timezone"),
        (('ends = "12:00"', 'ends = "07:00"'), "slots[0]"),
        (("per_slot = { AM = 40 }", "per_slot = { XX = 40 }"), "unknown slots"),
        (("date = 2026-10-01", 'date = "soon"'), "capacity.dates[0].date"),
        (("[site]", "[sight]"), "[site]"),
        (("daily = 100", "daily = 100\n[[["), "not valid TOML"),
    ],
)
def test_catalog_mistakes_are_named(change, fragment):
    old, new = change
    with pytest.raises(CatalogError) as refused:
        parse_catalog(MINIMAL.replace(old, new, 1))
    assert fragment in refused.value.message


def test_duplicate_products_are_refused():
    doubled = MINIMAL + MINIMAL[MINIMAL.index("[[products]]") :]
    with pytest.raises(CatalogError, match="same id"):
        parse_catalog(doubled)


def test_the_example_in_docs_catalog_md_parses_as_it_says():
    import re
    from datetime import date
    from pathlib import Path

    from actors.catalog import WHOLE_DAY

    text = (Path(__file__).parent.parent / "docs" / "catalog.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    catalog = parse_catalog(example)
    assert catalog.capacity_of(date(2026, 10, 1), WHOLE_DAY) == 15000
    assert catalog.capacity_of(date(2026, 10, 1), "AM") == 6000
    assert catalog.capacity_of(date(2026, 10, 2), WHOLE_DAY) == 20000
    assert catalog.capacity_of(date(2026, 10, 2), "AM") == 8000
    adult, morning = catalog.products
    assert (adult.zones, adult.anti_passback, adult.needs_slot) == (("main",), True, False)
    assert morning.needs_slot and morning.entries_allowed == 1
    assert catalog.gate("G-MAIN-1").name == "South entrance, lane 1"
    assert catalog.gate("G-OTHER").zone == "main"
