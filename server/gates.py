"""The gate side of a running server: gate modes, warm tickets, occupancy, passage timers.

:class:`GateDesk` holds what scans need without touching the database:
each gate's mode and zone, today's tickets (:class:`TicketBook`), the live
occupancy per zone, and the passage timer: a grant whose passage nobody
reports in time counts as walked through (its entry stays used), because an
entry wrongly given back lets a second person in. :func:`run_gates` loads it
at start and runs its workers.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs
import trio

from actors.catalog import Catalog
from actors.gates.actor import GateActor, GateEnvironment, PassageTimedOut, Settlement, settle
from actors.tickets.actor import TicketActor, TicketEnvironment
from actors.tickets.rules import GateView, ScanMoment, TicketState, moment_at
from server import fanout
from server.storage import tickets as ticket_queries
from server.storage.tickets import TicketRecord

if TYPE_CHECKING:
    from server.app import Services

log = logging.getLogger("scenic.gates")

#: seconds a gate has to report a grant's passage; unreported, it counts as walked through
PASSAGE_TIMEOUT_S = 15.0
#: how often live occupancy is pushed to admin connections when it changed
OCCUPANCY_PUSH_S = 1.0


class TicketBook:
    """Today's tickets in memory, so a scan does not wait on a database read."""

    def __init__(self) -> None:
        self._tickets: dict[str, TicketState] = {}

    def get(self, ticket_id: str) -> TicketState | None:
        """The warm state of a ticket, or ``None`` if it is not in memory."""
        return self._tickets.get(ticket_id)

    def put(self, state: TicketState) -> None:
        """Keep ``state`` as the ticket's warm state."""
        self._tickets[state.ticket_id] = state

    def forget(self, ticket_ids: list[str]) -> None:
        """Drop tickets (refunded elsewhere): their next scan reads them fresh."""
        for ticket_id in ticket_ids:
            self._tickets.pop(ticket_id, None)

    def __len__(self) -> int:
        return len(self._tickets)


@attrs.frozen
class TicketUse:
    """How much of its entitlement a ticket has used, as the service desk is shown it."""

    entries_allowed: int | None  # None: unlimited on its day
    entries_used: int
    #: entered and not yet left (anti-passback wants an exit before the next entry)
    inside: bool

    @property
    def entries_left(self) -> int | None:
        """Entries still allowed (``None``: unlimited)."""
        if self.entries_allowed is None:
            return None
        return max(self.entries_allowed - self.entries_used, 0)


@attrs.define
class Occupancy:
    """Passages into and out of one zone today."""

    entries: int = 0
    exits: int = 0

    @property
    def inside(self) -> int:
        """Visitors in the zone now (never below zero)."""
        return max(self.entries - self.exits, 0)


class GateDesk:
    """Gate modes, warm tickets, occupancy and passage timers of this server."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.book = TicketBook()
        self.modes: dict[str, str] = {}
        self.occupancy: dict[str, Occupancy] = {}
        self.passage_timeout_s = PASSAGE_TIMEOUT_S
        self._timers: list[tuple[float, str, str]] = []
        self._timer_changed = trio.Event()
        self._occupancy_changed = False
        self.gate_env: GateEnvironment | None = None
        self._views: dict[str, tuple[Catalog, GateView]] = {}
        self._site: tuple[Catalog, ZoneInfo, dict] | None = None

    # -- what scans need -----------------------------------------------------------

    def view(self, gate_id: str) -> GateView:
        """The gate as the entry rules see it (cached until the catalog or its mode changes)."""
        catalog = self.services.current_catalog()
        mode = self.modes.get(gate_id, "normal")
        cached = self._views.get(gate_id)
        if cached is not None and cached[0] is catalog and cached[1].mode == mode:
            return cached[1]
        gate = catalog.gate(gate_id)
        products = None if gate.products is None else frozenset(gate.products)
        view = GateView(gate_id, gate.zone, mode, products)
        self._views[gate_id] = (catalog, view)
        return view

    def moment(self, at: datetime) -> ScanMoment:
        """The site's local date and time at ``at``, with the catalog's slot hours."""
        catalog = self.services.current_catalog()
        if self._site is None or self._site[0] is not catalog:
            slots = {s.slot_id: (s.starts, s.ends) for s in catalog.slots}
            self._site = (catalog, ZoneInfo(catalog.timezone), slots)
        _, zone, slots = self._site
        return moment_at(at, zone, slots)

    def state_of(self, record: TicketRecord) -> TicketState:
        """A stored ticket with its product's zones and anti-passback rule."""
        product = self.services.current_catalog().product(record.product_id)
        zones = product.zones if product is not None else ()
        anti_passback = product.anti_passback if product is not None else True
        return TicketState(
            record.ticket_id,
            record.order_id,
            record.product_id,
            record.visit_date,
            record.slot,
            record.entries_allowed,
            tuple(zones),
            anti_passback,
            record.entries_used,
            record.inside,
            record.refunded,
            record.version,
        )

    def use_of(self, stored: TicketRecord) -> TicketUse:
        """A ticket's use now: the fresher of its row just read and its warm copy.

        The warm copy is written after each commit, so it can be newer than a
        row read a moment before; another server process's scan makes the row
        newer than the copy. The version says which is which.
        """
        warm = self.book.get(stored.ticket_id)
        if warm is not None and warm.version > stored.version:
            return TicketUse(warm.entries_allowed, warm.entries_used, warm.inside)
        return TicketUse(stored.entries_allowed, stored.entries_used, stored.inside)

    def passed(self, zone: str, direction: str) -> None:
        """A visitor walked into (or out of) ``zone``."""
        board = self.occupancy.setdefault(zone, Occupancy())
        if direction == "entry":
            board.entries += 1
        else:
            board.exits += 1
        self._occupancy_changed = True

    def occupancy_view(self) -> dict[str, Any]:
        """Occupancy per zone as the protocol shows it."""
        return {
            "zones": {
                zone: {"inside": o.inside, "entries": o.entries, "exits": o.exits}
                for zone, o in sorted(self.occupancy.items())
            }
        }

    def watch(self, gate_id: str, scan_id: str, deadline: float) -> None:
        """Time out the passage of ``scan_id`` at trio time ``deadline``."""
        heapq.heappush(self._timers, (deadline, gate_id, scan_id))
        self._timer_changed.set()

    def mode_changed(self, gate_id: str, mode: str) -> None:
        """Keep a gate's new mode, push it to the gate, tell the other server processes."""
        self.modes[gate_id] = mode
        self.services.push_to_device(
            gate_id, "gate.mode", {"gate": gate_id, "mode": mode}, local=True
        )
        fanout.publish(self.services, {"kind": "gate.mode", "gate": gate_id, "mode": mode})

    # -- actors --------------------------------------------------------------------

    def ticket_factory(self) -> Callable[[str], TicketActor]:
        """Builds the actor of one ticket id."""
        services = self.services
        env = TicketEnvironment(
            services.db.run,
            services.committer.submit,
            services.committer.submit_bulk,
            self.book,
            self.state_of,
        )
        return lambda ticket_id: TicketActor(ticket_id, env)

    def gate_factory(self) -> Callable[[str], GateActor]:
        """Builds the actor of one gate id."""
        services = self.services

        async def ask_ticket(ticket_id: str, command: Any) -> Any:
            return await services.registry.ask(
                ("ticket", ticket_id), command, services.config.ask_timeout_s
            )

        env = GateEnvironment(
            services.db.run,
            services.committer.submit,
            services.committer.submit_bulk,
            ask_ticket,
            self.passed,
            self.watch,
            self.mode_changed,
        )
        self.gate_env = env
        return lambda gate_id: GateActor(gate_id, env)

    # -- start and workers -----------------------------------------------------------

    async def load(self) -> None:
        """Read gate modes, warm today's tickets, count today's occupancy."""
        db = self.services.db
        self.modes = await db.run(ticket_queries.gate_modes)
        catalog = self.services.catalog
        if catalog is None:
            return
        now = self.services.clock()
        today = self.moment(now).today
        for record in await db.run(ticket_queries.tickets_of_dates, today, today + timedelta(1)):
            self.book.put(self.state_of(record))
        midnight = _local_midnight(catalog, today)
        for zone, (entries, exits) in (
            await db.run(ticket_queries.occupancy_since, midnight)
        ).items():
            self.occupancy[zone] = Occupancy(entries, exits)
        log.info(
            "gates.loaded",
            extra={
                "warm_tickets": len(self.book),
                # the gates the catalog lists; gates it does not list admit to its main zone
                "gates": len(catalog.gates),
                # gates whose mode an admin ever set (the others are in normal mode)
                "gate_modes": len(self.modes),
            },
        )

    async def run_timers(self) -> None:
        """Settle passages nobody reported in time as walked through, until cancelled.

        Only an explicit ``gate.passage`` with ``passed: false`` gives an entry
        back: a report that was lost, or a gate that could not learn the
        outcome, must never let the same ticket in twice.
        """
        while True:
            self._timer_changed = trio.Event()
            while self._timers and self._timers[0][0] <= trio.current_time():
                _, gate_id, scan_id = heapq.heappop(self._timers)
                try:
                    settlement = await self.services.registry.ask(
                        ("gate", gate_id),
                        PassageTimedOut(scan_id, self.services.clock()),
                        self.services.config.ask_timeout_s,
                    )
                    if settlement.expected is not None:  # not reported in time
                        log.info(
                            "gate.passage_unreported",
                            extra={"gate": gate_id, "scan_id": scan_id, "counted_as": "passed"},
                        )
                        walked = attrs.evolve(settlement, passed=True)
                        self.services.spawn(self._settle_quietly, walked)
                except Exception:
                    log.exception("gate.passage_timeout_failed", extra={"gate": gate_id})
            if self._timers:
                with trio.move_on_at(self._timers[0][0]):
                    await self._timer_changed.wait()
            else:
                await self._timer_changed.wait()

    async def _settle_quietly(self, settlement: Settlement) -> None:
        try:
            await settle(self.gate_env, settlement)
        except Exception:
            log.exception("gate.passage_settle_failed", extra={"scan_id": settlement.scan_id})

    async def push_occupancy(self) -> None:
        """Push occupancy to admin connections when it changed, at most once a second."""
        while True:
            await trio.sleep(OCCUPANCY_PUSH_S)
            if not self._occupancy_changed:
                continue
            self._occupancy_changed = False
            self.services.push_to_role("admin", "site.occupancy", self.occupancy_view())


def _local_midnight(catalog: Catalog, day: date) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(catalog.timezone))
