"""What the rental tests share: a small site that rents, and a way to run commands through the core.

:func:`step` does what the shell does with a command (decide, fill in the
voucher code, evolve, react) and also gives the ledger postings and memos,
so a test can state all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import attrs

from actors.catalog import parse_catalog
from actors.rentals.commands import (
    BundleFacts,
    ConfirmFreeze,
    ConfirmPayment,
    CreateRental,
    ItemRequest,
    PickUp,
    ReturnUnits,
    StartFreeze,
    StartPayment,
    UnitReturn,
)
from actors.rentals.domain import decide, evolve
from actors.rentals.effects import react
from actors.rentals.events import VoucherIssued
from actors.rentals.postings import memos_for, postings_for
from actors.rentals.settlement import FreshIds
from actors.rentals.state import Condition, Rental
from actors.rentals.vouchers import make_voucher
from actors.tickets.codes import SiteKey

SITE = """
[site]
name_zh = "测试园"
name_en = "Test Park"
timezone = "Asia/Shanghai"
[capacity]
daily = 1000
[[products]]
id = "adult"
name_zh = "成人票"
name_en = "Adult"
price_fen = 12000
[[products]]
id = "ski-gear"
name_zh = "滑雪含雪具"
name_en = "Ski day with gear"
price_fen = 46000
includes_rentals = { skis = 1, boots = 1 }

[rentals]
due_back = "17:30"
hold_minutes = 15
max_days = 3
max_units = 6

[[rental_items]]
id = "skis"
name_zh = "雪板"
name_en = "Skis"
deposit_fen = 80000
pricing = "per_day"
daily_fen = 12000
late_fen_per_hour = 3000
damage_fen = 40000
lost_fen = 300000
[[rental_items.units]]
prefix = "SKI-"
count = 3
label_prefix = "S"

[[rental_items]]
id = "boots"
name_zh = "雪鞋"
name_en = "Boots"
deposit_fen = 20000
pricing = "per_day"
daily_fen = 4000
late_fen_per_hour = 1000
damage_fen = 10000
lost_fen = 60000
[[rental_items.units]]
prefix = "BOOT-"
count = 3
label_prefix = "B"

[[rental_items]]
id = "boat"
name_zh = "船"
name_en = "Boat"
deposit_fen = 50000
pricing = "per_hour"
hourly_fen = 8000
grace_minutes = 10
included_hours = 2
overtime_hourly_fen = 10000
daily_cap_fen = 36000
late_fen_per_hour = 5000
damage_fen = 50000
lost_fen = 800000
[[rental_items.units]]
prefix = "BOAT-"
count = 2
label_prefix = "D"

[[rental_items]]
id = "jacket"
name_zh = "救生衣"
name_en = "Life jacket"
deposit_fen = 5000
pricing = "per_use"
price_fen = 0
lost_fen = 15000
[[rental_items.units]]
prefix = "LJ-"
count = 4
label_prefix = "J"
"""

CATALOG = parse_catalog(SITE)
KEY = SiteKey("k1", b"k" * 32, b"\x01" * 32)
SECRETS = {KEY.key_id: KEY.secret}
#: 09:00 in Shanghai; the rentals are due at 17:30 local, 09:30 UTC
T0 = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)
TODAY = date(2026, 1, 10)
DUE = datetime(2026, 1, 10, 9, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

_counter = iter(range(10**9))


def fresh(prefix: str) -> str:
    """A new id, unique in the test run."""
    return f"{prefix}{next(_counter)}"


def fresh_ids() -> FreshIds:
    """New ids for a command that may start money work."""
    return FreshIds(fresh("R"), fresh("P"), fresh("U"), fresh("O"))


@attrs.frozen
class Step:
    """One command through the core: the rental after it, its events, effects, postings, memos."""

    rental: Rental | None
    events: tuple
    effects: tuple
    postings: tuple
    memos: tuple

    def kinds(self) -> list[str]:
        """The events' class names, in order."""
        return [type(event).__name__ for event in self.events]

    def effect(self, kind: type):
        """The one effect of type ``kind``."""
        (found,) = [effect for effect in self.effects if isinstance(effect, kind)]
        return found

    def pushes(self) -> list[tuple[str, str]]:
        """(to, event) of every push: a device id, or ``role:<role>``."""
        out = []
        for effect in self.effects:
            if hasattr(effect, "device_id") and hasattr(effect, "event"):
                out.append((effect.device_id, effect.event))
            elif hasattr(effect, "role"):
                out.append((f"role:{effect.role}", effect.event))
        return out


def step(rental: Rental | None, command) -> Step:
    """Run ``command`` as the shell would (the voucher made with :data:`KEY`)."""
    events, effects, postings, memos = [], [], [], []
    for event in decide(rental, command):
        if isinstance(event, VoucherIssued):
            event = attrs.evolve(event, code=make_voucher(event.rental_id, KEY))
        after = evolve(rental, event)
        effects += react(rental, event, after)
        postings += postings_for(rental, event)
        memos += memos_for(rental, event)
        events.append(event)
        rental = after
    return Step(rental, tuple(events), tuple(effects), tuple(postings), tuple(memos))


def create(
    *items: tuple[str, int],
    days: int = 1,
    bundle: BundleFacts | None = None,
    at: datetime = T0,
    rental_id: str | None = None,
) -> Rental:
    """A new pending rental of ``items`` ((item id, quantity) each)."""
    requested = tuple(ItemRequest(item_id, n) for item_id, n in items)
    command = CreateRental(
        rental_id or fresh("H2026011000"),
        "kiosk-1",
        fresh("key"),
        requested,
        CATALOG,
        TODAY,
        at,
        days,
        bundle,
    )
    return step(None, command).rental


def pay(rental: Rental, channel: str = "wechat", at: datetime = T0) -> Rental:
    """``rental`` with its deposit paid by ``channel``."""
    out_trade_no = fresh("P")
    rental = step(rental, StartPayment(out_trade_no, channel, at)).rental
    confirm = ConfirmPayment(
        out_trade_no, channel, fresh("txn"), rental.amount_due_fen, at, at, fresh("R")
    )
    return step(rental, confirm).rental


def freeze(rental: Rental, at: datetime = T0, lasts: timedelta = 72 * HOUR) -> Rental:
    """``rental`` with its deposit frozen by Alipay, lapsing ``lasts`` later."""
    out_order_no = fresh("A")
    rental = step(rental, StartFreeze(out_order_no, fresh("Q"), "alipay", at, at + lasts)).rental
    confirm = ConfirmFreeze(
        out_order_no, "alipay", fresh("AUTH"), rental.amount_due_fen, at, at, fresh("U")
    )
    return step(rental, confirm).rental


def pickup_command(rental: Rental, labels: Sequence[str], at: datetime = T0, **kw) -> PickUp:
    """The desk's pickup of ``labels`` with the rental's own voucher."""
    return PickUp(
        kw.get("voucher", rental.voucher),
        tuple(labels),
        CATALOG,
        kw.get("unit_states", {}),
        SECRETS,
        "desk-1",
        at,
    )


def pick_up(rental: Rental, *labels: str, at: datetime = T0) -> Rental:
    """``rental`` with ``labels`` handed out."""
    return step(rental, pickup_command(rental, labels, at)).rental


def give_back(
    rental: Rental, at: datetime, *returns: tuple[str, Condition] | str, fresh_for=None
) -> Step:
    """A return of ``returns`` (labels, ok unless a condition is given) at ``at``."""
    back = tuple(
        UnitReturn(r, Condition.OK) if isinstance(r, str) else UnitReturn(*r) for r in returns
    )
    return step(rental, ReturnUnits(back, "desk-2", at, fresh_for or fresh_ids()))
