"""The order's named rules, each written once: :func:`~actors.orders.domain.decide` calls them.

- :func:`order_line`: what a requested line may be (a known product, a
  visit date not before the site's today, a slot exactly when the product
  needs one) and its price, from the catalog;
- :func:`capture_refusal`: why a confirmed payment does not capture the
  order (and so is refunded in full);
- :func:`refund_refusal`: why a ticket may not be refunded by staff (not on
  the order, refunded already, used at a gate).

Each returns or raises :class:`OrderRefused` with a stable code, and reads
only its arguments. A new rule about refunds (say, "until 1 h before its
slot": :class:`~actors.orders.commands.TicketFacts` already carries when
the ticket's visit starts) is one more check in :func:`refund_refusal`,
its test, and the ``order.refund`` docs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from actors.catalog import Catalog
from actors.errors import DomainError
from actors.orders.commands import ConfirmPayment, LineRequest, TicketFacts
from actors.orders.state import Order, OrderLine, OrderStatus, RefundReason
from actors.payments import NotCollected, collection_refusal

MAX_TICKETS_PER_ORDER = 200


class OrderRefused(DomainError):
    """A command the order's rules do not allow; ``code`` says which rule."""


def order_line(catalog: Catalog, requested: LineRequest, today: date) -> OrderLine:
    """The priced line ``requested`` asks for, checked against ``catalog`` on the site's ``today``.

    Raises :class:`OrderRefused` (``bad_request``) for an unknown product, a
    visit date before ``today``, a product that needs a slot given none of
    the catalog's slots, or a whole-day product given a slot. The unit price
    and the entries each ticket allows are the product's in ``catalog``.
    """
    product = catalog.product(requested.product_id)
    if product is None:
        raise OrderRefused(f"unknown product {requested.product_id!r}", code="bad_request")
    if requested.visit_date < today:
        raise OrderRefused(f"{requested.visit_date} is in the past", code="bad_request")
    known_slots = {slot.slot_id for slot in catalog.slots}
    if product.needs_slot and requested.slot not in known_slots:
        raise OrderRefused(
            f"{product.product_id} needs one of the slots {sorted(known_slots)}",
            code="bad_request",
        )
    if not product.needs_slot and requested.slot is not None:
        raise OrderRefused(
            f"{product.product_id} is a whole-day ticket; leave out the slot", code="bad_request"
        )
    return OrderLine(
        product.product_id,
        requested.quantity,
        requested.visit_date,
        requested.slot,
        product.price_fen,
        product.entries_allowed,
    )


def capture_refusal(order: Order, paid: ConfirmPayment) -> RefundReason | None:
    """Why the confirmed payment ``paid`` does not capture ``order``, or ``None`` when it does.

    Only a pending order, paid no later than its expiry, by exactly its
    total, is captured; every other payment is refunded for the reason
    returned.
    """
    refusal = collection_refusal(
        collected=order.status is OrderStatus.PAID,
        cancelled=order.status is OrderStatus.CANCELLED,
        expired=order.status is OrderStatus.EXPIRED,
        paid_at=paid.paid_at,
        deadline=order.expires_at,
        amount_fen=paid.amount_fen,
        due_fen=order.total_fen,
    )
    return None if refusal is None else _ORDER_REASONS[refusal]


#: the order's words for why a payment is given back
_ORDER_REASONS = {
    NotCollected.ALREADY_PAID: RefundReason.ALREADY_PAID,
    NotCollected.CANCELLED: RefundReason.ORDER_CANCELLED,
    NotCollected.EXPIRED: RefundReason.ORDER_EXPIRED,
    NotCollected.AMOUNT_MISMATCH: RefundReason.AMOUNT_MISMATCH,
}


def refund_refusal(
    order: Order, ticket_ids: Sequence[str], facts: Mapping[str, TicketFacts], at: datetime
) -> OrderRefused | None:
    """Why staff may not refund the tickets ``ticket_ids`` of ``order`` at ``at``, or ``None``.

    Tickets are refunded only if each is on the order (``not_found``), none
    is refunded already (``ticket_not_refundable``) and none is used: no
    gate has admitted it (``ticket_used``, from its ``facts.entries_used``).
    The first ticket that breaks the first rule broken is named. ``facts``
    holds the :class:`~actors.orders.commands.TicketFacts` of every named
    ticket on the order, by id; ``at`` is when the refund is asked (no rule
    reads it yet). Raises ``ValueError`` when a ticket's facts are missing.
    """
    on_order = {ticket.ticket_id for ticket in order.tickets}
    for ticket_id in ticket_ids:
        if ticket_id not in on_order:
            return OrderRefused(f"ticket {ticket_id} is not on this order", code="not_found")
        if ticket_id in order.void_ticket_ids:
            return OrderRefused(
                f"ticket {ticket_id} is already refunded", code="ticket_not_refundable"
            )
    for ticket_id in ticket_ids:
        if ticket_id not in facts:
            raise ValueError(f"the shell must give the facts of ticket {ticket_id}")
        if facts[ticket_id].entries_used > 0:
            return used_ticket_refused(ticket_id)
    return None


def used_ticket_refused(ticket_id: str | None = None) -> OrderRefused:
    """The refusal of a refund of a ticket a gate admitted (``ticket_used``).

    :func:`refund_refusal` gives it when the facts show the use; the shell
    gives the same refusal, naming no ticket, when storage's backstop finds
    a gate admitted one in the moment between the facts and the commit.
    """
    which = "a ticket to refund" if ticket_id is None else f"ticket {ticket_id}"
    return OrderRefused(
        f"{which} has been used at a gate; refund only unused tickets", code="ticket_used"
    )
