"""The turnstile driver against the controller simulator, over a real pty."""

import logging
import random

import pytest
import trio

from devices.errors import DeviceRefused, DeviceTimeout, DeviceUnplugged
from devices.serial_port import Backoff, SerialLink
from devices.simulators import TurnstileSimulator
from devices.turnstile import EVENT_QUEUE_SIZE, open_turnstile
from devices.turnstile_protocol import (
    FLAG_ARMS_OPEN,
    FLAG_FAULT,
    Ack,
    Direction,
    Fault,
    FaultCode,
    FrameDecoder,
    Free,
    Lock,
    Mode,
    Nak,
    NakReason,
    Normal,
    OpenEntry,
    OpenExit,
    Passed,
    RequestStatus,
    TimedOut,
)

FAST = Backoff(initial_s=0.05, max_s=0.2)


async def eventually(predicate, timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


async def next_event(gate, timeout_s: float = 3.0):
    with trio.fail_after(timeout_s):
        return await gate.events().receive()


async def test_commands_are_acknowledged_and_change_the_mode():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.lock()
                assert sim.mode is Mode.LOCKED
                assert (await gate.status()).mode is Mode.LOCKED
                await gate.free()
                assert sim.mode is Mode.FREE
                await gate.normal()
                assert (await gate.status()).mode is Mode.NORMAL
                await gate.open_exit(0xBEEF)
                assert gate.stats().commands == 6
    assert sim.received == [
        Lock(),
        RequestStatus(),
        Free(),
        Normal(),
        RequestStatus(),
        OpenExit(0xBEEF),
    ]


async def test_an_entry_is_reported_as_passed_with_its_ref():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(4242)
                assert await next_event(gate) == Passed(4242, Direction.ENTRY)
                await gate.open_exit(4243)
                assert await next_event(gate) == Passed(4243, Direction.EXIT)


async def test_nobody_walking_through_is_reported_as_timed_out():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_probability=0.0, window_s=0.1) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(7)
                assert await next_event(gate) == TimedOut(7, Direction.ENTRY)


async def test_status_shows_the_arms_open_during_a_passage():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.5) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(1)
                assert (await gate.status()).flags & FLAG_ARMS_OPEN
                await next_event(gate)
                assert not (await gate.status()).flags & FLAG_ARMS_OPEN


async def test_lost_acks_are_retried_and_the_gate_opens_once():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(sim.port, ack_timeout_s=0.15, retries=3) as gate:
                sim.drop_acks(2)
                await gate.open_entry(9)  # the resends come after the visitor walked through
                assert await next_event(gate) == Passed(9, Direction.ENTRY)
                with trio.move_on_after(0.3):
                    extra = await gate.events().receive()
                    pytest.fail(f"one OPEN resent made a second passage: {extra}")
                assert gate.stats().retries >= 2
    assert sim.received[:3] == [OpenEntry(9)] * 3


async def test_no_ack_after_all_retries_raises_device_timeout():
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port, ack_timeout_s=0.1, retries=2) as gate:
                sim.drop_acks(100)
                with pytest.raises(DeviceTimeout):
                    await gate.lock()
                assert gate.stats().timeouts == 1
    assert sim.received == [Lock()] * 3


async def test_opening_a_locked_gate_is_refused_as_locked():
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.lock()
                with pytest.raises(DeviceRefused) as refused:
                    await gate.open_entry(5)
                assert refused.value.reason == "locked"
                assert gate.stats().refused == 1


async def test_a_second_open_during_a_passage_is_refused_as_busy():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=1.0) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(1)
                with pytest.raises(DeviceRefused) as refused:
                    await gate.open_entry(2)
                assert refused.value.reason == "busy"


async def test_a_reply_with_a_bad_crc_is_dropped_counted_and_the_command_retried(caplog):
    caplog.set_level(logging.WARNING, logger="scenic.devices.turnstile")
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port, ack_timeout_s=0.1) as gate:
                sim.corrupt_next(1)
                await gate.normal()
                stats = gate.stats()
    assert stats.bad_crc == 1
    assert stats.retries >= 1
    bad = [r for r in caplog.records if r.getMessage() == "turnstile.bad_frame"]
    assert bad[0].reason == "bad_crc"


async def test_an_event_with_a_bad_crc_is_sent_again_until_acknowledged():
    with trio.fail_after(5):
        async with TurnstileSimulator(event_resend_s=0.1) as sim:
            async with open_turnstile(sim.port) as gate:
                sim.corrupt_next(1)
                lost = sim.fault(FaultCode.JAMMED, "lost")
                kept = sim.fault(FaultCode.SENSOR, "kept")
                assert await next_event(gate) == kept
                assert await next_event(gate) == lost  # sent again, and this time it arrived
                await eventually(lambda: not sim.unacknowledged)
                assert gate.stats().bad_crc >= 1
    assert (lost.number, kept.number) == (1, 2)
    assert set(sim.acknowledged) == {Ack(0x92, 1), Ack(0x92, 2)}


async def test_a_passed_frame_lost_on_the_line_still_reports_the_passage_once():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.2, event_resend_s=0.2) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(77)
                sim.corrupt_next(1)  # the next frame out is this passage's PASSED
                assert await next_event(gate) == Passed(77, Direction.ENTRY)
                with trio.move_on_after(0.6):
                    extra = await gate.events().receive()
                    pytest.fail(f"the passage was reported twice: {extra}")
                assert not sim.unacknowledged
                assert gate.stats().bad_crc == 1
    assert sim.acknowledged == [Ack(0x90, 77)]


async def test_an_event_sent_again_after_a_lost_ack_is_acknowledged_again_but_queued_once():
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port) as gate:
                resend = Passed(5, Direction.EXIT)
                sim.send_garbage(resend.to_frame())  # as if our first ACK had been lost
                sim.send_garbage(resend.to_frame())
                assert await next_event(gate) == resend
                await eventually(lambda: len(sim.acknowledged) == 2)
                with trio.move_on_after(0.2):
                    pytest.fail(f"a resend was queued again: {await gate.events().receive()}")
                assert (gate.stats().events, gate.stats().repeats) == (1, 1)
    assert sim.acknowledged == [Ack(0x90, 5)] * 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"noise \xff\xfe",
        b"\x02\x05\xff\x00",  # a stray STX with a short LEN swallows the next frame's start
        b"\x02\xc8",  # a stray STX with LEN 200: only the silence after it frees the line
    ],
)
async def test_garbage_on_the_line_is_skipped_and_the_following_frame_decoded(garbage):
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port) as gate:
                sim.send_garbage(garbage)
                fault = sim.fault(FaultCode.POWER, "mains")
                assert await next_event(gate) == fault
                await gate.lock()  # and commands still work
                assert gate.stats().bad_frames + gate.stats().garbage_bytes > 0


async def test_a_controller_fault_is_an_event_and_sets_the_status_flag():
    faults = []
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port, on_fault=lambda *f: faults.append(f)) as gate:
                fault = sim.fault(FaultCode.FORCED, "gate forced open")
                assert await next_event(gate) == Fault(FaultCode.FORCED, "gate forced open", 1)
                assert fault.number == 1
                assert (await gate.status()).flags & FLAG_FAULT
    assert faults == []  # on_fault is for the link; the controller's faults are events


async def test_unplugging_reports_a_fault_fails_commands_and_recovers_on_replug():
    faults = []
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(
                lambda: sim.port, on_fault=lambda *f: faults.append(f), backoff=FAST
            ) as gate:
                await gate.lock()
                sim.unplug()
                await eventually(lambda: faults == [("turnstile", "unplugged")])
                with pytest.raises(DeviceUnplugged) as unplugged:
                    await gate.normal()
                assert not unplugged.value.may_have_acted  # it was never sent
                sim.replug()
                await gate.wait_connected()
                await gate.normal()
                await gate.open_entry(3)
                assert await next_event(gate) == Passed(3, Direction.ENTRY)
                assert gate.stats().unplugs == 1


async def test_a_command_in_flight_when_unplugged_raises_device_unplugged_at_once():
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port, ack_timeout_s=2.0, retries=0) as gate:
                sim.drop_acks(1)
                outcome = []

                async def open_gate():
                    try:
                        await gate.open_entry(11)
                    except DeviceUnplugged as exc:
                        outcome.append(exc)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(open_gate)
                    await eventually(lambda: sim.received == [OpenEntry(11)])
                    with trio.fail_after(1.0):  # well before the 2 s ACK timeout
                        sim.unplug()
                        await eventually(lambda: outcome, timeout_s=1.0)
                assert isinstance(outcome[0], DeviceUnplugged)
                assert outcome[0].may_have_acted  # the controller had the command


async def test_with_a_fixed_path_a_vanished_controller_is_retried_without_crashing():
    faults = []
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(
                sim.port, on_fault=lambda *f: faults.append(f), backoff=FAST
            ) as gate:
                sim.unplug()
                await eventually(lambda: faults == [("turnstile", "unplugged")])
                await trio.sleep(0.4)  # reopen attempts on a path that is gone
                assert not gate.connected
                with pytest.raises(DeviceUnplugged):
                    await gate.status()
    assert faults == [("turnstile", "unplugged")]


async def test_a_busy_gate_day_with_random_walkers_reports_every_passage():
    refs = range(1, 21)
    outcomes = {}
    with trio.fail_after(10):
        async with TurnstileSimulator(
            walk_probability=0.7, walk_delay_s=0.01, window_s=0.03, rng=random.Random(7)
        ) as sim:
            async with open_turnstile(sim.port) as gate:
                for ref in refs:
                    await gate.open_entry(ref)
                    event = await next_event(gate)
                    outcomes[event.ref] = type(event)
    assert sorted(outcomes) == list(refs)
    assert {Passed, TimedOut} == set(outcomes.values())


async def test_a_host_command_sent_by_the_controller_is_logged_and_dropped(caplog):
    caplog.set_level(logging.WARNING, logger="scenic.devices.turnstile")
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            async with open_turnstile(sim.port) as gate:
                sim.send_garbage(OpenEntry(1).to_frame())
                fault = sim.fault(FaultCode.SENSOR)
                assert await next_event(gate) == fault
                assert gate.stats().unmatched == 1
    [record] = [r for r in caplog.records if r.getMessage() == "turnstile.unexpected_message"]
    assert record.received == "OpenEntry(ref=1)"


async def test_unread_events_beyond_the_queue_are_not_acknowledged_and_arrive_later(caplog):
    with trio.fail_after(5):
        async with TurnstileSimulator(event_resend_s=0.2) as sim:
            async with open_turnstile(sim.port) as gate:
                faults = [sim.fault(FaultCode.POWER) for _ in range(EVENT_QUEUE_SIZE + 10)]
                await eventually(lambda: gate.stats().events_dropped >= 10)
                assert (await gate.status()).flags & FLAG_FAULT  # commands are still answered
                assert gate.stats().events == EVENT_QUEUE_SIZE
                assert sim.unacknowledged == faults[-10:]
                received = [await next_event(gate) for _ in faults]
                await eventually(lambda: not sim.unacknowledged)
    assert received == faults
    assert any(r.getMessage() == "turnstile.event_dropped" for r in caplog.records)


async def test_in_free_passage_an_open_is_acknowledged_and_passed_at_once():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=2.0) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.free()
                await gate.open_entry(1)
                assert await next_event(gate, timeout_s=0.5) == Passed(1, Direction.ENTRY)
                await gate.open_entry(2)  # not busy: the arms are up, nothing is pending
                assert await next_event(gate, timeout_s=0.5) == Passed(2, Direction.ENTRY)
                assert not (await gate.status()).flags & FLAG_ARMS_OPEN


async def test_a_fault_does_not_stop_an_open():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(sim.port) as gate:
                fault = sim.fault(FaultCode.SENSOR, "dusty")
                assert await next_event(gate) == fault
                await gate.open_entry(3)
                assert await next_event(gate) == Passed(3, Direction.ENTRY)


async def test_a_resend_of_the_last_open_is_acknowledged_even_once_locked():
    with trio.fail_after(5):
        async with TurnstileSimulator(walk_delay_s=0.05) as sim:
            async with open_turnstile(sim.port) as gate:
                await gate.open_entry(8)
                assert await next_event(gate) == Passed(8, Direction.ENTRY)
                await gate.lock()
                await gate.open_entry(8)  # the resend rule comes before the locked check
                with pytest.raises(DeviceRefused):
                    await gate.open_entry(9)
                with trio.move_on_after(0.3):
                    pytest.fail(f"a resend opened again: {await gate.events().receive()}")


@pytest.mark.parametrize(
    "frame",
    [
        "02 02 10 12 5d cd",  # OPEN_ENTRY with a 1-byte ref, good CRC (docs/devices.md)
        "02 01 42 80 11",  # CMD 0x42 is not defined
    ],
)
async def test_a_frame_with_a_good_crc_the_controller_cannot_take_is_answered_nak_3(frame):
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            link = await SerialLink.open(sim.port)
            try:
                await link.write(bytes.fromhex(frame))
                decoder, replies = FrameDecoder(), []
                while not replies:
                    replies = decoder.feed(await link.read_some())
            finally:
                link.close()
    assert replies == [Nak(bytes.fromhex(frame)[2], NakReason.BAD_COMMAND)]


async def test_the_controller_gives_up_a_partial_frame_after_a_tenth_of_a_second_of_silence():
    with trio.fail_after(5):
        async with TurnstileSimulator() as sim:
            link = await SerialLink.open(sim.port)
            try:
                await link.write(b"\x02\xc8")  # a stray STX and a LEN of 200: a frame never sent
                await trio.sleep(0.3)
                await link.write(Lock().to_frame())
                decoder, replies = FrameDecoder(), []
                while not replies:
                    replies = decoder.feed(await link.read_some())
            finally:
                link.close()
    assert replies == [Ack(0x12, 0)] and sim.mode is Mode.LOCKED
