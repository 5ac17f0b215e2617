"""What can be asked of a rental: the commands, and the facts they carry in.

A command says what someone wants; :func:`~actors.rentals.domain.decide`
says what it means. Everything a rule needs that the rental does not hold
travels in the command, read by the shell beforehand: the time (``at``),
fresh ids (:class:`~actors.rentals.settlement.FreshIds`, drawn by the
shell when a command may start money work), the catalog (items, units,
terms), what the shell knows of a bundle ticket (:class:`BundleFacts`) and
of the scanned units' runtime state, and the site's voucher secrets. So the
rules never read a clock, a database, a key store or a random number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import attrs

from actors.catalog import Catalog
from actors.rentals.settlement import FreshIds
from actors.rentals.state import Condition, UnitState


@attrs.frozen
class ItemRequest:
    """One line of a new rental as a kiosk or desk asks for it: an item type and how many."""

    item_id: str
    quantity: int


@attrs.frozen
class BundleFacts:
    """What the shell read of the ticket a new rental names for its bundle.

    ``visit_date`` is the ticket's visit date; ``refunded`` whether it is
    void. The rules cover usage only for a ticket of a product that
    includes rentals, not refunded, for the site's today.
    """

    ticket_id: str
    product_id: str
    visit_date: date
    refunded: bool = False


@attrs.frozen
class CreateRental:
    """Make a new pending rental of the ``requested`` items, reserving their units.

    The shell chose the id; it hands in the catalog on sale (items,
    deposits, prices, terms: what the lines are checked and priced
    against), ``today`` (the site's business date at ``at``) and, when the
    visitor names a ticket, its :class:`BundleFacts`.
    """

    rental_id: str
    device_id: str
    client_key: str
    requested: tuple[ItemRequest, ...]
    catalog: Catalog
    today: date
    at: datetime
    days: int = 1
    bundle: BundleFacts | None = None


@attrs.frozen
class StartPayment:
    """Collect the deposit by paying it (the pay route): ``out_trade_no`` is new.

    ``money_taken``: a cashier already took the money; the attempt is
    recorded whatever the rental's state, so the money can be kept or
    refunded.
    """

    out_trade_no: str
    channel: str
    at: datetime
    money_taken: bool = False


@attrs.frozen
class StartFreeze:
    """Hold the deposit by a channel's pre-authorisation: freeze it under new numbers.

    ``expires_at`` is when the freeze would lapse at the channel: the shell
    asks for no longer than the channel allows.
    """

    out_order_no: str
    out_request_no: str
    channel: str
    at: datetime
    expires_at: datetime


@attrs.frozen
class ConfirmPayment:
    """The channel (or a cashier) says money arrived for ``out_trade_no``.

    ``out_refund_no`` is a fresh refund number, used only if this payment
    must be refunded (a second payment of the deposit, a late one, the
    wrong amount).
    """

    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    at: datetime
    out_refund_no: str


@attrs.frozen
class ConfirmFreeze:
    """The channel says the freeze ``out_order_no`` holds ``amount_fen`` under ``auth_no``.

    ``out_request_no`` is a fresh request number, used only if the freeze
    must be unfrozen whole (a second hold of the deposit, a late one, the
    wrong amount).
    """

    out_order_no: str
    channel: str
    auth_no: str
    amount_fen: int
    frozen_at: datetime
    at: datetime
    out_request_no: str


@attrs.frozen
class CancelRental:
    """Abandon a rental before pickup: the units are free, everything collected goes back."""

    by_device: str
    at: datetime
    fresh: FreshIds | None = None


@attrs.frozen
class ExpireRental:
    """The unpaid hold's timer fired."""

    at: datetime


@attrs.frozen
class PickUp:
    """A rental desk scanned the voucher and the units' labels to hand the units out.

    ``catalog`` resolves the labels; ``unit_states`` is each scanned unit's
    runtime state as the shell read it (a unit not named is available);
    ``secrets`` maps the site's accepted key ids to their HMAC secrets.
    """

    voucher: str
    labels: tuple[str, ...]
    catalog: Catalog
    unit_states: Mapping[str, UnitState]
    secrets: Mapping[str, bytes]
    by_device: str
    at: datetime


@attrs.frozen
class UnitReturn:
    """One unit back at a desk, by the code on its label, and how it came back."""

    label: str
    condition: Condition


@attrs.frozen
class ReturnUnits:
    """A desk takes ``returns`` back at ``at``; the last one settles the rental."""

    returns: tuple[UnitReturn, ...]
    by_device: str
    at: datetime
    fresh: FreshIds | None = None


@attrs.frozen
class MarkOverdue:
    """The due-time timer fired."""

    at: datetime


@attrs.frozen
class ExtendRental:
    """An operator gives the rental a later due time."""

    due_at: datetime
    reason: str
    by_device: str
    at: datetime


@attrs.frozen
class ForfeitDeposit:
    """An operator keeps the whole hold (``reason`` says why); units still out are lost."""

    reason: str
    by_device: str
    at: datetime
    fresh: FreshIds | None = None


@attrs.frozen
class ConvertFreeze:
    """Convert the whole freeze into a payment before it lapses (its timer fired, or an operator).

    ``out_trade_no`` is the new payment's number.
    """

    out_trade_no: str
    at: datetime


@attrs.frozen
class ConfirmConversion:
    """The channel converted frozen funds into payment ``out_trade_no``."""

    out_trade_no: str
    channel_txn_id: str
    amount_fen: int
    at: datetime


@attrs.frozen
class ConfirmUnfreeze:
    """The channel unfroze the amount asked under ``out_request_no``."""

    out_request_no: str
    at: datetime


@attrs.frozen
class ReportLapse:
    """The channel let the freeze lapse unconverted (it reports the authorisation closed)."""

    at: datetime


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


Command = (
    CreateRental
    | StartPayment
    | StartFreeze
    | ConfirmPayment
    | ConfirmFreeze
    | CancelRental
    | ExpireRental
    | PickUp
    | ReturnUnits
    | MarkOverdue
    | ExtendRental
    | ForfeitDeposit
    | ConvertFreeze
    | ConfirmConversion
    | ConfirmUnfreeze
    | ReportLapse
    | ConfirmRefund
    | FailRefund
)
