"""The rental store's snapshot codec gives back exactly what it was given.

Every rental state and event the pure core produces, driven by the
rentals' state machine (tests/test_rental_machine.py) through every
interleaving of its commands, survives ``decode(json(encode(x)))``
unchanged: the snapshot a server process writes is the rental another
process reads back.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

from server.storage.rental_codec import decode, encode
from tests.rental_support import T0, create
from tests.test_rental_machine import RentalMachine


def stored(value):
    """What a reader gets back of ``value`` after the store wrote it as JSON text."""
    return decode(json.loads(json.dumps(encode(value))))


class CodecMachine(RentalMachine):
    """The rental machine, checking that every state and event round-trips through the codec."""

    def run(self, command):
        done = super().run(command)
        if not isinstance(done, str):
            for event in done.events:
                assert stored(event) == event
        return done

    @invariant()
    def the_snapshot_is_the_rental(self):
        assert stored(self.rental) == self.rental


TestCodecMachine = CodecMachine.TestCase
TestCodecMachine.settings = settings(max_examples=60, stateful_step_count=30)


def test_a_new_rental_round_trips():
    rental = create(("skis", 2), ("boat", 1))
    assert stored(rental) == rental
    assert stored(rental).created_at == T0


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 1, 1, 9), {"$x": 1}, {1: "a"}, object()],
    ids=["naive-datetime", "dollar-key", "int-key", "foreign-object"],
)
def test_what_the_codec_cannot_say_exactly_is_refused(value):
    with pytest.raises((TypeError, ValueError)):
        encode(value)


@pytest.mark.parametrize(
    "data",
    [{"$": "os:system"}, {"$": "actors.rentals.state:not a name"}, {"$enum": "builtins:int"}],
    ids=["outside-actors", "bad-name", "enum-outside-actors"],
)
def test_a_row_can_never_name_a_class_outside_actors(data):
    with pytest.raises((ValueError, TypeError)):
        decode({**data, "v": 1} if "$enum" in data else data)


def test_times_keep_their_instant_and_their_zone_offset():
    moment = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert stored((moment, time(17, 30))) == (moment, time(17, 30))
