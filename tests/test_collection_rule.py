"""The one collection rule orders and rentals share (actors.payments)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from actors.payments import NotCollected, collection_refusal

DEADLINE = datetime(2026, 12, 1, 8, 15, tzinfo=UTC)


@given(
    collected=st.booleans(),
    cancelled=st.booleans(),
    expired=st.booleans(),
    late_s=st.integers(-600, 600),
    amount=st.integers(1, 3),
)
def test_only_an_exact_payment_on_time_while_awaited_collects_and_reasons_come_in_order(
    collected, cancelled, expired, late_s, amount
):
    refusal = collection_refusal(
        collected=collected,
        cancelled=cancelled,
        expired=expired,
        paid_at=DEADLINE + timedelta(seconds=late_s),
        deadline=DEADLINE,
        amount_fen=amount,
        due_fen=2,
    )
    late = late_s > 0
    if collected:
        assert refusal is NotCollected.ALREADY_PAID
    elif cancelled:
        assert refusal is NotCollected.CANCELLED
    elif expired or late:
        assert refusal is NotCollected.EXPIRED
    elif amount != 2:
        assert refusal is NotCollected.AMOUNT_MISMATCH
    else:
        assert refusal is None


def test_a_payment_made_at_the_deadline_itself_is_on_time():
    assert (
        collection_refusal(
            collected=False,
            cancelled=False,
            expired=False,
            paid_at=DEADLINE,
            deadline=DEADLINE,
            amount_fen=5,
            due_fen=5,
        )
        is None
    )
