"""The scanner: its line protocol without I/O, then the driver against a simulator over a pty."""

import json
import logging

import trio
from hypothesis import given
from hypothesis import strategies as st

from devices.scanner import open_scanner
from devices.scanner_protocol import ScanError, ScanLineDecoder
from devices.serial_port import Backoff
from devices.simulators import ScannerSimulator
from server.logs import JsonLineFormatter

FAST = Backoff(initial_s=0.05, max_s=0.2)

codes = st.text(
    st.characters(codec="utf-8", max_codepoint=0x9FFF).filter(str.isprintable),
    min_size=1,
    max_size=40,
)
terminators = st.sampled_from([b"\r", b"\n", b"\r\n"])


async def eventually(predicate, timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


# -- the line protocol ---------------------------------------------------------------


def test_cr_lf_and_crlf_each_end_a_code():
    assert ScanLineDecoder().feed(b"A1\rB2\nC3\r\nD4\n\r") == ["A1", "B2", "C3", "D4"]


def test_a_code_split_across_feeds_is_joined():
    decoder = ScanLineDecoder()
    assert decoder.feed("票-1".encode()[:3]) == []
    assert decoder.feed("票-1".encode()[3:] + b"23\r") == ["票-123"]


@given(st.lists(st.tuples(codes, terminators), max_size=10), st.data())
def test_any_printable_codes_come_back_exactly_however_the_bytes_are_split(lines, data):
    stream = b"".join(code.encode() + end for code, end in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    decoder = ScanLineDecoder()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out.extend(decoder.feed(stream[a:b]))
    assert out == [code for code, _ in lines]


def test_512_bytes_is_a_code_and_513_is_too_long_and_skipped_to_the_line_end():
    decoder = ScanLineDecoder()
    assert decoder.feed(b"A" * 512 + b"\r\n") == ["A" * 512]
    items = decoder.feed(b"B" * 300)
    items += decoder.feed(b"B" * 300 + b"still the same line\r\nNEXT\r\n")
    assert [type(item) for item in items] == [ScanError, str]
    assert items[0].reason == "too_long"
    assert items[1] == "NEXT"
    assert decoder.stats.too_long == 1


def test_invalid_utf8_and_control_characters_are_rejected_and_counted():
    decoder = ScanLineDecoder()
    items = decoder.feed(b"\xff\xfe\r\nAB\x07C\r\nGOOD\r\n")
    assert [getattr(item, "reason", item) for item in items] == [
        "bad_utf8",
        "non_printable",
        "GOOD",
    ]
    assert (decoder.stats.bad_utf8, decoder.stats.non_printable, decoder.stats.codes) == (1, 1, 1)


@given(st.binary(max_size=600))
def test_random_bytes_never_crash_and_yield_only_printable_codes(data):
    for item in ScanLineDecoder().feed(data):
        if isinstance(item, str):
            assert item.isprintable()
            assert 0 < len(item.encode()) <= 512


def test_a_partial_line_can_be_expired():
    decoder = ScanLineDecoder()
    decoder.feed(b"HALF")
    assert [item.reason for item in decoder.expire_partial()] == ["incomplete"]
    assert decoder.feed(b"WHOLE\r") == ["WHOLE"]


# -- the driver over a pty -------------------------------------------------------------


async def test_scanned_codes_arrive_in_order():
    with trio.fail_after(5):
        async with ScannerSimulator() as sim, open_scanner(sim.port) as scanner:
            assert scanner.connected
            for code in ["T-0001", "票-二〇二五-0002", "T-0003"]:
                sim.scan(code)
            received = [await scanner.codes().receive() for _ in range(3)]
    assert received == ["T-0001", "票-二〇二五-0002", "T-0003"]


async def test_garbage_is_logged_counted_and_skipped(caplog):
    caplog.set_level(logging.WARNING, logger="scenic.devices.scanner")
    with trio.fail_after(5):
        async with ScannerSimulator() as sim, open_scanner(sim.port) as scanner:
            sim.send_raw(b"\x00\x01\x1b[2J\r\n")  # control characters
            sim.send_raw(b"\xc3\x28\r\n")  # invalid UTF-8
            sim.send_raw(b"X" * 600 + b"\r\n")  # over-long
            sim.scan("T-GOOD")
            assert await scanner.codes().receive() == "T-GOOD"
            stats = scanner.stats()
    assert (stats.non_printable, stats.bad_utf8, stats.too_long, stats.codes) == (1, 1, 1, 1)
    garbage = [r for r in caplog.records if r.getMessage() == "scanner.garbage"]
    assert [r.reason for r in garbage] == ["non_printable", "bad_utf8", "too_long"]
    line = json.loads(JsonLineFormatter().format(garbage[1]))
    assert (line["logger"], line["reason"], line["data"]) == (
        "scenic.devices.scanner",
        "bad_utf8",
        "c328",
    )


async def test_unplugged_scanner_reports_a_fault_reconnects_and_reads_again():
    faults = []
    with trio.fail_after(5):
        async with ScannerSimulator() as sim:
            async with open_scanner(
                lambda: sim.port, on_fault=lambda *fault: faults.append(fault), backoff=FAST
            ) as scanner:
                sim.scan("BEFORE")
                assert await scanner.codes().receive() == "BEFORE"
                sim.unplug()
                await eventually(lambda: faults == [("scanner", "unplugged")])
                assert not scanner.connected
                await trio.sleep(0.3)  # several failed reopen attempts: no crash, no more faults
                assert faults == [("scanner", "unplugged")]
                sim.replug()
                await scanner.wait_connected()
                sim.scan("AFTER")
                assert await scanner.codes().receive() == "AFTER"
                stats = scanner.stats()
    assert (stats.unplugs, stats.opens) == (1, 2)


async def test_a_partial_line_cut_by_an_unplug_does_not_spoil_the_next_code():
    with trio.fail_after(5):
        async with ScannerSimulator() as sim:
            async with open_scanner(lambda: sim.port, backoff=FAST) as scanner:
                sim.send_raw(b"HALF-A-CO")
                await trio.sleep(0.05)
                sim.unplug()
                await eventually(lambda: not scanner.connected)
                sim.replug()
                await scanner.wait_connected()
                sim.scan("T-9")
                assert await scanner.codes().receive() == "T-9"


async def test_a_missing_scanner_is_reported_once_and_never_raises():
    faults = []
    with trio.fail_after(5):
        async with open_scanner(
            "/dev/does-not-exist", on_fault=lambda *fault: faults.append(fault), backoff=FAST
        ) as scanner:
            await trio.sleep(0.3)
            assert not scanner.connected
    assert faults == [("scanner", "unavailable")]


async def test_codes_iteration_ends_when_the_scanner_is_closed():
    with trio.fail_after(5):
        async with ScannerSimulator() as sim:
            async with open_scanner(sim.port) as scanner:
                sim.scan("ONLY")
                await eventually(lambda: scanner.stats().codes == 1)
            assert [code async for code in scanner.codes()] == ["ONLY"]
