"""What the order shell needs from outside: storage and an effects sink, as Protocols.

:class:`~actors.orders.actor.OrderActor` depends on these and on nothing of
server/; the server implements them (``server.storage.orders.OrderStorage``
for :class:`OrderStore`, ``server.order_effects.OrderEffectRunner`` for
:class:`OrderEffects`). The exceptions are the store's answers that the
shell acts on; a store raises them instead of its driver's own errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Protocol

from actors.orders.effects import DurableEffect, Effect
from actors.orders.events import Event
from actors.orders.state import Order

#: the capacity of each (visit date, slot) an order reserves (slot ``WHOLE_DAY`` for the day)
CapacityLimits = Mapping[tuple[date, str], int]


class OrderConflict(Exception):
    """Another server process changed the order first: reload it and decide again.

    The order's version moved since it was loaded, or a unique constraint
    says the change was made elsewhere (``constraint`` names which).
    """

    def __init__(self, message: str, *, constraint: str = "version") -> None:
        super().__init__(message)
        self.constraint = constraint


class SoldOut(Exception):
    """A date or slot an order reserves has no capacity left; nothing was written."""


class TicketsUsedMeanwhile(Exception):
    """A ticket to refund was admitted by a gate after the refund's facts were read.

    Storage's backstop (it voids only tickets with no entry used) found it;
    nothing was written. The shell answers with the rule's own refusal,
    ``ticket_used``.
    """


class OrderStore(Protocol):
    """What the order shell needs from storage; ``server.storage.orders`` implements it."""

    async def load(self, order_id: str) -> Order | None:
        """The order as stored now, or ``None`` when there is no such order."""
        ...

    async def commit(
        self,
        before: Order | None,
        events: Sequence[Event],
        after: Sequence[Order],
        effects: Sequence[DurableEffect],
        *,
        capacity: CapacityLimits | None = None,
    ) -> None:
        """Persist ``events`` and the durable ``effects`` they ask for, in one transaction.

        ``after[i]`` is the order after ``events[i]``. The write checks the
        order is still at ``before.version`` and bumps it; ``capacity`` gives
        the limits of the (date, slot) pairs an order's creation reserves.
        Returns once committed. Raises :class:`OrderConflict`,
        :class:`SoldOut` or :class:`TicketsUsedMeanwhile`, having written
        nothing.
        """
        ...


class OrderEffects(Protocol):
    """Where the order shell hands a commit's effects; ``server.order_effects`` implements it."""

    async def carry_out(self, effects: Sequence[Effect]) -> None:
        """Carry out ``effects`` of a commit that has happened, in order, without failing.

        The durable ones are in the outbox already: for them, wake its
        worker. Pushes and ticket-book updates are best effort.
        """
        ...
