"""The rental as a pure state machine: :func:`decide` and :func:`evolve`, no I/O.

A rental's life:

- **created** (pending): units of its item types reserved, the deposit and
  prepaid usage stated (:class:`CreateRental`); an unpaid rental expires
  at ``hold_until``;
- **held**: the deposit collected once, by a payment (the pay route) or a
  channel's freeze (the pre-authorisation route), and a signed voucher
  issued. Every other payment or freeze is given back whole;
- **out**: picked up by a desk that scanned the voucher and the units;
  flagged overdue at its due time, extended by an operator;
- units come back, each ok, damaged or lost, in one or several returns;
  the last one **settles** the rental once: charges by the pricing rules
  and penalties, the hold posted up to them and the rest voided, anything
  beyond the hold a compensation order;
- or: **cancelled** before pickup (everything back), **forfeited** by an
  operator (the whole hold kept).

The deposit is a two-phase transfer (:class:`~actors.rentals.state.Hold`):
resolved exactly once, by the one event of :data:`RESOLVING` that carries
its :class:`~actors.rentals.state.Resolution`, never both released and
forfeited. A freeze is converted whole before it could lapse; a lapse
voids it. :func:`decide` says what a command means for the current state
(raising :class:`RentalRefused` when it must not happen); :func:`evolve`
applies an event. Neither reads a clock or draws a random number.

The rental's pure core, of which this module is the front:

- :mod:`actors.rentals.state`: the rental and its records;
- :mod:`actors.rentals.commands`: what can be asked, with the facts it carries;
- :mod:`actors.rentals.events`: what happened;
- :mod:`actors.rentals.rules`: the named rules :func:`decide` applies;
- :mod:`actors.rentals.money`: what the money commands (payments, freezes,
  the channel's answers) mean; :mod:`actors.rentals.evolution`: :func:`evolve`;
- :mod:`actors.rentals.pricing`, :mod:`actors.rentals.settlement`: the
  arithmetic of usage, penalties, the split and the release;
- :mod:`actors.rentals.vouchers`: the signed voucher codes;
- :mod:`actors.rentals.effects`: :func:`~actors.rentals.effects.react`, the
  side effects a committed event asks for, as data;
- :mod:`actors.rentals.postings`: the ledger lines and memos of each money event;
- :mod:`actors.rentals.inventory`: what events do to units' runtime states.
"""

from __future__ import annotations

from datetime import timedelta

from actors.rentals.commands import (
    BundleFacts,
    CancelRental,
    Command,
    ConfirmConversion,
    ConfirmFreeze,
    ConfirmPayment,
    ConfirmRefund,
    ConfirmUnfreeze,
    ConvertFreeze,
    CreateRental,
    ExpireRental,
    ExtendRental,
    FailRefund,
    ForfeitDeposit,
    ItemRequest,
    MarkOverdue,
    PickUp,
    ReportLapse,
    ReturnUnits,
    StartFreeze,
    StartPayment,
    UnitReturn,
)
from actors.rentals.events import (
    RESOLVING,
    ConversionConfirmed,
    DepositForfeited,
    DepositFrozen,
    DepositPaid,
    DuplicateFreezeReleasing,
    DuplicatePaymentRefunding,
    Event,
    FreezeConverting,
    FreezeLapsed,
    FreezeStarted,
    PaymentStarted,
    RefundConfirmed,
    RefundFailed,
    RentalCancelled,
    RentalCreated,
    RentalExpired,
    RentalExtended,
    RentalOverdue,
    RentalPickedUp,
    RentalSettled,
    UnfreezeConfirmed,
    UnitsReturned,
    VoucherIssued,
)
from actors.rentals.evolution import evolve
from actors.rentals.money import (
    decide_confirm_conversion,
    decide_confirm_refund,
    decide_confirm_unfreeze,
    decide_convert,
    decide_fail_refund,
    decide_freeze,
    decide_lapse,
    decide_payment,
    decide_start_freeze,
    decide_start_payment,
)
from actors.rentals.pricing import due_at
from actors.rentals.rules import (
    RentalRefused,
    bundle_coverage,
    closed_refusal,
    pickup_units,
    rental_lines,
    return_refusal,
    returned_units,
    voucher_refusal,
)
from actors.rentals.settlement import FreshIds, charges_of, release_of, split
from actors.rentals.state import (
    CLOSED,
    Condition,
    DepositRoute,
    Rental,
    RentalStatus,
    Resolution,
    ResolutionKind,
)

__all__ = [
    "RESOLVING",
    "BundleFacts",
    "CancelRental",
    "Command",
    "Condition",
    "ConfirmConversion",
    "ConfirmFreeze",
    "ConfirmPayment",
    "ConfirmRefund",
    "ConfirmUnfreeze",
    "ConversionConfirmed",
    "ConvertFreeze",
    "CreateRental",
    "DepositForfeited",
    "DepositFrozen",
    "DepositPaid",
    "DepositRoute",
    "DuplicateFreezeReleasing",
    "DuplicatePaymentRefunding",
    "Event",
    "ExpireRental",
    "ExtendRental",
    "FailRefund",
    "ForfeitDeposit",
    "FreezeConverting",
    "FreezeLapsed",
    "FreezeStarted",
    "FreshIds",
    "ItemRequest",
    "MarkOverdue",
    "PaymentStarted",
    "PickUp",
    "RefundConfirmed",
    "RefundFailed",
    "Rental",
    "RentalCancelled",
    "RentalCreated",
    "RentalExpired",
    "RentalExtended",
    "RentalOverdue",
    "RentalPickedUp",
    "RentalRefused",
    "RentalSettled",
    "RentalStatus",
    "ReportLapse",
    "ResolutionKind",
    "ReturnUnits",
    "StartFreeze",
    "StartPayment",
    "UnfreezeConfirmed",
    "UnitReturn",
    "UnitsReturned",
    "VoucherIssued",
    "decide",
    "evolve",
]


def decide(rental: Rental | None, command: Command) -> list[Event]:
    """What ``command`` means for ``rental`` (``None`` before creation).

    Returns the events to persist (possibly none, for a replay or a timer
    with nothing to do). Raises :class:`RentalRefused` with a stable code
    when the command must not happen: ``rental_exists``, ``not_found``,
    ``bad_request``, ``bundle_invalid``, ``bundle_mismatch``,
    ``rental_not_pending``, ``unknown_payment``, ``unknown_freeze``,
    ``channel_mismatch``, ``amount_mismatch``, ``voucher_forged``,
    ``voucher_foreign``, ``not_paid``, ``voucher_used``, ``unknown_unit``,
    ``wrong_item``, ``unit_out``, ``unit_unavailable``, ``wrong_count``,
    ``not_out``, ``rental_out``, ``rental_closed``, ``unit_not_on_rental``,
    ``already_returned``, ``settlement_in_flight``, ``not_frozen``,
    ``freeze_lapsed``, ``unknown_unfreeze``, ``unknown_refund``,
    ``refund_not_requested``, ``refund_settled``. Raises ``ValueError`` when
    a command that needs fresh ids has none (the shell draws them).
    """
    if isinstance(command, CreateRental):
        return _decide_create(rental, command)
    if rental is None:
        raise RentalRefused("no such rental", code="not_found")
    handler = _DECIDERS.get(type(command))
    if handler is None:
        raise TypeError(f"not a rental command: {command!r}")
    return handler(rental, command)


def _decide_create(rental: Rental | None, command: CreateRental) -> list[Event]:
    if rental is not None:
        raise RentalRefused("a rental with this id exists", code="rental_exists")
    catalog = command.catalog
    terms = catalog.rental_terms
    if terms is None:
        raise RentalRefused("this site rents nothing", code="bad_request")
    covered = bundle_coverage(catalog, command.bundle, command.requested, command.today)
    lines = rental_lines(catalog, command.requested, command.days, covered)
    bundle = command.bundle.ticket_id if command.bundle is not None else None
    return [
        RentalCreated(
            command.rental_id,
            command.device_id,
            command.client_key,
            lines,
            command.days,
            catalog.timezone,
            terms.due_back,
            sum(line.deposit_fen for line in lines),
            sum(line.prepaid_fen for line in lines),
            bundle,
            command.at,
            command.at + timedelta(minutes=terms.hold_minutes),
        )
    ]


def _fresh(fresh: FreshIds | None) -> FreshIds:
    if fresh is None:
        raise ValueError("the shell must draw fresh ids for this command")
    return fresh


def _decide_cancel(rental: Rental, command: CancelRental) -> list[Event]:
    if rental.status is RentalStatus.CANCELLED:
        return []
    if rental.status is RentalStatus.OUT:
        raise RentalRefused("the units are out: return them instead", code="rental_out")
    if rental.status in CLOSED:
        raise RentalRefused(f"the rental is {rental.status.value}", code="rental_closed")
    hold = rental.hold
    resolution = None
    if hold is not None and hold.resolution is None:
        release = release_of(hold, 0, _fresh(command.fresh))
        resolution = Resolution(ResolutionKind.CANCELLED, 0, hold.secured_fen, command.at, release)
    return [
        RentalCancelled(rental.rental_id, command.by_device, "cancelled", resolution, command.at)
    ]


def _decide_expire(rental: Rental, command: ExpireRental) -> list[Event]:
    if rental.status is not RentalStatus.PENDING or command.at < rental.hold_until:
        return []  # paid, closed already, or the timer fired early: nothing to do
    return [RentalExpired(rental.rental_id, command.at)]


def _decide_pickup(rental: Rental, command: PickUp) -> list[Event]:
    refused = voucher_refusal(rental, command.voucher, command.secrets)
    if refused is not None:
        raise refused
    units = pickup_units(rental, command.labels, command.catalog, command.unit_states)
    due = due_at(command.at, rental.days, rental.due_back, rental.timezone)
    return [RentalPickedUp(rental.rental_id, units, command.by_device, command.at, due)]


def _decide_return(rental: Rental, command: ReturnUnits) -> list[Event]:
    refused = return_refusal(rental)
    if refused is not None:
        raise refused
    back = returned_units(rental, command.returns, command.at)
    returned = UnitsReturned(rental.rental_id, back, command.by_device, command.at)
    after = evolve(rental, returned)
    if after.units_out:
        return [returned]
    return [returned, _settlement(after, command)]


def _settlement(rental: Rental, command: ReturnUnits) -> RentalSettled:
    """The settlement of ``rental``, every unit of which is back."""
    fresh = _fresh(command.fresh)
    charges = charges_of(rental)
    hold = rental.hold
    assert hold is not None, "a rental out has its hold"
    how = split(hold.secured_fen, sum(charge.total_fen for charge in charges))
    resolution = None
    if hold.resolution is None:
        release = release_of(hold, how.kept_fen, fresh)
        resolution = Resolution(
            ResolutionKind.SETTLED, how.kept_fen, how.released_fen, command.at, release
        )
    order_id = fresh.order_id if how.compensation_fen else None
    return RentalSettled(rental.rental_id, charges, how, resolution, order_id, command.at)


def _decide_overdue(rental: Rental, command: MarkOverdue) -> list[Event]:
    if rental.status is not RentalStatus.OUT or rental.overdue:
        return []
    assert rental.due_at is not None
    if command.at < rental.due_at:
        return []  # the timer fired early, or the rental was extended since
    return [RentalOverdue(rental.rental_id, rental.due_at, command.at)]


def _decide_extend(rental: Rental, command: ExtendRental) -> list[Event]:
    if rental.status is not RentalStatus.OUT:
        raise closed_refusal(rental, "extend")
    if not command.reason.strip():
        raise RentalRefused("say why the rental is extended", code="bad_request")
    assert rental.due_at is not None
    if command.due_at <= rental.due_at or command.due_at <= command.at:
        raise RentalRefused(
            "the new due time must be later than the current one and than now",
            code="bad_request",
        )
    return [
        RentalExtended(
            rental.rental_id,
            command.due_at,
            rental.due_at,
            command.reason,
            command.by_device,
            command.at,
        )
    ]


def _decide_forfeit(rental: Rental, command: ForfeitDeposit) -> list[Event]:
    if rental.status is not RentalStatus.OUT:
        raise closed_refusal(rental, "forfeit")
    if not command.reason.strip():
        raise RentalRefused("say why the deposit is forfeited", code="bad_request")
    hold = rental.hold
    assert hold is not None, "a rental out has its hold"
    resolution = None
    if hold.resolution is None:
        release = release_of(hold, hold.secured_fen, _fresh(command.fresh))
        resolution = Resolution(ResolutionKind.FORFEITED, hold.secured_fen, 0, command.at, release)
    lost = tuple(unit.unit_id for unit in rental.units_out)
    return [
        DepositForfeited(
            rental.rental_id, command.reason, command.by_device, lost, resolution, command.at
        )
    ]


_DECIDERS = {
    StartPayment: decide_start_payment,
    StartFreeze: decide_start_freeze,
    ConfirmPayment: decide_payment,
    ConfirmFreeze: decide_freeze,
    CancelRental: _decide_cancel,
    ExpireRental: _decide_expire,
    PickUp: _decide_pickup,
    ReturnUnits: _decide_return,
    MarkOverdue: _decide_overdue,
    ExtendRental: _decide_extend,
    ForfeitDeposit: _decide_forfeit,
    ConvertFreeze: decide_convert,
    ConfirmConversion: decide_confirm_conversion,
    ConfirmUnfreeze: decide_confirm_unfreeze,
    ReportLapse: decide_lapse,
    ConfirmRefund: decide_confirm_refund,
    FailRefund: decide_fail_refund,
}
