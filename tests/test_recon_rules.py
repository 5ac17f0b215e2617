"""Reconciliation's classification: each kind of difference, its fix, and that fixing is final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import given
from hypothesis import strategies as st

from actors.reconciliation.model import (
    AttachCollection,
    Books,
    Collection,
    ConfirmRefund,
    Day,
    Kind,
    Line,
    Owner,
    Refund,
    RefundAtChannel,
    Started,
)
from actors.reconciliation.rules import classify, expected_fee

START = datetime(2026, 11, 23, 16, tzinfo=UTC)  # 2026-11-24 00:00 in Shanghai
DAY = Day(START, START + timedelta(days=1), timedelta(minutes=30), 60)
NOON = START + timedelta(hours=12)
ORDER = Owner("order", "O1")


def pay_line(n: int, amount: int = 10000, at: datetime = NOON, fee: int | None = None) -> Line:
    return Line(
        "payment",
        f"P{n}",
        f"TX{n}",
        None,
        amount,
        at,
        expected_fee(amount, 60) if fee is None else fee,
        60,
    )


def refund_line(n: int, amount: int = 10000, at: datetime = NOON) -> Line:
    return Line("refund", f"P{n}", f"TX{n}", f"R{n}", amount, at, expected_fee(amount, 60), 60)


def collection(
    n: int, amount: int = 10000, at: datetime = NOON, owner: Owner = ORDER, refunded=False
):
    return Collection(f"P{n}", f"TX{n}", amount, at, owner, refunded)


def kinds(differences):
    return sorted((d.kind.value, d.key) for d in differences)


def test_a_bill_that_matches_the_books_has_no_differences():
    books = Books((collection(1),), {"P1": Started("P1", ORDER)})
    assert classify(DAY, [pay_line(1)], [], books) == []


def test_a_collection_unknown_here_of_a_started_payment_is_attached_through_its_owner():
    books = Books((), {"P1": Started("P1", ORDER)})
    [difference] = classify(DAY, [pay_line(1)], [], books)
    assert difference.kind is Kind.UNKNOWN_HERE
    assert difference.fix == AttachCollection(ORDER, "P1", "TX1", 10000, NOON)


def test_a_collection_of_a_payment_never_started_here_is_listed():
    [difference] = classify(DAY, [pay_line(1)], [], Books())
    assert (difference.kind, difference.fix) == (Kind.UNKNOWN_HERE, None)


def test_a_second_collection_unknown_here_is_a_duplicate_attached_so_its_owner_refunds_it():
    books = Books((collection(1),), {"P1": Started("P1", ORDER), "P2": Started("P2", ORDER)})
    [difference] = classify(DAY, [pay_line(1), pay_line(2)], [], books)
    assert difference.kind is Kind.DUPLICATE_COLLECTION
    assert isinstance(difference.fix, AttachCollection)


def test_an_order_that_kept_two_collections_is_listed_as_a_duplicate():
    books = Books((collection(1), collection(2)), {})
    [difference] = classify(DAY, [pay_line(1), pay_line(2)], [], books)
    assert (difference.kind, difference.fix) == (Kind.DUPLICATE_COLLECTION, None)
    assert difference.key == "duplicate_collection:order:O1"
    refunded = Books((collection(1), collection(2, refunded=True)), {})
    assert classify(DAY, [pay_line(1), pay_line(2)], [], refunded) == []


def test_a_line_billed_twice_is_a_duplicate():
    books = Books((collection(1),), {})
    differences = classify(DAY, [pay_line(1), pay_line(1)], [], books)
    assert kinds(differences) == [("duplicate_collection", "duplicate_collection:bill:payment:TX1")]


def test_a_collection_here_not_on_the_bill_is_listed():
    [difference] = classify(DAY, [], [], Books((collection(1),)))
    assert (difference.kind, difference.fix, difference.waiting) == (
        Kind.MISSING_AT_CHANNEL,
        None,
        False,
    )


def test_a_collection_near_midnight_waits_for_the_next_bill_and_is_found_there():
    late = collection(1, at=DAY.end - timedelta(minutes=5))
    [waiting] = classify(DAY, [], None, Books((late,)))
    assert waiting.waiting and waiting.kind is Kind.MISSING_AT_CHANNEL
    next_day = [pay_line(1, at=DAY.end + timedelta(seconds=3))]
    assert classify(DAY, [], next_day, Books((late,))) == []
    [missing] = classify(DAY, [], [], Books((late,)))
    assert not missing.waiting


def test_a_line_billed_just_after_midnight_matches_the_record_of_the_day_before():
    early = pay_line(1, at=DAY.start + timedelta(seconds=2))
    record = collection(1, at=DAY.start - timedelta(seconds=1))
    assert classify(DAY, [early], [], Books((record,))) == []


def test_an_amount_mismatch_is_listed_with_both_amounts():
    [difference] = classify(DAY, [pay_line(1, amount=10001)], [], Books((collection(1),)))
    assert (difference.kind, difference.local_fen, difference.channel_fen, difference.fix) == (
        Kind.AMOUNT_MISMATCH,
        10000,
        10001,
        None,
    )


def refund(n: int, **changes) -> Refund:
    return attrs.evolve(
        Refund(f"R{n}", f"P{n}", 10000, NOON - timedelta(hours=1), ORDER, NOON), **changes
    )


def test_a_refund_pending_here_and_on_the_bill_is_confirmed_through_its_owner():
    books = Books((collection(1, refunded=True),), {}, (refund(1, confirmed_at=None),))
    [difference] = classify(DAY, [pay_line(1), refund_line(1)], [], books)
    assert difference.kind is Kind.STATUS_MISMATCH
    assert difference.fix == ConfirmRefund(ORDER, "R1", NOON)


def test_a_pending_refund_the_query_shows_done_or_failed():
    pending = refund(1, confirmed_at=None)
    books = Books(
        (collection(1, refunded=True),), {}, (pending,), {"R1": RefundAtChannel("SUCCESS", NOON)}
    )
    [done] = classify(DAY, [pay_line(1)], [], books)
    assert done.fix == ConfirmRefund(ORDER, "R1", NOON)
    failed = attrs.evolve(books, refund_states={"R1": RefundAtChannel("CLOSED")})
    [listed] = classify(DAY, [pay_line(1)], [], failed)
    assert (listed.kind, listed.fix) == (Kind.STATUS_MISMATCH, None)
    processing = attrs.evolve(books, refund_states={"R1": RefundAtChannel("PROCESSING")})
    assert classify(DAY, [pay_line(1)], [], processing) == []


def test_a_refund_failed_here_but_paid_out_there_is_listed():
    books = Books((collection(1, refunded=True),), {}, (refund(1, confirmed_at=None, failed=True),))
    [difference] = classify(DAY, [pay_line(1), refund_line(1)], [], books)
    assert (difference.kind, difference.fix) == (Kind.STATUS_MISMATCH, None)


def test_a_refund_unknown_here_and_one_missing_at_the_channel_are_listed():
    books = Books((collection(1, refunded=True),), {}, (refund(2),))
    differences = classify(DAY, [pay_line(1), refund_line(1)], [], books)
    assert kinds(differences) == [
        ("missing_at_channel", "missing_at_channel:refund:R2"),
        ("unknown_here", "unknown_here:refund:R1"),
    ]
    assert all(d.fix is None for d in differences)


def test_a_fee_off_its_rate_is_listed():
    [difference] = classify(DAY, [pay_line(1, fee=61)], [], Books((collection(1),)))
    assert (difference.kind, difference.local_fen, difference.channel_fen) == (
        Kind.FEE_MISMATCH,
        60,
        61,
    )
    stated = attrs.evolve(pay_line(1), rate_bp=38)
    [difference] = classify(DAY, [stated], [], Books((collection(1),)))
    assert difference.kind is Kind.FEE_MISMATCH


# -- properties --------------------------------------------------------------------

OWNERS = st.sampled_from([Owner("order", f"O{i}") for i in range(4)] + [Owner("rental", "D1")])


@st.composite
def worlds(draw):
    """Books and a bill drawn together, with any of the kinds of difference planted."""
    n = draw(st.integers(0, 8))
    collections, started, refunds, lines = [], {}, [], []
    for i in range(n):
        owner = draw(OWNERS)
        amount = draw(st.integers(1, 10**7))
        at = START + timedelta(seconds=draw(st.integers(-600, 86400 + 600)))
        started[f"P{i}"] = Started(f"P{i}", owner)
        here = draw(st.booleans()) or not draw(st.booleans())
        billed = draw(st.booleans()) or not draw(st.booleans())
        refunded = draw(st.booleans())
        if here:
            collections.append(Collection(f"P{i}", f"TX{i}", amount, at, owner, refunded))
        if billed and DAY.start <= at < DAY.end:
            billed_amount = amount + draw(st.sampled_from([0, 0, 0, 1]))
            fee = expected_fee(billed_amount, 60) + draw(st.sampled_from([0, 0, 0, 1]))
            lines.append(Line("payment", f"P{i}", f"TX{i}", None, billed_amount, at, fee, 60))
        if refunded:
            confirmed = draw(st.sampled_from(["yes", "pending", "failed"]))
            refunds.append(
                Refund(
                    f"R{i}",
                    f"P{i}",
                    amount,
                    at,
                    owner,
                    at if confirmed == "yes" else None,
                    confirmed == "failed",
                )
            )
            if draw(st.booleans()) and DAY.start <= at < DAY.end:
                lines.append(
                    Line(
                        "refund",
                        f"P{i}",
                        f"TX{i}",
                        f"R{i}",
                        amount,
                        at,
                        expected_fee(amount, 60),
                        60,
                    )
                )
    if lines and draw(st.booleans()):
        lines.append(draw(st.sampled_from(lines)))
    states = {
        r.out_refund_no: RefundAtChannel(
            draw(st.sampled_from(["SUCCESS", "PROCESSING", "CLOSED"])), NOON
        )
        for r in refunds
        if r.pending
    }
    next_lines = draw(st.none() | st.just([]))
    return Books(tuple(collections), started, tuple(refunds), states), lines, next_lines


def apply(books: Books, fixes) -> Books:
    """What the owners' actors do with the fixes, in the books."""
    collections = list(books.collections)
    refunds = {r.out_refund_no: r for r in books.refunds}
    for fix in fixes:
        if isinstance(fix, AttachCollection):
            if all(c.channel_txn_id != fix.channel_txn_id for c in collections):
                twice = any(c.owner == fix.owner for c in collections)
                collections.append(
                    Collection(
                        fix.out_trade_no,
                        fix.channel_txn_id,
                        fix.amount_fen,
                        fix.paid_at,
                        fix.owner,
                        twice,
                    )
                )
        else:
            refunds[fix.out_refund_no] = attrs.evolve(
                refunds[fix.out_refund_no], confirmed_at=fix.at
            )
    return attrs.evolve(books, collections=tuple(collections), refunds=tuple(refunds.values()))


@given(worlds())
def test_classification_is_deterministic_with_unique_keys(world):
    books, lines, next_lines = world
    first = classify(DAY, lines, next_lines, books)
    assert first == classify(DAY, lines, next_lines, books)
    assert len({d.key for d in first}) == len(first)
    for difference in first:
        assert difference.key.startswith(difference.kind.value)
        assert difference.fix is None or not difference.waiting


@given(worlds())
def test_once_fixed_nothing_is_fixed_twice(world):
    books, lines, next_lines = world
    fixes = [d.fix for d in classify(DAY, lines, next_lines, books) if d.fix is not None]
    again = classify(DAY, lines, next_lines, apply(books, fixes))
    assert [d for d in again if d.fix is not None] == []


@given(worlds())
def test_every_line_the_books_do_not_match_is_a_difference(world):
    books, lines, next_lines = world
    keys = " ".join(d.key for d in classify(DAY, lines, next_lines, books))
    known = {c.channel_txn_id: c for c in books.collections}
    asked = {r.out_refund_no: r for r in books.refunds}
    for line in lines:
        if line.kind == "payment":
            c = known.get(line.channel_txn_id)
            if c is None or c.amount_fen != line.amount_fen:
                assert line.channel_txn_id in keys
        else:
            r = asked.get(line.out_refund_no)
            if r is None or r.amount_fen != line.amount_fen or r.confirmed_at is None:
                assert line.out_refund_no in keys
        if line.fee_fen != expected_fee(line.amount_fen, 60):
            part = "refund:" if line.kind == "refund" else ""
            assert f"fee_mismatch:{part}{line.out_refund_no or line.channel_txn_id}" in keys


@given(worlds())
def test_a_clean_world_has_no_differences(world):
    books, _, _ = world
    clean = Books(
        tuple(attrs.evolve(c, at=NOON, refunded=False) for c in books.collections[:1]),
        books.started,
    )
    lines = [
        Line(
            "payment",
            c.out_trade_no,
            c.channel_txn_id,
            None,
            c.amount_fen,
            NOON,
            expected_fee(c.amount_fen, 60),
            60,
        )
        for c in clean.collections
    ]
    assert classify(DAY, lines, [], clean) == []
