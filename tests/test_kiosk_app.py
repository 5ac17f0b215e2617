"""``scenic kiosk`` driven headless by textual's pilot against a real ``scenic serve --demo``.

Each test is a plain function that runs the App's asyncio loop itself
(pytest-trio owns async tests); the server is a separate process on a free
loopback port against the test's database, and the visitor's phone paying
the QR is ``sim.pay`` from another device on its own connection.
"""

from __future__ import annotations

import asyncio
import itertools

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
            await pilot.press("enter", "right", "right", "enter")
            shown = screen_text(app)
            assert "Adult  " in shown and "120.00 x 2 = 240.00" in shown
            assert "Total: 240.00" in shown
            assert "tickets used at a gate are not refundable" in shown
            await pilot.press("enter")
            await until(pilot, lambda: app.state.payment is not None)
            assert app.state.screen is Screen.PAY and app.state.payment.channel == "wechat"
            shown = screen_text(app)
            assert "Scan to pay" in shown and "Paying with: WeChat Pay" in shown
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
