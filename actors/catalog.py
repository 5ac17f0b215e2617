"""The catalog as values: parse and validate a catalog TOML, pure, no I/O.

A catalog names the site and its time zone, the time slots of a day, the
capacity (visitors per whole day and per slot, with per-date overrides for
holidays), and the products with their price in fen, entries allowed, whether
they need a slot, the zones they admit to, and whether anti-passback applies.
:func:`parse_catalog` turns the TOML text into a :class:`Catalog` or raises
:class:`CatalogError` naming the offending entry.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from actors.errors import DomainError

PRODUCT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SLOT_ID = re.compile(r"[A-Za-z0-9]{1,8}")
#: the capacity row of whole-day tickets
WHOLE_DAY = ""


class CatalogError(DomainError):
    """The catalog file is not valid; the message names the entry and the problem."""

    code = "bad_catalog"


@attrs.frozen
class Product:
    """A ticket product."""

    product_id: str
    name_zh: str
    name_en: str
    price_fen: int
    entries_allowed: int | None  # None: unlimited entries on its day
    needs_slot: bool
    zones: tuple[str, ...]
    anti_passback: bool


@attrs.frozen
class Slot:
    """A time slot of the visit day, local time."""

    slot_id: str
    starts: time
    ends: time


@attrs.frozen
class Capacity:
    """Visitors admitted per whole day and per slot, by default or on one date."""

    daily: int
    per_slot: dict[str, int]


@attrs.frozen
class Gate:
    """A gate: the zone it admits to and, optionally, the only products it takes."""

    gate_id: str
    zone: str
    name: str
    products: tuple[str, ...] | None = None


#: the zone of a gate the catalog does not list
DEFAULT_ZONE = "main"


@attrs.frozen
class Catalog:
    """Everything a kiosk needs to sell and the server needs to cap sales."""

    name_zh: str
    name_en: str
    timezone: str
    slots: tuple[Slot, ...]
    default_capacity: Capacity
    date_capacity: dict[date, Capacity]
    products: tuple[Product, ...]
    gates: tuple[Gate, ...] = ()

    def gate(self, gate_id: str) -> Gate:
        """The gate ``gate_id`` as listed, or a gate of the main zone taking every product."""
        found = next((g for g in self.gates if g.gate_id == gate_id), None)
        return found or Gate(gate_id, DEFAULT_ZONE, gate_id)

    def product(self, product_id: str) -> Product | None:
        """The product called ``product_id``, or ``None``."""
        return next((p for p in self.products if p.product_id == product_id), None)

    def capacity_of(self, visit_date: date, slot: str) -> int:
        """How many visitors ``visit_date`` admits in ``slot`` (``WHOLE_DAY`` for the day)."""
        rule = self.date_capacity.get(visit_date, self.default_capacity)
        return rule.daily if slot == WHOLE_DAY else rule.per_slot.get(slot, 0)


def parse_catalog(text: str) -> Catalog:
    """Parse catalog TOML ``text``; raises :class:`CatalogError` on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"not valid TOML: {exc}") from None
    site = _table(data, "site")
    timezone = _text(site, "timezone", "site")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CatalogError(f"site.timezone {timezone!r} is not a known time zone") from None
    slots = tuple(_slot(entry, i) for i, entry in enumerate(_list(data, "slots")))
    slot_ids = [slot.slot_id for slot in slots]
    if len(set(slot_ids)) != len(slot_ids):
        raise CatalogError("two slots have the same id")
    capacity = _table(data, "capacity")
    default = _capacity(capacity, "capacity", slot_ids)
    dates: dict[date, Capacity] = {}
    for i, entry in enumerate(_list(capacity, "dates")):
        where = f"capacity.dates[{i}]"
        day = entry.get("date")
        if not isinstance(day, date):
            raise CatalogError(f"{where}.date must be a date like 2026-10-01")
        dates[day] = _capacity(entry, where, slot_ids)
    products = tuple(
        _product(entry, i, slot_ids) for i, entry in enumerate(_list(data, "products"))
    )
    ids = [product.product_id for product in products]
    if not products:
        raise CatalogError("the catalog has no products")
    if len(set(ids)) != len(ids):
        raise CatalogError("two products have the same id")
    gates = tuple(_gate(entry, i, set(ids)) for i, entry in enumerate(_list(data, "gates")))
    if len({gate.gate_id for gate in gates}) != len(gates):
        raise CatalogError("two gates have the same id")
    return Catalog(
        _text(site, "name_zh", "site"),
        _text(site, "name_en", "site"),
        timezone,
        slots,
        default,
        dates,
        products,
        gates,
    )


def _gate(entry: dict, index: int, product_ids: set[str]) -> Gate:
    where = f"gates[{index}]"
    products = entry.get("products")
    if products is not None:
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            raise CatalogError(f"{where}.products must be a list of product ids")
        unknown = set(products) - product_ids
        if unknown:
            raise CatalogError(f"{where}.products names unknown products {sorted(unknown)}")
        products = tuple(products)
    gate_id = _text(entry, "id", where)
    return Gate(gate_id, _text(entry, "zone", where), entry.get("name", gate_id), products)


def _table(data: dict, key: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise CatalogError(f"missing table [{key}]")
    return value


def _list(data: dict, key: str) -> list[dict]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CatalogError(f"{key} must be a list of tables ([[{key}]])")
    return value


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}.{key} must be non-empty text")
    return value


def _count(data: dict, key: str, where: str, *, default: int | None = None) -> int:
    value = data.get(key, default)
    if type(value) is not int or value < 0:
        raise CatalogError(f"{where}.{key} must be a whole number, 0 or more")
    return value


def _slot(entry: dict, index: int) -> Slot:
    where = f"slots[{index}]"
    slot_id = _text(entry, "id", where)
    if not SLOT_ID.fullmatch(slot_id):
        raise CatalogError(f"{where}.id must be 1 to 8 letters or digits")
    try:
        starts = time.fromisoformat(_text(entry, "starts", where))
        ends = time.fromisoformat(_text(entry, "ends", where))
    except ValueError:
        raise CatalogError(f"{where} times must look like 08:00") from None
    if ends <= starts:
        raise CatalogError(f"{where} must end after it starts")
    return Slot(slot_id, starts, ends)


def _capacity(entry: dict, where: str, slot_ids: list[str]) -> Capacity:
    per_slot = entry.get("per_slot", {})
    if not isinstance(per_slot, dict):
        raise CatalogError(f"{where}.per_slot must be a table of slot = visitors")
    unknown = set(per_slot) - set(slot_ids)
    if unknown:
        raise CatalogError(f"{where}.per_slot names unknown slots {sorted(unknown)}")
    return Capacity(
        _count(entry, "daily", where),
        {slot: _count(per_slot, slot, f"{where}.per_slot") for slot in per_slot},
    )


def _product(entry: dict, index: int, slot_ids: list[str]) -> Product:
    where = f"products[{index}]"
    product_id = _text(entry, "id", where)
    if not PRODUCT_ID.fullmatch(product_id):
        raise CatalogError(f"{where}.id must be lower-case letters, digits, - or _")
    entries = entry.get("entries")
    if entries is not None and (type(entries) is not int or entries < 1):
        raise CatalogError(f"{where}.entries must be 1 or more, or left out for unlimited")
    needs_slot = entry.get("needs_slot", False)
    if needs_slot and not slot_ids:
        raise CatalogError(f"{where} needs a slot but the catalog has no slots")
    zones = entry.get("zones", ["main"])
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
        raise CatalogError(f"{where}.zones must be a non-empty list of zone names")
    flags = {
        key: entry.get(key, default)
        for key, default in (("needs_slot", False), ("anti_passback", True))
    }
    for key, value in flags.items():
        if type(value) is not bool:
            raise CatalogError(f"{where}.{key} must be true or false")
    return Product(
        product_id,
        _text(entry, "name_zh", where),
        _text(entry, "name_en", where),
        _count(entry, "price_fen", where),
        entries,
        flags["needs_slot"],
        tuple(zones),
        flags["anti_passback"],
    )
