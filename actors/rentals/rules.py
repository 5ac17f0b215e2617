"""The rental's named rules, each written once: :func:`~actors.rentals.domain.decide` calls them.

- :func:`rental_lines`: what a new rental's items may be (known item types,
  within the site's terms) and what each line pays in advance;
- :func:`bundle_coverage`: what usage a bundle ticket covers;
- :func:`capture_refusal`: why a confirmed payment or freeze does not hold
  the deposit (and so is given back whole);
- :func:`voucher_refusal`: why a voucher does not open this rental for
  pickup (forged, another rental's, not paid, used);
- :func:`pickup_units`: which units a pickup hands out, from the scanned
  labels (each known, of the rental's item types and counts, available);
- :func:`returned_units`: which units a return takes back (each on this
  rental and still out), and :func:`return_refusal` for the rental's state.

Each returns or raises :class:`RentalRefused` with a stable code, and reads
only its arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from actors.catalog import Catalog
from actors.errors import DomainError
from actors.payments import NotCollected, collection_refusal
from actors.rentals.commands import BundleFacts, ItemRequest, UnitReturn
from actors.rentals.pricing import prepaid_unit_fen
from actors.rentals.state import (
    Rental,
    RentalLine,
    RentalStatus,
    UnitOnRental,
    UnitState,
    settlement_in_flight,
)
from actors.rentals.vouchers import ForgedVoucher, rental_id_of_voucher

#: how long before a pre-authorisation lapses the rental converts it, at most
CONVERT_MARGIN = timedelta(hours=1)


class RentalRefused(DomainError):
    """A command the rental's rules do not allow; ``code`` says which rule."""


def convert_by(frozen_at: datetime, expires_at: datetime) -> datetime:
    """When a freeze made at ``frozen_at``, lapsing at ``expires_at``, is converted whole.

    ``CONVERT_MARGIN`` before it lapses, or halfway through its life when
    that is shorter than twice the margin: so a rental still unresolved
    then keeps its deposit as a payment instead of losing it to the lapse.
    """
    return expires_at - min(CONVERT_MARGIN, (expires_at - frozen_at) / 2)


def rental_lines(
    catalog: Catalog,
    requested: Sequence[ItemRequest],
    days: int,
    covered: Mapping[str, int],
) -> tuple[RentalLine, ...]:
    """The lines ``requested`` asks for, checked against ``catalog`` for ``days`` rental days.

    ``covered`` is what a bundle ticket covers, units by item id. Raises
    :class:`RentalRefused` (``bad_request``) when the site rents nothing,
    for no items, an unknown item type, an item named twice, a quantity
    below 1, more units than the site's ``max_units`` or more of an item
    than exist, or ``days`` outside 1 to ``max_days``.
    """
    terms = catalog.rental_terms
    if terms is None:
        raise RentalRefused("this site rents nothing", code="bad_request")
    if not requested:
        raise RentalRefused("a rental needs at least one item", code="bad_request")
    if not 1 <= days <= terms.max_days:
        raise RentalRefused(f"a rental runs 1 to {terms.max_days} days", code="bad_request")
    names = [request.item_id for request in requested]
    if len(set(names)) != len(names):
        raise RentalRefused("name each item once, with its quantity", code="bad_request")
    lines = []
    for request in requested:
        item = catalog.rental_item(request.item_id)
        if item is None:
            raise RentalRefused(f"unknown rental item {request.item_id!r}", code="bad_request")
        if request.quantity < 1:
            raise RentalRefused("quantities must be positive", code="bad_request")
        if request.quantity > catalog.stock_of(item.item_id):
            raise RentalRefused(
                f"the site has {catalog.stock_of(item.item_id)} units of {item.item_id}",
                code="bad_request",
            )
        lines.append(
            RentalLine(
                item,
                request.quantity,
                min(request.quantity, covered.get(item.item_id, 0)),
                prepaid_unit_fen(item, days),
            )
        )
    if sum(line.quantity for line in lines) > terms.max_units:
        raise RentalRefused(f"at most {terms.max_units} units per rental", code="bad_request")
    return tuple(lines)


def bundle_coverage(
    catalog: Catalog, bundle: BundleFacts | None, requested: Sequence[ItemRequest], today: date
) -> dict[str, int]:
    """The units of each item whose usage the ticket of ``bundle`` covers (none without one).

    Raises :class:`RentalRefused`: ``bundle_invalid`` for a ticket refunded
    or not for ``today``; ``bundle_mismatch`` for a product that includes
    none of the ``requested`` items.
    """
    if bundle is None:
        return {}
    if bundle.refunded or bundle.visit_date != today:
        raise RentalRefused(
            f"ticket {bundle.ticket_id} is not valid today: it covers no rental",
            code="bundle_invalid",
        )
    product = catalog.product(bundle.product_id)
    included = dict(product.includes_rentals) if product is not None else {}
    wanted = {request.item_id for request in requested}
    if not wanted & set(included):
        raise RentalRefused(
            f"ticket {bundle.ticket_id} includes none of these items", code="bundle_mismatch"
        )
    return included


def capture_refusal(rental: Rental, paid_at: datetime, amount_fen: int) -> str | None:
    """Why money confirmed at ``paid_at`` does not hold ``rental``'s deposit, or ``None``.

    Only a pending rental, paid or frozen no later than its hold, by exactly
    what is due, is held; other money is given back whole for the reason
    returned: ``already_paid``, ``rental_cancelled``, ``rental_expired``,
    ``amount_mismatch``.
    """
    refusal = collection_refusal(
        collected=rental.hold is not None
        or rental.status
        not in (RentalStatus.PENDING, RentalStatus.CANCELLED, RentalStatus.EXPIRED),
        cancelled=rental.status is RentalStatus.CANCELLED,
        expired=rental.status is RentalStatus.EXPIRED,
        paid_at=paid_at,
        deadline=rental.hold_until,
        amount_fen=amount_fen,
        due_fen=rental.amount_due_fen,
    )
    return None if refusal is None else _RENTAL_REASONS[refusal]


#: the rental's words for why money is given back
_RENTAL_REASONS = {
    NotCollected.ALREADY_PAID: "already_paid",
    NotCollected.CANCELLED: "rental_cancelled",
    NotCollected.EXPIRED: "rental_expired",
    NotCollected.AMOUNT_MISMATCH: "amount_mismatch",
}


def voucher_refusal(
    rental: Rental, voucher: str, secrets: Mapping[str, bytes]
) -> RentalRefused | None:
    """Why ``voucher`` does not open ``rental`` for pickup, or ``None``.

    In this order: ``voucher_forged`` (not a genuine voucher of this site),
    ``voucher_foreign`` (another rental's), ``not_paid`` (the deposit is
    not held yet), ``rental_closed`` (cancelled or expired), ``voucher_used``
    (picked up already).
    """
    try:
        named = rental_id_of_voucher(voucher, secrets)
    except ForgedVoucher as forged:
        return RentalRefused(forged.message, code="voucher_forged")
    if named != rental.rental_id:
        return RentalRefused(
            f"the voucher is rental {named}'s, not {rental.rental_id}'s", code="voucher_foreign"
        )
    if rental.status is RentalStatus.PENDING:
        return RentalRefused("the deposit is not paid yet", code="not_paid")
    if rental.status in (RentalStatus.CANCELLED, RentalStatus.EXPIRED):
        return RentalRefused(f"the rental is {rental.status.value}", code="rental_closed")
    if rental.status is not RentalStatus.HELD:
        return RentalRefused(
            "the voucher has been used: the units were picked up", code="voucher_used"
        )
    return None


def pickup_units(
    rental: Rental,
    labels: Sequence[str],
    catalog: Catalog,
    unit_states: Mapping[str, UnitState],
) -> tuple[UnitOnRental, ...]:
    """The units the scanned ``labels`` hand out on ``rental``, in scan order.

    Raises :class:`RentalRefused`: ``bad_request`` (a label scanned twice),
    ``unknown_unit`` (a label of no unit), ``wrong_item`` (a unit of an item
    type not on the rental), ``unit_out`` (out on a rental already),
    ``unit_unavailable`` (in maintenance or lost), ``wrong_count`` (the
    units are not exactly the rental's quantities), the first label that
    breaks a rule named.
    """
    if len(set(labels)) != len(labels):
        raise RentalRefused("each unit is scanned once", code="bad_request")
    units = []
    for label in labels:
        unit = catalog.unit_by_label(label)
        if unit is None:
            raise RentalRefused(f"no unit has the label {label}", code="unknown_unit")
        if rental.line_of(unit.item_id) is None:
            raise RentalRefused(
                f"unit {unit.unit_id} is a {unit.item_id}, not on this rental", code="wrong_item"
            )
        state = unit_states.get(unit.unit_id, UnitState.AVAILABLE)
        if state is UnitState.OUT:
            raise RentalRefused(f"unit {unit.unit_id} is out on a rental", code="unit_out")
        if state is not UnitState.AVAILABLE:
            raise RentalRefused(f"unit {unit.unit_id} is {state.value}", code="unit_unavailable")
        units.append(UnitOnRental(unit.unit_id, unit.label, unit.item_id))
    counts = Counter(unit.item_id for unit in units)
    wanted = {line.item.item_id: line.quantity for line in rental.lines}
    if counts != Counter(wanted):
        raise RentalRefused(
            f"the rental is {_spelled(wanted)}; the scan is {_spelled(counts)}", code="wrong_count"
        )
    return tuple(units)


def _spelled(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {item}" for item, n in sorted(counts.items())) or "nothing"


def return_refusal(rental: Rental) -> RentalRefused | None:
    """Why ``rental`` takes no return now, whatever the units, or ``None``.

    ``not_out`` before pickup; ``settlement_in_flight`` once settled (or
    forfeited) while its channel has not confirmed the money's moves;
    ``rental_closed`` otherwise when over.
    """
    if rental.status in (RentalStatus.PENDING, RentalStatus.HELD):
        return RentalRefused("the units have not been picked up", code="not_out")
    if rental.status is RentalStatus.OUT:
        return None
    if settlement_in_flight(rental):
        return RentalRefused(
            "the rental is settled and its refund is on its way", code="settlement_in_flight"
        )
    return RentalRefused(f"the rental is {rental.status.value}", code="rental_closed")


def returned_units(
    rental: Rental, returns: Sequence[UnitReturn], at: datetime
) -> tuple[UnitOnRental, ...]:
    """The units ``returns`` takes back at ``at``, each with its return time and condition.

    Raises :class:`RentalRefused`: ``bad_request`` (nothing returned, a
    label named twice, a time before the pickup), ``unit_not_on_rental``
    (a unit that is not this rental's), ``already_returned`` (a unit back
    already: a double return).
    """
    if not returns:
        raise RentalRefused("name at least one unit to return", code="bad_request")
    labels = [unit.label for unit in returns]
    if len(set(labels)) != len(labels):
        raise RentalRefused("name each unit once", code="bad_request")
    if rental.picked_up_at is not None and at < rental.picked_up_at:
        raise RentalRefused("a return cannot come before the pickup", code="bad_request")
    on_rental = {unit.label: unit for unit in rental.units}
    back = []
    for returned in returns:
        unit = on_rental.get(returned.label)
        if unit is None:
            raise RentalRefused(
                f"the unit labelled {returned.label} is not on this rental",
                code="unit_not_on_rental",
            )
        if unit.back_at is not None:
            raise RentalRefused(f"unit {unit.unit_id} is back already", code="already_returned")
        back.append(UnitOnRental(unit.unit_id, unit.label, unit.item_id, at, returned.condition))
    return tuple(back)


def closed_refusal(rental: Rental, what: str) -> RentalRefused:
    """The refusal of ``what`` (an operator's action) on a rental not out: ``not_out`` or closed."""
    if rental.status in (RentalStatus.PENDING, RentalStatus.HELD):
        return RentalRefused(f"{what}: the units have not been picked up", code="not_out")
    return RentalRefused(f"{what}: the rental is {rental.status.value}", code="rental_closed")
