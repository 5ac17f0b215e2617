"""Which reason a scan gets when several apply: the order docs/gates.md states."""

from __future__ import annotations

from datetime import date, time, timedelta

import attrs
from hypothesis import given
from hypothesis import strategies as st

from actors.tickets.domain import decide_scan
from actors.tickets.rules import GateView, ScanMoment, TicketState

TODAY = date(2026, 10, 1)
NOON = ScanMoment(TODAY, time(12, 30), {"AM": (time(8), time(12)), "PM": (time(12), time(17, 30))})
TICKET = TicketState("T1", "O1", "adult", TODAY, None, 1, ("main",), True)

#: docs/gates.md, "Which reason wins" (after gate_closed, free passage, forged and exits)
ENTRY_ORDER = ("refunded", "wrong_gate", "not_today", "wrong_slot", "passback", "used_up")


@st.composite
def troubled_scans(draw):
    """A ticket and a gate with any set of the entry refusals applying at once."""
    applying = draw(st.sets(st.sampled_from(ENTRY_ORDER)))
    ticket, gate = TICKET, GateView("G1", "main")
    if "refunded" in applying:
        ticket = attrs.evolve(ticket, refunded=True)
    if "wrong_gate" in applying:
        if draw(st.booleans()):
            gate = GateView("G1", "lake")
        else:
            gate = GateView("G1", "main", products=frozenset({"ski-4h"}))
    if "not_today" in applying:
        ticket = attrs.evolve(ticket, visit_date=TODAY + timedelta(draw(st.sampled_from([-1, 1]))))
    if "wrong_slot" in applying:
        ticket = attrs.evolve(ticket, slot="AM")
    else:
        ticket = attrs.evolve(ticket, slot=draw(st.sampled_from([None, "PM"])))
    if "passback" in applying:
        ticket = attrs.evolve(ticket, inside=True)
    if "used_up" in applying:
        ticket = attrs.evolve(ticket, entries_used=1)
    return ticket, gate, applying


@given(troubled_scans())
def test_the_first_refusal_in_the_documented_order_wins(scan):
    ticket, gate, applying = scan
    verdict, after = decide_scan(ticket, gate, "entry", NOON)
    expected = next((reason for reason in ENTRY_ORDER if reason in applying), "ok")
    assert verdict.reason == expected
    assert verdict.granted is (expected == "ok")
    assert (after == ticket) is (expected != "ok")  # a refusal changes nothing


@given(troubled_scans(), st.sampled_from(["entry", "exit"]))
def test_a_locked_gate_refuses_and_free_passage_grants_whatever_else_applies(scan, direction):
    ticket, gate, _ = scan
    locked, _ = decide_scan(ticket, attrs.evolve(gate, mode="locked"), direction, NOON)
    free, after = decide_scan(ticket, attrs.evolve(gate, mode="free"), direction, NOON)
    unknown_locked, _ = decide_scan(None, attrs.evolve(gate, mode="locked"), direction, NOON)
    assert (locked.granted, locked.reason) == (False, "gate_closed")
    assert (unknown_locked.granted, unknown_locked.reason) == (False, "gate_closed")
    assert (free.granted, free.reason, free.consumed) == (True, "ok", False) and after == ticket


@given(troubled_scans())
def test_an_exit_of_a_known_ticket_is_granted_whatever_else_applies(scan):
    ticket, gate, _ = scan
    verdict, after = decide_scan(ticket, gate, "exit", NOON)
    assert (verdict.granted, verdict.reason, verdict.consumed) == (True, "ok", False)
    assert after == attrs.evolve(ticket, inside=False)


def test_a_ticket_inside_with_no_entries_left_gets_passback_then_used_up_after_leaving():
    inside = attrs.evolve(TICKET, entries_used=1, inside=True)
    again, _ = decide_scan(inside, GateView("G1", "main"), "entry", NOON)
    _, left = decide_scan(inside, GateView("G1", "main"), "exit", NOON)
    after_leaving, _ = decide_scan(left, GateView("G1", "main"), "entry", NOON)
    assert (again.reason, again.entries_left) == ("passback", 0)
    assert after_leaving.reason == "used_up"
