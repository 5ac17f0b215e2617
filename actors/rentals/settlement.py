"""Settlement arithmetic: what a rental's units are charged, and how that meets the hold.

Pure functions, integer fen:

- :func:`unit_charge`: one unit's usage (its item's rule, :mod:`pricing`)
  and penalties (late, damaged, lost);
- :func:`charges_of`: every unit of a rental whose units are all back,
  with the bundle ticket covering the dearest usage of each covered item;
- :func:`split`: charges against what the hold secured: ``kept =
  min(charges, paid)`` posted, ``released = paid - kept`` back to the
  visitor, ``compensation = charges - kept`` owed beyond it;
- :func:`release_of`: what the channel must do to carry out a resolution
  (refund, convert a part of a freeze, unfreeze), for each route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

import attrs

from actors.catalog import RentalItem
from actors.rentals.pricing import late_fen, rental_days, usage_fen
from actors.rentals.state import (
    Condition,
    DepositRoute,
    Hold,
    Release,
    Rental,
    Split,
    UnitCharge,
    UnitOnRental,
)


@attrs.frozen
class FreshIds:
    """New ids the shell drew for money work a command may start (used only if it does).

    ``out_refund_no`` for a refund, ``out_trade_no`` for a conversion of a
    freeze into a payment, ``out_request_no`` for an unfreeze, ``order_id``
    for a compensation order.
    """

    out_refund_no: str
    out_trade_no: str
    out_request_no: str
    order_id: str


def unit_charge(
    item: RentalItem,
    unit: UnitOnRental,
    picked_up_at: datetime,
    due: datetime,
    days: int,
) -> UnitCharge:
    """What ``unit`` (back, or declared lost, at ``unit.back_at``) of ``item`` is charged.

    Usage by the item's rule for its time out and ``days`` rental days; a
    late penalty for each started hour past ``due``; the damage charge for
    a damaged unit, the lost-item price (instead) for a lost one. Not
    covered: :func:`charges_of` decides coverage.
    """
    if unit.back_at is None or unit.condition is None:
        raise ValueError(f"unit {unit.unit_id} is not back")
    out_for = unit.back_at - picked_up_at
    return UnitCharge(
        unit.unit_id,
        unit.item_id,
        usage_fen(item, out_for, days),
        False,
        late_fen(item, due, unit.back_at),
        item.damage_fen if unit.condition is Condition.DAMAGED else 0,
        item.lost_fen if unit.condition is Condition.LOST else 0,
    )


def cover(charges: Iterable[UnitCharge], covered: Mapping[str, int]) -> tuple[UnitCharge, ...]:
    """``charges`` with the ``covered[item]`` dearest usages of each item marked covered.

    The order of ``charges`` is kept; among equal usages the earlier is
    covered.
    """
    charges = tuple(charges)
    chosen: set[int] = set()
    for item_id, count in covered.items():
        of_item = [i for i, c in enumerate(charges) if c.item_id == item_id]
        of_item.sort(key=lambda i: (-charges[i].usage_fen, i))
        chosen.update(of_item[:count])
    return tuple(
        attrs.evolve(charge, covered=True) if i in chosen else charge
        for i, charge in enumerate(charges)
    )


def charges_of(rental: Rental) -> tuple[UnitCharge, ...]:
    """Every unit's charge on ``rental``, whose units are all back (or declared lost)."""
    if rental.picked_up_at is None or rental.due_at is None or rental.first_due_at is None:
        raise ValueError("the rental was not picked up")
    days = rental_days(rental.days, rental.first_due_at, rental.due_at, rental.timezone)
    items = {line.item.item_id: line.item for line in rental.lines}
    charges = [
        unit_charge(items[unit.item_id], unit, rental.picked_up_at, rental.due_at, days)
        for unit in rental.units
    ]
    return cover(charges, {line.item.item_id: line.covered for line in rental.lines})


def split(paid_fen: int, charges_fen: int) -> Split:
    """How ``charges_fen`` meet the ``paid_fen`` a hold secured.

    Raises ``ValueError`` for a negative amount. The promises (tested with
    hypothesis): nothing released is negative; ``kept <= paid``;
    ``charges + released == paid + compensation``.
    """
    if paid_fen < 0 or charges_fen < 0:
        raise ValueError("amounts are never negative")
    kept = min(paid_fen, charges_fen)
    return Split(paid_fen, charges_fen, kept, paid_fen - kept, charges_fen - kept)


def release_of(hold: Hold, posted_fen: int, fresh: FreshIds) -> Release:
    """What the channel must do to post ``posted_fen`` of ``hold`` and void the rest.

    - pay route, or a freeze converted whole: refund the rest of that
      payment (deferred while the conversion is unconfirmed);
    - a freeze still frozen: convert ``posted_fen`` into a payment and
      unfreeze the rest in the same call, or, with nothing posted,
      unfreeze it whole;
    - a lapsed freeze: nothing (the channel let it go).

    Raises ``ValueError`` when ``posted_fen`` is more than the hold secured.
    """
    secured = hold.secured_fen
    if not 0 <= posted_fen <= secured:
        raise ValueError(f"posting {posted_fen} of a hold securing {secured}")
    voided = secured - posted_fen
    if secured == 0:
        return Release()
    if hold.route is DepositRoute.PAY or hold.conversion is not None:
        if voided == 0:
            return Release()
        deferred = hold.conversion is not None and not hold.conversion.confirmed
        return Release(refund_no=fresh.out_refund_no, refund_fen=voided, refund_deferred=deferred)
    if posted_fen > 0:
        return Release(
            convert_trade_no=fresh.out_trade_no,
            convert_fen=posted_fen,
            unfreeze_rest_fen=voided,
        )
    return Release(unfreeze_request_no=fresh.out_request_no, unfreeze_fen=voided)
