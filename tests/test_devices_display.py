"""The two-line display: its protocol without I/O, then the driver against a simulator."""

import re
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from devices.display import open_display
from devices.display_protocol import DisplayParser, encode_update, fit_line
from devices.serial_port import Backoff
from devices.simulators import DisplaySimulator

FAST = Backoff(initial_s=0.05, max_s=0.2)
LONG_CHINESE = "欢迎光临西湖风景名胜区，祝您旅途愉快！请保管好随身物品"
LONG_ENGLISH = "Welcome to West Lake Scenic Area, enjoy your visit"


async def eventually(predicate, timeout_s: float = 3.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


# -- the protocol ------------------------------------------------------------------------


def test_an_update_is_clear_then_two_crlf_terminated_utf8_lines():
    assert encode_update("票", "OK") == b"\x1bC" + "票".encode() + b"\r\nOK\r\n"


def test_lines_are_cut_to_width_in_characters_not_bytes():
    assert fit_line(LONG_CHINESE) == LONG_CHINESE[:20]
    assert len(fit_line(LONG_CHINESE).encode()) == 60
    assert fit_line(LONG_ENGLISH, 16) == "Welcome to West "
    assert fit_line("short") == "short"


def test_control_characters_become_spaces_so_the_framing_holds():
    assert fit_line("a\r\nb\x1bC") == "a  b C"
    assert DisplayParser().feed(encode_update("x\r\ny", "z")) == [("x  y", "z")]


@given(st.text(max_size=40), st.text(max_size=40), st.integers(1, 30), st.binary(max_size=20))
def test_any_text_after_any_noise_shows_as_fitted(line1, line2, width, noise):
    parser = DisplayParser()
    shown = parser.feed(noise.replace(b"\x1b", b"") + encode_update(line1, line2, width=width))
    assert shown == [(fit_line(line1, width), fit_line(line2, width))]


def test_an_update_split_at_every_position_parses_the_same():
    wire = encode_update("入口 Entry", "请通行 Go") * 2
    for cut in range(len(wire) + 1):
        parser = DisplayParser()
        assert (
            parser.feed(wire[:cut]) + parser.feed(wire[cut:]) == [("入口 Entry", "请通行 Go")] * 2
        )


def test_a_clear_in_the_middle_of_an_update_starts_over():
    parser = DisplayParser()
    assert parser.feed(b"\x1bChalf\r\n\x1bCone\r\ntwo\r\n") == [("one", "two")]


# -- the driver over a pty -----------------------------------------------------------------


async def test_chinese_and_english_text_is_shown_truncated_to_the_width():
    with trio.fail_after(5):
        async with DisplaySimulator() as sim, open_display(sim.port) as display:
            await display.show(LONG_CHINESE, LONG_ENGLISH)
            await eventually(lambda: sim.lines != ("", ""))
            assert sim.lines == (LONG_CHINESE[:20], LONG_ENGLISH[:20])
            assert display.shown == sim.lines


async def test_a_narrow_display_cuts_at_its_own_width():
    with trio.fail_after(5):
        async with DisplaySimulator() as sim, open_display(sim.port, width=8) as display:
            await display.show("请扫码入园 Scan", "票已使用 Used")
            await eventually(lambda: sim.lines == ("请扫码入园 Sc", "票已使用 Use"))


async def test_successive_texts_show_the_latest():
    with trio.fail_after(5):
        async with DisplaySimulator() as sim, open_display(sim.port) as display:
            for n in range(5):
                await display.show(f"第{n}位", "请通行")
            await eventually(lambda: sim.lines == ("第4位", "请通行"))
    assert sim.history[-1] == ("第4位", "请通行")
    assert len(sim.history) <= 5


async def test_after_an_unplug_the_latest_text_is_shown_again_and_nothing_raises():
    faults = []
    with trio.fail_after(5):
        async with DisplaySimulator() as sim:
            async with open_display(
                lambda: sim.port, on_fault=lambda *f: faults.append(f), backoff=FAST
            ) as display:
                await display.show("欢迎", "Welcome")
                await eventually(lambda: sim.lines == ("欢迎", "Welcome"))
                sim.unplug()
                await eventually(lambda: faults == [("display", "unplugged")])
                await display.show("暂停服务", "Out of service")  # while away: no exception
                assert sim.lines == ("", "")
                sim.replug()
                await eventually(lambda: sim.lines == ("暂停服务", "Out of service"))
                assert display.stats().unplugs == 1


async def test_a_missing_display_is_reported_and_show_returns_quietly():
    faults = []
    with trio.fail_after(5):
        async with open_display(
            "/dev/does-not-exist", on_fault=lambda *f: faults.append(f), backoff=FAST
        ) as display:
            await display.show("hello", "world")
            assert display.shown is None
    assert faults == [("display", "unavailable")]


def test_the_documented_update_is_the_bytes_the_driver_sends():
    text = (Path(__file__).parent.parent / "docs" / "devices.md").read_text()
    example = r'Example, `show\("([^"]*)", "([^"]*)"\)`:\n\n```\n([0-9a-f ]+)\n'
    line1, line2, wire = re.search(example, text).groups()
    assert encode_update(line1, line2) == bytes.fromhex(wire)


def test_a_line_is_cut_after_its_width_th_character_never_inside_one():
    assert fit_line("欢迎光临" * 6) == "欢迎光临" * 5  # 20 characters, 60 bytes
    assert len(fit_line("é" * 30, 20).encode()) == 40
