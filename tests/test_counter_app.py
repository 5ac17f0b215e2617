"""``scenic counter`` driven headless (textual's pilot) against a real ``scenic serve --demo``.

The server is a subprocess on a free loopback port against this test's
database; the devices are registered straight into it. Each test runs its
asyncio loop itself (pytest-trio owns async tests): the App's trio side runs
in guest mode on that loop; the test's own side requests (the visitor's phone
paying a QR) go through a trio client in a guest run too, via ``app.run_trio``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import trio
from textual.widgets import Button, Input, Static

from clients.client import connect
from clients.counter.app import CounterApp
from clients.counter.printing import FilePrinter
from devices.counter_printer import printer_for
from devices.printer import PrinterSimulator
from loadtest.local_server import register_devices, scenic_command, stop_process, wait_for_listening

DEVICES = {"counter-1": "counter", "counter-2": "counter", "desk-1": "rental", "kiosk-1": "kiosk"}
SIZE = (110, 60)


def shots_dir(tmp_path: Path) -> str:
    """Where the screenshots go: ``SCENIC_COUNTER_SCREENSHOTS`` (docs/ refreshes them), else tmp."""
    return os.environ.get("SCENIC_COUNTER_SCREENSHOTS", str(tmp_path))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoServer:
    """A ``scenic serve --demo`` process on this test's database, on a port of its own.

    :meth:`stop` and :meth:`start` again bring it back on the same port and
    database, as a server restarted under a counter's feet.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix="scenic-counter-"))
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        log_path = self.data_dir / "server.log"
        with open(log_path, "w") as log_file:
            self.process = subprocess.Popen(
                scenic_command(
                    "serve",
                    "--demo",
                    "--dsn",
                    self.dsn,
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(os.environ),
            )
        self.url = wait_for_listening(log_path, self.process, time.perf_counter() + 60)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@contextmanager
def demo_server(dsn: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A running :class:`DemoServer`; its URL and device tokens."""
    with running_demo(dsn) as running:
        yield running[0].url, running[1]


@contextmanager
def running_demo(dsn: str) -> Iterator[tuple[DemoServer, dict[str, str]]]:
    """A started :class:`DemoServer` with :data:`DEVICES` registered, stopped on exit."""
    demo = DemoServer(dsn)
    try:
        demo.start()
        yield demo, register_devices(dsn, DEVICES)
    finally:
        demo.stop()


def text_of(app: CounterApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the screen did not get there in time")
        await pilot.pause(0.05)


async def type_into(pilot, app: CounterApp, selector: str, value: str) -> None:
    field = app.query_one(selector, Input)
    field.focus()
    field.value = value
    await pilot.press("enter")


def left_of_day(app: CounterApp) -> int:
    """The whole day's places left, as the Sell screen shows them."""
    return int(text_of(app, "#places").split("全天 day: ")[1].split("/")[0])


async def ready(pilot, app: CounterApp) -> None:
    await until(pilot, lambda: app.catalog is not None and app.role is not None)
    await until(pilot, lambda: "places left" in text_of(app, "#places"))


async def sell(pilot, app: CounterApp, lines: str, pay: str) -> None:
    await type_into(pilot, app, "#sale-lines", lines)
    await type_into(pilot, app, "#sale-pay", pay)
    await until(pilot, lambda: not app.query_one("#collect", Button).disabled)
    await pilot.press("enter")


async def visitor_pays(url: str, token: str, channel: str, out_trade_no: str) -> dict:
    async with connect(url, "kiosk-1", token) as phone:
        return await phone.request("sim.pay", channel=channel, out_trade_no=out_trade_no)


@pytest.fixture
def server(dsn):
    with demo_server(dsn) as running:
        yield running


def test_a_cash_sale_shows_the_change_and_prints_the_receipt(server, tmp_path):
    url, tokens = server
    receipts = tmp_path / "receipts.txt"

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"], printer=FilePrinter(receipts))
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await type_into(pilot, app, "#sale-lines", "adult 2, child")
            await type_into(pilot, app, "#sale-pay", "cash 400")
            confirm = text_of(app, "#sale-confirm")
            assert "Total 300.00" in confirm and "Change 100.00" in confirm
            assert app.query_one("#collect", Button).has_focus
            app.save_screenshot("counter-sale.svg", shots_dir(tmp_path))
            before = left_of_day(app)
            await pilot.press("enter")
            await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"))
            assert "change 100.00" in text_of(app, "#sale-message")
            app.action_retry()  # ask the places now rather than in 5 s
            await until(pilot, lambda: left_of_day(app) == before - 3, 20)

    asyncio.run(scenario())
    printed = receipts.read_text(encoding="utf-8")
    assert "合计 Total" in printed and "300.00" in printed
    assert "找零 Change" in printed and "100.00" in printed
    assert "现金 Cash" in printed
    assert printed.count("[QR] T") == 3


def test_a_qr_sale_paid_twice_shows_the_second_payment_refunded_and_the_lookup_shows_both(
    server, tmp_path
):
    url, tokens = server

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"])
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await sell(pilot, app, "adult", "wechat")
            await until(pilot, lambda: app.sale.qr_trade_no is not None)
            order_id = app.sale.order["order"]
            wechat = app.sale.qr_trade_no

            async def second_payment() -> None:
                async with connect(url, "counter-2", tokens["counter-2"]) as other:
                    start = await other.request("payment.start", order=order_id, channel="alipay")
                async with connect(url, "kiosk-1", tokens["kiosk-1"]) as phone:
                    await phone.request("sim.pay", channel="wechat", out_trade_no=wechat)
                    await trio.sleep(0.5)
                    await phone.request(
                        "sim.pay", channel="alipay", out_trade_no=start["out_trade_no"]
                    )

            await app.run_trio(second_payment)
            await until(pilot, lambda: "second payment" in text_of(app, "#sale-message"), 20)
            app.action_show("lookup")
            await type_into(pilot, app, "#lookup-number", order_id)
            await until(pilot, lambda: "Charged?" in text_of(app, "#lookup-result"), 20)
            result = text_of(app, "#lookup-result")
            assert "How many times? 2" in result
            assert "a second payment was taken" in result

    asyncio.run(scenario())


def test_an_unused_ticket_is_refunded_with_a_reason_and_a_slip(server, tmp_path):
    url, tokens = server
    receipts = tmp_path / "receipts.txt"

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"], printer=FilePrinter(receipts))
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await sell(pilot, app, "adult", "card")
            await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"))
            order_id = text_of(app, "#sale-message").split("Sold ")[1].split()[0]
            app.action_show("refund")
            await type_into(pilot, app, "#refund-order", order_id)
            await until(pilot, lambda: "unused" in text_of(app, "#refund-tickets-shown"))
            await type_into(pilot, app, "#refund-reason", "rain")
            await until(pilot, lambda: not app.query_one("#refund-go", Button).disabled)
            assert "refund 1 ticket(s), 120.00" in text_of(app, "#refund-confirm")
            await pilot.press("enter")
            await until(pilot, lambda: "Refunded" in text_of(app, "#refund-message"))
            assert "120.00" in text_of(app, "#refund-message")

    asyncio.run(scenario())
    assert "退款凭证 Refund slip" in receipts.read_text(encoding="utf-8")


def test_a_connection_dropped_mid_sale_is_retried_without_a_second_order(server, dsn):
    url, tokens = server

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"])
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await type_into(pilot, app, "#sale-lines", "senior")
            await type_into(pilot, app, "#sale-pay", "cash 60")
            client_key = app.sale.client_key
            await app.run_trio(app.link.drop)
            await pilot.press("enter")
            await until(
                pilot,
                lambda: (
                    "Sold" in text_of(app, "#sale-message")
                    or "retry" in text_of(app, "#sale-message")
                ),
            )
            if "retry" in text_of(app, "#sale-message"):
                assert app.sale.client_key == client_key
                await until(pilot, lambda: app.link.connected)
                await pilot.press("enter")
                await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"))

    asyncio.run(scenario())

    async def orders() -> int:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("select count(*) from orders where device_id = 'counter-1'")
        finally:
            await conn.close()

    assert asyncio.run(orders()) == 1


def test_the_shift_report_on_screen_has_the_exact_figures(server, tmp_path):
    url, tokens = server

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"], float_fen=50000)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await sell(pilot, app, "adult 2", "cash 300")
            await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"))
            await sell(pilot, app, "child", "card")
            await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"))
            app.action_show("shift")
            await type_into(pilot, app, "#shift-float", "")
            await until(pilot, lambda: "In drawer" in text_of(app, "#shift-result"))
            shown = text_of(app, "#shift-result")
            assert "740.00" in shown  # 500.00 float + 240.00 cash
            assert "300.00" in shown  # sold: 240.00 cash + 60.00 card
            app.save_screenshot("counter-shift.svg", shots_dir(tmp_path))

    asyncio.run(scenario())


def test_a_rental_desk_hands_out_and_takes_back(server, dsn):
    url, tokens = server

    async def scenario() -> None:
        app = CounterApp(url, "desk-1", tokens["desk-1"])
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            assert app.role == "rental"

            async def paid_rental() -> dict:
                async with connect(url, "kiosk-1", tokens["kiosk-1"]) as kiosk:
                    rental = await kiosk.request(
                        "rental.create", client_key="r1", items=[{"item": "helmet", "quantity": 1}]
                    )
                    pay = await kiosk.request(
                        "rental.pay", rental=rental["rental"], channel="wechat"
                    )
                    await kiosk.request(
                        "sim.pay", channel="wechat", out_trade_no=pay["out_trade_no"]
                    )
                    with trio.fail_after(10):
                        async for event, data in kiosk.events():
                            if event == "rental.voucher":
                                return data

            voucher = await app.run_trio(paid_rental)
            await type_into(pilot, app, "#pickup-voucher", voucher["voucher"])
            await type_into(pilot, app, "#pickup-labels", "880104001")
            await until(pilot, lambda: "Handed out" in text_of(app, "#rental-result"))
            await type_into(pilot, app, "#return-units", "880104001 ok")
            await until(pilot, lambda: "Settled" in text_of(app, "#rental-result"))
            assert "released" in text_of(app, "#rental-result")

    asyncio.run(scenario())


def test_a_cash_sale_prints_on_the_simulated_escpos_printer_over_a_pty(server):
    url, tokens = server

    async def scenario() -> None:
        app = CounterApp(url, "counter-1", tokens["counter-1"])
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            held: dict = {}
            plugged, done = trio.Event(), trio.Event()

            async def printer_on_a_pty() -> None:
                async with PrinterSimulator() as simulator:
                    held["simulator"] = simulator
                    plugged.set()
                    await done.wait()

            async def wait_plugged() -> None:
                await plugged.wait()

            holder = asyncio.ensure_future(app.run_trio(printer_on_a_pty))
            await app.run_trio(wait_plugged)
            simulator = held["simulator"]
            app.printer = printer_for(simulator.port)
            await sell(pilot, app, "adult", "cash 150")
            await until(pilot, lambda: "printed" in text_of(app, "#sale-message"), 20)

            async def receipts() -> list[list[str]]:
                await simulator.wait_for_cuts(1, timeout_s=10)
                done.set()
                return simulator.receipts()

            (receipt,) = await app.run_trio(receipts)
            app.printer.close()
            await holder
            text = "\n".join(receipt)
            assert "云栖山风景区" in text  # Chinese reached the paper (GB18030) and came back
            assert "合计 Total" in text and "150.00" in text and "30.00" in text
            assert any(line.startswith("[qr] T") for line in receipt)

    asyncio.run(scenario())


def count_rows(dsn: str, sql: str) -> int:
    async def fetch() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_a_server_gone_mid_sale_shows_a_retry_and_the_retry_sells_once(dsn):
    with running_demo(dsn) as (demo, tokens):

        async def scenario() -> None:
            app = CounterApp(demo.url, "counter-1", tokens["counter-1"], request_timeout_s=3)
            async with app.run_test(size=SIZE) as pilot:
                await ready(pilot, app)
                await sell(pilot, app, "adult", "wechat")
                await until(pilot, lambda: app.sale.qr_trade_no is not None)
                await asyncio.to_thread(demo.stop)
                await type_into(pilot, app, "#sale-lines", "adult")
                await type_into(pilot, app, "#sale-pay", "cash 120")  # the visitor pays cash
                await pilot.press("enter")
                await until(pilot, lambda: "retry" in text_of(app, "#sale-message"), 20)
                assert "reconnecting" in text_of(app, "#status")
                await asyncio.to_thread(demo.start)
                await until(pilot, lambda: app.link.connected, 30)
                assert "connected" in text_of(app, "#status")
                await pilot.press("enter")  # the same sale, the same keys
                await until(pilot, lambda: "Sold" in text_of(app, "#sale-message"), 20)
                assert app.printed  # the receipt of that one order

        asyncio.run(scenario())
        assert count_rows(dsn, "select count(*) from orders") == 1
        assert count_rows(dsn, "select count(*) from orders where status = 'paid'") == 1
        assert count_rows(dsn, "select count(*) from payment_confirmations") == 1
