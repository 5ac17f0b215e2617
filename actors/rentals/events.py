"""What happened to a rental: the events :func:`~actors.rentals.domain.decide` returns.

Events are facts, named in the past tense, and the only way a rental
changes (:func:`~actors.rentals.domain.evolve`). The shell persists each
command's events in one transaction, with their ledger postings and memos
(:mod:`actors.rentals.postings`), the units' new runtime states
(:func:`~actors.rentals.inventory.unit_changes`) and durable effects
(:func:`~actors.rentals.effects.react`).

The hold's life is in these events: made by :class:`DepositPaid` or
:class:`DepositFrozen`; resolved exactly once by one of
:class:`RentalSettled`, :class:`RentalCancelled`, :class:`DepositForfeited`
or :class:`FreezeLapsed`, each carrying the :class:`Resolution`.
"""

from __future__ import annotations

from datetime import datetime, time

import attrs

from actors.rentals.state import (
    ConversionRecord,
    RentalLine,
    Resolution,
    Split,
    UnitCharge,
    UnitOnRental,
)


@attrs.frozen
class RentalCreated:
    """A pending rental exists; units of its item types are reserved until ``hold_until``."""

    rental_id: str
    device_id: str
    client_key: str
    lines: tuple[RentalLine, ...]
    days: int
    timezone: str
    due_back: time
    deposit_fen: int
    prepaid_fen: int
    bundle_ticket_id: str | None
    at: datetime
    hold_until: datetime


@attrs.frozen
class PaymentStarted:
    """An attempt to pay the deposit (and prepaid usage) by a channel, under ``out_trade_no``."""

    rental_id: str
    out_trade_no: str
    channel: str
    amount_fen: int
    at: datetime


@attrs.frozen
class FreezeStarted:
    """An attempt to freeze the deposit (and prepaid usage) at a channel."""

    rental_id: str
    out_order_no: str
    out_request_no: str
    channel: str
    amount_fen: int
    at: datetime
    expires_at: datetime


@attrs.frozen
class DepositPaid:
    """The rental's one collection on the pay route: the hold is made, in the deposit pool."""

    rental_id: str
    out_trade_no: str
    channel: str
    channel_txn_id: str
    deposit_fen: int
    prepaid_fen: int
    paid_at: datetime
    at: datetime


@attrs.frozen
class DepositFrozen:
    """The rental's one hold on the pre-authorisation route: frozen at the channel, off-ledger.

    The freeze lapses at ``expires_at``; the rental converts it whole by
    ``convert_by`` if it is not resolved by then.
    """

    rental_id: str
    out_order_no: str
    channel: str
    auth_no: str
    deposit_fen: int
    prepaid_fen: int
    frozen_at: datetime
    at: datetime
    expires_at: datetime
    convert_by: datetime


@attrs.frozen
class VoucherIssued:
    """The deposit voucher, once held; the shell fills in the signed ``code``."""

    rental_id: str
    at: datetime
    code: str | None = None


@attrs.frozen
class DuplicatePaymentRefunding:
    """A payment that must not be kept: recorded, and refunded in full by its channel."""

    rental_id: str
    out_trade_no: str
    channel: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime
    out_refund_no: str
    reason: str
    at: datetime


@attrs.frozen
class DuplicateFreezeReleasing:
    """A freeze that must not be kept: recorded, and unfrozen whole at its channel."""

    rental_id: str
    out_order_no: str
    channel: str
    auth_no: str
    amount_fen: int
    out_request_no: str
    reason: str
    at: datetime


@attrs.frozen
class RentalCancelled:
    """The rental was abandoned before pickup, or its freeze lapsed before it.

    Its units are free; ``resolution`` voids the hold whole, when there was
    one to void (``None`` when nothing was held, or a lapse had voided it).
    """

    rental_id: str
    by_device: str
    reason: str
    resolution: Resolution | None
    at: datetime


@attrs.frozen
class RentalExpired:
    """An unpaid rental ran out of time; its units are free."""

    rental_id: str
    at: datetime


@attrs.frozen
class RentalPickedUp:
    """The units were handed out against the voucher; the rental is due at ``due_at``."""

    rental_id: str
    units: tuple[UnitOnRental, ...]
    by_device: str
    at: datetime
    due_at: datetime


@attrs.frozen
class UnitsReturned:
    """Some units came back (each with ``back_at`` and its condition); the rest stay out."""

    rental_id: str
    units: tuple[UnitOnRental, ...]
    by_device: str
    at: datetime


@attrs.frozen
class RentalSettled:
    """The last unit is back: the rental's charges, and the hold's one resolution.

    ``split`` says how the charges met what the hold secured;
    ``resolution`` is ``None`` when a lapse had resolved the hold already
    (nothing secured: the charges are all compensation).
    ``compensation_order_id`` names the order that collects the charges
    beyond the hold, when there are any.
    """

    rental_id: str
    charges: tuple[UnitCharge, ...]
    split: Split
    resolution: Resolution | None
    compensation_order_id: str | None
    at: datetime


@attrs.frozen
class RentalOverdue:
    """The rental is still out at its due time."""

    rental_id: str
    due_at: datetime
    at: datetime


@attrs.frozen
class RentalExtended:
    """An operator moved the due time later (clearing the overdue flag)."""

    rental_id: str
    due_at: datetime
    previous_due_at: datetime
    reason: str
    by_device: str
    at: datetime


@attrs.frozen
class DepositForfeited:
    """An operator kept the whole hold; the units still out are lost.

    ``resolution`` posts the hold whole (``None`` when a lapse had voided
    it: there was nothing left to keep).
    """

    rental_id: str
    reason: str
    by_device: str
    lost_unit_ids: tuple[str, ...]
    resolution: Resolution | None
    at: datetime


@attrs.frozen
class FreezeConverting:
    """The whole freeze is to be converted into a payment before it lapses."""

    rental_id: str
    conversion: ConversionRecord

    @property
    def at(self) -> datetime:
        """When the conversion was asked (every event says when it happened)."""
        return self.conversion.at


@attrs.frozen
class ConversionConfirmed:
    """The channel converted frozen funds into a payment (and unfroze any rest)."""

    rental_id: str
    out_trade_no: str
    channel_txn_id: str
    amount_fen: int
    at: datetime


@attrs.frozen
class UnfreezeConfirmed:
    """The channel unfroze what was asked under ``out_request_no``."""

    rental_id: str
    out_request_no: str
    at: datetime


@attrs.frozen
class FreezeLapsed:
    """The freeze lapsed unconverted: the channel released it; the hold is void (resolved)."""

    rental_id: str
    out_order_no: str
    amount_fen: int
    resolution: Resolution
    at: datetime


@attrs.frozen
class RefundConfirmed:
    """The channel confirmed a refund; the money has left."""

    rental_id: str
    out_refund_no: str
    at: datetime


@attrs.frozen
class RefundFailed:
    """The channel refused a refund for good; the money is still owed to the visitor."""

    rental_id: str
    out_refund_no: str
    failure: str
    at: datetime


Event = (
    RentalCreated
    | PaymentStarted
    | FreezeStarted
    | DepositPaid
    | DepositFrozen
    | VoucherIssued
    | DuplicatePaymentRefunding
    | DuplicateFreezeReleasing
    | RentalCancelled
    | RentalExpired
    | RentalPickedUp
    | UnitsReturned
    | RentalSettled
    | RentalOverdue
    | RentalExtended
    | DepositForfeited
    | FreezeConverting
    | ConversionConfirmed
    | UnfreezeConfirmed
    | FreezeLapsed
    | RefundConfirmed
    | RefundFailed
)

#: the events that resolve a hold (each carries its :class:`Resolution`, or ``None``)
RESOLVING = (RentalSettled, RentalCancelled, DepositForfeited, FreezeLapsed)
