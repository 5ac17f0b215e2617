"""OrderActor: the one owner of an order; every command for it passes through here.

The shell around the pure core. It loads the order through its
:class:`~actors.orders.interfaces.OrderStore`, feeds each command through
:func:`~actors.orders.domain.decide`, evolves each event and asks
:func:`~actors.orders.effects.react` what it wants done, hands the events
and the durable effects to the store (rows, ledger postings and outbox
entries in one transaction, by group commit), and only after the commit
keeps the new state, gives the other effects to its
:class:`~actors.orders.interfaces.OrderEffects` and replies. So payment
confirmations for one order are serialized here, and a reply that says
"captured" is durable. What the shell adds to the rules: fresh ticket ids
(:mod:`actors.ids`) and the codes printed on the tickets.

The database still decides: when another server process changed the order
first, the store says so (:class:`~actors.orders.interfaces.OrderConflict`);
the actor then reloads the order and decides again on the fresh state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
    used_ticket_refused,
)
from actors.orders.effects import Effect, durable, react
from actors.orders.interfaces import (
    CapacityLimits,
    OrderConflict,
    OrderEffects,
    OrderStore,
    SoldOut,
    TicketsUsedMeanwhile,
)

log = logging.getLogger("scenic.actors.order")

#: how many times a command is decided again on a reloaded order after a conflict
MAX_RELOADS = 3


@attrs.frozen
class OrderOutcome:
    """What a command did: the order after it, the events it committed, their effects."""

    order: Order
    events: tuple[Event, ...]
    effects: tuple[Effect, ...] = ()


@attrs.frozen
class OrderEnvironment:
    """What order actors share: their store, their effects sink, the ticket codes."""

    store: OrderStore
    effects: OrderEffects
    #: the code printed on an issued ticket's QR (made with the site's current key)
    code_of: Callable[[IssuedTicket], str]


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
        """Read the order's state from the store (``None`` if it does not exist yet)."""
        self.order = await self.env.store.load(self.order_id)

    async def handle(self, command: Command) -> OrderOutcome:
        """Decide, commit, evolve, reply. Raises :class:`OrderRefused` for refusals.

        When the store says another process got there first
        (:class:`OrderConflict`: the order's version moved, or a unique
        constraint fired), the actor reloads the order and decides again on
        the fresh state, up to ``MAX_RELOADS`` times. A refusal is also
        decided again once on a reloaded order, since it may come from a copy
        older than another process's change. A gate that admitted a ticket
        between the refund's facts and its commit gets the rule's own
        refusal, ``ticket_used``. Once committed, the effects go to the sink.
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
            except TicketsUsedMeanwhile:
                raise used_ticket_refused() from None
            except OrderConflict as exc:
                if isinstance(command, CreateOrder):
                    raise OrderRefused("this order already exists", code="order_exists") from exc
                if attempt == MAX_RELOADS:
                    raise
                log.info(
                    "order.conflict_reload",
                    extra={"order": self.order_id, "constraint": exc.constraint},
                )
                await self.load()
        if outcome.effects:
            await self.env.effects.carry_out(outcome.effects)
        return outcome

    async def _decide_and_commit(self, command: Command) -> OrderOutcome:
        if isinstance(command, ConfirmPayment) and not command.ticket_ids and self.order:
            # Fresh ids are the shell's job; only here is it known how many.
            ids = tuple(new_ticket_id(command.at) for _ in range(self.order.ticket_count))
            command = attrs.evolve(command, ticket_ids=ids)
        events = [self._with_codes(event) for event in decide(self.order, command)]
        if not events:
            return OrderOutcome(self.order, ())
        states: list[Order] = []
        effects: list[Effect] = []
        state = self.order
        for event in events:
            after = evolve(state, event)
            effects.extend(react(state, event, after))
            states.append(after)
            state = after
        capacity = None
        if isinstance(command, CreateOrder):
            capacity = _capacity_limits(command, state)
        try:
            await self.env.store.commit(
                self.order, events, states, durable(effects), capacity=capacity
            )
        except SoldOut:
            raise OrderRefused(
                "sold out: not enough capacity left for that date and slot", code="sold_out"
            ) from None
        state = attrs.evolve(state, version=0 if self.order is None else self.order.version + 1)
        self.order = state
        return OrderOutcome(state, tuple(events), tuple(effects))

    def _with_codes(self, event: Event) -> Event:
        if not isinstance(event, TicketsIssued):
            return event
        tickets = tuple(attrs.evolve(t, code=self.env.code_of(t)) for t in event.tickets)
        return attrs.evolve(event, tickets=tickets)


def _capacity_limits(command: CreateOrder, order: Order) -> CapacityLimits:
    """The catalog's capacity of every (date, slot) the new order's lines reserve."""
    pairs = {(line.visit_date, line.slot or WHOLE_DAY) for line in order.lines}
    return {pair: command.catalog.capacity_of(*pair) for pair in pairs}
