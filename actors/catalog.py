"""The catalog as values: parse and validate a catalog TOML, pure, no I/O.

A catalog names the site and its time zone, the time slots of a day, the
capacity (visitors per whole day and per slot, with per-date overrides for
holidays), and the products with their price in fen, entries allowed, whether
they need a slot, the zones they admit to, whether anti-passback applies and
the rental items a ticket includes. The rental catalog sits beside them: the
item types (:class:`RentalItem`: a deposit, a pricing rule of
:class:`PerUse`, :class:`PerHour` or :class:`PerDay`, penalties), the units
that exist (:class:`RentalUnit`, each with its own id and label code) and
the terms every rental runs on (:class:`RentalTerms`: when rentals are due
back, how long an unpaid one holds its units). :func:`parse_catalog` turns
the TOML text into a :class:`Catalog` or raises :class:`CatalogError` naming
the offending entry.
"""

from __future__ import annotations

import enum
import re
import tomllib
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from actors.errors import DomainError

PRODUCT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SLOT_ID = re.compile(r"[A-Za-z0-9]{1,8}")
UNIT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: the most units one compact ``[[rental_items.units]]`` entry may make
MAX_UNITS_PER_ENTRY = 10000
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
    #: the rental items one ticket includes, (item id, units) each: their usage is
    #: covered by the ticket, their deposit is still due
    includes_rentals: tuple[tuple[str, int], ...] = ()


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


class PricingRule(enum.Enum):
    """How a rental item's usage is priced."""

    PER_USE = "per_use"
    PER_HOUR = "per_hour"
    PER_DAY = "per_day"


@attrs.frozen
class PerUse:
    """One price for each rental of a unit, however long it is out."""

    price_fen: int

    rule = PricingRule.PER_USE


@attrs.frozen
class PerHour:
    """A price per started hour out, with a free grace period, an overtime rate and a daily cap.

    A unit back within ``grace_minutes`` of its pickup costs nothing;
    otherwise every started hour counts, the first ``included_hours`` at
    ``hourly_fen`` and each one after at ``overtime_hourly_fen``
    (``included_hours`` ``None``: every hour at ``hourly_fen``). Each
    started 24 hours since the pickup cost at most ``daily_cap_fen``
    (``None``: no cap). :func:`actors.rentals.pricing.usage_fen` is the
    arithmetic.
    """

    hourly_fen: int
    grace_minutes: int = 0
    included_hours: int | None = None
    overtime_hourly_fen: int | None = None
    daily_cap_fen: int | None = None

    rule = PricingRule.PER_HOUR


@attrs.frozen
class PerDay:
    """A price per rental day, for rentals over one or more days."""

    daily_fen: int

    rule = PricingRule.PER_DAY


Pricing = PerUse | PerHour | PerDay


@attrs.frozen
class RentalItem:
    """A type of rental equipment: its deposit, its pricing rule and its penalties.

    ``prepaid``: the usage is paid in advance with the deposit (per use and
    per day rules only); otherwise it is charged at return from the
    deposit. ``late_fen_per_hour`` is charged per unit for every started
    hour past the rental's due time, ``damage_fen`` for a unit returned
    damaged, ``lost_fen`` for a unit declared lost.
    """

    item_id: str
    name_zh: str
    name_en: str
    area: str
    deposit_fen: int
    pricing: Pricing
    prepaid: bool
    late_fen_per_hour: int
    damage_fen: int
    lost_fen: int


@attrs.frozen
class RentalUnit:
    """One unit of equipment that exists: its id, the code on its label, and its item type.

    Whether it is available, out, in maintenance or lost is runtime state,
    not the catalog's.
    """

    unit_id: str
    label: str
    item_id: str


@attrs.frozen
class RentalTerms:
    """The terms every rental of the site runs on.

    A rental is due back at ``due_back`` (local time) on its last day; an
    unpaid rental holds its units ``hold_minutes``; a rental runs at most
    ``max_days`` days and holds at most ``max_units`` units.
    """

    due_back: time
    hold_minutes: int = 15
    max_days: int = 7
    max_units: int = 20


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
    rental_items: tuple[RentalItem, ...] = ()
    rental_units: tuple[RentalUnit, ...] = ()
    #: ``None`` when the site rents nothing
    rental_terms: RentalTerms | None = None
    #: the units by label code, for the desks' scans (made once, from ``rental_units``)
    _units_by_label: dict[str, RentalUnit] = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(
            lambda self: {unit.label: unit for unit in self.rental_units}, takes_self=True
        ),
    )

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

    def rental_item(self, item_id: str) -> RentalItem | None:
        """The rental item type called ``item_id``, or ``None``."""
        return next((i for i in self.rental_items if i.item_id == item_id), None)

    def unit_by_label(self, label: str) -> RentalUnit | None:
        """The unit whose label code is ``label``, or ``None``."""
        return self._units_by_label.get(label)

    def stock_of(self, item_id: str) -> int:
        """How many units of item type ``item_id`` exist (whatever their state)."""
        return sum(1 for unit in self.rental_units if unit.item_id == item_id)


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
    rental_items = tuple(_rental_item(e, i) for i, e in enumerate(_list(data, "rental_items")))
    item_ids = [item.item_id for item in rental_items]
    if len(set(item_ids)) != len(item_ids):
        raise CatalogError("two rental_items have the same id")
    rental_units = tuple(
        unit
        for i, entry in enumerate(_list(data, "rental_items"))
        for unit in _units(entry, f"rental_items[{i}]", rental_items[i].item_id)
    )
    _check_units_unique(rental_units)
    rental_terms = _rental_terms(data, bool(rental_items))
    products = tuple(
        _product(entry, i, slot_ids, set(item_ids))
        for i, entry in enumerate(_list(data, "products"))
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
        rental_items,
        rental_units,
        rental_terms,
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


def _product(entry: dict, index: int, slot_ids: list[str], item_ids: set[str]) -> Product:
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
        _includes_rentals(entry, where, item_ids),
    )


def _includes_rentals(entry: dict, where: str, item_ids: set[str]) -> tuple[tuple[str, int], ...]:
    included = entry.get("includes_rentals", {})
    if not isinstance(included, dict):
        raise CatalogError(f"{where}.includes_rentals must be a table of rental item = units")
    unknown = set(included) - item_ids
    if unknown:
        raise CatalogError(f"{where}.includes_rentals names unknown rental items {sorted(unknown)}")
    for item_id, units in included.items():
        if type(units) is not int or units < 1:
            raise CatalogError(f"{where}.includes_rentals.{item_id} must be 1 or more units")
    return tuple(sorted(included.items()))


#: the keys each pricing rule takes, besides ``pricing`` itself
_PRICING_KEYS = {
    PricingRule.PER_USE: {"price_fen"},
    PricingRule.PER_HOUR: {
        "hourly_fen",
        "grace_minutes",
        "included_hours",
        "overtime_hourly_fen",
        "daily_cap_fen",
    },
    PricingRule.PER_DAY: {"daily_fen"},
}


def _rental_item(entry: dict, index: int) -> RentalItem:
    where = f"rental_items[{index}]"
    item_id = _text(entry, "id", where)
    if not PRODUCT_ID.fullmatch(item_id):
        raise CatalogError(f"{where}.id must be lower-case letters, digits, - or _")
    deposit = _count(entry, "deposit_fen", where)
    if deposit < 1:
        raise CatalogError(
            f"{where}.deposit_fen must be 1 or more: every rental is against a deposit"
        )
    pricing = _pricing(entry, where)
    prepaid = entry.get("prepaid", not isinstance(pricing, PerHour))
    if type(prepaid) is not bool:
        raise CatalogError(f"{where}.prepaid must be true or false")
    if prepaid and isinstance(pricing, PerHour):
        raise CatalogError(f"{where}.prepaid: per_hour usage is known only at return; leave it out")
    return RentalItem(
        item_id,
        _text(entry, "name_zh", where),
        _text(entry, "name_en", where),
        _text(entry, "area", where) if "area" in entry else DEFAULT_ZONE,
        deposit,
        pricing,
        prepaid,
        _count(entry, "late_fen_per_hour", where, default=0),
        _count(entry, "damage_fen", where, default=0),
        _count(entry, "lost_fen", where),
    )


def _pricing(entry: dict, where: str) -> Pricing:
    name = entry.get("pricing")
    try:
        rule = PricingRule(name)
    except ValueError:
        choices = ", ".join(f'"{r.value}"' for r in PricingRule)
        raise CatalogError(f"{where}.pricing must be one of {choices}") from None
    for other, keys in _PRICING_KEYS.items():
        for key in sorted(keys - _PRICING_KEYS[rule]):
            if key in entry:
                raise CatalogError(f'{where}.{key} applies only to pricing = "{other.value}"')
    if rule is PricingRule.PER_USE:
        return PerUse(_count(entry, "price_fen", where))
    if rule is PricingRule.PER_DAY:
        return PerDay(_count(entry, "daily_fen", where))
    included = entry.get("included_hours")
    overtime = entry.get("overtime_hourly_fen")
    if (included is None) != (overtime is None):
        raise CatalogError(
            f"{where}.included_hours and overtime_hourly_fen go together: give both or neither"
        )
    if included is not None and (type(included) is not int or included < 1):
        raise CatalogError(f"{where}.included_hours must be 1 or more")
    cap = entry.get("daily_cap_fen")
    if cap is not None and (type(cap) is not int or cap < 1):
        raise CatalogError(f"{where}.daily_cap_fen must be 1 or more, or left out for no cap")
    return PerHour(
        _count(entry, "hourly_fen", where),
        _count(entry, "grace_minutes", where, default=0),
        included,
        None if overtime is None else _count(entry, "overtime_hourly_fen", where),
        cap,
    )


def _units(entry: dict, where: str, item_id: str) -> list[RentalUnit]:
    units: list[RentalUnit] = []
    for i, spec in enumerate(_list(entry, "units")):
        at = f"{where}.units[{i}]"
        if "id" in spec and "prefix" in spec:
            raise CatalogError(f"{at} gives id and prefix: one unit by id, or many by prefix")
        if "id" in spec:
            unit_id = _unit_id(spec, "id", at)
            label = _label(spec.get("label", unit_id), f"{at}.label")
            units.append(RentalUnit(unit_id, label, item_id))
            continue
        if "prefix" not in spec:
            raise CatalogError(f"{at} needs an id (one unit) or a prefix and a count (many)")
        prefix = _unit_id(spec, "prefix", at)
        count = _count(spec, "count", at)
        if not 1 <= count <= MAX_UNITS_PER_ENTRY:
            raise CatalogError(f"{at}.count must be 1 to {MAX_UNITS_PER_ENTRY}")
        start = _count(spec, "start", at, default=1)
        last = start + count - 1
        digits = _count(spec, "digits", at, default=max(3, len(str(last))))
        if len(str(last)) > digits:
            raise CatalogError(f"{at}.digits: {last} needs {len(str(last))} digits")
        label_prefix = spec.get("label_prefix", prefix)
        if not isinstance(label_prefix, str):
            raise CatalogError(f"{at}.label_prefix must be text")
        for n in range(start, last + 1):
            unit_id = f"{prefix}{n:0{digits}d}"
            if not UNIT_ID.fullmatch(unit_id):
                raise CatalogError(f"{at}: unit id {unit_id} is longer than 32 characters")
            units.append(RentalUnit(unit_id, _label(f"{label_prefix}{n:0{digits}d}", at), item_id))
    if not units:
        raise CatalogError(f"{where} has no units: list them in [[rental_items.units]]")
    return units


def _unit_id(spec: dict, key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not UNIT_ID.fullmatch(value):
        raise CatalogError(f"{where}.{key} must be 1 to 32 letters, digits, - or _")
    return value


def _label(value: object, where: str) -> str:
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise CatalogError(f"{where}: a label must be 1 to 64 letters, digits, '.', - or _")
    return value


def _check_units_unique(units: tuple[RentalUnit, ...]) -> None:
    seen_ids: set[str] = set()
    seen_labels: set[str] = set()
    for unit in units:
        if unit.unit_id in seen_ids:
            raise CatalogError(f"two rental units have the id {unit.unit_id}")
        if unit.label in seen_labels:
            raise CatalogError(f"two rental units have the label {unit.label}")
        seen_ids.add(unit.unit_id)
        seen_labels.add(unit.label)


def _rental_terms(data: dict, renting: bool) -> RentalTerms | None:
    if "rentals" not in data:
        if renting:
            raise CatalogError("missing table [rentals]: rental_items need its due_back time")
        return None
    terms = _table(data, "rentals")
    try:
        due_back = time.fromisoformat(_text(terms, "due_back", "rentals"))
    except ValueError:
        raise CatalogError("rentals.due_back must look like 17:30") from None
    bounded = {}
    for key, default, low in (("hold_minutes", 15, 1), ("max_days", 7, 1), ("max_units", 20, 1)):
        value = _count(terms, key, "rentals", default=default)
        if value < low:
            raise CatalogError(f"rentals.{key} must be {low} or more")
        bounded[key] = value
    return RentalTerms(due_back, **bounded)
