"""DepositActor: the one owner of a rental and its deposit; every command for it passes here.

The shell around the pure core. It loads the rental through its
:class:`~actors.rentals.interfaces.DepositStore`, feeds each command
through :func:`~actors.rentals.domain.decide`, evolves each event and asks
:func:`~actors.rentals.effects.react` what it wants done, hands the events
and the durable effects to the store (rows, postings, memos, unit states
and outbox entries in one transaction), and only after the commit keeps
the new state, gives the effects to its
:class:`~actors.rentals.interfaces.DepositEffects` and replies. So a
rental's returns, cancels and channel answers are serialized here, and a
reply that says "settled" is durable. What the shell adds to the rules:
fresh ids (:mod:`actors.ids`) for the money work a command may start, and
the signed voucher code.

The database still decides: when another server process changed the
rental first, the store says so (:class:`RentalConflict`); the actor then
reloads the rental and decides again on the fresh state. When storage's
backstop finds a unit out on another rental, the reply is the rule's own
refusal, ``unit_out``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import attrs

from actors.ids import new_order_id, new_out_refund_no, new_out_trade_no
from actors.rentals.domain import (
    CancelRental,
    Command,
    CreateRental,
    Event,
    ForfeitDeposit,
    FreshIds,
    Rental,
    RentalRefused,
    ReturnUnits,
    VoucherIssued,
    decide,
    evolve,
)
from actors.rentals.effects import Effect, durable, react
from actors.rentals.interfaces import (
    BundleClaimed,
    DepositEffects,
    DepositStore,
    OutOfStock,
    RentalConflict,
    StockLimits,
    UnitsTaken,
)

log = logging.getLogger("scenic.actors.deposit")

#: how many times a command is decided again on a reloaded rental after a conflict
MAX_RELOADS = 3


@attrs.frozen
class RentalOutcome:
    """What a command did: the rental after it, the events it committed, their effects."""

    rental: Rental | None
    events: tuple[Event, ...]
    effects: tuple[Effect, ...] = ()


@attrs.frozen
class DepositEnvironment:
    """What deposit actors share: their store, their effects sink, the voucher codes."""

    store: DepositStore
    effects: DepositEffects
    #: the voucher code of a rental id (made with the site's current key)
    voucher_of: Callable[[str], str]


def fresh_ids(at: datetime) -> FreshIds:
    """New ids for the money work one command may start (minted: only shells call this)."""
    return FreshIds(
        new_out_refund_no(at), new_out_trade_no(at), new_out_refund_no(at), new_order_id(at)
    )


class DepositActor:
    """Owns one rental: loads it, serializes its commands, commits before replying."""

    def __init__(self, rental_id: str, env: DepositEnvironment) -> None:
        self.rental_id = rental_id
        self.env = env
        self.rental: Rental | None = None

    @property
    def vacant(self) -> bool:
        """True when no such rental exists: the registry need not keep this actor."""
        return self.rental is None

    async def load(self) -> None:
        """Read the rental's state from the store (``None`` if it does not exist yet)."""
        self.rental = await self.env.store.load(self.rental_id)

    async def handle(self, command: Command) -> RentalOutcome:
        """Decide, commit, evolve, reply. Raises :class:`RentalRefused` for refusals.

        When the store says another process got there first
        (:class:`RentalConflict`), the actor reloads the rental and decides
        again, up to ``MAX_RELOADS`` times; a new rental whose id or client
        key is taken is refused ``rental_exists``. A refusal is decided
        again once on a reloaded rental, since it may come from a copy
        older than another process's change. The store's backstops become
        refusals: ``unit_out`` (:class:`UnitsTaken`), ``not_available``
        (:class:`OutOfStock`), ``bundle_used`` (:class:`BundleClaimed`).
        Once committed, the effects go to the sink.
        """
        refused_once = False
        for attempt in range(MAX_RELOADS + 1):
            try:
                outcome = await self._decide_and_commit(command)
                break
            except RentalRefused:
                if refused_once or isinstance(command, CreateRental):
                    raise
                refused_once = True
                await self.load()
            except UnitsTaken as exc:
                units = ", ".join(exc.unit_ids) or "a unit"
                raise RentalRefused(f"{units} is out on another rental", code="unit_out") from None
            except OutOfStock:
                raise RentalRefused(
                    "not enough units free for this rental now", code="not_available"
                ) from None
            except BundleClaimed:
                raise RentalRefused(
                    "this ticket's bundle covers another rental already", code="bundle_used"
                ) from None
            except RentalConflict as exc:
                if isinstance(command, CreateRental):
                    raise RentalRefused("this rental already exists", code="rental_exists") from exc
                if attempt == MAX_RELOADS:
                    raise
                log.info(
                    "rental.conflict_reload",
                    extra={"rental": self.rental_id, "constraint": exc.constraint},
                )
                await self.load()
        if outcome.effects:
            await self.env.effects.carry_out(outcome.effects)
        return outcome

    async def _decide_and_commit(self, command: Command) -> RentalOutcome:
        if (
            isinstance(command, CancelRental | ReturnUnits | ForfeitDeposit)
            and command.fresh is None
        ):
            # Fresh ids are the shell's job; the rules use them only if money moves.
            command = attrs.evolve(command, fresh=fresh_ids(command.at))
        events = [self._with_voucher(event) for event in decide(self.rental, command)]
        if not events:
            return RentalOutcome(self.rental, ())
        states: list[Rental] = []
        effects: list[Effect] = []
        state = self.rental
        for event in events:
            after = evolve(state, event)
            effects.extend(react(state, event, after))
            states.append(after)
            state = after
        stock = _stock_limits(command) if isinstance(command, CreateRental) else None
        await self.env.store.commit(self.rental, events, states, durable(effects), stock=stock)
        assert state is not None
        state = attrs.evolve(state, version=0 if self.rental is None else self.rental.version + 1)
        self.rental = state
        return RentalOutcome(state, tuple(events), tuple(effects))

    def _with_voucher(self, event: Event) -> Event:
        if not isinstance(event, VoucherIssued):
            return event
        return attrs.evolve(event, code=self.env.voucher_of(event.rental_id))


def _stock_limits(command: CreateRental) -> StockLimits:
    """The catalog's count of units of every item type the new rental reserves."""
    return {r.item_id: command.catalog.stock_of(r.item_id) for r in command.requested}
