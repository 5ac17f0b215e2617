"""What a rental's events do to its units' runtime state, and what it reserves: pure.

The catalog lists the units that exist; whether each is available, out, in
maintenance or lost is the server's runtime state, which storage changes
in the same transaction as the events that change it:

- a pickup puts its units **out** (a unit is never out on two rentals:
  storage refuses a unit that is not available, as the rules do);
- a return puts a unit back **available** (ok), into **maintenance**
  (damaged), or marks it **lost**;
- a forfeit marks every unit still out **lost**.

Before pickup a rental reserves a number of units of each item type, not
particular units (:func:`reserved`): from its creation until it is picked
up, cancelled or expires.
"""

from __future__ import annotations

from actors.rentals.events import DepositForfeited, Event, RentalPickedUp, UnitsReturned
from actors.rentals.state import Condition, Rental, RentalStatus, UnitState

#: the state a unit is in after coming back in each condition
STATE_AFTER_RETURN = {
    Condition.OK: UnitState.AVAILABLE,
    Condition.DAMAGED: UnitState.MAINTENANCE,
    Condition.LOST: UnitState.LOST,
}


def unit_changes(event: Event) -> dict[str, UnitState]:
    """The runtime state each unit ``event`` touches is in after it, by unit id."""
    if isinstance(event, RentalPickedUp):
        return {unit.unit_id: UnitState.OUT for unit in event.units}
    if isinstance(event, UnitsReturned):
        return {
            unit.unit_id: STATE_AFTER_RETURN[unit.condition]
            for unit in event.units
            if unit.condition is not None
        }
    if isinstance(event, DepositForfeited):
        return {unit_id: UnitState.LOST for unit_id in event.lost_unit_ids}
    return {}


def reserved(rental: Rental | None) -> dict[str, int]:
    """The units of each item type ``rental`` holds back from others, not yet handed out."""
    if rental is None or rental.status not in (RentalStatus.PENDING, RentalStatus.HELD):
        return {}
    return {line.item.item_id: line.quantity for line in rental.lines}
