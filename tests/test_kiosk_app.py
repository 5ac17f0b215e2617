"""``scenic kiosk`` driven headless by textual's pilot against a real ``scenic serve --demo``.

Each test is a plain function that runs the App's asyncio loop itself
(pytest-trio owns async tests); the server is a separate process on a free
loopback port against the test's database, and the visitor's phone paying
the QR is ``sim.pay`` from another device on its own connection.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

from clients.kiosk.app import KioskApp
from clients.kiosk.flow import Screen
from tests.kiosk_support import DemoServer, as_device, screen_text, until

pytestmark = pytest.mark.slow

SIZE = (150, 50)


@pytest.fixture
def server(dsn, tmp_path):
    demo = DemoServer(dsn, tmp_path, {"kiosk-1": "kiosk", "phone": "counter"})
    try:
        yield demo
    finally:
        demo.stop()


def kiosk(server: DemoServer, **options) -> KioskApp:
    numbers = itertools.count(1)
    options.setdefault("language", "en")
    return KioskApp(
        server.url,
        "kiosk-1",
        server.tokens["kiosk-1"],
        new_purchase=lambda: f"purchase{next(numbers):04d}",
        **options,
    )


async def phone_pays(server: DemoServer, app: KioskApp) -> dict:
    payment = app.state.payment
    return await as_device(
        server.url,
        "phone",
        server.tokens["phone"],
        "sim.pay",
        channel=payment.channel,
        out_trade_no=payment.out_trade_no,
    )


async def choose_two_adults_and_confirm(pilot, app: KioskApp) -> None:
    await until(pilot, lambda: bool(app.state.products))
    await pilot.press("enter")
    await until(pilot, lambda: app.state.screen is Screen.CHOOSE)
    await pilot.press("right", "right")  # two of the first product (adult)
    await pilot.press("enter")
    assert app.state.screen is Screen.REVIEW
    await pilot.press("enter")


def test_a_full_sale_shows_the_total_the_notes_the_qr_and_then_the_tickets(server):
    async def scenario() -> None:
        app = kiosk(server)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: bool(app.state.products))
            assert "Yunqi Mountain Scenic Area" in screen_text(app)
            assert "Connected" in screen_text(app)
            await pilot.press("enter")
            dates = app.state.dates
            await pilot.press("d", "d", "D")  # two dates on, one back
            assert f"Visit date: < {dates[1]} >" in screen_text(app)
            await pilot.press("D", "t")
            assert "Entry time: [PM]" in screen_text(app)
            await pilot.press("T", "right", "right", "right", "left", "enter")
            shown = screen_text(app)
            assert "Adult  " in shown and "120.00 x 2 = 240.00" in shown
            assert "Total: 240.00" in shown
            assert "tickets used at a gate are not refundable" in shown
            await pilot.press("enter")
            await until(pilot, lambda: app.state.payment is not None)
            assert app.state.screen is Screen.PAY and app.state.payment.channel == "wechat"
            shown = screen_text(app)
            assert "Scan to pay" in shown and "Paying with: WeChat Pay" in shown
            assert f"Payment no.: {app.state.payment.out_trade_no}" in shown
            assert str(app.query_one("#qr").render()).count("\n") > 10  # a QR is drawn
            await phone_pays(server, app)
            await until(pilot, lambda: app.state.screen is Screen.DONE)
            assert len(app.state.tickets) == 2
            shown = screen_text(app)
            assert "Paid! Here are your tickets" in shown and "Ticket 1 of 2" in shown
            first = str(app.query_one("#qr").render())
            await pilot.press("right")
            assert "Ticket 2 of 2" in screen_text(app)
            assert str(app.query_one("#qr").render()) != first
            order = await as_device(
                server.url, "kiosk-1", server.tokens["kiosk-1"], "order.get", order=app.state.order
            )
            assert order["status"] == "paid" and order["total_fen"] == 24000
            assert {t["code"] for t in order["tickets"]} == {t.code for t in app.state.tickets}

    asyncio.run(scenario())


def test_a_second_payment_is_refunded_and_the_visitor_is_told(server):
    async def scenario() -> None:
        app = kiosk(server)
        async with app.run_test(size=SIZE) as pilot:
            await choose_two_adults_and_confirm(pilot, app)
            await until(pilot, lambda: app.state.payment is not None)
            wechat = app.state.payment
            await pilot.press("a")  # the visitor switches to Alipay; both QR codes get paid
            await until(pilot, lambda: app.state.payment.channel == "alipay")
            alipay = app.state.payment
            assert alipay.out_trade_no != wechat.out_trade_no
            await phone_pays(server, app)  # Alipay first: it pays the order
            await until(pilot, lambda: app.state.screen is Screen.DONE)
            await as_device(
                server.url,
                "phone",
                server.tokens["phone"],
                "sim.pay",
                channel="wechat",
                out_trade_no=wechat.out_trade_no,
            )
            await until(pilot, lambda: any(r.confirmed for r in app.state.refunds))
            shown = screen_text(app)
            assert (
                "A second payment was detected: 240.00 yuan by WeChat Pay is being refunded."
                in shown
            )
            assert "WeChat Pay confirmed the refund of 240.00 yuan." in shown
            order = await as_device(
                server.url, "kiosk-1", server.tokens["kiosk-1"], "order.get", order=app.state.order
            )
            states = {p["channel"]: p["state"] for p in order["payments"]}
            assert states == {"alipay": "captured", "wechat": "refunded"}

    asyncio.run(scenario())


def count_orders(server: DemoServer) -> int:
    """The orders in the server's database (read on a thread of its own: blocking, briefly)."""

    async def count() -> int:
        conn = await asyncpg.connect(server.dsn)
        try:
            return await conn.fetchval("SELECT count(*) FROM orders")
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, count()).result(timeout=30)


def test_a_server_restart_on_the_pay_screen_resumes_the_same_order(server):
    async def scenario() -> None:
        app = kiosk(server)
        async with app.run_test(size=SIZE) as pilot:
            await choose_two_adults_and_confirm(pilot, app)
            await until(pilot, lambda: app.state.payment is not None)
            order = app.state.order
            await asyncio.to_thread(server.stop)
            await until(pilot, lambda: app.link_state.status == "reconnecting")
            shown = screen_text(app)
            assert "Connection lost" in shown or "Reconnecting" in shown
            assert "R: retry" in shown
            assert app.state.screen is Screen.PAY and app.state.order == order
            await asyncio.to_thread(server.start)
            await pilot.press("r")  # the visible retry: reconnect now, not after the backoff
            await until(pilot, lambda: app.link_state.status == "connected", within=30)
            await until(pilot, lambda: not app.state.busy, within=30)
            assert app.state.screen is Screen.PAY and app.state.order == order
            # the simulated channels lived in the old process: the visitor takes a new QR
            await pilot.press("a")
            await until(pilot, lambda: app.state.payment.channel == "alipay", within=30)
            await phone_pays(server, app)
            await until(pilot, lambda: app.state.screen is Screen.DONE, within=30)
            assert app.state.order == order and len(app.state.tickets) == 2

    asyncio.run(scenario())
    assert count_orders(server) == 1


def test_a_payment_made_while_the_connection_is_down_shows_once_it_is_back(server):
    async def scenario() -> None:
        app = kiosk(server, reconnect_after_s=4.0)
        async with app.run_test(size=SIZE) as pilot:
            await choose_two_adults_and_confirm(pilot, app)
            await until(pilot, lambda: app.state.payment is not None)
            await app.run_trio(app.link.drop)
            await until(pilot, lambda: app.link_state.status == "reconnecting")
            await phone_pays(server, app)
            for _ in range(100):  # the channel's notification reaches the server
                paid = await as_device(
                    server.url, "phone", server.tokens["phone"], "order.get", order=app.state.order
                )
                if paid["status"] == "paid":
                    break
                await asyncio.sleep(0.05)
            assert paid["status"] == "paid"
            assert app.state.screen is Screen.PAY  # the kiosk has not heard yet
            await until(pilot, lambda: app.state.screen is Screen.DONE, within=20)
            assert {t.code for t in app.state.tickets} == {t["code"] for t in paid["tickets"]}

    asyncio.run(scenario())
    assert count_orders(server) == 1


def test_a_create_whose_reply_is_lost_is_sent_again_with_its_key_and_makes_one_order(server):
    async def scenario() -> None:
        app = kiosk(server, request_timeout_s=2.0)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: bool(app.state.products))
            await pilot.press("enter", "right", "right", "enter")
            assert app.state.screen is Screen.REVIEW
            key = None
            server.process.send_signal(signal.SIGSTOP)  # the server hears, and says nothing
            try:
                await pilot.press("enter")
                key = f"{app.state.purchase}-{app.state.revision}"
                await until(pilot, lambda: app.state.error == "no_reply", within=10)
                assert "The server did not answer in time." in screen_text(app)
                assert "R: retry" in screen_text(app)
            finally:
                server.process.send_signal(signal.SIGCONT)
            await until(pilot, lambda: count_orders(server) == 1)  # the create did run
            await until(pilot, lambda: app.link_state.status == "connected", within=30)
            await pilot.press("r")
            await until(pilot, lambda: app.state.payment is not None)
            assert f"{app.state.purchase}-{app.state.revision}" == key
            again = await as_device(
                server.url,
                "kiosk-1",
                server.tokens["kiosk-1"],
                "order.create",
                client_key=key,
                lines=[{"product": "adult", "quantity": 2, "date": app.state.dates[0]}],
            )
            assert again["order"] == app.state.order

    asyncio.run(scenario())
    assert count_orders(server) == 1


def test_after_the_idle_time_the_start_screen_shows_nothing_of_the_last_visitor(server):
    async def scenario() -> None:
        app = kiosk(server, idle_s=1.5, language="zh")
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: bool(app.state.products))
            await pilot.press("l")  # the visitor reads English
            await pilot.press("enter", "right", "right", "enter", "enter")
            await until(pilot, lambda: app.state.payment is not None)
            await phone_pays(server, app)
            await until(pilot, lambda: app.state.screen is Screen.DONE)
            order, code = app.state.order, app.state.tickets[0].ticket
            assert order in screen_text(app)
            await until(pilot, lambda: app.state.screen is Screen.START, within=5)
            shown = screen_text(app) + str(app.query_one("#qr").render())
            assert order not in shown and code not in shown
            assert "欢迎" in shown  # back in the kiosk's own language
            assert str(app.query_one("#qr").render()) == ""
            state = app.state
            assert (state.purchase, state.order, state.payment, state.tickets) == (None,) * 3 + (
                (),
            )
            # the next visitor starts from nothing
            await pilot.press("enter")
            assert app.state.quantities == (0,) * len(app.state.products)
            assert app.state.purchase != "purchase0001"

    asyncio.run(scenario())


def test_a_pay_screen_left_alone_cancels_its_order_and_returns_to_the_start(server):
    async def scenario() -> None:
        app = kiosk(server, idle_s=30, pay_s=1.5)
        async with app.run_test(size=SIZE) as pilot:
            await choose_two_adults_and_confirm(pilot, app)
            await until(pilot, lambda: app.state.payment is not None)
            order = app.state.order
            await until(pilot, lambda: app.state.screen is Screen.START, within=5)
            assert order not in screen_text(app)
            for _ in range(100):
                seen = await as_device(
                    server.url, "phone", server.tokens["phone"], "order.get", order=order
                )
                if seen["status"] == "cancelled":
                    break
                await asyncio.sleep(0.05)
            assert seen["status"] == "cancelled"

    asyncio.run(scenario())


def test_an_order_that_lapses_on_the_pay_screen_returns_to_the_start_saying_so(dsn, tmp_path):
    server = DemoServer(dsn, tmp_path, {"kiosk-1": "kiosk"}, env={"SCENIC_ORDER_TTL_S": "3"})

    async def scenario() -> None:
        app = kiosk(server)
        async with app.run_test(size=SIZE) as pilot:
            await choose_two_adults_and_confirm(pilot, app)
            await until(pilot, lambda: app.state.payment is not None)
            await until(pilot, lambda: app.state.screen is Screen.START, within=40)
            assert app.state.error == "order_expired"
            assert "The order was not paid in time and has lapsed." in screen_text(app)

    try:
        asyncio.run(scenario())
    finally:
        server.stop()
