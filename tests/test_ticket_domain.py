"""The ticket as a pure state machine: give-backs, gate modes, the offline merge, effects.

Each rule here exists once, in actors/, and these tests pin it down over its
whole range; the server's ticket actor, the gate's forged-code path and the
offline gate agent are checked to call the same rule.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.gates import domain as gates
from actors.tickets.codes import Entitlement, SiteKey, make_code
from actors.tickets.domain import (
    AwaitPassage,
    CountPassage,
    EntryGivenBack,
    FlagConflict,
    GiveBack,
    JournalEntry,
    OfflineConflict,
    OfflineDecision,
    ScanGranted,
    ScanRefused,
    ScanTicket,
    conflict_of,
    decide,
    decide_scan,
    evolve,
    give_back,
    react,
    use_after,
    verdict_of,
)
from actors.tickets.rules import (
    DIRECTIONS,
    MODES,
    REASONS,
    GateView,
    ScanMoment,
    TicketState,
    Use,
    judge_scan,
    verdict_by_mode,
    verdict_without_ticket,
)
from devices.offline import GateSnapshot, LocalUse, decide_offline, grant_of

TODAY = date(2026, 10, 1)
AT = datetime(2026, 10, 1, 4, 30, tzinfo=UTC)  # 12:30 in Asia/Shanghai
SLOTS = {"AM": (time(8), time(12)), "PM": (time(12), time(17, 30))}
NOON = ScanMoment(TODAY, time(12, 30), SLOTS)
GATE = GateView("G1", "main")
SINGLE = TicketState("T20261001SINGLE1", "O1", "adult", TODAY, None, 1, ("main",), True)


def scan_at(gate=GATE, direction="entry", scan_id="s1", moment=NOON) -> ScanTicket:
    return ScanTicket(gate, scan_id, direction, AT, AT, moment, "T2026")


def apply(ticket, command):
    events = decide(ticket, command)
    after = ticket
    for event in events:
        after = evolve(after, event)
    return events, after


tickets = st.builds(
    TicketState,
    ticket_id=st.just("T20261001SINGLE1"),
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
    version=st.integers(0, 3),
)
gate_views = st.builds(
    GateView,
    gate_id=st.just("G1"),
    zone=st.sampled_from(["main", "lake"]),
    mode=st.sampled_from(MODES),
    products=st.sampled_from([None, frozenset({"adult"})]),
)
directions = st.sampled_from(DIRECTIONS)
decisions = st.builds(
    OfflineDecision,
    granted=st.booleans(),
    reason=st.sampled_from(REASONS),
    passed=st.sampled_from([True, False, None]),
)


# --- giving an entry back -----------------------------------------------------------


@given(ticket=tickets, gate=gate_views, direction=directions)
def test_giving_back_a_grant_puts_the_ticket_back_as_it_was_before(ticket, gate, direction):
    events, after = apply(ticket, scan_at(gate, direction))
    if not isinstance(events[0], ScanGranted):
        return
    granted = events[0]
    (effect,) = react(after, granted)
    assert effect.consumed == granted.verdict.consumed and effect.was_inside == ticket.inside
    command = GiveBack("G1", "s1", effect.consumed, effect.was_inside, AT)
    (given_back,) = decide(after, command)
    assert isinstance(given_back, EntryGivenBack)
    assert evolve(after, given_back).use == ticket.use


def test_giving_back_a_grant_that_used_nothing_leaves_the_entries_alone():
    used = attrs.evolve(SINGLE, entries_used=1)
    free = attrs.evolve(GATE, mode="free")
    verdict, after = decide_scan(used, free, "entry", NOON)
    assert verdict.granted and not verdict.consumed
    assert give_back(after.use, verdict.consumed, used.inside) == Use(1, False)


def test_an_exit_nobody_made_leaves_the_visitor_inside():
    _, inside = decide_scan(SINGLE, GATE, "entry", NOON)
    verdict, outside = decide_scan(inside, GATE, "exit", NOON)
    assert verdict.leaves and not outside.inside
    assert give_back(outside.use, verdict.consumed, inside.inside) == Use(1, True)
    assert decide_scan(attrs.evolve(SINGLE, entries_allowed=None), GATE, "entry", NOON)[0].granted
    still_inside = attrs.evolve(SINGLE, entries_allowed=None, entries_used=1, inside=True)
    assert decide_scan(still_inside, GATE, "entry", NOON)[0].reason == "passback"


@given(
    use=st.builds(Use, st.integers(0, 5), st.booleans()),
    consumed=st.booleans(),
    was_inside=st.booleans(),
)
def test_a_give_back_returns_at_most_the_one_entry_and_never_goes_below_zero(
    use, consumed, was_inside
):
    after = give_back(use, consumed, was_inside)
    assert after.inside is was_inside
    assert after.entries_used == max(use.entries_used - (1 if consumed else 0), 0)


def test_a_give_back_of_a_ticket_that_does_not_exist_is_nothing():
    assert decide(None, GiveBack("G1", "s1", True, False, AT)) == []


# --- gate modes ---------------------------------------------------------------------


@given(mode=st.sampled_from(MODES), reason=st.sampled_from(["forged", "unknown"]))
def test_a_code_naming_no_ticket_gets_what_the_gate_mode_says(mode, reason):
    verdict = verdict_without_ticket(mode, reason)
    expected = {
        "locked": (False, "gate_closed"),
        "free": (True, "ok"),
        "normal": (False, reason),
    }[mode]
    assert (verdict.granted, verdict.reason, verdict.consumed) == (*expected, False)


@given(ticket=st.one_of(st.none(), tickets), mode=st.sampled_from(MODES), direction=directions)
def test_the_mode_decides_before_anything_about_the_ticket(ticket, mode, direction):
    verdict = judge_scan(ticket, attrs.evolve(GATE, mode=mode), direction, NOON)
    imposed = verdict_by_mode(mode, None if ticket is None else ticket.entries_left)
    if imposed is not None:
        assert verdict == imposed
    if mode == "free":
        assert verdict.granted and not verdict.consumed and not verdict.leaves


def test_a_mode_the_rules_do_not_know_is_an_error():
    with pytest.raises(ValueError):
        verdict_by_mode("half-open")


KEY = SiteKey("k1", b"s" * 32, b"\x07" * 32)


def snapshot(mode: str, products=None) -> GateSnapshot:
    return GateSnapshot(
        "G1",
        "main",
        mode,
        None,
        "Asia/Shanghai",
        SLOTS,
        products if products is not None else {"adult": (("main",), True)},
        {KEY.key_id: KEY.public_key},
        15.0,
    )


@given(mode=st.sampled_from(MODES), direction=directions)
def test_every_path_judges_a_code_naming_no_ticket_by_the_one_mode_rule(mode, direction):
    gate = attrs.evolve(GATE, mode=mode)
    # the server, for a genuine code whose ticket does not exist
    unknown = judge_scan(None, gate, direction, NOON)
    # the gate's actor, for a code this site did not make
    forged = verdict_of(
        gates.decide(gates.Gate("G1"), gates.ScanForgedCode(scan_at(gate, direction), "bad tag"))
    )
    # the offline agent, for the same code and for a product it does not know
    offline_forged, _ = decide_offline("hello", snapshot(mode), LocalUse(), direction, AT)
    code = make_code(Entitlement("T20261001NOPROD1", TODAY, None, 1, "kayak"), KEY)
    offline_unknown, _ = decide_offline(code, snapshot(mode), LocalUse(), direction, AT)
    assert unknown == offline_unknown == verdict_without_ticket(mode, "unknown")
    assert forged == offline_forged == verdict_without_ticket(mode, "forged")


# --- the offline merge --------------------------------------------------------------


@given(ticket=tickets, gate=gate_views, direction=directions, decision=decisions)
def test_a_journal_entry_records_what_happened_and_never_overdraws_the_ticket(
    ticket, gate, direction, decision
):
    entry = JournalEntry(scan_at(gate, direction), decision)
    events, after = apply(ticket, entry)
    recorded, conflict = verdict_of(events), conflict_of(events)
    server, server_after = decide_scan(ticket, attrs.evolve(gate, mode="normal"), direction, NOON)
    if not decision.granted:
        assert (recorded.granted, recorded.reason) == (False, decision.reason)
        assert after == ticket and conflict is None
    elif decision.passed is False:
        assert (recorded.granted, recorded.consumed) == (True, False)
        assert after == ticket and conflict is None
    elif server.granted:
        assert recorded == server and after == server_after and conflict is None
    else:
        assert (recorded.granted, recorded.reason, recorded.consumed) == (True, "ok", False)
        assert after == ticket and conflict.kind == server.reason
        assert conflict.detail.endswith(f"would have refused: {server.reason}")
    if ticket.entries_allowed is not None:
        assert after.entries_used <= max(ticket.entries_allowed, ticket.entries_used)


def test_a_ticket_used_at_two_offline_gates_uses_its_entry_once_and_flags_the_second():
    walked = OfflineDecision(True, "ok", True)
    first, once = apply(SINGLE, JournalEntry(scan_at(scan_id="off-1"), walked))
    second, twice = apply(once, JournalEntry(scan_at(scan_id="off-9"), walked))
    assert conflict_of(first) is None and once.entries_used == 1
    assert conflict_of(second).kind == "passback" and twice == once


@given(decision=decisions, mode=st.sampled_from(MODES))
def test_an_offline_grant_of_a_forged_code_is_a_conflict_whether_or_not_anyone_walked(
    decision, mode
):
    entry = JournalEntry(scan_at(attrs.evolve(GATE, mode=mode)), decision)
    events = gates.decide(gates.Gate("G1"), gates.ScanForgedCode(entry, "bad tag"))
    recorded, conflict = verdict_of(events), conflict_of(events)
    assert recorded.granted is decision.granted
    if decision.granted:
        assert (conflict.kind, conflict.ticket_id) == ("forged", None)
        assert conflict.detail.endswith("forged (bad tag)")
    else:
        assert recorded.reason == decision.reason and conflict is None


# --- what the outside hears -------------------------------------------------------------


def test_an_online_grant_makes_the_gate_wait_for_its_passage_and_a_refusal_asks_nothing():
    granted, inside = apply(SINGLE, scan_at())
    refused, _ = apply(inside, scan_at(scan_id="s2"))
    assert react(inside, granted[0]) == [
        AwaitPassage("G1", "s1", SINGLE.ticket_id, "entry", True, False)
    ]
    assert isinstance(refused[0], ScanRefused) and react(inside, refused[0]) == []


@pytest.mark.parametrize(("passed", "counted"), [(True, True), (None, False), (False, False)])
def test_a_journal_grant_counts_toward_occupancy_only_when_the_visitor_walked(passed, counted):
    events, after = apply(SINGLE, JournalEntry(scan_at(), OfflineDecision(True, "ok", passed)))
    effects = [effect for event in events for effect in react(after, event)]
    assert effects == ([CountPassage("main", "entry")] if counted else [])


def test_a_conflict_is_flagged_once_committed():
    used = attrs.evolve(SINGLE, entries_used=1)
    events, after = apply(used, JournalEntry(scan_at(), OfflineDecision(True, "ok", True)))
    (conflict,) = [event for event in events if isinstance(event, OfflineConflict)]
    assert react(after, conflict) == [FlagConflict("G1", "s1", SINGLE.ticket_id, "used_up")]


# --- the offline agent keeps its admissions with the same rules ---------------------------


steps = st.lists(
    st.tuples(directions, st.sampled_from(["walked", "not walked"])), min_size=1, max_size=12
)


@given(
    entries=st.sampled_from([None, 1, 2]),
    anti_passback=st.booleans(),
    steps=steps,
)
def test_the_offline_agent_and_the_server_keep_a_tickets_use_alike(entries, anti_passback, steps):
    ticket_id = "T20261001AGENT01"
    code = make_code(Entitlement(ticket_id, TODAY, None, entries, "adult"), KEY)
    gate_snapshot = snapshot("normal", {"adult": (("main",), anti_passback)})
    server = TicketState(ticket_id, "O1", "adult", TODAY, None, entries, ("main",), anti_passback)
    local = LocalUse()
    for n, (direction, outcome) in enumerate(steps):
        offline, named = decide_offline(code, gate_snapshot, local, direction, AT)
        events, server_after = apply(server, scan_at(direction=direction, scan_id=f"s{n}"))
        assert named == ticket_id and offline == verdict_of(events)
        if offline.granted:
            before = local.admitted(ticket_id, offline)
            if outcome == "not walked":
                local.given_back(ticket_id, offline.consumed, before.inside)
                (effect,) = react(server_after, events[0])
                back = GiveBack("G1", f"s{n}", effect.consumed, effect.was_inside, AT)
                _, server_after = apply(server_after, back)
        server = server_after
        assert local.of(ticket_id) == server.use


@given(direction=directions, used=st.integers(0, 3), inside=st.booleans())
def test_a_grant_the_agent_did_not_judge_changes_its_use_as_the_rules_would(
    direction, used, inside
):
    ticket = TicketState("T1", "O1", "adult", TODAY, None, None, ("main",), False, used, inside)
    server, after = decide_scan(ticket, GATE, direction, NOON)
    assert use_after(ticket.use, grant_of(direction)) == after.use
    assert server.consumed == grant_of(direction).consumed
