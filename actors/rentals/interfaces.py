"""What the deposit shell needs from outside: storage and an effects sink, as Protocols.

:class:`~actors.rentals.actor.DepositActor` depends on these and on nothing
of server/; the server implements them. The exceptions are the store's
answers that the shell acts on; a store raises them instead of its
driver's own errors, having written nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from actors.rentals.effects import DurableEffect, Effect
from actors.rentals.events import Event
from actors.rentals.state import Rental

#: how many units of each item type exist (the catalog's), by item id
StockLimits = Mapping[str, int]


class RentalConflict(Exception):
    """Another server process changed the rental first: reload it and decide again.

    The rental's version moved since it was loaded, or a unique constraint
    says the change was made elsewhere (``constraint`` names which; a new
    rental's ``client_key`` taken means the same visitor's rental exists).
    """

    def __init__(self, message: str, *, constraint: str = "version") -> None:
        super().__init__(message)
        self.constraint = constraint


class OutOfStock(Exception):
    """Not enough units of an item type are free for a new rental's reservation."""


class UnitsTaken(Exception):
    """A unit to hand out is out on another rental, or not available, by storage's backstop.

    The rules refuse what the shell's facts show (``unit_out``); storage
    refuses what changed between those facts and the commit. ``unit_ids``
    names the units.
    """

    def __init__(self, message: str, *, unit_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.unit_ids = tuple(unit_ids)


class BundleClaimed(Exception):
    """The ticket a new rental names for its bundle covers another rental already."""


class DepositStore(Protocol):
    """What the deposit shell needs from storage; server/storage implements it."""

    async def load(self, rental_id: str) -> Rental | None:
        """The rental as stored now, or ``None`` when there is no such rental."""
        ...

    async def commit(
        self,
        before: Rental | None,
        events: Sequence[Event],
        after: Sequence[Rental],
        effects: Sequence[DurableEffect],
        *,
        stock: StockLimits | None = None,
    ) -> None:
        """Persist ``events``, their consequences and the durable ``effects``, in one transaction.

        ``after[i]`` is the rental after ``events[i]``. With the events go
        their ledger postings and memos (:mod:`actors.rentals.postings`,
        read with the rental before each event), the units' runtime states
        (:func:`actors.rentals.inventory.unit_changes`) and the rental's
        reservation (:func:`actors.rentals.inventory.reserved`, capped by
        ``stock`` on creation). The write checks the rental is still at
        ``before.version`` and bumps it. Returns once committed. Raises,
        having written nothing: :class:`RentalConflict`, :class:`OutOfStock`,
        :class:`UnitsTaken` (a unit to put out is not available: it is
        never out on two rentals), :class:`BundleClaimed`.
        """
        ...


class DepositEffects(Protocol):
    """Where the deposit shell hands a commit's effects; the server implements it."""

    async def carry_out(self, effects: Sequence[Effect]) -> None:
        """Carry out ``effects`` of a commit that has happened, in order, without failing.

        The durable ones are in the outbox already: for them, wake its
        worker. Requests to a channel while the visitor waits and pushes are
        best effort.
        """
        ...
