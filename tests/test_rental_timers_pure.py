"""Which deadlines a rental waits for (actors.rentals.timers), by its state."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import attrs

from actors.rentals.state import DepositRoute, Hold, Rental, RentalStatus
from actors.rentals.timers import Deadline, Timer, deadlines_of

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def rental(**changes) -> Rental:
    base = Rental(
        "H20261201AAAAAAAAAA",
        "kiosk-1",
        "k",
        (),
        1,
        "Asia/Shanghai",
        time(17, 30),
        T0,
        T0 + timedelta(minutes=15),
        RentalStatus.PENDING,
    )
    return attrs.evolve(base, **changes)


def frozen_hold(**changes) -> Hold:
    base = Hold(
        DepositRoute.PREAUTH,
        "alipay",
        80000,
        0,
        T0,
        out_order_no="F1",
        auth_no="A1",
        expires_at=T0 + timedelta(days=30),
        convert_by=T0 + timedelta(days=30) - timedelta(hours=1),
    )
    return attrs.evolve(base, **changes)


def test_an_unpaid_rental_waits_for_its_hold_to_run_out():
    assert deadlines_of(rental()) == [
        Deadline(T0 + timedelta(minutes=15), rental().rental_id, Timer.HOLD)
    ]


def test_a_rental_out_waits_for_its_due_time_once_and_not_when_overdue():
    due = T0 + timedelta(hours=8)
    out = rental(status=RentalStatus.OUT, due_at=due)
    assert [d.timer for d in deadlines_of(out)] == [Timer.DUE]
    assert deadlines_of(attrs.evolve(out, overdue=True)) == []


def test_a_frozen_deposit_waits_to_be_converted_before_it_lapses():
    held = rental(status=RentalStatus.HELD, hold=frozen_hold())
    timers = {d.timer: d.at for d in deadlines_of(held)}
    assert set(timers) == {Timer.CONVERT, Timer.LAPSE}
    assert timers[Timer.CONVERT] < timers[Timer.LAPSE]


def test_closed_rentals_and_paid_deposits_wait_for_nothing_of_a_freeze():
    for status in (RentalStatus.SETTLED, RentalStatus.CANCELLED, RentalStatus.EXPIRED):
        assert deadlines_of(rental(status=status)) == []
    paid = Hold(DepositRoute.PAY, "wechat", 80000, 0, T0, out_trade_no="P1")
    assert deadlines_of(rental(status=RentalStatus.HELD, hold=paid)) == []
