"""The gate as a pure state machine: passages it waits for, how each ends, modes, occupancy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from actors.gates.domain import (
    AnnounceMode,
    ExpectPassage,
    Gate,
    GiveBackEntry,
    ModeSet,
    Occupancy,
    Passage,
    PassageExpected,
    PassageSettled,
    PassageTimedOut,
    RecordPassage,
    SetMode,
    WatchPassage,
    counted,
    decide,
    evolve,
    react,
)
from actors.tickets.domain import GiveBack

AT = datetime(2026, 10, 1, 4, 30, tzinfo=UTC)


def apply(gate, command):
    events = decide(gate, command)
    effects = []
    for event in events:
        gate = evolve(gate, event)
        effects.extend(react(gate, event))
    return gate, events, effects


def expect(scan_id, ticket_id="T1", direction="entry", consumed=True, was_inside=False):
    return ExpectPassage(scan_id, ticket_id, direction, consumed, was_inside, deadline=100.0)


def test_a_grant_is_awaited_until_its_deadline():
    gate, events, effects = apply(Gate("G1"), expect("s1"))
    assert events == [PassageExpected("G1", expect("s1"))]
    assert effects == [WatchPassage("G1", "s1", 100.0)]
    assert set(gate.pending) == {"s1"}


def test_a_passage_walked_through_is_recorded_and_one_not_made_gives_the_entry_back():
    gate, _, _ = apply(Gate("G1"), expect("s1", was_inside=True))
    gate, _, _ = apply(gate, expect("s2"))
    gate, _, walked = apply(gate, Passage("s1", True, AT))
    gate, _, not_made = apply(gate, Passage("s2", False, AT))
    assert walked == [RecordPassage("G1", "s1", True, AT)]
    assert not_made == [GiveBackEntry("T1", GiveBack("G1", "s2", True, False, AT))]
    assert gate.pending == {}


def test_a_grant_that_used_no_ticket_and_was_not_walked_is_recorded_as_not_passed():
    gate, _, _ = apply(Gate("G1"), expect("s1", ticket_id=None, consumed=False))
    _, _, effects = apply(gate, Passage("s1", False, AT))
    assert effects == [RecordPassage("G1", "s1", False, AT)]


def test_a_report_for_a_grant_this_gate_no_longer_knows_is_left_to_storage():
    _, events, effects = apply(Gate("G1"), Passage("s9", False, AT))
    assert events == [PassageSettled("G1", "s9", False, AT, None)]
    assert effects == [RecordPassage("G1", "s9", False, AT)]


def test_a_passage_nobody_reports_counts_as_walked_through_and_a_late_timeout_is_nothing():
    gate, _, _ = apply(Gate("G1"), expect("s1"))
    gate, events, effects = apply(gate, PassageTimedOut("s1", AT))
    assert events[0].timed_out and effects == [RecordPassage("G1", "s1", True, AT)]
    assert apply(gate, PassageTimedOut("s1", AT))[1] == []


class PendingPassages(RuleBasedStateMachine):
    """Any interleaving of grants, reports and timeouts: each grant is settled once by the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate("G1")
        self.awaited: set[str] = set()
        self.settled: list[str] = []

    @rule(scan=st.sampled_from(["s1", "s2", "s3"]))
    def grant(self, scan):
        if scan in self.awaited or scan in self.settled:
            return  # a scan id is granted once
        self.gate, _, effects = apply(self.gate, expect(scan))
        self.awaited.add(scan)
        assert effects == [WatchPassage("G1", scan, 100.0)]

    @rule(scan=st.sampled_from(["s1", "s2", "s3"]), passed=st.booleans())
    def report(self, scan, passed):
        self.gate, events, effects = apply(self.gate, Passage(scan, passed, AT))
        (settled,) = events
        assert (settled.expected is not None) is (scan in self.awaited)
        if scan in self.awaited:
            self.settled.append(scan)
        self.awaited.discard(scan)
        (effect,) = effects
        assert isinstance(effect, GiveBackEntry) is (not passed and settled.expected is not None)

    @rule(scan=st.sampled_from(["s1", "s2", "s3"]))
    def time_out(self, scan):
        self.gate, events, effects = apply(self.gate, PassageTimedOut(scan, AT))
        if scan in self.awaited:
            assert effects == [RecordPassage("G1", scan, True, AT)]
            self.settled.append(scan)
        else:
            assert events == [] and effects == []
        self.awaited.discard(scan)

    @invariant()
    def pending_is_what_is_awaited(self):
        assert set(self.gate.pending) == self.awaited
        assert len(self.settled) == len(set(self.settled))  # no grant settled twice


TestPendingPassages = PendingPassages.TestCase


@pytest.mark.parametrize("mode", ["normal", "locked", "free"])
def test_a_mode_is_stored_and_then_announced(mode):
    gate, events, effects = apply(Gate("G1"), SetMode(mode, "admin-1", AT))
    assert events == [ModeSet("G1", mode, "admin-1", AT)]
    assert effects == [AnnounceMode("G1", mode)] and gate == Gate("G1")


def test_a_mode_the_rules_do_not_know_is_refused():
    with pytest.raises(ValueError):
        decide(Gate("G1"), SetMode("half-open", "admin-1", AT))


@given(st.lists(st.sampled_from(["entry", "exit"]), max_size=40))
def test_occupancy_counts_every_passage_and_is_never_below_zero(directions):
    board = Occupancy()
    for direction in directions:
        board = counted(board, direction)
    assert board.entries == directions.count("entry")
    assert board.exits == directions.count("exit")
    assert board.inside == max(board.entries - board.exits, 0) >= 0
