"""The rental's rules as pure functions: its whole life on both money routes, and every refusal.

And what each committed event asks of the outside world (:func:`react`),
what it posts to the ledger and what it notes off-ledger.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from actors.orders.effects import ClosePayment
from actors.rentals.commands import (
    BundleFacts,
    CancelRental,
    ConfirmConversion,
    ConfirmFreeze,
    ConfirmPayment,
    ConfirmRefund,
    ConfirmUnfreeze,
    ConvertFreeze,
    CreateRental,
    ExpireRental,
    ExtendRental,
    FailRefund,
    ForfeitDeposit,
    ItemRequest,
    MarkOverdue,
    ReportLapse,
    ReturnUnits,
    StartFreeze,
    StartPayment,
    UnitReturn,
)
from actors.rentals.domain import RentalRefused, decide
from actors.rentals.effects import (
    CancelFreeze,
    CollectPayment,
    ConvertFrozen,
    OpenCompensationOrder,
    RequestFreeze,
    RequestRentalRefund,
    Unfreeze,
    durable,
)
from actors.rentals.inventory import reserved, unit_changes
from actors.rentals.state import (
    Condition,
    DepositRoute,
    RentalStatus,
    ResolutionKind,
    UnitState,
    settlement_in_flight,
)
from actors.rentals.vouchers import make_voucher
from actors.tickets.codes import SiteKey
from tests.rental_support import (
    CATALOG,
    DUE,
    HOUR,
    MINUTE,
    T0,
    TODAY,
    create,
    freeze,
    fresh_ids,
    give_back,
    pay,
    pick_up,
    pickup_command,
    step,
)


def refused(rental, command) -> str:
    with pytest.raises(RentalRefused) as refusal:
        decide(rental, command)
    return refusal.value.code


def balances(*steps) -> dict[str, int]:
    totals: dict[str, int] = {}
    for s in steps:
        for posting in s.postings:
            totals[posting.account] = totals.get(posting.account, 0) + posting.amount_fen
    return {account: amount for account, amount in totals.items() if amount}


# --- creation -----------------------------------------------------------------------


def test_a_new_rental_states_its_deposit_and_the_usage_paid_in_advance():
    rental = create(("skis", 1), ("boots", 1), ("boat", 1), days=2)
    assert rental.status is RentalStatus.PENDING
    assert rental.deposit_fen == 80000 + 20000 + 50000
    assert rental.prepaid_fen == 2 * 12000 + 2 * 4000  # the boat is paid at return
    assert rental.amount_due_fen == 182000
    assert rental.hold_until == T0 + 15 * MINUTE
    assert reserved(rental) == {"skis": 1, "boots": 1, "boat": 1}


def test_a_bundle_ticket_covers_the_usage_of_its_items_but_not_their_deposit():
    ticket = BundleFacts("T-1", "ski-gear", TODAY)
    rental = create(("skis", 2), ("boots", 1), bundle=ticket)
    assert [(line.quantity, line.covered) for line in rental.lines] == [(2, 1), (1, 1)]
    assert rental.deposit_fen == 2 * 80000 + 20000
    assert rental.prepaid_fen == 12000  # the second pair of skis only
    assert rental.bundle_ticket_id == "T-1"


@pytest.mark.parametrize(
    ("bundle", "code"),
    [
        (BundleFacts("T-1", "ski-gear", TODAY, refunded=True), "bundle_invalid"),
        (BundleFacts("T-1", "ski-gear", TODAY + timedelta(days=1)), "bundle_invalid"),
        (BundleFacts("T-1", "adult", TODAY), "bundle_mismatch"),
    ],
)
def test_a_bundle_of_a_void_ticket_or_one_without_these_items_is_refused(bundle, code):
    command = CreateRental("H1", "k", "c", (ItemRequest("skis", 1),), CATALOG, TODAY, T0, 1, bundle)
    assert refused(None, command) == code


@pytest.mark.parametrize(
    ("items", "days"),
    [
        ((), 1),
        ((("helmet", 1),), 1),
        ((("skis", 0),), 1),
        ((("skis", 4),), 1),  # three exist
        ((("skis", 1), ("skis", 1)), 1),
        ((("jacket", 4), ("skis", 3)), 1),  # max_units 6
        ((("skis", 1),), 0),
        ((("skis", 1),), 4),  # max_days 3
    ],
)
def test_a_rental_outside_the_catalog_or_its_terms_is_a_bad_request(items, days):
    requested = tuple(ItemRequest(i, n) for i, n in items)
    command = CreateRental("H1", "k", "c", requested, CATALOG, TODAY, T0, days)
    assert refused(None, command) == "bad_request"


def test_a_rental_id_is_made_once():
    rental = create(("boat", 1))
    again = CreateRental(rental.rental_id, "k", "c", (ItemRequest("boat", 1),), CATALOG, TODAY, T0)
    assert refused(rental, again) == "rental_exists"
    assert refused(None, ExpireRental(T0)) == "not_found"


def test_an_unpaid_rental_expires_at_its_hold_and_frees_its_units():
    rental = create(("boat", 1))
    rental = step(rental, StartPayment("P-qr", "alipay", T0)).rental
    assert step(rental, ExpireRental(T0 + 14 * MINUTE)).events == ()
    expired = step(rental, ExpireRental(T0 + 15 * MINUTE))
    assert expired.kinds() == ["RentalExpired"]
    assert expired.effect(ClosePayment) == ClosePayment("alipay", "P-qr", T0 + 15 * MINUTE)
    assert reserved(expired.rental) == {}
    late = ConfirmPayment("P-qr", "alipay", "ALI-1", 50000, T0 + HOUR, T0 + HOUR, "R-late")
    refund = step(expired.rental, late)
    assert refund.kinds() == ["DuplicatePaymentRefunding"]
    assert refund.effect(RequestRentalRefund).reason == "rental_expired"


# --- collecting the deposit: the pay route ---------------------------------------


def test_the_first_exact_payment_holds_the_deposit_and_issues_a_pushed_voucher():
    rental = create(("skis", 1), ("boots", 1))
    started = step(rental, StartPayment("P-1", "wechat", T0))
    assert started.effect(CollectPayment).amount_fen == 116000
    paid = step(started.rental, ConfirmPayment("P-1", "wechat", "WX-1", 116000, T0, T0, "R-unused"))
    assert paid.kinds() == ["DepositPaid", "VoucherIssued"]
    assert paid.rental.status is RentalStatus.HELD
    assert paid.rental.voucher == make_voucher(rental.rental_id, SiteKey("k1", b"k" * 32, b""))
    assert paid.pushes() == [("kiosk-1", "rental.voucher"), ("role:rental", "rental.voucher")]
    assert balances(paid) == {
        "clearing:wechat": 116000,
        "deposits:held": -100000,
        "rentals:prepaid": -16000,
    }
    assert durable(paid.effects) == []


def test_a_second_payment_of_the_deposit_is_refunded_in_full_and_a_replay_changes_nothing():
    rental = pay(create(("boat", 1)))
    rental = step(rental, StartPayment("P-2", "cash", T0, money_taken=True)).rental
    second = ConfirmPayment("P-2", "cash", "cash:desk:1", 50000, T0, T0, "R-dup")
    dup = step(rental, second)
    assert dup.kinds() == ["DuplicatePaymentRefunding"]
    request = dup.effect(RequestRentalRefund)
    assert (request.out_refund_no, request.refund_fen, request.reason) == (
        "R-dup",
        50000,
        "already_paid",
    )
    assert balances(dup) == {"clearing:cash": 50000, "refunds:payable": -50000}
    assert step(dup.rental, second).events == ()
    assert dup.rental.hold.out_trade_no != "P-2"


def test_a_payment_of_the_wrong_amount_is_refunded_and_the_rental_stays_pending():
    rental = step(create(("boat", 1)), StartPayment("P-1", "wechat", T0)).rental
    wrong = step(rental, ConfirmPayment("P-1", "wechat", "WX-1", 49999, T0, T0, "R-1"))
    assert wrong.effect(RequestRentalRefund).reason == "amount_mismatch"
    assert wrong.rental.status is RentalStatus.PENDING and wrong.rental.hold is None


def test_payment_refusals():
    rental = create(("boat", 1))
    assert refused(rental, StartPayment("P-1", "paypal", T0)) == "bad_request"
    assert refused(rental, StartPayment("P-1", "wechat", T0 + 15 * MINUTE)) == "rental_not_pending"
    unknown = ConfirmPayment("P-9", "wechat", "WX", 50000, T0, T0, "R")
    assert refused(rental, unknown) == "unknown_payment"
    rental = step(rental, StartPayment("P-1", "wechat", T0)).rental
    assert (
        refused(rental, ConfirmPayment("P-1", "alipay", "A", 50000, T0, T0, "R"))
        == "channel_mismatch"
    )
    assert (
        refused(pay(create(("boat", 1))), StartPayment("P-3", "wechat", T0)) == "rental_not_pending"
    )


# --- collecting the deposit: a pre-authorisation ---------------------------------


def test_a_freeze_holds_the_deposit_off_ledger_and_is_converted_before_it_lapses():
    rental = create(("boat", 1))
    started = step(rental, StartFreeze("A-1", "Q-1", "alipay", T0, T0 + 48 * HOUR))
    assert started.effect(RequestFreeze).amount_fen == 50000
    frozen = step(started.rental, ConfirmFreeze("A-1", "alipay", "AUTH-1", 50000, T0, T0, "U-0"))
    assert frozen.kinds() == ["DepositFrozen", "VoucherIssued"]
    hold = frozen.rental.hold
    assert (hold.route, hold.auth_no, hold.expires_at) == (
        DepositRoute.PREAUTH,
        "AUTH-1",
        T0 + 48 * HOUR,
    )
    assert hold.convert_by == T0 + 47 * HOUR
    assert frozen.postings == () and [(m.account, m.amount_fen) for m in frozen.memos] == [
        ("preauth:alipay", 50000)
    ]


def test_a_short_freeze_is_converted_halfway_through_its_life():
    rental = freeze(create(("boat", 1)), lasts=40 * MINUTE)
    assert rental.hold.convert_by == T0 + 20 * MINUTE


def test_freeze_refusals_and_a_second_freeze_unfrozen_whole():
    rental = create(("boat", 1))
    assert refused(rental, StartFreeze("A-1", "Q", "wechat", T0, T0 + HOUR)) == "bad_request"
    assert refused(rental, StartFreeze("A-1", "Q", "alipay", T0, T0)) == "bad_request"
    assert refused(rental, ConfirmFreeze("A-9", "alipay", "X", 1, T0, T0, "U")) == "unknown_freeze"
    held_already = freeze(rental)
    assert refused(held_already, StartFreeze("A-2", "Q", "alipay", T0, T0 + HOUR)) == (
        "rental_not_pending"
    )
    # two attempts started while pending, both confirmed: the second is unfrozen whole
    held = create(("boat", 1))
    held = step(held, StartFreeze("A-1", "Q-1", "alipay", T0, T0 + HOUR)).rental
    held = step(held, StartFreeze("A-2", "Q-2", "alipay", T0, T0 + HOUR)).rental
    held = step(held, ConfirmFreeze("A-1", "alipay", "AUTH-1", 50000, T0, T0, "U-1")).rental
    dup = step(held, ConfirmFreeze("A-2", "alipay", "AUTH-2", 50000, T0, T0, "U-2"))
    assert dup.kinds() == ["DuplicateFreezeReleasing"]
    assert dup.effect(Unfreeze).amount_fen == 50000 and dup.effect(Unfreeze).auth_no == "AUTH-2"
    done = step(dup.rental, ConfirmUnfreeze("U-2", T0))
    assert done.rental.freezes["A-2"].state == "released"
    assert [m.amount_fen for m in dup.memos + done.memos] == [50000, -50000]


# --- pickup -----------------------------------------------------------------------


def test_a_pickup_hands_out_the_scanned_units_due_at_closing():
    rental = pay(create(("skis", 1), ("boots", 1), days=2))
    out = step(rental, pickup_command(rental, ["S001", "B002"]))
    assert out.kinds() == ["RentalPickedUp"]
    assert [u.unit_id for u in out.rental.units] == ["SKI-001", "BOOT-002"]
    assert out.rental.status is RentalStatus.OUT
    assert out.rental.due_at == DUE + 24 * HOUR
    assert unit_changes(out.events[0]) == {"SKI-001": UnitState.OUT, "BOOT-002": UnitState.OUT}
    assert out.pushes() == [("role:rental", "rental.picked_up")]
    assert reserved(out.rental) == {}


def test_pickup_refusals_name_the_voucher_or_the_unit():
    pending = create(("skis", 1), ("boots", 1))
    voucher = make_voucher(pending.rental_id, SiteKey("k1", b"k" * 32, b""))
    assert (
        refused(pending, pickup_command(pending, ["S001", "B001"], voucher=voucher)) == "not_paid"
    )
    rental = pay(pending)
    other = pay(create(("skis", 1), ("boots", 1)))
    cases = {
        "voucher_forged": pickup_command(
            rental, ["S001", "B001"], voucher=rental.voucher[:-1] + "2"
        ),
        "voucher_foreign": pickup_command(rental, ["S001", "B001"], voucher=other.voucher),
        "unknown_unit": pickup_command(rental, ["S001", "X999"]),
        "wrong_item": pickup_command(rental, ["S001", "D001"]),
        "wrong_count": pickup_command(rental, ["S001"]),
        "bad_request": pickup_command(rental, ["S001", "S001"]),
        "unit_out": pickup_command(
            rental, ["S001", "B001"], unit_states={"SKI-001": UnitState.OUT}
        ),
        "unit_unavailable": pickup_command(
            rental, ["S001", "B001"], unit_states={"BOOT-001": UnitState.MAINTENANCE}
        ),
    }
    assert {code: refused(rental, command) for code, command in cases.items()} == {
        code: code for code in cases
    }
    out = pick_up(rental, "S001", "B001")
    assert refused(out, pickup_command(out, ["S002", "B002"])) == "voucher_used"
    cancelled = step(pay(create(("boat", 1))), CancelRental("desk", T0, fresh_ids())).rental
    assert refused(cancelled, pickup_command(cancelled, ["D001"])) == "rental_closed"


def test_a_two_unit_rental_needs_two_units_of_its_item():
    rental = pay(create(("skis", 2)))
    assert refused(rental, pickup_command(rental, ["S001", "B001"])) == "wrong_item"
    assert pick_up(rental, "S003", "S001").status is RentalStatus.OUT


# --- returns and the settlement: the pay route ---------------------------------------


def test_a_partial_return_keeps_the_rest_out_and_the_last_one_settles_once():
    rental = pick_up(pay(create(("boat", 1), ("jacket", 2))), "D001", "J001", "J002")
    first = give_back(rental, T0 + 2 * HOUR, "J001")
    assert first.kinds() == ["UnitsReturned"] and first.postings == ()
    assert [u.unit_id for u in first.rental.units_out] == ["BOAT-001", "LJ-002"]
    assert unit_changes(first.events[0]) == {"LJ-001": UnitState.AVAILABLE}
    last = give_back(first.rental, T0 + 2 * HOUR + 30 * MINUTE, "D001", ("J002", Condition.LOST))
    assert last.kinds() == ["UnitsReturned", "RentalSettled"]
    settled = last.rental
    assert settled.status is RentalStatus.SETTLED
    assert [c.total_fen for c in settled.charges] == [26000, 0, 15000]
    split = settled.split
    assert (split.paid_fen, split.charges_fen, split.kept_fen, split.released_fen) == (
        60000,
        41000,
        41000,
        19000,
    )
    resolution = settled.hold.resolution
    assert (resolution.kind, resolution.posted_fen, resolution.voided_fen) == (
        ResolutionKind.SETTLED,
        41000,
        19000,
    )
    request = last.effect(RequestRentalRefund)
    assert (request.refund_fen, request.total_fen, request.reason) == (
        19000,
        60000,
        "deposit_release",
    )
    assert request.out_trade_no == rental.hold.out_trade_no
    assert last.pushes() == [("kiosk-1", "deposit.refunded"), ("kiosk-1", "rental.settled")]
    assert balances(last) == {
        "deposits:held": 60000,
        "revenue:rentals": -41000,
        "refunds:payable": -19000,
    }
    assert unit_changes(last.events[0]) == {
        "BOAT-001": UnitState.AVAILABLE,
        "LJ-002": UnitState.LOST,
    }
    assert settlement_in_flight(settled)
    confirmed = step(settled, ConfirmRefund(request.out_refund_no, T0 + 3 * HOUR))
    assert confirmed.pushes() == [("kiosk-1", "deposit.refunded")]
    assert confirmed.effects[0].data["state"] == "confirmed"
    assert not settlement_in_flight(confirmed.rental)


def test_return_refusals():
    held = pay(create(("boat", 1), ("jacket", 1)))
    assert refused(held, give_back_command(held, "D001")) == "not_out"
    out = pick_up(held, "D001", "J001")
    assert refused(out, give_back_command(out, "J002")) == "unit_not_on_rental"
    assert refused(out, give_back_command(out, "D001", "D001")) == "bad_request"
    assert refused(out, give_back_command(out, at=T0 - MINUTE)) == "bad_request"
    partial = give_back(out, T0 + HOUR, "J001").rental
    assert refused(partial, give_back_command(partial, "J001")) == "already_returned"
    settled = give_back(partial, T0 + HOUR, "D001").rental
    assert refused(settled, give_back_command(settled, "D001")) == "settlement_in_flight"
    (refund_no,) = settled.refunds
    closed = step(settled, ConfirmRefund(refund_no, T0)).rental
    assert refused(closed, give_back_command(closed, "D001")) == "rental_closed"


def give_back_command(rental, *labels, at=T0 + HOUR):
    return ReturnUnits(
        tuple(UnitReturn(label, Condition.OK) for label in labels), "desk", at, fresh_ids()
    )


def test_charges_beyond_the_deposit_open_a_compensation_order_and_a_receivable():
    rental = pick_up(pay(create(("boat", 1))), "D001")
    lost = give_back(rental, T0 + HOUR, ("D001", Condition.LOST))
    split = lost.rental.split
    assert (split.charges_fen, split.kept_fen, split.released_fen, split.compensation_fen) == (
        808000,
        50000,
        0,
        758000,
    )
    order = lost.effect(OpenCompensationOrder)
    assert (order.amount_fen, order.device_id) == (758000, "kiosk-1")
    assert order.order_id == lost.rental.compensation_order_id
    assert [c.unit_id for c in order.charges] == ["BOAT-001"]
    assert not any(isinstance(e, RequestRentalRefund) for e in lost.effects)
    assert balances(lost) == {
        "deposits:held": 50000,
        "revenue:rentals": -808000,
        "receivable:rentals": 758000,
    }


def test_a_return_within_the_grace_period_releases_the_whole_deposit():
    rental = pick_up(pay(create(("boat", 1))), "D001")
    settled = give_back(rental, T0 + 10 * MINUTE, "D001")
    assert settled.rental.split.released_fen == 50000
    assert settled.effect(RequestRentalRefund).refund_fen == 50000
    just_after = give_back(rental, T0 + 10 * MINUTE + timedelta(microseconds=1), "D001")
    assert just_after.rental.split.released_fen == 42000


def test_a_bundle_covers_usage_at_settlement_but_lateness_is_charged():
    ticket = BundleFacts("T-1", "ski-gear", TODAY)
    rental = pick_up(pay(create(("skis", 1), ("boots", 1), bundle=ticket)), "S001", "B001")
    assert rental.hold.amount_fen == 100000
    late = give_back(rental, DUE + 30 * MINUTE, "S001", ("B001", Condition.DAMAGED))
    assert [(c.covered, c.total_fen) for c in late.rental.charges] == [
        (True, 3000),
        (True, 1000 + 10000),
    ]
    assert late.rental.split.released_fen == 100000 - 14000


# --- overdue, extension, forfeit -------------------------------------------------------


def test_overdue_at_the_due_time_an_extension_clears_it_and_adds_a_day():
    rental = pick_up(pay(create(("skis", 1))), "S001")
    assert step(rental, MarkOverdue(DUE - MINUTE)).events == ()
    overdue = step(rental, MarkOverdue(DUE))
    assert overdue.kinds() == ["RentalOverdue"] and overdue.rental.overdue
    assert overdue.pushes() == [("role:rental", "rental.overdue"), ("role:admin", "rental.overdue")]
    assert step(overdue.rental, MarkOverdue(DUE + HOUR)).events == ()
    later = DUE + 24 * HOUR
    extended = step(overdue.rental, ExtendRental(later, "snowstorm", "admin-1", DUE + HOUR))
    assert (extended.rental.due_at, extended.rental.overdue) == (later, False)
    back = give_back(extended.rental, later - HOUR, "S001")
    # two rental days (one booked, one by the extension), not late
    assert [c.total_fen for c in back.rental.charges] == [24000]
    assert back.rental.split.released_fen == 80000 + 12000 - 24000


def test_extension_refusals():
    out = pick_up(pay(create(("skis", 1))), "S001")
    assert refused(out, ExtendRental(DUE, "same", "a", T0)) == "bad_request"
    assert refused(out, ExtendRental(DUE + HOUR, " ", "a", T0)) == "bad_request"
    assert refused(out, ExtendRental(DUE + HOUR, "x", "a", DUE + 2 * HOUR)) == "bad_request"
    held = pay(create(("skis", 1)))
    assert refused(held, ExtendRental(DUE + HOUR, "x", "a", T0)) == "not_out"


def test_a_forfeit_posts_the_whole_hold_and_marks_the_units_out_lost():
    rental = pick_up(pay(create(("boat", 1), ("jacket", 1))), "D001", "J001")
    rental = give_back(rental, T0 + HOUR, "J001").rental
    forfeit = step(
        rental, ForfeitDeposit("not back after three days", "admin-1", T0 + 72 * HOUR, fresh_ids())
    )
    assert forfeit.kinds() == ["DepositForfeited"]
    after = forfeit.rental
    assert after.status is RentalStatus.FORFEITED
    assert (after.hold.resolution.posted_fen, after.hold.resolution.voided_fen) == (55000, 0)
    assert not any(isinstance(e, RequestRentalRefund) for e in forfeit.effects)
    assert unit_changes(forfeit.events[0]) == {"BOAT-001": UnitState.LOST}
    assert balances(forfeit) == {"deposits:held": 55000, "revenue:rentals": -55000}
    assert ("role:admin", "deposit.forfeited") in forfeit.pushes()
    assert refused(after, give_back_command(after, "D001")) == "rental_closed"
    held = pay(create(("boat", 1)))
    assert refused(held, ForfeitDeposit("x", "a", T0, fresh_ids())) == "not_out"
    assert refused(rental, ForfeitDeposit(" ", "a", T0, fresh_ids())) == "bad_request"


# --- cancel --------------------------------------------------------------------------------


def test_a_cancel_before_payment_closes_the_open_payments_and_freezes():
    rental = create(("boat", 1))
    rental = step(rental, StartPayment("P-wx", "wechat", T0)).rental
    rental = step(rental, StartPayment("P-cash", "cash", T0)).rental
    rental = step(rental, StartFreeze("A-1", "Q-1", "alipay", T0, T0 + HOUR)).rental
    cancel = step(rental, CancelRental("kiosk-1", T0, fresh_ids()))
    assert cancel.kinds() == ["RentalCancelled"] and cancel.rental.hold is None
    assert durable(cancel.effects) == [
        ClosePayment("wechat", "P-wx", T0),
        CancelFreeze(rental.rental_id, "alipay", "A-1", "Q-1", T0),
    ]
    assert step(cancel.rental, CancelRental("kiosk-1", T0, fresh_ids())).events == ()
    late = step(cancel.rental, ConfirmFreeze("A-1", "alipay", "AUTH", 50000, T0, T0, "U-late"))
    assert (
        late.kinds() == ["DuplicateFreezeReleasing"] and late.events[0].reason == "rental_cancelled"
    )


def test_a_cancel_after_payment_gives_everything_back_by_the_same_route():
    rental = pay(create(("skis", 1)), channel="alipay")
    cancel = step(rental, CancelRental("desk", T0, fresh_ids()))
    request = cancel.effect(RequestRentalRefund)
    assert (request.refund_fen, request.reason, request.channel) == (
        92000,
        "rental_cancelled",
        "alipay",
    )
    assert cancel.rental.hold.resolution.kind is ResolutionKind.CANCELLED
    assert balances(cancel) == {
        "deposits:held": 80000,
        "rentals:prepaid": 12000,
        "refunds:payable": -92000,
    }
    assert ("role:rental", "rental.cancelled") in cancel.pushes()


def test_a_cancel_of_a_frozen_deposit_unfreezes_it_whole_and_a_rental_out_is_not_cancelled():
    rental = freeze(create(("boat", 1)))
    cancel = step(rental, CancelRental("desk", T0, fresh_ids()))
    assert cancel.effect(Unfreeze).amount_fen == 50000 and cancel.postings == ()
    out = pick_up(pay(create(("boat", 1))), "D001")
    assert refused(out, CancelRental("desk", T0, fresh_ids())) == "rental_out"
    with pytest.raises(ValueError, match="fresh ids"):
        decide(pay(create(("boat", 1))), CancelRental("desk", T0))


# --- the pre-authorisation route: settlement, conversion, lapse ---------------------------


def test_a_frozen_deposit_settles_by_converting_the_charges_and_unfreezing_the_rest():
    rental = pick_up(freeze(create(("boat", 1))), "D001")
    settled = give_back(rental, T0 + 2 * HOUR + 30 * MINUTE, "D001")
    convert = settled.effect(ConvertFrozen)
    assert (convert.amount_fen, convert.unfreeze_rest_fen) == (26000, 24000)
    assert settled.postings == ()  # frozen money is posted when converted
    assert settlement_in_flight(settled.rental)
    told = [e.data for e in settled.effects if getattr(e, "event", "") == "deposit.refunded"]
    assert [(t["how"], t["amount_fen"], t["state"]) for t in told] == [
        ("unfreeze", 24000, "requested")
    ]
    confirmed = step(
        settled.rental, ConfirmConversion(convert.out_trade_no, "ALI-9", 26000, T0 + 3 * HOUR)
    )
    assert balances(confirmed) == {"clearing:alipay": 26000, "revenue:rentals": -26000}
    assert [m.amount_fen for m in confirmed.memos] == [-50000]
    assert confirmed.pushes() == [("kiosk-1", "deposit.refunded")]
    assert not settlement_in_flight(confirmed.rental)
    assert (
        step(confirmed.rental, ConfirmConversion(convert.out_trade_no, "ALI-9", 26000, T0)).events
        == ()
    )


def test_a_frozen_deposit_with_nothing_to_charge_is_unfrozen_whole():
    rental = pick_up(freeze(create(("boat", 1))), "D001")
    settled = give_back(rental, T0 + 5 * MINUTE, "D001")
    unfreeze = settled.effect(Unfreeze)
    assert unfreeze.amount_fen == 50000
    done = step(settled.rental, ConfirmUnfreeze(unfreeze.out_request_no, T0 + HOUR))
    assert [m.amount_fen for m in done.memos] == [-50000] and done.postings == ()
    assert not settlement_in_flight(done.rental)


def test_a_long_rental_is_converted_whole_then_refunded_what_it_does_not_owe():
    rental = pick_up(freeze(create(("skis", 1), days=2), lasts=30 * HOUR), "S001")
    convert_by = rental.hold.convert_by
    assert convert_by == T0 + 29 * HOUR < rental.due_at
    converting = step(rental, ConvertFreeze("P-conv", convert_by))
    convert = converting.effect(ConvertFrozen)
    assert (convert.amount_fen, convert.unfreeze_rest_fen) == (104000, 0)
    assert step(converting.rental, ConvertFreeze("P-again", convert_by)).events == ()
    pooled = step(converting.rental, ConfirmConversion("P-conv", "ALI-1", 104000, convert_by))
    assert balances(pooled) == {
        "clearing:alipay": 104000,
        "deposits:held": -80000,
        "rentals:prepaid": -24000,
    }
    assert [m.amount_fen for m in pooled.memos] == [-104000]
    settled = give_back(pooled.rental, rental.due_at, "S001")
    refund = settled.effect(RequestRentalRefund)
    assert (refund.out_trade_no, refund.total_fen, refund.refund_fen) == ("P-conv", 104000, 80000)
    assert balances(settled) == {
        "deposits:held": 80000,
        "rentals:prepaid": 24000,
        "revenue:rentals": -24000,
        "refunds:payable": -80000,
    }


def test_a_settlement_while_the_conversion_is_in_flight_refunds_once_it_is_confirmed():
    rental = pick_up(freeze(create(("boat", 1))), "D001")
    converting = step(rental, ConvertFreeze("P-conv", T0 + HOUR)).rental
    settled = give_back(converting, T0 + 2 * HOUR + 30 * MINUTE, "D001")
    assert not any(isinstance(e, RequestRentalRefund) for e in settled.effects)
    (refund,) = settled.rental.refunds.values()
    assert (refund.state, refund.amount_fen) == ("waiting", 24000)
    assert (
        refused(settled.rental, ConfirmRefund(refund.out_refund_no, T0)) == "refund_not_requested"
    )
    confirmed = step(settled.rental, ConfirmConversion("P-conv", "ALI-1", 50000, T0 + 3 * HOUR))
    request = confirmed.effect(RequestRentalRefund)
    assert (request.refund_fen, request.total_fen, request.out_trade_no) == (24000, 50000, "P-conv")
    assert balances(confirmed) == {
        "clearing:alipay": 50000,
        "revenue:rentals": -26000,
        "refunds:payable": -24000,
    }


def test_conversion_refusals():
    paid = pick_up(pay(create(("boat", 1))), "D001")
    assert refused(paid, ConvertFreeze("P", T0)) == "not_frozen"
    frozen = pick_up(freeze(create(("boat", 1)), lasts=2 * HOUR), "D001")
    assert refused(frozen, ConvertFreeze("P", T0 + 2 * HOUR)) == "freeze_lapsed"
    assert refused(frozen, ConfirmConversion("P-x", "A", 1, T0)) == "unknown_payment"
    converting = step(frozen, ConvertFreeze("P", T0)).rental
    assert refused(converting, ConfirmConversion("P", "A", 1, T0)) == "amount_mismatch"
    assert refused(frozen, ConfirmUnfreeze("U-x", T0)) == "unknown_unfreeze"


def test_a_lapsed_freeze_voids_the_hold_and_the_charges_become_compensation():
    rental = pick_up(freeze(create(("boat", 1)), lasts=2 * HOUR), "D001")
    assert refused(rental, ReportLapse(T0 + HOUR)) == "bad_request"
    lapsed = step(rental, ReportLapse(T0 + 2 * HOUR))
    assert lapsed.kinds() == ["FreezeLapsed"]
    assert lapsed.rental.hold.resolution.kind is ResolutionKind.LAPSED
    assert [m.amount_fen for m in lapsed.memos] == [-50000]
    assert lapsed.pushes() == [("role:admin", "deposit.lapsed")]
    settled = give_back(lapsed.rental, T0 + 3 * HOUR, "D001")
    split = settled.rental.split
    assert (split.paid_fen, split.kept_fen, split.compensation_fen) == (0, 0, 26000)
    assert settled.effect(OpenCompensationOrder).amount_fen == 26000
    assert settled.rental.hold.resolution.kind is ResolutionKind.LAPSED  # resolved once
    assert step(lapsed.rental, ReportLapse(T0 + 3 * HOUR)).events == ()


def test_a_freeze_lapsing_before_pickup_cancels_the_rental():
    rental = freeze(create(("boat", 1)), lasts=HOUR)
    lapsed = step(rental, ReportLapse(T0 + HOUR))
    assert lapsed.kinds() == ["FreezeLapsed", "RentalCancelled"]
    assert lapsed.rental.status is RentalStatus.CANCELLED
    assert refused(lapsed.rental, pickup_command(lapsed.rental, ["D001"])) == "rental_closed"


# --- refunds refused for good ------------------------------------------------------------


def test_a_refund_refused_for_good_is_told_to_admins_and_stays_owed():
    settled = give_back(pick_up(pay(create(("boat", 1))), "D001"), T0 + HOUR, "D001").rental
    (refund_no,) = settled.refunds
    failed = step(settled, FailRefund(refund_no, "refund_exceeds_payment: no", T0))
    assert failed.pushes() == [("role:admin", "refund.failed")] and failed.postings == ()
    assert step(failed.rental, FailRefund(refund_no, "again", T0)).events == ()
    confirmed = step(settled, ConfirmRefund(refund_no, T0)).rental
    assert refused(confirmed, FailRefund(refund_no, "late", T0)) == "refund_settled"
    assert refused(settled, ConfirmRefund("R-none", T0)) == "unknown_refund"
    assert not settlement_in_flight(failed.rental)


def test_every_command_on_a_missing_rental_is_not_found():
    assert refused(None, MarkOverdue(T0)) == "not_found"
