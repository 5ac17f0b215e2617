"""docs/protocol.md's rentals section pinned down: what a kiosk reads, refuses and is told.

Real websockets against a real server selling the demo park, as a vendor's
kiosk or desk would meet them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from actors.rentals.commands import FailRefund
from clients.client import RemoteError, connect
from server.handlers import rentals as rental_ops
from server.handlers.rentals import rental_view
from tests.helpers import running_server
from tests.rental_support import HOUR, T0, create, give_back, pay, pick_up, step
from tests.test_orders import next_event, settle_outbox

DEVICES = {"kiosk-1": "kiosk", "desk-1": "rental", "admin-x": "admin"}


async def test_catalog_list_states_each_rental_items_deposit_price_and_penalties(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            catalog = await kiosk.request("catalog.list")
    assert catalog["rentals"] == {
        "due_back": "17:30",
        "hold_minutes": 15,
        "max_days": 7,
        "max_units": 20,
    }
    items = {item["item"]: item for item in catalog["rental_items"]}
    assert list(items) == ["skis", "snowboard", "boots", "helmet", "boat", "life-jacket"]
    assert items["skis"] == {
        "item": "skis",
        "name_zh": "双板滑雪板",
        "name_en": "Skis with poles",
        "area": "ski",
        "deposit_fen": 80000,
        "pricing": {"rule": "per_day", "daily_fen": 12000},
        "prepaid": True,
        "late_fen_per_hour": 3000,
        "damage_fen": 40000,
        "lost_fen": 300000,
        "units": 60,
    }
    assert items["boat"]["pricing"] == {
        "rule": "per_hour",
        "hourly_fen": 8000,
        "grace_minutes": 10,
        "included_hours": 2,
        "overtime_hourly_fen": 10000,
        "daily_cap_fen": 36000,
    }
    assert items["boat"]["prepaid"] is False and items["boat"]["units"] == 12
    assert items["helmet"]["pricing"] == {"rule": "per_use", "price_fen": 3000}
    products = {p["product"]: p for p in catalog["products"]}
    assert products["ski-day-gear"]["includes_rentals"] == {"skis": 1, "boots": 1}
    assert products["adult"]["includes_rentals"] == {}


async def test_rental_pay_takes_only_qr_channels_and_records_nothing_for_cash(dsn, db):
    items = [{"item": "helmet", "quantity": 1}]
    async with running_server(dsn, db, DEVICES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            rental = await kiosk.request("rental.create", client_key="cash", items=items)
            with pytest.raises(RemoteError) as refused:
                await kiosk.request("rental.pay", rental=rental["rental"], channel="cash")
            after = await kiosk.request("rental.get", rental=rental["rental"])
    assert refused.value.code == "bad_request"
    assert refused.value.message == "argument 'channel' has an invalid format"
    assert after["payments"] == []  # cash and card are rental.record's, taken at a desk


async def test_charges_beyond_the_deposit_open_a_compensation_order_the_kiosk_can_collect(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            rental = await kiosk.request(
                "rental.create", client_key="boat", items=[{"item": "boat", "quantity": 1}]
            )
            assert (rental["deposit_fen"], rental["prepaid_fen"]) == (50000, 0)
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            voucher = await next_event(kiosk, "rental.voucher")
            await desk.request("rental.pickup", voucher=voucher["voucher"], labels=["DOCK-BOAT-01"])
            back = await desk.request(
                "rental.return",
                rental=rental["rental"],
                returns=[{"label": "DOCK-BOAT-01", "condition": "lost"}],
            )
            settled = await next_event(kiosk, "rental.settled")
            await settle_outbox(db)
            owed = await kiosk.request("order.get", order=back["settlement"]["compensation_order"])
    # back within the 10 minutes' grace: no usage; the lost-item price is 800000 fen
    assert back["charges"][0] | {"unit": None} == {
        "unit": None,
        "item": "boat",
        "usage_fen": 0,
        "covered": False,
        "late_fen": 0,
        "damage_fen": 0,
        "lost_fen": 800000,
    }
    assert back["settlement"] | {"compensation_order": None} == {
        "paid_fen": 50000,
        "charges_fen": 800000,
        "kept_fen": 50000,
        "released_fen": 0,
        "compensation_fen": 750000,
        "compensation_order": None,
    }
    assert settled["compensation_order"] == back["settlement"]["compensation_order"]
    assert back["refunds"] == [] and back["hold"]["resolution"]["voided_fen"] == 0
    assert (owed["status"], owed["total_fen"]) == ("pending", 750000)
    assert owed["expires_at"] - back["hold"]["resolution"]["at"] == pytest.approx(7 * 86400, abs=5)


def test_a_rental_refund_refused_for_good_reaches_admins_as_failed_with_the_channels_word():
    boat = pick_up(pay(create(("boat", 1))), "D001")
    settled = give_back(boat, T0 + HOUR, "D001").rental  # one started hour: 8000 of 50000 kept
    (refund_no,) = settled.refunds
    failed = step(settled, FailRefund(refund_no, "refund_exceeds_payment: no", T0 + 2 * HOUR))
    (push,) = failed.effects
    assert (push.role, push.event) == ("admin", "refund.failed")
    assert push.data == {
        "rental": settled.rental_id,
        "route": "pay",
        "how": "refund",
        "reference": refund_no,
        "amount_fen": 42000,
        "state": "failed",
        "failure": "refund_exceeds_payment: no",
    }


ROOT = Path(__file__).parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"


def _rentals_section() -> str:
    text = PROTOCOL.read_text()
    return text[text.index("## Rentals: deposits, vouchers, pickup, return") :]


def _table_fields(section: str, heading: str) -> set[str]:
    """The first-column names of the first table after ``heading`` (`a`, `b` rows split)."""
    rest = section[section.index(heading) :]
    rows = rest[rest.index("| field |") :].split("\n\n")[0].splitlines()[2:]
    return {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_every_rental_op_has_its_section_in_the_protocol():
    section = _rentals_section()
    ops = {spec.name for spec in rental_ops.OPS.specs} | {"sim.authorize"}
    assert {op for op in ops if f"### `{op}`" not in section} == set()


def test_every_code_the_rental_rules_raise_is_in_the_protocol():
    raised = set()
    for source in [*(ROOT / "actors" / "rentals").glob("*.py"), Path(rental_ops.__file__)]:
        raised |= set(re.findall(r'code="([a-z_]+)"', source.read_text()))
    section = _rentals_section()
    assert {code for code in raised if f"`{code}`" not in section} == set()


def test_the_rental_map_table_names_every_field_the_server_shows():
    rental = give_back(pick_up(pay(create(("boat", 1))), "D001"), T0 + HOUR, "D001").rental
    view = rental_view(rental)
    section = _rentals_section()
    assert _table_fields(section, "### The rental map") == set(view)
    assert _table_fields(section, "The `hold` map:") == set(view["hold"])
