"""The load test's renting visitors: a ski resort's morning pickups and afternoon returns.

Each renting visitor picks a kit (skis and boots, a boat and life jackets,
...) from the profile's mix and goes through the real protocol with the
right roles:

- paying by QR: a kiosk makes the rental (``rental.create``) and starts the
  deposit (``rental.pay``), the visitor pays at the channel (``sim.pay``, or
  ``sim.authorize`` for Alipay's pre-authorisation, or the same through a
  ``scenic channel-sim`` process) and the kiosk is told ``rental.voucher``;
- paying cash or card: a rental desk makes the rental and records the money
  (``rental.record``), whose reply carries the voucher;
- a rental desk scans the voucher and the units' labels (``rental.pickup``)
  and, in the afternoon, takes them back (``rental.return``), some damaged
  or lost; the last one settles the rental.

The run stands for the resort's day (``[rentals] day``), so a rental made
at 09:00 is made 1/9.5 of the way through a run of 08:00 to 17:30 and comes
back at a time drawn from the afternoon's ``returns`` hours mapped the same
way. Units are finite: ``not_available`` (nothing left to reserve) and
``unit_out`` / ``unit_unavailable`` (a label already out) are answers the
server must give, counted under ``rental.refused.<code>``, not errors.

Every acknowledgement is remembered in :class:`RentalWorld` (made, held,
picked up, settled, cancelled) for the audit to check against the database.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Awaitable, Callable

import attrs
import trio

from actors.catalog import Catalog
from clients.client import Client, RemoteError
from loadtest.metrics import Recorder
from loadtest.profile import Profile

#: refusals a busy resort gives and the load test expects: counted, not errors
REFUSALS = frozenset({"not_available", "unit_out", "unit_unavailable"})
#: the latency kinds of the rental flows
RENTAL_KINDS = (
    "rental.create",
    "rental.pay",
    "rental.record",
    "rental.held",
    "rental.pickup",
    "rental.return",
)
#: how long a visitor waits for the deposit's ``rental.voucher`` after paying
VOUCHER_WAIT_S = 30.0

Pay = Callable[[str, str], Awaitable[dict]]
Authorize = Callable[[str, str], Awaitable[dict]]


@attrs.define
class RentalWorld:
    """What the server acknowledged about rentals during the run (for the audit)."""

    #: rental id -> the client_key it was made with
    created: dict[str, str] = attrs.field(factory=dict)
    #: rentals whose deposit was acknowledged held (a voucher came)
    held: set[str] = attrs.field(factory=set)
    #: rental id -> the labels acknowledged out on it
    picked_up: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: rental id -> the ``settlement`` map of the ``rental.return`` reply that settled it
    settled: dict[str, dict] = attrs.field(factory=dict)
    cancelled: set[str] = attrs.field(factory=set)
    #: rental id -> voucher code, from ``rental.voucher`` or ``rental.record``
    vouchers: dict[str, str] = attrs.field(factory=dict)
    voucher_events: dict[str, trio.Event] = attrs.field(factory=dict)
    #: (rental, reference) of every ``deposit.refunded`` push with state ``confirmed``
    refunds_confirmed: set[tuple[str, str]] = attrs.field(factory=set)


class RentalVisitors:
    """Runs the renting visitors of a profile against kiosks and rental desks."""

    def __init__(
        self,
        profile: Profile,
        recorder: Recorder,
        kiosks: list[Client],
        desks: list[Client],
        pay: Pay,
        authorize: Authorize | None,
        catalog: Catalog,
        rng: random.Random,
    ) -> None:
        self.profile = profile
        self.rentals = profile.rentals
        self.recorder = recorder
        self.kiosks = kiosks
        self.desks = desks
        self.pay = pay
        self.authorize = authorize
        self.rng = rng
        self.world = RentalWorld()
        self.began = 0.0
        self._numbers = iter(range(1, 10**12))
        #: item id -> labels of its units on the shelf (as far as this generator knows)
        self.shelf: dict[str, list[str]] = defaultdict(list)
        self.item_of: dict[str, str] = {}
        for unit in catalog.rental_units:
            self.shelf[unit.item_id].append(unit.label)
            self.item_of[unit.label] = unit.item_id

    @property
    def active(self) -> bool:
        """Whether this profile rents at all (and has the devices to)."""
        return self.rentals.share > 0 and bool(self.desks)

    def rate(self, elapsed_s: float) -> float:
        """Rentals a second at ``elapsed_s``: the share of the sales, in the pickup hours only."""
        fraction = elapsed_s / self.profile.duration_s
        first, last = (self.rentals.run_fraction(h) for h in self.rentals.pickups)
        if not first <= fraction < last:
            return 0.0
        sales = self.profile.orders_per_s * self.profile.multiplier(elapsed_s)
        return self.rentals.share * sales / self.rentals.pickup_share()

    def on_event(self, event: str, data: dict) -> None:
        """Take in a push a kiosk or desk received."""
        if event == "rental.voucher":
            rental_id = data["rental"]
            self.world.vouchers[rental_id] = data["voucher"]
            self.world.held.add(rental_id)
            self.world.voucher_events.setdefault(rental_id, trio.Event()).set()
        elif event == "deposit.refunded" and data.get("state") == "confirmed":
            key = (data["rental"], data["reference"])
            if key not in self.world.refunds_confirmed:
                self.world.refunds_confirmed.add(key)
                self.recorder.count(f"rental.refund_confirmed.{data['how']}")

    # -- one visitor -------------------------------------------------------------------

    async def rent(self, at: float) -> None:
        """One renting visitor, from making the rental (scheduled at ``at``) to settling it."""
        rng, n = self.rng, next(self._numbers)
        kit = rng.choices(self.rentals.kits, weights=[k.weight for k in self.rentals.kits])[0]
        channels = self.rentals.channels
        channel = rng.choices([c for c, _ in channels], weights=[w for _, w in channels])[0]
        route = "preauth" if channel == "alipay" and rng.random() < self.rentals.preauth else "pay"
        at_desk = channel in ("cash", "card")
        maker = self.desks[n % len(self.desks)] if at_desk else self.kiosks[n % len(self.kiosks)]
        items = [{"item": item, "quantity": quantity} for item, quantity in kit.items]
        rental = await self._make(maker, f"lt-r-{self.profile.seed}-{n}", items, at)
        if rental is None:
            return
        rental_id = rental["rental"]
        if at_desk:
            voucher = await self._record(maker, rental, channel, n)
        elif route == "preauth":
            voucher = await self._freeze(maker, rental_id)
        else:
            voucher = await self._pay_by_qr(maker, rental_id, channel)
        if voucher is None:
            return
        labels = await self._pick_up(self.desks[(n + 1) % len(self.desks)], rental_id, voucher, kit)
        if labels is None:
            return
        first, last = (self.rentals.run_fraction(h) for h in self.rentals.returns)
        back = self.began + rng.uniform(first, last) * self.profile.duration_s
        await trio.sleep_until(max(back, trio.current_time()))
        await self._return(self.desks[n % len(self.desks)], rental_id, labels)

    async def _make(self, maker: Client, key: str, items: list[dict], at: float) -> dict | None:
        taps = 2 if self.rng.random() < self.rentals.double_tap else 1
        replies: list[dict | None] = []

        async def tap() -> None:
            replies.append(
                await self._timed(
                    "rental.create", at, maker.request("rental.create", client_key=key, items=items)
                )
            )

        async with trio.open_nursery() as nursery:
            for _ in range(taps):
                nursery.start_soon(tap)
        made = [r for r in replies if r is not None]
        if taps == 2:
            self.recorder.count("rental.double_tap")
            if len({r["rental"] for r in made}) > 1:
                self.recorder.count("rental.double_tap_made_two_rentals")  # must stay 0
        if not made:
            return None
        for reply in made:
            self.world.created[reply["rental"]] = key
        self.recorder.count("rental.created")
        return made[0]

    async def _record(self, desk: Client, rental: dict, channel: str, n: int) -> str | None:
        """Cash or card at the desk; a double tap records the same drawer entry twice."""
        times = 2 if self.rng.random() < self.rentals.double_tap else 1
        reply = None
        for _ in range(times):
            reply = await self._timed(
                "rental.record",
                trio.current_time(),
                desk.request(
                    "rental.record",
                    rental=rental["rental"],
                    channel=channel,
                    amount_fen=rental["due_now_fen"],
                    key=f"drawer-r-{n}",
                ),
            )
        if reply is None or reply["result"] != "held":
            return None
        self.world.vouchers[rental["rental"]] = reply["voucher"]
        self.world.held.add(rental["rental"])
        self.recorder.count(f"rental.held.{channel}")
        return reply["voucher"]

    async def _pay_by_qr(self, kiosk: Client, rental_id: str, channel: str) -> str | None:
        """Pay the deposit at the channel; sometimes by both QR channels (one is refunded)."""
        channels = [channel]
        if self.rng.random() < self.rentals.pay_both:
            channels.append("alipay" if channel == "wechat" else "wechat")
            self.recorder.count("rental.pay_both")
        started = []
        for each in channels:
            started.append(
                await self._timed(
                    "rental.pay",
                    trio.current_time(),
                    kiosk.request("rental.pay", rental=rental_id, channel=each),
                )
            )
        paid_at = trio.current_time()
        for payment in started:
            if payment is not None:
                await self.pay(payment["channel"], payment["out_trade_no"])
        return await self._voucher(rental_id, paid_at, channel)

    async def _freeze(self, kiosk: Client, rental_id: str) -> str | None:
        """Alipay's fund authorisation: the visitor approves a freeze of the deposit."""
        if self.authorize is None:
            self.recorder.count("rental.preauth_unavailable")
            return await self._pay_by_qr(kiosk, rental_id, "alipay")
        start = await self._timed(
            "rental.pay",
            trio.current_time(),
            kiosk.request("rental.pay", rental=rental_id, channel="alipay", route="preauth"),
        )
        if start is None:
            return None
        paid_at = trio.current_time()
        await self.authorize(start["out_order_no"], start["out_request_no"])
        return await self._voucher(rental_id, paid_at, "preauth")

    async def _voucher(self, rental_id: str, paid_at: float, how: str) -> str | None:
        event = self.world.voucher_events.setdefault(rental_id, trio.Event())
        with trio.move_on_after(VOUCHER_WAIT_S):
            await event.wait()
        if not event.is_set():
            self.recorder.record("rental.held", trio.current_time() - paid_at, error="no_voucher")
            return None
        self.recorder.record("rental.held", trio.current_time() - paid_at)
        self.recorder.count(f"rental.held.{how}")
        return self.world.vouchers[rental_id]

    async def _pick_up(self, desk: Client, rental_id: str, voucher: str, kit) -> tuple | None:
        """The desk hands out units from its shelf; a refusal gives them back and cancels."""
        labels = []
        for item, quantity in kit.items:
            shelf = self.shelf[item]
            for _ in range(quantity):
                # an empty shelf here means our view and the server's differ: the label
                # of a unit surely out is scanned, and the server must refuse it
                labels.append(shelf.pop(self.rng.randrange(len(shelf))) if shelf else None)
        if None in labels:
            self.recorder.count("rental.shelf_empty")
            labels = [lab for lab in labels if lab is not None]
            self._shelve(labels)
            await self._cancel(desk, rental_id)
            return None
        reply = await self._timed(
            "rental.pickup",
            trio.current_time(),
            desk.request("rental.pickup", voucher=voucher, labels=labels),
        )
        if reply is None:
            self._shelve(labels)
            await self._cancel(desk, rental_id)
            return None
        self.world.picked_up[rental_id] = tuple(labels)
        self.recorder.count("rental.picked_up")
        return tuple(labels)

    async def _cancel(self, desk: Client, rental_id: str) -> None:
        reply = await desk.request("rental.cancel", rental=rental_id)
        if reply["status"] == "cancelled":
            self.world.cancelled.add(rental_id)
            self.recorder.count("rental.cancelled")

    async def _return(self, desk: Client, rental_id: str, labels: tuple[str, ...]) -> None:
        """Everything comes back at once; some damaged, some lost (never to be seen again)."""
        returns, shelved = [], []
        for label in labels:
            roll = self.rng.random()
            if roll < self.rentals.lost:
                condition = "lost"
            elif roll < self.rentals.lost + self.rentals.damaged:
                condition = "damaged"
            else:
                condition = "ok"
                shelved.append(label)
            returns.append({"label": label, "condition": condition})
            if condition != "ok":
                self.recorder.count(f"rental.unit_{condition}")
        reply = await self._timed(
            "rental.return",
            trio.current_time(),
            desk.request("rental.return", rental=rental_id, returns=returns),
        )
        if reply is None or reply["status"] != "settled":
            return
        self.world.settled[rental_id] = reply["settlement"]
        self.recorder.count("rental.settled")
        if reply["settlement"]["compensation_fen"]:
            self.recorder.count("rental.compensation")
        self._shelve(shelved)

    def _shelve(self, labels: list[str]) -> None:
        for label in labels:
            self.shelf[self.item_of[label]].append(label)

    async def _timed(self, kind: str, since: float, call: Awaitable) -> dict | None:
        """Await ``call``, recording its latency; an expected refusal gives ``None``."""
        try:
            reply = await call
        except RemoteError as exc:
            if exc.code not in REFUSALS:
                self.recorder.record(kind, trio.current_time() - since, error=exc.code)
                raise
            self.recorder.record(kind, trio.current_time() - since)
            self.recorder.count(f"rental.refused.{exc.code}")
            return None
        self.recorder.record(kind, trio.current_time() - since)
        return reply
