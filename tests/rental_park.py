"""What the end-to-end rental tests share: the demo park's desks, its units, a park clock.

The server runs the demo park (server/catalog/demo_park.toml): skis
(deposit 800 yuan, 120 a day, late 30 an hour, damage 400, lost 3000),
boots, and boats at the dock (deposit 500 yuan; 10 minutes free, then 80
yuan for each of the first 2 started hours and 100 after, at most 360 a
day; late 50 an hour). Rentals are due back at 17:30 Asia/Shanghai.

:func:`park_clock` is a wall clock that starts at a chosen moment and
moves with trio's clock: with pytest-trio's ``mock_clock`` at rate 1 a
test jumps hours ahead (``mock_clock.jump``) and the server's timers,
outbox and simulated channels all see the jump.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import trio

from tests.test_orders import next_event

PARK = ZoneInfo("Asia/Shanghai")

DEVICES = {
    "kiosk-1": "kiosk",
    "counter-1": "counter",
    "desk-1": "rental",
    "desk-2": "rental",
    "admin-x": "admin",
    "wechat-gw": "channel",
}

SKIS = [f"8801010{n:02d}" for n in range(1, 61)]
BOOTS = [f"8801030{n:02d}" for n in range(1, 91)]
BOATS = [f"DOCK-BOAT-{n:02d}" for n in range(1, 13)]


def park_time(hour: int, minute: int = 0, days: int = 0) -> datetime:
    """Today (in the park, plus ``days``) at ``hour:minute`` park time, as aware UTC."""
    today = datetime.now(PARK).date() + timedelta(days=days)
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=PARK).astimezone(UTC)


def park_clock(start: datetime) -> Callable[[], datetime]:
    """A wall clock reading ``start`` now and moving on with trio's clock."""
    base = trio.current_time()
    return lambda: start + timedelta(seconds=trio.current_time() - base)


def ok(*labels: str, condition: str = "ok") -> list[dict]:
    """The ``returns`` of a rental.return: each label back in ``condition``."""
    return [{"label": label, "condition": condition} for label in labels]


async def paid_rental(
    kiosk, key: str, items: list[dict], channel: str = "wechat", **create_args
) -> tuple[dict, dict]:
    """A rental made at the kiosk and paid by QR; returns (rental, voucher event)."""
    rental = await kiosk.request("rental.create", client_key=key, items=items, **create_args)
    start = await kiosk.request("rental.pay", rental=rental["rental"], channel=channel)
    await kiosk.request("sim.pay", channel=channel, out_trade_no=start["out_trade_no"])
    voucher = await next_event(kiosk, "rental.voucher")
    assert voucher["rental"] == rental["rental"]
    return rental, voucher


async def wait_for(predicate, timeout: float = 10.0, poll: float = 0.05):
    """Await ``predicate()`` until it returns something true; return it."""
    with trio.fail_after(timeout):
        while not (found := await predicate()):
            await trio.sleep(poll)
    return found


async def ledger_balance(db, account: str) -> int:
    """The sum of ``account``'s ledger entries (debits positive)."""
    return await db.fetchval(
        "select coalesce(sum(amount_fen), 0) from ledger_entries where account = $1", account
    )
