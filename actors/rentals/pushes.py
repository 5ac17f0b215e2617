"""The push payloads of rental events: what devices and desks are told, built in one place.

:func:`~actors.rentals.effects.react` uses them, and so can a server
process that learns of an event from another and builds the same payload
from the rental it loads.
"""

from __future__ import annotations

from typing import Any

from actors.rentals.state import Condition, Rental


def notice_of(data: dict[str, Any]) -> dict[str, Any]:
    """The notice of a ``deposit.refunded`` push for another server process: its data, whole.

    The data is a few small fields, so it travels as it is rather than being
    rebuilt from the rental there.
    """
    return {"rental": data["rental"], "data": data}


def voucher_data(rental: Rental) -> dict[str, Any]:
    """The ``rental.voucher`` event: the voucher and what it is for."""
    hold = rental.hold
    return {
        "rental": rental.rental_id,
        "voucher": rental.voucher,
        "route": hold.route.value if hold else None,
        "deposit_fen": rental.deposit_fen,
        "prepaid_fen": rental.prepaid_fen,
        "items": [
            {"item": line.item.item_id, "quantity": line.quantity, "covered": line.covered}
            for line in rental.lines
        ],
    }


def picked_up_data(rental: Rental) -> dict[str, Any]:
    """The ``rental.picked_up`` event: the units out and when they are due."""
    return {
        "rental": rental.rental_id,
        "units": [unit.unit_id for unit in rental.units],
        "due_at": rental.due_at.timestamp() if rental.due_at else None,
    }


def refunded_data(
    rental: Rental, how: str, reference: str, amount_fen: int, confirmed: bool
) -> dict[str, Any]:
    """The ``deposit.refunded`` event: ``amount_fen`` going back by ``how`` (refund or unfreeze).

    ``reference`` is the refund's ``out_refund_no``, the unfreeze's
    ``out_request_no``, or for a rest unfrozen with a conversion, the
    conversion's ``out_trade_no``; ``state`` is ``requested`` (on its way)
    or ``confirmed`` (the channel says it is done).
    """
    hold = rental.hold
    return {
        "rental": rental.rental_id,
        "route": hold.route.value if hold else None,
        "how": how,
        "reference": reference,
        "amount_fen": amount_fen,
        "state": "confirmed" if confirmed else "requested",
    }


def settled_data(rental: Rental) -> dict[str, Any]:
    """The ``rental.settled`` event: each unit's charges and how they met the hold."""
    split = rental.split
    assert split is not None
    return {
        "rental": rental.rental_id,
        "charges": [
            {
                "unit": c.unit_id,
                "item": c.item_id,
                "usage_fen": c.usage_fen,
                "covered": c.covered,
                "late_fen": c.late_fen,
                "damage_fen": c.damage_fen,
                "lost_fen": c.lost_fen,
            }
            for c in rental.charges
        ],
        "charges_fen": split.charges_fen,
        "paid_fen": split.paid_fen,
        "kept_fen": split.kept_fen,
        "released_fen": split.released_fen,
        "compensation_fen": split.compensation_fen,
        "compensation_order": rental.compensation_order_id,
    }


def forfeited_data(rental: Rental) -> dict[str, Any]:
    """The ``deposit.forfeited`` event: what was kept, why, and the units now lost."""
    hold = rental.hold
    resolution = hold.resolution if hold else None
    return {
        "rental": rental.rental_id,
        "reason": rental.forfeit_reason,
        "kept_fen": resolution.posted_fen if resolution else 0,
        "lost_units": [u.unit_id for u in rental.units if u.condition is Condition.LOST],
    }
