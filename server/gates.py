"""The gate side of a running server: gate modes, warm tickets, occupancy, passage timers.

:class:`GateDesk` holds what scans need without touching the database:
each gate's mode and zone, today's tickets (the
:class:`~actors.tickets.book.TicketBook`), the live occupancy per zone (pure
:class:`~actors.gates.domain.Occupancy` values), and the passage timer: a
grant whose passage nobody reports in time counts as walked through (its
entry stays used), because an entry wrongly given back lets a second person
in. It builds the ticket and gate actors with their storage
(:mod:`server.storage.ticket_store`) and is their after-commit sink: it
carries out the effects their events ask for (a gate waits for a passage,
a zone counts one, a mode is pushed, a conflict is logged).
:func:`GateDesk.load` reads it at start; its workers run the timers and
push occupancy.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import trio

from actors.catalog import Catalog
from actors.gates.actor import GateActor, GateEnvironment, Settlement, settle
from actors.gates.domain import (
    AnnounceMode,
    ExpectPassage,
    GiveBackEntry,
    Occupancy,
    PassageTimedOut,
    WatchPassage,
    counted,
)
from actors.runtime import Registry
from actors.tickets.actor import TicketActor, TicketEnvironment
from actors.tickets.book import TicketBook
from actors.tickets.domain import AwaitPassage, CountPassage, Effect, FlagConflict
from actors.tickets.rules import GateView, ScanMoment, TicketState, moment_at
from server.fanout import Pushes
from server.site import SiteState
from server.storage import tickets as ticket_queries
from server.storage.database import Database
from server.storage.group_commit import GroupCommitter
from server.storage.ticket_store import GateRecords, TicketRecords
from server.storage.tickets import TicketRecord

log = logging.getLogger("scenic.gates")

#: seconds a gate has to report a grant's passage; unreported, it counts as walked through
PASSAGE_TIMEOUT_S = 15.0
#: how often live occupancy is pushed to admin connections when it changed
OCCUPANCY_PUSH_S = 1.0


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


class GateDesk:
    """Gate modes, warm tickets, occupancy and passage timers of this server.

    The ticket and gate actors' after-commit sink (``carry_out``) and their
    way to a ticket's actor (``give_back``).
    """

    def __init__(
        self,
        *,
        db: Database,
        committer: GroupCommitter,
        site: SiteState,
        clock: Callable[[], datetime],
        pushes: Pushes,
        actors: Registry,
        ask_timeout_s: float,
        spawn: Callable[..., None],
    ) -> None:
        self._db = db
        self._site = site
        self._clock = clock
        self._pushes = pushes
        self._actors = actors
        self._ask_timeout_s = ask_timeout_s
        self._spawn = spawn
        self.book = TicketBook()
        self.modes: dict[str, str] = {}
        self.occupancy: dict[str, Occupancy] = {}
        self.passage_timeout_s = PASSAGE_TIMEOUT_S
        self._timers: list[tuple[float, str, str]] = []
        self._timer_changed = trio.Event()
        self._occupancy_changed = False
        self._views: dict[str, tuple[Catalog, GateView]] = {}
        #: the catalog whose zone and slot hours ``moment`` last worked out
        self._hours: tuple[Catalog, ZoneInfo, dict] | None = None
        self.ticket_env = TicketEnvironment(
            TicketRecords(db, committer, self.state_of), self.book, self
        )
        self.gate_env = GateEnvironment(GateRecords(db, committer), self)

    # -- what scans need -----------------------------------------------------------

    def view(self, gate_id: str) -> GateView:
        """The gate as the entry rules see it (cached until the catalog or its mode changes)."""
        catalog = self._site.current_catalog()
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
        catalog = self._site.current_catalog()
        if self._hours is None or self._hours[0] is not catalog:
            slots = {s.slot_id: (s.starts, s.ends) for s in catalog.slots}
            self._hours = (catalog, ZoneInfo(catalog.timezone), slots)
        _, zone, slots = self._hours
        return moment_at(at, zone, slots)

    def state_of(self, record: TicketRecord) -> TicketState:
        """A stored ticket with its product's zones and anti-passback rule."""
        product = self._site.current_catalog().product(record.product_id)
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
        self.occupancy[zone] = counted(self.occupancy.get(zone, Occupancy()), direction)
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

    def mode_seen(self, gate_id: str, mode: str) -> None:
        """Take up a gate's mode set through another server process (its NOTIFY)."""
        self.modes[gate_id] = mode

    def mode_changed(self, gate_id: str, mode: str) -> None:
        """Keep a gate's new mode, push it to the gate, tell the other server processes."""
        self.modes[gate_id] = mode
        self._pushes.to_device(gate_id, "gate.mode", {"gate": gate_id, "mode": mode}, local=True)
        self._pushes.publish({"kind": "gate.mode", "gate": gate_id, "mode": mode})

    # -- actors and their effects -----------------------------------------------------

    def ticket_factory(self) -> Callable[[str], TicketActor]:
        """Builds the actor of one ticket id."""
        env = self.ticket_env
        return lambda ticket_id: TicketActor(ticket_id, env)

    def gate_factory(self) -> Callable[[str], GateActor]:
        """Builds the actor of one gate id."""
        env = self.gate_env
        return lambda gate_id: GateActor(gate_id, env)

    def carry_out(self, effects: Sequence[Effect]) -> None:
        """Carry out what committed ticket and gate events ask for, without waiting.

        Raises :class:`~actors.errors.Overloaded` when a gate's mailbox is full.
        """
        for effect in effects:
            if isinstance(effect, AwaitPassage):
                deadline = trio.current_time() + self.passage_timeout_s
                self._actors.tell(
                    ("gate", effect.gate_id),
                    ExpectPassage(
                        effect.scan_id,
                        effect.ticket_id,
                        effect.direction,
                        effect.consumed,
                        effect.was_inside,
                        deadline,
                    ),
                )
            elif isinstance(effect, CountPassage):
                self.passed(effect.zone, effect.direction)
            elif isinstance(effect, WatchPassage):
                self.watch(effect.gate_id, effect.scan_id, effect.deadline)
            elif isinstance(effect, AnnounceMode):
                self.mode_changed(effect.gate_id, effect.mode)
            elif isinstance(effect, FlagConflict):
                log.warning(
                    "gate.conflict",
                    extra={
                        "gate": effect.gate_id,
                        "scan_id": effect.scan_id,
                        "ticket": effect.ticket_id,
                        "kind": effect.kind,
                    },
                )
            else:
                raise TypeError(f"not an effect this desk carries out: {effect!r}")

    async def give_back(self, effect: GiveBackEntry) -> None:
        """Give a ticket's entry back through the ticket's own actor."""
        await self._actors.ask(("ticket", effect.ticket_id), effect.command, self._ask_timeout_s)

    async def settle(self, settlement: Settlement) -> dict[str, Any]:
        """Carry out how a granted scan ended (``gate.passage``'s reply)."""
        return await settle(self.gate_env, settlement)

    # -- start and workers -----------------------------------------------------------

    async def load(self) -> None:
        """Read gate modes, warm today's tickets, count today's occupancy."""
        db = self._db
        self.modes = await db.run(ticket_queries.gate_modes)
        catalog = self._site.catalog
        if catalog is None:
            return
        now = self._clock()
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
                    settlement = await self._actors.ask(
                        ("gate", gate_id),
                        PassageTimedOut(scan_id, self._clock()),
                        self._ask_timeout_s,
                    )
                    if settlement.effects:  # not reported in time: counted as walked through
                        log.info(
                            "gate.passage_unreported",
                            extra={"gate": gate_id, "scan_id": scan_id, "counted_as": "passed"},
                        )
                        self._spawn(self._settle_quietly, settlement)
                except Exception:
                    log.exception("gate.passage_timeout_failed", extra={"gate": gate_id})
            if self._timers:
                with trio.move_on_at(self._timers[0][0]):
                    await self._timer_changed.wait()
            else:
                await self._timer_changed.wait()

    async def _settle_quietly(self, settlement: Settlement) -> None:
        try:
            await self.settle(settlement)
        except Exception:
            log.exception("gate.passage_settle_failed", extra={"scan_id": settlement.scan_id})

    async def push_occupancy(self) -> None:
        """Push occupancy to admin connections when it changed, at most once a second."""
        while True:
            await trio.sleep(OCCUPANCY_PUSH_S)
            if not self._occupancy_changed:
                continue
            self._occupancy_changed = False
            self._pushes.to_role("admin", "site.occupancy", self.occupancy_view())


def _local_midnight(catalog: Catalog, day: date) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(catalog.timezone))
