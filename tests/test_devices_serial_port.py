"""The serial link over a raw pty, and the reconnect loop every driver uses."""

import os
import tty

import pytest
import trio

from devices.errors import DeviceUnplugged
from devices.serial_port import Backoff, ReconnectingPort, SerialLink

ALL_BYTES = bytes(range(256))


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    yield master, os.ttyname(slave)
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


async def read_master(master: int, count: int) -> bytes:
    data = b""
    while len(data) < count:
        await trio.lowlevel.wait_readable(master)
        data += os.read(master, count - len(data))
    return data


def test_backoff_doubles_from_200_ms_up_to_5_s():
    delays = [Backoff().delay_s(n) for n in range(8)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert Backoff().delay_s(10_000) == 5.0


async def test_every_byte_value_passes_unchanged_both_ways(pty_pair):
    master, path = pty_pair
    with trio.fail_after(5):
        link = await SerialLink.open(path)
        try:
            os.write(master, ALL_BYTES)  # includes XON/XOFF (0x11, 0x13), CR, ESC
            received = b""
            while len(received) < len(ALL_BYTES):
                received += await link.read_some()
            await link.write(ALL_BYTES)
            echoed = await read_master(master, len(ALL_BYTES))
        finally:
            link.close()
    assert received == ALL_BYTES
    assert echoed == ALL_BYTES


async def test_a_large_write_waits_for_the_reader_instead_of_blocking_the_loop(pty_pair):
    master, path = pty_pair
    payload = os.urandom(200_000)  # far more than a pty buffers
    with trio.fail_after(5):
        link = await SerialLink.open(path)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.write, payload)
                received = await read_master(master, len(payload))
        finally:
            link.close()
    assert received == payload


async def test_read_and_write_raise_device_unplugged_when_the_other_end_closes(pty_pair):
    master, path = pty_pair
    with trio.fail_after(5):
        link = await SerialLink.open(path, device="scanner")
        try:
            os.close(master)
            with pytest.raises(DeviceUnplugged) as unplugged:
                await link.read_some()
            assert unplugged.value.device == "scanner"
            with pytest.raises(DeviceUnplugged):
                await link.write(b"x")
        finally:
            link.close()


async def test_closing_a_link_wakes_its_reader_with_device_unplugged(pty_pair):
    _, path = pty_pair
    with trio.fail_after(5):
        link = await SerialLink.open(path)
        async with trio.open_nursery() as nursery:

            async def read():
                with pytest.raises(DeviceUnplugged):
                    await link.read_some()

            nursery.start_soon(read)
            await trio.sleep(0.05)
            link.close()
        with pytest.raises(DeviceUnplugged):
            await link.read_some()


async def test_a_failing_fault_callback_is_logged_and_the_port_keeps_trying(caplog):
    calls = []

    def broken_callback(device, reason):
        calls.append((device, reason))
        raise RuntimeError("monitoring is down")

    port = ReconnectingPort(
        "printer", "/dev/does-not-exist", on_fault=broken_callback, backoff=Backoff(0.01, 0.02)
    )

    async def never_called(link):
        raise AssertionError("the port never opens")

    with trio.fail_after(5):
        async with port.running(never_called):
            await trio.sleep(0.2)
    assert calls == [("printer", "unavailable")]
    assert port.stats().failed_opens > 3
    assert any(r.getMessage() == "on_fault.failed" for r in caplog.records)


async def test_a_failing_path_function_is_an_outage_not_a_crash():
    def no_path():
        raise LookupError("adapter not enumerated yet")

    faults = []
    port = ReconnectingPort(
        "display", no_path, on_fault=lambda *f: faults.append(f), backoff=Backoff(0.01, 0.02)
    )

    async def serve(link):
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with port.running(serve):
            await trio.sleep(0.1)
            assert not port.connected
    assert faults == [("display", "unavailable")]
