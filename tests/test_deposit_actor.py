"""The deposit shell against in-memory fakes of its own Protocols: commit first, then effects.

:class:`MemoryDepositStore` keeps the promises :class:`DepositStore` states
(a version check, unit states with the never-out-twice backstop, stock for
reservations, one bundle claim per ticket, the outbox written with the
events) in a dict; it stands in for the server's storage, which the lead
writes, so these tests are about the shell's own logic: what it adds to the
rules (fresh ids, the signed voucher), the order of commit and effects, and
how it answers the store's conflicts and backstops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs
import pytest

from actors.rentals.actor import DepositActor, DepositEnvironment
from actors.rentals.commands import (
    BundleFacts,
    CancelRental,
    ConfirmPayment,
    CreateRental,
    ItemRequest,
    ReturnUnits,
    StartPayment,
    UnitReturn,
)
from actors.rentals.domain import RentalRefused
from actors.rentals.effects import RequestRentalRefund
from actors.rentals.events import Event
from actors.rentals.interfaces import (
    BundleClaimed,
    OutOfStock,
    RentalConflict,
    StockLimits,
    UnitsTaken,
)
from actors.rentals.inventory import reserved, unit_changes
from actors.rentals.postings import postings_for
from actors.rentals.state import Condition, Rental, RentalStatus, UnitState
from actors.rentals.vouchers import make_voucher, rental_id_of_voucher
from tests.rental_support import CATALOG, KEY, SECRETS, T0, TODAY, pickup_command

ITEM_OF = {unit.unit_id: unit.item_id for unit in CATALOG.rental_units}


class MemoryDepositStore:
    """A :class:`DepositStore` in a dict, with the backstops the Protocol promises."""

    def __init__(self) -> None:
        self.rentals: dict[str, Rental] = {}
        self.client_keys: dict[tuple[str, str], str] = {}
        self.units: dict[str, tuple[UnitState, str | None]] = {}
        self.claims: dict[str, str] = {}
        self.outbox: list = []
        self.ledger: list = []

    async def load(self, rental_id: str) -> Rental | None:
        return self.rentals.get(rental_id)

    async def commit(
        self,
        before: Rental | None,
        events: Sequence[Event],
        after: Sequence[Rental],
        effects: Sequence,
        *,
        stock: StockLimits | None = None,
    ) -> None:
        rental_id = after[-1].rental_id
        stored = self.rentals.get(rental_id)
        if (before is None) != (stored is None) or (
            stored is not None and stored.version != before.version
        ):
            raise RentalConflict(f"rental {rental_id} moved", constraint="version")
        last = after[-1]
        if before is None and (last.device_id, last.client_key) in self.client_keys:
            raise RentalConflict("client key taken", constraint="client_key")
        if stock is not None:
            for item_id, wanted in reserved(last).items():
                held = sum(reserved(r).get(item_id, 0) for r in self.rentals.values())
                out = sum(
                    1
                    for unit_id, (state, _) in self.units.items()
                    if state is not UnitState.AVAILABLE and ITEM_OF[unit_id] == item_id
                )
                if held + out + wanted > stock[item_id]:
                    raise OutOfStock(item_id)
        if before is None and last.bundle_ticket_id in self.claims:
            raise BundleClaimed(last.bundle_ticket_id)
        changes: dict[str, UnitState] = {}
        for event in events:
            changes.update(unit_changes(event))
        taken = [
            unit_id
            for unit_id, state in changes.items()
            if state is UnitState.OUT
            and self.units.get(unit_id, (UnitState.AVAILABLE, None))[0] is not UnitState.AVAILABLE
        ]
        if taken:
            raise UnitsTaken("not available", unit_ids=taken)
        # all checks passed: write everything at once
        state = before
        for event, next_state in zip(events, after, strict=True):
            self.ledger += postings_for(state, event)
            state = next_state
        for unit_id, unit_state in changes.items():
            self.units[unit_id] = (unit_state, rental_id if unit_state is UnitState.OUT else None)
        if last.bundle_ticket_id is not None:
            self.claims.setdefault(last.bundle_ticket_id, rental_id)
        self.client_keys[(last.device_id, last.client_key)] = rental_id
        self.outbox += effects
        self.rentals[rental_id] = attrs.evolve(
            last, version=0 if before is None else before.version + 1
        )


class RecordingEffects:
    """An effects sink that keeps what it is handed, and what the store held at that moment."""

    def __init__(self, store: MemoryDepositStore) -> None:
        self.store = store
        self.carried: list[tuple[list, int]] = []

    async def carry_out(self, effects) -> None:
        self.carried.append((list(effects), len(self.store.outbox)))


def environment(store: MemoryDepositStore, sink=None) -> DepositEnvironment:
    sink = sink or RecordingEffects(store)
    return DepositEnvironment(store, sink, lambda rental_id: make_voucher(rental_id, KEY))


def create_command(rental_id: str, *items, key: str = "tap-1", bundle=None) -> CreateRental:
    requested = tuple(ItemRequest(i, n) for i, n in items) or (ItemRequest("boat", 1),)
    return CreateRental(rental_id, "kiosk-1", key, requested, CATALOG, TODAY, T0, 1, bundle)


async def held(actor: DepositActor, *items) -> None:
    await actor.load()
    await actor.handle(create_command(actor.rental_id, *items, key=f"tap-{actor.rental_id}"))
    await actor.handle(StartPayment(f"P-{actor.rental_id}", "wechat", T0))
    due = actor.rental.amount_due_fen
    paid = ConfirmPayment(
        f"P-{actor.rental_id}", "wechat", f"WX-{actor.rental_id}", due, T0, T0, "R-d"
    )
    await actor.handle(paid)


def return_all(rental: Rental, at=T0) -> ReturnUnits:
    back = tuple(UnitReturn(u.label, Condition.OK) for u in rental.units_out)
    return ReturnUnits(back, "desk-1", at)


async def test_the_voucher_is_signed_by_the_shell_and_effects_follow_the_commit():
    store = MemoryDepositStore()
    sink = RecordingEffects(store)
    actor = DepositActor("H20260110VOUCHER1", environment(store, sink))
    await held(actor, ("boat", 1))
    stored = store.rentals[actor.rental_id]
    assert rental_id_of_voucher(stored.voucher, SECRETS) == actor.rental_id
    assert stored.status is RentalStatus.HELD and stored.version == 2
    effects, outbox_then = sink.carried[-1]
    voucher_push = next(e for e in effects if getattr(e, "event", "") == "rental.voucher")
    assert voucher_push.data["voucher"] == stored.voucher
    assert outbox_then == len(store.outbox)  # carried out after the commit
    assert actor.vacant is False and DepositActor("other", environment(store)).vacant


async def test_a_settling_return_draws_fresh_ids_and_writes_its_refund_with_the_events():
    store = MemoryDepositStore()
    sink = RecordingEffects(store)
    actor = DepositActor("H20260110RETURN01", environment(store, sink))
    await held(actor, ("boat", 1))
    await actor.handle(pickup_command(actor.rental, ["D001"]))
    assert store.units["BOAT-001"] == (UnitState.OUT, actor.rental_id)
    outcome = await actor.handle(return_all(actor.rental, T0))
    (refund,) = [e for e in store.outbox if isinstance(e, RequestRentalRefund)]
    assert re.fullmatch(r"R20260110[0-9A-Z]{14}", refund.out_refund_no)
    assert refund.refund_fen == 50000
    assert store.units["BOAT-001"] == (UnitState.AVAILABLE, None)
    assert outcome.rental.status is RentalStatus.SETTLED
    assert sum(p.amount_fen for p in store.ledger) == 0
    assert [e for e, _ in sink.carried][-1] == list(outcome.effects)


async def test_a_unit_another_desk_handed_out_meanwhile_is_unit_out_and_nothing_is_written():
    store = MemoryDepositStore()
    first = DepositActor("H20260110FIRST001", environment(store))
    second = DepositActor("H20260110SECOND01", environment(store))
    await held(first, ("boat", 1))
    await held(second, ("boat", 1))
    # both desks read BOAT-001 available; the first commits its pickup first
    await first.handle(pickup_command(first.rental, ["D001"]))
    version = store.rentals[second.rental_id].version
    with pytest.raises(RentalRefused) as refused:
        await second.handle(pickup_command(second.rental, ["D001"]))
    assert refused.value.code == "unit_out"
    assert store.units["BOAT-001"] == (UnitState.OUT, first.rental_id)
    assert store.rentals[second.rental_id].version == version
    assert second.rental.status is RentalStatus.HELD
    await second.handle(pickup_command(second.rental, ["D002"]))
    assert second.rental.status is RentalStatus.OUT


async def test_two_desks_returning_the_same_rental_settle_it_once():
    store = MemoryDepositStore()
    here = DepositActor("H20260110TWODESK1", environment(store))
    await held(here, ("boat", 1), ("jacket", 1))
    await here.handle(pickup_command(here.rental, ["D001", "J001"]))
    there = DepositActor(here.rental_id, environment(store))
    await there.load()
    await here.handle(return_all(here.rental))
    # ``there`` holds the rental as it was out: its commit conflicts, it reloads and decides again
    with pytest.raises(RentalRefused) as refused:
        await there.handle(return_all(there.rental))
    assert refused.value.code == "settlement_in_flight"
    assert len([e for e in store.outbox if isinstance(e, RequestRentalRefund)]) == 1
    assert there.rental.status is RentalStatus.SETTLED


async def test_a_partial_return_and_a_stale_desks_return_of_the_rest_both_count():
    store = MemoryDepositStore()
    here = DepositActor("H20260110PARTIAL1", environment(store))
    await held(here, ("boat", 1), ("jacket", 1))
    await here.handle(pickup_command(here.rental, ["D001", "J001"]))
    there = DepositActor(here.rental_id, environment(store))
    await there.load()
    await here.handle(ReturnUnits((UnitReturn("J001", Condition.OK),), "desk-1", T0))
    outcome = await there.handle(ReturnUnits((UnitReturn("D001", Condition.OK),), "desk-2", T0))
    assert outcome.rental.status is RentalStatus.SETTLED
    assert store.rentals[here.rental_id].version == 5


async def test_a_pickup_racing_a_cancel_finds_the_rental_closed():
    store = MemoryDepositStore()
    kiosk = DepositActor("H20260110RACE0001", environment(store))
    await held(kiosk, ("boat", 1))
    desk = DepositActor(kiosk.rental_id, environment(store))
    await desk.load()
    await kiosk.handle(CancelRental("kiosk-1", T0))
    with pytest.raises(RentalRefused) as refused:
        await desk.handle(pickup_command(desk.rental, ["D001"]))
    assert refused.value.code == "rental_closed"
    assert "BOAT-001" not in store.units


async def test_a_refusal_on_a_stale_copy_is_decided_again_on_the_stored_rental():
    store = MemoryDepositStore()
    kiosk = DepositActor("H20260110STALE001", environment(store))
    await kiosk.load()
    await kiosk.handle(create_command(kiosk.rental_id))
    desk = DepositActor(kiosk.rental_id, environment(store))
    await desk.load()  # pending: its copy would refuse a pickup as not paid
    await kiosk.handle(StartPayment("P-1", "wechat", T0))
    await kiosk.handle(ConfirmPayment("P-1", "wechat", "WX-1", 50000, T0, T0, "R-1"))
    outcome = await desk.handle(pickup_command(kiosk.rental, ["D001"]))
    assert outcome.rental.status is RentalStatus.OUT


async def test_the_stores_backstops_on_creation_become_refusals():
    store = MemoryDepositStore()
    first = DepositActor("H20260110MAKE0001", environment(store))
    await first.load()
    await first.handle(create_command(first.rental_id, ("boat", 2)))
    again = DepositActor(first.rental_id, environment(store))
    with pytest.raises(RentalRefused) as refused:
        await again.handle(create_command(first.rental_id, ("boat", 1), key="tap-2"))
    assert refused.value.code == "rental_exists"
    double_tap = DepositActor("H20260110MAKE0002", environment(store))
    with pytest.raises(RentalRefused) as refused:
        await double_tap.handle(create_command(double_tap.rental_id, ("jacket", 1)))
    assert refused.value.code == "rental_exists"
    no_boats = DepositActor("H20260110MAKE0003", environment(store))
    with pytest.raises(RentalRefused) as refused:
        await no_boats.handle(create_command(no_boats.rental_id, ("boat", 1), key="tap-3"))
    assert refused.value.code == "not_available"
    assert no_boats.rental is None and no_boats.rental_id not in store.rentals
    ticket = BundleFacts("T-1", "ski-gear", TODAY)
    skier = DepositActor("H20260110MAKE0004", environment(store))
    await skier.handle(create_command(skier.rental_id, ("skis", 1), key="tap-4", bundle=ticket))
    again_skier = DepositActor("H20260110MAKE0005", environment(store))
    with pytest.raises(RentalRefused) as refused:
        await again_skier.handle(
            create_command(again_skier.rental_id, ("skis", 1), key="tap-5", bundle=ticket)
        )
    assert refused.value.code == "bundle_used"


async def test_a_command_with_nothing_to_do_commits_nothing_and_carries_nothing():
    store = MemoryDepositStore()
    sink = RecordingEffects(store)
    actor = DepositActor("H20260110NOOP0001", environment(store, sink))
    await held(actor, ("boat", 1))
    carried = len(sink.carried)
    version = store.rentals[actor.rental_id].version
    again = ConfirmPayment(
        f"P-{actor.rental_id}", "wechat", f"WX-{actor.rental_id}", 50000, T0, T0, "R"
    )
    outcome = await actor.handle(again)
    assert outcome.events == () and len(sink.carried) == carried
    assert store.rentals[actor.rental_id].version == version
