"""What can be asked of an order: the commands, and the facts they carry in.

A command says what someone wants; :func:`~actors.orders.domain.decide`
says what it means. Everything a rule needs that the order does not hold
travels in the command, read by the shell beforehand: the time (``at``),
fresh ids, the catalog and the site's business date for a new order
(:class:`CreateOrder`), what the gates know of each ticket for a staff
refund (:class:`TicketFacts` in :class:`RefundTickets`). So the rules never
read a clock, a database or a random number.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import attrs

from actors.catalog import Catalog
from actors.orders.state import Purpose


@attrs.frozen
class LineRequest:
    """One line of a new order as a kiosk or counter asks for it, not yet priced or checked."""

    product_id: str
    quantity: int
    visit_date: date
    #: the time slot, or ``None`` (a product needs one, or must not have one)
    slot: str | None


@attrs.frozen
class CreateOrder:
    """Make a new pending order of the ``requested`` lines.

    The shell chose the id and the expiry; it hands in the catalog on sale
    (products, prices, slots: what the lines are checked and priced against)
    and ``today``, the site's business date at ``at`` (a visit date before it
    is in the past).
    """

    order_id: str
    device_id: str
    client_key: str
    requested: tuple[LineRequest, ...]
    catalog: Catalog
    today: date
    at: datetime
    expires_at: datetime


@attrs.frozen
class StartPayment:
    """A kiosk or counter starts paying by ``channel``; ``out_trade_no`` is new."""

    out_trade_no: str
    channel: str
    at: datetime
    #: a cashier already took the money (``payment.record``): the attempt must be
    #: recorded whatever the order's state, so the money can be kept or refunded
    money_taken: bool = False


@attrs.frozen
class ConfirmPayment:
    """The channel (or a cashier) says money arrived for ``out_trade_no``.

    ``ticket_ids`` are fresh ids the shell drew, used only if this payment
    captures the order; ``out_refund_no`` is a fresh refund number, used only
    if it must be refunded.
    """

    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    at: datetime
    ticket_ids: tuple[str, ...]
    out_refund_no: str
    #: what the notification said when the channel's own query said ``amount_fen``
    #: instead (the query decides; the disagreement is kept and flagged)
    notified_fen: int | None = None


@attrs.frozen
class CancelOrder:
    """Staff or the kiosk abandon a pending order."""

    at: datetime


@attrs.frozen
class ExpireOrder:
    """The expiry timer fired."""

    at: datetime


@attrs.frozen
class TicketFacts:
    """What the shell read of one ticket, beyond the order, for a refund's rules.

    ``entries_used`` is the ticket's use as the gates know it (the fresher
    of its stored row and the server's warm copy). ``visit_starts`` is the
    moment its visit begins at the site, aware UTC: its slot's start on its
    visit date, or the start of its visit day (local midnight) for a
    whole-day ticket.
    """

    ticket_id: str
    entries_used: int
    visit_starts: datetime


def visit_starts(catalog: Catalog, visit_date: date, slot: str | None) -> datetime:
    """When a visit on ``visit_date`` in ``slot`` begins at the site, as aware UTC.

    A slot begins at its start time, site-local; a whole-day ticket (or a
    slot the catalog no longer lists) at local midnight of its visit date.
    """
    starts = next((s.starts for s in catalog.slots if s.slot_id == slot), time(0))
    return datetime.combine(visit_date, starts, ZoneInfo(catalog.timezone)).astimezone(UTC)


@attrs.frozen
class RefundTickets:
    """Staff refund tickets of a paid order, by the channel that paid.

    ``facts`` holds a :class:`TicketFacts` for every named ticket that is on
    the order (:func:`~actors.orders.rules.refund_refusal` decides on them).
    """

    ticket_ids: tuple[str, ...]
    reason: str
    by_device: str
    out_refund_no: str
    at: datetime
    facts: tuple[TicketFacts, ...]


@attrs.frozen
class ConfirmRefund:
    """The channel confirmed a refund."""

    out_refund_no: str
    at: datetime


@attrs.frozen
class FailRefund:
    """The channel refused a refund for good (``failure``: its code and message)."""

    out_refund_no: str
    failure: str
    at: datetime


@attrs.frozen
class CreatePaymentOrder:
    """Make a pending order of one amount and no lines: a rental's compensation.

    Nothing is reserved and no ticket is issued; paying it settles what the
    rental ``rental_id`` left owed.
    """

    order_id: str
    device_id: str
    client_key: str
    purpose: Purpose
    rental_id: str
    total_fen: int
    at: datetime
    expires_at: datetime


Command = (
    CreateOrder
    | StartPayment
    | ConfirmPayment
    | CancelOrder
    | ExpireOrder
    | RefundTickets
    | ConfirmRefund
    | FailRefund
    | CreatePaymentOrder
)
