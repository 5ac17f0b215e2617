"""The scenario: kiosks, counters, visitors and gates behaving as a profile says, open loop.

Arrivals follow the profile's schedule whatever the server's replies do
(open loop): each sale and each gate scan is started at its scheduled time
in a task of its own, and its latency is measured from that time, so a
server that falls behind shows it in the figures instead of slowing the
load down. In-flight work is bounded (``MAX_IN_FLIGHT`` per stream); an
arrival that finds the bound full is counted as ``overload.skipped``.

What a visitor does (the share of each comes from the profile): buy at a
kiosk (sometimes tapping create twice), pay by WeChat Pay or Alipay through
the channel simulator (sometimes both, sometimes in the order's last moments,
so the delayed notification finds it expired), or buy at a counter and pay
cash; some get a ticket refunded at
the desk. Gates scan the tickets sold: first entries, second scans, forged
codes, refunded tickets, exits; most granted visitors walk through. A share
of the visitors also rent equipment in the morning and bring it back in the
afternoon (:mod:`loadtest.rentals`), a stream of arrivals of its own.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs
import trio

from actors.catalog import parse_catalog
from actors.channels import QR_CHANNELS
from clients.client import Client, RemoteError
from loadtest.metrics import Recorder
from loadtest.profile import Profile
from loadtest.rentals import Authorize, RentalVisitors
from server.site import demo_catalog_source

#: the most arrivals of one stream still in flight; more are counted as skipped
MAX_IN_FLIGHT = 512
#: how long in-flight work may take to finish after the last arrival
GRACE_S = 20.0


@attrs.define
class World:
    """What the load generator knows and remembers while the run goes on."""

    fresh: deque[str] = attrs.field(factory=deque)  # sold, never scanned
    used: list[str] = attrs.field(factory=list)  # scanned at least once
    inside: list[str] = attrs.field(factory=list)  # walked in, not out yet
    refunded: list[str] = attrs.field(factory=list)  # refunded at the desk
    other_day: list[str] = attrs.field(factory=list)  # valid on another day, not today
    #: orders for another day (their tickets go to ``other_day``, not to the gates' queue)
    other_day_orders: set[str] = attrs.field(factory=set)
    acknowledged_orders: set[str] = attrs.field(factory=set)
    paid_orders: set[str] = attrs.field(factory=set)
    granted_scans: list[tuple[str, str]] = attrs.field(factory=list)
    #: (gate, scan_id, reason) of every scan the server answered with a refusal
    denied_scans: list[tuple[str, str, str]] = attrs.field(factory=list)
    #: orders whose cash payment a counter's payment.record acknowledged
    cash_recorded: set[str] = attrs.field(factory=set)
    #: order id -> when the visitor paid (for the payment's end-to-end latency)
    paying: dict[str, float] = attrs.field(factory=dict)
    #: order id -> tickets announced by order.paid
    tickets: dict[str, list[dict]] = attrs.field(factory=dict)
    paid_events: dict[str, trio.Event] = attrs.field(factory=dict)


Pay = Callable[[str, str], Awaitable[dict]]


class Scenario:
    """Runs a profile's sales and scans against connected clients."""

    def __init__(
        self,
        profile: Profile,
        recorder: Recorder,
        kiosks: list[Client],
        counters: list[Client],
        gates: list[tuple[str, Client]],
        pay: Pay,
        desks: list[Client] = (),
        authorize: Authorize | None = None,
    ) -> None:
        self.profile = profile
        self.recorder = recorder
        self.kiosks = kiosks
        self.counters = counters
        self.gates = gates
        self.pay = pay
        self.world = World()
        self.rng = random.Random(profile.seed)
        self._numbers = iter(range(1, 10**12))
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        self.today = today.isoformat()
        self.tomorrow = (today + timedelta(days=1)).isoformat()
        self.desks = list(desks)
        self.rentals = RentalVisitors(
            profile,
            recorder,
            kiosks,
            self.desks,
            pay,
            authorize,
            parse_catalog(demo_catalog_source()),  # the park the load test sells
            random.Random(profile.seed + 1),
        )

    async def presell(self) -> None:
        """Sell the profile's ``presold`` tickets for today before the run (not measured)."""
        if not self.profile.presold or not self.kiosks:
            return
        kiosk = self.kiosks[0]
        lines = {"product": "adult", "date": self.today}
        async with trio.open_nursery() as pump:
            pump.start_soon(self._events, kiosk)
            for first in range(0, self.profile.presold, 200):
                quantity = min(200, self.profile.presold - first)
                order = await kiosk.request(
                    "order.create",
                    client_key=f"lt-presold-{self.profile.seed}-{first}",
                    lines=[{**lines, "quantity": quantity}],
                )
                self.world.acknowledged_orders.add(order["order"])
                paid = self.world.paid_events.setdefault(order["order"], trio.Event())
                start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
                await self.pay("wechat", start["out_trade_no"])
                with trio.fail_after(60):
                    await paid.wait()
            pump.cancel_scope.cancel()

    async def run(self) -> None:
        """Run the whole profile: arrivals for ``duration_s``, then a bounded grace."""
        async with trio.open_nursery() as pumps:
            for client in self.kiosks + self.counters + self.desks:
                pumps.start_soon(self._events, client)
            began = trio.current_time()
            self.rentals.began = began
            with trio.move_on_at(began + self.profile.duration_s + GRACE_S):
                async with trio.open_nursery() as streams:
                    streams.start_soon(self._arrivals, self._sales_rate, self._sale, began)
                    if self.rentals.active:
                        streams.start_soon(
                            self._arrivals, self.rentals.rate, self.rentals.rent, began
                        )
                    for gate_id, gate in self.gates:
                        streams.start_soon(
                            self._arrivals,
                            self._scan_rate,
                            lambda at, g=gate_id, c=gate: self._scan(g, c, at),
                            began,
                        )
            pumps.cancel_scope.cancel()

    def _sales_rate(self, elapsed_s: float) -> float:
        return self.profile.orders_per_s * self.profile.multiplier(elapsed_s)

    def _scan_rate(self, elapsed_s: float) -> float:
        return self.profile.scans_per_gate_per_s * self.profile.multiplier(elapsed_s)

    async def _arrivals(self, rate_at, start, began: float) -> None:
        """Start ``start(at)`` at Poisson arrival times with rate ``rate_at(elapsed)``."""
        limit = trio.CapacityLimiter(MAX_IN_FLIGHT)
        end = began + self.profile.duration_s
        at = began
        async with trio.open_nursery() as work:
            while True:
                rate = rate_at(at - began)
                if rate <= 0:  # nobody arrives now: look again a little later
                    at += 0.1
                    if at >= end:
                        break
                    continue
                at += self.rng.expovariate(rate)
                if at >= end:
                    break
                await trio.sleep_until(at)
                borrower = object()
                try:
                    limit.acquire_on_behalf_of_nowait(borrower)
                except trio.WouldBlock:
                    self.recorder.count("overload.skipped")
                    continue
                work.start_soon(self._bounded, limit, borrower, at, start)

    async def _bounded(self, limit: trio.CapacityLimiter, borrower, at: float, start) -> None:
        try:
            await start(at)
        except Exception as exc:  # a refusal, a lost connection: counted, the run goes on
            while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                exc = exc.exceptions[0]  # a double tap's two requests fail together
            name = exc.code if isinstance(exc, RemoteError) else type(exc).__name__
            self.recorder.count(f"error.{name}")
        finally:
            limit.release_on_behalf_of(borrower)

    async def _timed(self, kind: str, since: float, call: Awaitable) -> dict:
        """Await ``call``, recording its latency from ``since`` (trio time)."""
        try:
            reply = await call
        except RemoteError as exc:
            self.recorder.record(kind, trio.current_time() - since, error=exc.code)
            raise
        self.recorder.record(kind, trio.current_time() - since)
        return reply

    # -- sales ---------------------------------------------------------------------

    async def _sale(self, at: float) -> None:
        profile, rng = self.profile, self.rng
        n = next(self._numbers)
        quantity = rng.randint(*profile.tickets_per_order)
        other_day = rng.random() < profile.other_day
        lines = [
            {
                "product": "adult",
                "quantity": quantity,
                "date": self.tomorrow if other_day else self.today,
            }
        ]
        if self.counters and rng.random() < profile.counter_share:
            await self._counter_sale(at, n, lines)
            return
        kiosk = self.kiosks[n % len(self.kiosks)]
        key = f"lt-{profile.seed}-{n}"
        if rng.random() < profile.double_tap:
            replies = []
            async with trio.open_nursery() as taps:
                for _ in range(2):
                    taps.start_soon(self._create, kiosk, key, lines, at, replies)
            self.recorder.count("sale.double_tap")
            if len({r["order"] for r in replies}) != 1:
                self.recorder.count("sale.double_tap_made_two_orders")  # must stay 0
            order = replies[0]
        else:
            replies = []
            await self._create(kiosk, key, lines, at, replies)
            order = replies[0]
        if other_day:
            self.world.other_day_orders.add(order["order"])
        channels = list(QR_CHANNELS)
        rng.shuffle(channels)
        if rng.random() >= profile.pay_both:
            channels = channels[:1]
        else:
            self.recorder.count("sale.pay_both")
        started = []
        for channel in channels:
            started.append(
                await self._timed(
                    "payment.start",
                    trio.current_time(),
                    kiosk.request("payment.start", order=order["order"], channel=channel),
                )
            )
        if rng.random() < profile.pay_late:
            # Paid in the order's last moments: the channel's (delayed) notification
            # often arrives after the order expired, and that payment must be refunded.
            self.recorder.count("sale.pay_late")
            await trio.sleep_until(at + max(profile.order_ttl_s - 0.3, 0))
        paid_at = trio.current_time()
        self.world.paying.setdefault(order["order"], paid_at)
        self.world.paid_events.setdefault(order["order"], trio.Event())
        for payment in started:
            await self._timed(
                "channel.pay",
                trio.current_time(),
                self.pay(payment["channel"], payment["out_trade_no"]),
            )
        if rng.random() < profile.refund_one and self.counters:
            await self._refund_one(order["order"], paid_at)

    async def _create(self, kiosk: Client, key: str, lines, at: float, replies: list) -> None:
        reply = await self._timed(
            "order.create", at, kiosk.request("order.create", client_key=key, lines=lines)
        )
        self.world.acknowledged_orders.add(reply["order"])
        replies.append(reply)

    async def _counter_sale(self, at: float, n: int, lines) -> None:
        """A counter sells and takes cash (tickets for another day stay with the visitor)."""
        counter = self.counters[n % len(self.counters)]
        order = await self._timed(
            "order.create",
            at,
            counter.request(
                "order.create", client_key=f"lt-c-{self.profile.seed}-{n}", lines=lines
            ),
        )
        self.world.acknowledged_orders.add(order["order"])
        if lines[0]["date"] != self.today:
            self.world.other_day_orders.add(order["order"])
        self.world.paying.setdefault(order["order"], trio.current_time())
        self.world.paid_events.setdefault(order["order"], trio.Event())
        times = 2 if self.rng.random() < self.profile.double_tap else 1
        for _ in range(times):  # a cashier pressing "record" twice changes nothing
            await self._timed(
                "payment.record",
                trio.current_time(),
                counter.request(
                    "payment.record",
                    order=order["order"],
                    channel="cash",
                    amount_fen=order["total_fen"],
                    key=f"drawer-{n}",
                ),
            )
            self.world.cash_recorded.add(order["order"])
        self.recorder.count("sale.counter_cash")

    async def _refund_one(self, order_id: str, paid_at: float) -> None:
        event = self.world.paid_events[order_id]
        with trio.move_on_after(30):
            await event.wait()
        tickets = self.world.tickets.get(order_id)
        if not tickets:
            return
        ticket = tickets[0]
        counter = self.rng.choice(self.counters)
        await self._timed(
            "order.refund",
            trio.current_time(),
            counter.request(
                "order.refund",
                order=order_id,
                tickets=[ticket["ticket"]],
                reason="visitor changed plans",
                key=f"refund-{order_id}",
            ),
        )
        try:
            self.world.fresh.remove(ticket["code"])
        except ValueError:
            pass  # already scanned: the gate refuses it from now on anyway
        self.world.refunded.append(ticket["code"])
        self.recorder.count("sale.refund_one")

    async def _events(self, client: Client) -> None:
        async for event, data in client.events():
            if event == "order.paid":
                order_id = data["order"]
                self.world.paid_orders.add(order_id)
                self.world.tickets[order_id] = data["tickets"]
                paid_at = self.world.paying.pop(order_id, None)
                if paid_at is not None:
                    self.recorder.record("payment.confirmed", trio.current_time() - paid_at)
                codes = [t["code"] for t in data["tickets"]]
                if order_id in self.world.other_day_orders:
                    self.world.other_day.extend(codes)
                else:
                    self.world.fresh.extend(codes)
                self.world.paid_events.setdefault(order_id, trio.Event()).set()
            elif event == "payment.refunded":
                self.recorder.count(f"refund.{data['reason']}")
            else:
                self.rentals.on_event(event, data)

    # -- gates ---------------------------------------------------------------------

    def _pick_code(self) -> tuple[str, str, str]:
        """(what, code, direction) for the next visitor at a gate."""
        world, profile, roll = self.world, self.profile, self.rng.random()
        if roll < profile.forged:
            return "forged", f"T20260101FAKE{self.rng.randrange(10**8):08d}.k0.AAAAAAAAAA", "entry"
        roll -= profile.forged
        if roll < profile.exit and world.inside:
            index = self.rng.randrange(len(world.inside))
            world.inside[index], world.inside[-1] = world.inside[-1], world.inside[index]
            return "exit", world.inside.pop(), "exit"
        roll -= profile.exit
        if roll < profile.rescan and world.used:
            return "rescan", self.rng.choice(world.used), "entry"
        if world.refunded and self.rng.random() < 0.5:
            return "refunded", world.refunded.pop(), "entry"
        if world.other_day and self.rng.random() < 0.3:
            return "other_day", self.rng.choice(world.other_day), "entry"
        if world.fresh:
            code = world.fresh.popleft()
            world.used.append(code)
            return "first", code, "entry"
        if world.used:
            return "rescan", self.rng.choice(world.used), "entry"
        return "forged", "T20260101NOTHINGSOLD.k0.AAAAAAAAAA", "entry"

    async def _scan(self, gate_id: str, gate: Client, at: float) -> None:
        what, code, direction = self._pick_code()
        scan_id = f"{gate_id}-{next(self._numbers)}"
        reply = await self._timed(
            "ticket.scan",
            at,
            gate.request(
                "ticket.scan",
                scan_id=scan_id,
                code=code,
                at=time.time(),
                direction=direction,
            ),
        )
        self.recorder.count(f"scan.{what}.{reply['reason']}")
        if not reply["granted"]:
            self.world.denied_scans.append((gate_id, scan_id, reply["reason"]))
            return
        self.world.granted_scans.append((gate_id, scan_id))
        walked = self.rng.random() >= self.profile.no_walk
        await self._timed(
            "gate.passage",
            trio.current_time(),
            gate.request("gate.passage", scan_id=scan_id, passed=walked),
        )
        if walked and direction == "entry" and what == "first":
            self.world.inside.append(code)
        elif not walked and what == "first":
            self.world.fresh.append(code)  # the entry was given back: this visitor comes again


def expected_sales(profile: Profile) -> int:
    """Roughly how many orders the profile makes (for sizing capacity)."""
    steps = 100
    total = sum(
        profile.orders_per_s * profile.multiplier(profile.duration_s * i / steps)
        for i in range(steps)
    )
    return math.ceil(total / steps * profile.duration_s)
