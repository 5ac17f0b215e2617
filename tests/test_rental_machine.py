"""Every interleaving of a rental's commands, on both routes: the two-phase transfer resolves once.

A hypothesis state machine drives one rental through create, payments and
freezes (exact, wrong, duplicated, replayed), cancel, expiry, pickup (with
genuine, forged and foreign vouchers), partial returns, double returns,
overdue, extensions, forfeits, conversions, unfreezes, lapses and the
channel's answers to refunds, in any order and at any time. After every
step the invariants hold: the hold is resolved at most once and never both
released and forfeited; what it posted and voided add up to what it
secured; nothing released is negative and charges plus the release equal
what was paid plus compensation; the ledger balances and its accounts say
what the rental says (the pool holds exactly the unresolved pooled
deposit, refunds payable what is owed, the memo what is frozen).
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from actors.rentals.commands import (
    CancelRental,
    ConfirmConversion,
    ConfirmFreeze,
    ConfirmPayment,
    ConfirmRefund,
    ConfirmUnfreeze,
    ConvertFreeze,
    ExpireRental,
    ExtendRental,
    FailRefund,
    ForfeitDeposit,
    MarkOverdue,
    ReportLapse,
    ReturnUnits,
    StartFreeze,
    StartPayment,
    UnitReturn,
)
from actors.rentals.domain import RentalRefused
from actors.rentals.events import RESOLVING, RentalSettled
from actors.rentals.state import (
    Condition,
    DepositRoute,
    RentalStatus,
    ResolutionKind,
    UnitState,
)
from tests.rental_support import (
    HOUR,
    MINUTE,
    T0,
    create,
    fresh,
    fresh_ids,
    pay,
    pickup_command,
    step,
)

LABELS = {"skis": ["S001", "S002"], "boat": ["D001", "D002"], "jacket": ["J001", "J002"]}


class RentalMachine(RuleBasedStateMachine):
    """One rental, every command in any order; the invariants after each step."""

    @initialize(
        items=st.lists(
            st.tuples(st.sampled_from(sorted(LABELS)), st.integers(1, 2)),
            min_size=1,
            max_size=3,
            unique_by=lambda pair: pair[0],
        ),
        days=st.integers(1, 2),
    )
    def make(self, items, days):
        self.rental = create(*items, days=days)
        self.other = None  # another rental's voucher, for foreign pickups
        self.now = T0
        self.balances: dict[str, int] = {}
        self.memo = 0
        self.resolutions = 0
        self.settlements = 0
        self.attempts: list[tuple[str, str, str]] = []  # (kind, number, channel)
        self.confirmations: list = []
        self.unit_states: dict[str, UnitState] = {}

    def run(self, command):
        try:
            done = step(self.rental, command)
        except RentalRefused as refusal:
            return refusal.code
        for posting in done.postings:
            self.balances[posting.account] = (
                self.balances.get(posting.account, 0) + posting.amount_fen
            )
        assert sum(p.amount_fen for p in done.postings) == 0
        self.memo += sum(m.amount_fen for m in done.memos)
        for event in done.events:
            if isinstance(event, RESOLVING) and event.resolution is not None:
                self.resolutions += 1
            if isinstance(event, RentalSettled):
                self.settlements += 1
        self.rental = done.rental
        return done

    @rule(minutes=st.integers(0, 20) | st.integers(0, 48 * 60))
    def time_passes(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule(channel=st.sampled_from(["wechat", "alipay", "cash"]))
    def start_payment(self, channel):
        number = fresh("P")
        if not isinstance(self.run(StartPayment(number, channel, self.now)), str):
            self.attempts.append(("pay", number, channel))

    @rule(channel=st.sampled_from(["wechat", "alipay", "card"]), route=st.booleans())
    def collect_at_once(self, channel, route):
        """Start and confirm the deposit's collection in one go (the common case)."""
        if route:
            number = fresh("P")
            self.run(StartPayment(number, channel, self.now))
            due = self.rental.amount_due_fen
            self.run(
                ConfirmPayment(number, channel, fresh("txn"), due, self.now, self.now, fresh("R"))
            )
        else:
            number = fresh("A")
            lasts = self.now + 30 * HOUR
            self.run(StartFreeze(number, fresh("Q"), "alipay", self.now, lasts))
            due = self.rental.amount_due_fen
            self.run(
                ConfirmFreeze(number, "alipay", fresh("au"), due, self.now, self.now, fresh("U"))
            )

    @rule(lasts=st.integers(30, 72 * 60))
    def start_freeze(self, lasts):
        number = fresh("A")
        command = StartFreeze(number, fresh("Q"), "alipay", self.now, self.now + lasts * MINUTE)
        if not isinstance(self.run(command), str):
            self.attempts.append(("freeze", number, "alipay"))

    @precondition(lambda self: self.attempts)
    @rule(data=st.data(), exact=st.booleans())
    def channel_confirms(self, data, exact):
        kind, number, channel = data.draw(st.sampled_from(self.attempts))
        due = self.rental.amount_due_fen
        amount = due if exact else data.draw(st.integers(1, 2 * due))
        if kind == "pay":
            command = ConfirmPayment(
                number, channel, fresh("txn"), amount, self.now, self.now, fresh("R")
            )
        else:
            command = ConfirmFreeze(
                number, channel, fresh("auth"), amount, self.now, self.now, fresh("U")
            )
        if not isinstance(self.run(command), str):
            self.confirmations.append(command)

    @precondition(lambda self: self.confirmations)
    @rule(data=st.data())
    def a_confirmation_is_replayed(self, data):
        done = self.run(data.draw(st.sampled_from(self.confirmations)))
        assert not isinstance(done, str) and done.events == ()

    @rule(now=st.integers(0, 4))
    def cancel(self, now):
        if now:
            return  # rarely: a cancel ends most of what is worth exploring
        before = self.rental.status
        code = self.run(CancelRental("desk", self.now, fresh_ids()))
        if before is RentalStatus.OUT:
            assert code == "rental_out"

    @rule(now=st.integers(0, 2))
    def expire(self, now):
        if now:
            return
        self.run(ExpireRental(self.now))

    @rule(how=st.sampled_from(["genuine", "genuine", "genuine", "forged", "foreign"]))
    def pickup(self, how):
        labels = [
            label
            for line in self.rental.lines
            for label in LABELS[line.item.item_id][: line.quantity]
        ]
        voucher = self.rental.voucher
        if how == "forged" and voucher:
            voucher = voucher[:-1] + ("A" if voucher[-1] != "A" else "B")
        if how == "foreign":
            if self.other is None:
                self.other = pay(create(("jacket", 1)))
            voucher = self.other.voucher
        states = {u: s for u, s in self.unit_states.items() if s is not UnitState.AVAILABLE}
        command = pickup_command(
            self.rental, labels, self.now, voucher=voucher or "", unit_states=states
        )
        before = self.rental.status
        result = self.run(command)
        if how == "forged":
            assert result == "voucher_forged"
        elif how == "foreign":
            assert result == "voucher_foreign"
        elif before is RentalStatus.HELD:
            assert not isinstance(result, str)
            for unit in self.rental.units:
                self.unit_states[unit.unit_id] = UnitState.OUT

    @precondition(lambda self: self.rental.units_out)
    @rule(data=st.data())
    def some_units_come_back(self, data):
        out = self.rental.units_out
        chosen = data.draw(st.lists(st.sampled_from(out), min_size=1, unique=True))
        conditions = data.draw(
            st.lists(st.sampled_from(list(Condition)), min_size=len(chosen), max_size=len(chosen))
        )
        back = tuple(UnitReturn(u.label, c) for u, c in zip(chosen, conditions, strict=True))
        result = self.run(ReturnUnits(back, "desk", self.now, fresh_ids()))
        assert not isinstance(result, str), result
        after = {
            "ok": UnitState.AVAILABLE,
            "damaged": UnitState.MAINTENANCE,
            "lost": UnitState.LOST,
        }
        for unit, condition in zip(chosen, conditions, strict=True):
            self.unit_states[unit.unit_id] = after[condition.value]

    @precondition(lambda self: any(u.back_at for u in self.rental.units))
    @rule(data=st.data())
    def a_unit_is_returned_twice(self, data):
        back = [u for u in self.rental.units if u.back_at is not None]
        unit = data.draw(st.sampled_from(back))
        code = self.run(
            ReturnUnits((UnitReturn(unit.label, Condition.OK),), "desk", self.now, fresh_ids())
        )
        assert code in ("already_returned", "settlement_in_flight", "rental_closed")

    @rule()
    def overdue(self):
        self.run(MarkOverdue(self.now))

    @rule(hours=st.integers(1, 30))
    def extend(self, hours):
        due = self.rental.due_at
        if due is not None:
            self.run(ExtendRental(max(due, self.now) + hours * HOUR, "asked", "admin", self.now))

    @rule(now=st.integers(0, 4))
    def forfeit(self, now):
        if now:
            return
        self.run(ForfeitDeposit("never came back", "admin", self.now, fresh_ids()))

    @rule()
    def convert_before_lapse(self):
        self.run(ConvertFreeze(fresh("P"), self.now))

    @precondition(lambda self: self.rental.hold and self.rental.hold.conversion)
    @rule()
    def channel_converts(self):
        conversion = self.rental.hold.conversion
        self.run(
            ConfirmConversion(
                conversion.out_trade_no, fresh("ali"), conversion.amount_fen, self.now
            )
        )

    @precondition(lambda self: self.rental.unfreezes)
    @rule(data=st.data())
    def channel_unfreezes(self, data):
        self.run(
            ConfirmUnfreeze(data.draw(st.sampled_from(sorted(self.rental.unfreezes))), self.now)
        )

    @rule()
    def freeze_lapses(self):
        hold = self.rental.hold
        if hold is not None and hold.expires_at is not None:
            self.run(ReportLapse(max(self.now, hold.expires_at)))

    @precondition(lambda self: self.rental.refunds)
    @rule(data=st.data(), refuse=st.booleans())
    def channel_answers_a_refund(self, data, refuse):
        number = data.draw(st.sampled_from(sorted(self.rental.refunds)))
        waiting = self.rental.refunds[number].awaiting_conversion
        command = (
            FailRefund(number, "no: no", self.now) if refuse else ConfirmRefund(number, self.now)
        )
        result = self.run(command)
        if waiting:
            assert result == "refund_not_requested"

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def the_hold_resolves_at_most_once_and_adds_up(self):
        assert self.resolutions <= 1 and self.settlements <= 1
        hold = self.rental.hold
        if hold is None:
            assert self.resolutions == 0
            return
        resolution = hold.resolution
        assert (resolution is not None) == (self.resolutions == 1)
        if resolution is not None:
            assert 0 <= resolution.posted_fen <= hold.amount_fen
            assert resolution.posted_fen + resolution.voided_fen == hold.amount_fen
            assert resolution.voided_fen >= 0

    @invariant()
    def never_both_released_and_forfeited(self):
        hold = self.rental.hold
        if hold is None or hold.resolution is None:
            return
        release = hold.resolution.release
        released = release.refund_fen + release.unfreeze_rest_fen + release.unfreeze_fen
        if hold.resolution.kind is ResolutionKind.FORFEITED:
            assert released == 0 and hold.resolution.voided_fen == 0
        elif hold.resolution.kind is not ResolutionKind.LAPSED:
            assert released == hold.resolution.voided_fen
        for refund in self.rental.refunds.values():
            assert refund.amount_fen > 0 and refund.amount_fen <= refund.payment_fen
            if refund.reason in ("deposit_release", "rental_cancelled"):
                assert hold.resolution.kind is not ResolutionKind.FORFEITED

    @invariant()
    def a_settlement_balances(self):
        split = self.rental.split
        if split is None:
            assert self.rental.status is not RentalStatus.SETTLED
            return
        assert split.released_fen >= 0 and split.compensation_fen >= 0
        assert split.kept_fen + split.released_fen == split.paid_fen
        assert split.charges_fen + split.released_fen == split.paid_fen + split.compensation_fen
        assert split.charges_fen == sum(c.total_fen for c in self.rental.charges)
        assert (self.rental.compensation_order_id is None) == (split.compensation_fen == 0)
        assert not self.rental.units_out

    @invariant()
    def units_are_out_exactly_while_the_rental_is(self):
        rental = self.rental
        ids = [u.unit_id for u in rental.units]
        assert len(ids) == len(set(ids))
        if rental.status is RentalStatus.OUT:
            assert rental.units_out
        if rental.status in (RentalStatus.SETTLED, RentalStatus.FORFEITED):
            assert not rental.units_out

    @invariant()
    def the_ledger_says_what_the_rental_says(self):
        hold = self.rental.hold
        in_pool = hold is not None and hold.pooled and hold.resolution is None
        assert self.balances.get("deposits:held", 0) == -(hold.deposit_fen if in_pool else 0)
        assert self.balances.get("rentals:prepaid", 0) == -(hold.prepaid_fen if in_pool else 0)
        owed = sum(
            r.amount_fen
            for r in self.rental.refunds.values()
            if not r.confirmed and not r.awaiting_conversion
        )
        assert self.balances.get("refunds:payable", 0) == -owed
        split = self.rental.split
        assert self.balances.get("receivable:rentals", 0) == (
            split.compensation_fen if split else 0
        )

    @invariant()
    def the_memo_is_what_is_frozen(self):
        rental = self.rental
        hold = rental.hold
        # a duplicate freeze is frozen until its unfreeze is confirmed
        frozen = sum(
            u.amount_fen
            for u in rental.unfreezes.values()
            if not u.confirmed and (hold is None or u.auth_no != hold.auth_no)
        )
        if hold is not None and hold.route is DepositRoute.PREAUTH:
            resolution = hold.resolution
            gone = (hold.conversion is not None and hold.conversion.confirmed) or (
                resolution is not None
                and (
                    resolution.kind is ResolutionKind.LAPSED
                    or (
                        resolution.release.unfreeze_request_no is not None
                        and rental.unfreezes[resolution.release.unfreeze_request_no].confirmed
                    )
                )
            )
            frozen += 0 if gone else hold.amount_fen
        assert self.memo == frozen


TestRentalMachine = RentalMachine.TestCase
TestRentalMachine.settings = settings(max_examples=300, stateful_step_count=40)
