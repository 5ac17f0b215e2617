"""OrderActor: the one owner of an order; every command for it passes through here.

The actor loads the order's state from PostgreSQL, feeds each command through
the pure :func:`~actors.orders.domain.decide`, hands the events to group
commit (rows, ledger postings and outbox entries in one transaction), and only
after the commit evolves its state and replies. So payment confirmations for
one order are serialized here, and a reply that says "captured" is durable.

The database still decides: when another server process changed the order
first, a constraint refuses our write; the actor then reloads the order and
decides again on the fresh state, once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

import asyncpg
import attrs

from actors.catalog import WHOLE_DAY
from actors.ids import new_ticket_id
from actors.orders.domain import (
    Command,
    ConfirmPayment,
    CreateOrder,
    Event,
    IssuedTicket,
    Order,
    OrderRefused,
    TicketsIssued,
    decide,
    evolve,
)
from server.storage.orders import (
    CapacityLimits,
    StaleOrder,
    ensure_capacity_rows,
    load_order,
    write_events,
)

log = logging.getLogger("scenic.actors.order")

#: how many times a command is decided again on a reloaded order after a conflict
MAX_RELOADS = 3


@attrs.frozen
class OrderOutcome:
    """What a command did: the order after it, and the events it committed."""

    order: Order
    events: tuple[Event, ...]


@attrs.frozen
class OrderEnvironment:
    """What order actors share: the database, the group committer, capacity, a hook."""

    run: Callable[..., Awaitable]  # Database.run
    submit: Callable[..., Awaitable]  # GroupCommitter.submit
    capacity_of: Callable[[object, str], int]  # Catalog.capacity_of(date, slot)
    #: called after each commit with the outcome (pushes events, wakes the outbox)
    committed: Callable[[OrderOutcome], Awaitable[None]]
    #: the code printed on an issued ticket's QR (made with the site's current key)
    code_of: Callable[[IssuedTicket], str]
    #: (date, slot) pairs whose capacity row is known to exist
    known_capacity: set = attrs.field(factory=set)


class OrderActor:
    """Owns one order: loads it, serializes its commands, commits before replying."""

    def __init__(self, order_id: str, env: OrderEnvironment) -> None:
        self.order_id = order_id
        self.env = env
        self.order: Order | None = None

    @property
    def vacant(self) -> bool:
        """True when no such order exists: the registry need not keep this actor."""
        return self.order is None

    async def load(self) -> None:
        """Read the order's state from PostgreSQL (``None`` if it does not exist yet)."""
        self.order = await self.env.run(load_order, self.order_id)

    async def handle(self, command: Command) -> OrderOutcome:
        """Decide, commit, evolve, reply. Raises :class:`OrderRefused` for refusals.

        When the database says another process got there first (the order's
        version moved, or a unique constraint fired), the actor reloads the
        order and decides again on the fresh state, up to ``MAX_RELOADS`` times.
        A refusal is also decided again once on a reloaded order, since it may
        come from a copy older than another process's change.
        """
        refused_once = False
        for attempt in range(MAX_RELOADS + 1):
            try:
                outcome = await self._decide_and_commit(command)
                break
            except OrderRefused:
                # Our copy may be stale: another server process may have started the
                # payment or made the refund this command is about. Look once more.
                if refused_once or isinstance(command, CreateOrder):
                    raise
                refused_once = True
                await self.load()
            except (asyncpg.UniqueViolationError, StaleOrder) as exc:
                if isinstance(command, CreateOrder):
                    raise OrderRefused("this order already exists", code="order_exists") from exc
                if attempt == MAX_RELOADS:
                    raise
                log.info(
                    "order.conflict_reload",
                    extra={
                        "order": self.order_id,
                        "constraint": getattr(exc, "constraint_name", "version"),
                    },
                )
                await self.load()
        if outcome.events:
            await self.env.committed(outcome)
        return outcome

    async def _decide_and_commit(self, command: Command) -> OrderOutcome:
        if isinstance(command, ConfirmPayment) and not command.ticket_ids and self.order:
            # Fresh ids are the shell's job; only here is it known how many.
            ids = tuple(new_ticket_id(command.at) for _ in range(self.order.ticket_count))
            command = attrs.evolve(command, ticket_ids=ids)
        events = [self._with_codes(event) for event in decide(self.order, command)]
        if not events:
            return OrderOutcome(self.order, ())
        states = []
        state = self.order
        for event in events:
            state = evolve(state, event)
            states.append(state)
        limits = None
        if isinstance(command, CreateOrder):
            limits = self._capacity_limits(states[-1])
            await self._ensure_capacity_rows(limits)
        write = partial(write_events, before=self.order, events=events, after=states)
        try:
            await self.env.submit(partial(_write, write, limits))
        except asyncpg.CheckViolationError as exc:
            if exc.constraint_name == "capacity_not_oversold":
                raise OrderRefused(
                    "sold out: not enough capacity left for that date and slot", code="sold_out"
                ) from None
            raise
        state = attrs.evolve(state, version=0 if self.order is None else self.order.version + 1)
        self.order = state
        return OrderOutcome(state, tuple(events))

    def _with_codes(self, event: Event) -> Event:
        if not isinstance(event, TicketsIssued):
            return event
        tickets = tuple(attrs.evolve(t, code=self.env.code_of(t)) for t in event.tickets)
        return attrs.evolve(event, tickets=tickets)

    async def _ensure_capacity_rows(self, limits: CapacityLimits) -> None:
        new = {pair: limit for pair, limit in limits.items() if pair not in self.env.known_capacity}
        if new:
            await self.env.run(ensure_capacity_rows, new)
            self.env.known_capacity.update(new)

    def _capacity_limits(self, order: Order) -> CapacityLimits:
        pairs = {(line.visit_date, line.slot or WHOLE_DAY) for line in order.lines}
        return {pair: self.env.capacity_of(*pair) for pair in pairs}


async def _write(write: Callable, capacity: CapacityLimits | None, conn: asyncpg.Connection):
    await write(conn, capacity=capacity)
