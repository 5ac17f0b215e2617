"""Entry rules, exhaustively: every reason, every mode, and properties of sequences."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.tickets.domain import EntryGivenBack, decide_scan, evolve
from actors.tickets.rules import DISPLAY, REASONS, GateView, ScanMoment, TicketState

TODAY = date(2026, 10, 1)
NOON = ScanMoment(TODAY, time(12, 30), {"AM": (time(8), time(12)), "PM": (time(12), time(17, 30))})
GATE = GateView("G1", "main")
SINGLE = TicketState("T1", "O1", "adult", TODAY, None, 1, ("main",), True)
AT = datetime(2026, 10, 1, 4, 30, tzinfo=UTC)


def scan(ticket, direction="entry", gate=GATE, moment=NOON):
    return decide_scan(ticket, gate, direction, moment)


def test_every_reason_has_both_display_texts():
    assert set(DISPLAY) == set(REASONS)
    assert all(zh and en for zh, en in DISPLAY.values())


def test_a_valid_ticket_enters_once_and_is_used_up_after():
    verdict, after = scan(SINGLE)
    assert (verdict.granted, verdict.reason, verdict.entries_left, verdict.consumed) == (
        True,
        "ok",
        0,
        True,
    )
    assert after.entries_used == 1 and after.inside
    verdict, _ = scan(attrs.evolve(after, inside=False))
    assert (verdict.granted, verdict.reason) == (False, "used_up")


@pytest.mark.parametrize(
    ("ticket", "gate", "moment", "reason"),
    [
        (None, GATE, NOON, "unknown"),
        (attrs.evolve(SINGLE, refunded=True), GATE, NOON, "refunded"),
        (attrs.evolve(SINGLE, visit_date=date(2026, 10, 2)), GATE, NOON, "not_today"),
        (attrs.evolve(SINGLE, visit_date=date(2026, 9, 30)), GATE, NOON, "not_today"),
        (attrs.evolve(SINGLE, slot="AM"), GATE, NOON, "wrong_slot"),
        (
            attrs.evolve(SINGLE, slot="PM"),
            GATE,
            attrs.evolve(NOON, local_time=time(11)),
            "wrong_slot",
        ),
        (attrs.evolve(SINGLE, slot="XX"), GATE, NOON, "wrong_slot"),
        (attrs.evolve(SINGLE, entries_used=1), GATE, NOON, "used_up"),
        (attrs.evolve(SINGLE, inside=True), GATE, NOON, "passback"),
        (SINGLE, GateView("G2", "cable-car"), NOON, "wrong_gate"),
        (SINGLE, GateView("G3", "main", products=frozenset({"child"})), NOON, "wrong_gate"),
        (SINGLE, GateView("G4", "main", mode="locked"), NOON, "gate_closed"),
        (None, GateView("G4", "main", mode="locked"), NOON, "gate_closed"),
    ],
)
def test_each_refusal_names_its_reason_and_changes_nothing(ticket, gate, moment, reason):
    verdict, after = decide_scan(ticket, gate, "entry", moment)
    assert (verdict.granted, verdict.reason, verdict.consumed) == (False, reason, False)
    assert after == ticket


def test_slot_tickets_may_enter_half_an_hour_early_and_not_after_the_slot():
    pm = attrs.evolve(SINGLE, slot="PM")
    assert scan(pm, moment=attrs.evolve(NOON, local_time=time(11, 30)))[0].granted
    assert not scan(pm, moment=attrs.evolve(NOON, local_time=time(11, 29)))[0].granted
    assert not scan(pm, moment=attrs.evolve(NOON, local_time=time(17, 30)))[0].granted


def test_anti_passback_needs_an_exit_between_entries():
    day_pass = attrs.evolve(SINGLE, entries_allowed=None)
    _, inside = scan(day_pass)
    assert scan(inside)[0].reason == "passback"
    exit_verdict, outside = scan(inside, "exit")
    assert exit_verdict.granted and not outside.inside
    assert scan(outside)[0].granted


def test_without_anti_passback_a_multi_entry_ticket_may_enter_twice_in_a_row():
    twice = attrs.evolve(SINGLE, entries_allowed=2, anti_passback=False)
    _, once = scan(twice)
    verdict, done = scan(once)
    assert verdict.granted and verdict.entries_left == 0
    assert scan(done)[0].reason == "used_up"


def test_exits_are_always_allowed_for_a_known_ticket():
    for ticket in (
        attrs.evolve(SINGLE, refunded=True),
        attrs.evolve(SINGLE, visit_date=date(2026, 9, 1)),
        attrs.evolve(SINGLE, entries_used=1),
    ):
        verdict, after = scan(ticket, "exit")
        assert verdict.granted and not verdict.consumed and not after.inside


def test_free_passage_admits_everyone_and_consumes_nothing():
    free = GateView("G1", "main", mode="free")
    for ticket in (None, SINGLE, attrs.evolve(SINGLE, entries_used=1, inside=True)):
        verdict, after = scan(ticket, gate=free)
        assert verdict.granted and not verdict.consumed and after == ticket


def test_give_back_restores_the_entry():
    verdict, after = scan(SINGLE)
    given_back = EntryGivenBack("T1", "G1", "s1", verdict.consumed, SINGLE.inside, AT)
    assert evolve(after, given_back) == SINGLE


tickets = st.builds(
    TicketState,
    ticket_id=st.just("T1"),
    order_id=st.just("O1"),
    product_id=st.sampled_from(["adult", "child"]),
    visit_date=st.sampled_from([TODAY, date(2026, 10, 2)]),
    slot=st.sampled_from([None, "AM", "PM"]),
    entries_allowed=st.sampled_from([None, 1, 2, 5]),
    zones=st.sampled_from([("main",), ("main", "lake"), ("lake",)]),
    anti_passback=st.booleans(),
    entries_used=st.integers(0, 5),
    inside=st.booleans(),
    refunded=st.booleans(),
)
moves = st.lists(st.sampled_from(["entry", "exit"]), max_size=30)


@given(ticket=tickets, directions=moves, hour=st.integers(0, 23))
def test_no_sequence_of_scans_admits_beyond_the_entitlement(ticket, directions, hour):
    moment = attrs.evolve(NOON, local_time=time(hour))
    admitted = 0
    state = ticket
    for direction in directions:
        verdict, state = decide_scan(state, GATE, direction, moment)
        admitted += verdict.consumed
        assert verdict.granted or not verdict.consumed
        if verdict.granted and direction == "entry":
            assert not ticket.refunded and ticket.visit_date == TODAY
    if ticket.entries_allowed is not None:
        assert ticket.entries_used + admitted <= max(ticket.entries_allowed, ticket.entries_used)
    assert state.entries_used == ticket.entries_used + admitted
