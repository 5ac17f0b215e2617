"""How events change a rental: :func:`evolve`, the only way a rental's state moves.

One function per event; the hold's resolution is applied in one place
(:func:`_resolved`), which also makes the records of the money work the
release asks for (a refund, a conversion, an unfreeze) and asserts the hold
resolves exactly once.
"""

from __future__ import annotations

import attrs

from actors.rentals.events import (
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
from actors.rentals.state import (
    Condition,
    ConversionRecord,
    DepositRoute,
    FreezeRecord,
    Hold,
    PaymentRecord,
    RefundRecord,
    Rental,
    RentalStatus,
    Resolution,
    UnfreezeRecord,
    UnitOnRental,
)


def evolve(rental: Rental | None, event: Event) -> Rental:
    """The rental after ``event``; the only way state changes."""
    if isinstance(event, RentalCreated):
        return Rental(
            event.rental_id,
            event.device_id,
            event.client_key,
            event.lines,
            event.days,
            event.timezone,
            event.due_back,
            event.at,
            event.hold_until,
            RentalStatus.PENDING,
            event.bundle_ticket_id,
        )
    assert rental is not None, "only creation applies to no rental"
    handler = _EVOLVERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a rental event: {event!r}")
    return handler(rental, event)


def _payment_started(rental: Rental, event: PaymentStarted) -> Rental:
    record = PaymentRecord(event.out_trade_no, event.channel, event.amount_fen, event.at)
    return attrs.evolve(rental, payments={**rental.payments, event.out_trade_no: record})


def _freeze_started(rental: Rental, event: FreezeStarted) -> Rental:
    record = FreezeRecord(
        event.out_order_no,
        event.out_request_no,
        event.channel,
        event.amount_fen,
        event.at,
        event.expires_at,
    )
    return attrs.evolve(rental, freezes={**rental.freezes, event.out_order_no: record})


def _deposit_paid(rental: Rental, event: DepositPaid) -> Rental:
    attempt = rental.payments[event.out_trade_no]
    amount = event.deposit_fen + event.prepaid_fen
    record = attrs.evolve(
        attempt, channel_txn_id=event.channel_txn_id, state="captured", collected_fen=amount
    )
    hold = Hold(
        DepositRoute.PAY,
        event.channel,
        event.deposit_fen,
        event.prepaid_fen,
        event.at,
        out_trade_no=event.out_trade_no,
        channel_txn_id=event.channel_txn_id,
    )
    return attrs.evolve(
        rental,
        status=RentalStatus.HELD,
        payments={**rental.payments, event.out_trade_no: record},
        confirmed_txns=rental.confirmed_txns | {(event.channel, event.channel_txn_id)},
        hold=hold,
    )


def _deposit_frozen(rental: Rental, event: DepositFrozen) -> Rental:
    record = attrs.evolve(rental.freezes[event.out_order_no], auth_no=event.auth_no, state="frozen")
    hold = Hold(
        DepositRoute.PREAUTH,
        event.channel,
        event.deposit_fen,
        event.prepaid_fen,
        event.at,
        out_order_no=event.out_order_no,
        auth_no=event.auth_no,
        expires_at=event.expires_at,
        convert_by=event.convert_by,
    )
    return attrs.evolve(
        rental,
        status=RentalStatus.HELD,
        freezes={**rental.freezes, event.out_order_no: record},
        confirmed_txns=rental.confirmed_txns | {(event.channel, event.auth_no)},
        hold=hold,
    )


def _voucher_issued(rental: Rental, event: VoucherIssued) -> Rental:
    return attrs.evolve(rental, voucher=event.code)


def _duplicate_payment(rental: Rental, event: DuplicatePaymentRefunding) -> Rental:
    attempt = rental.payments[event.out_trade_no]
    collected = (attempt.collected_fen or 0) + event.amount_fen
    if attempt.state == "started":
        attempt = attrs.evolve(
            attempt, channel_txn_id=event.channel_txn_id, state="refunding", collected_fen=collected
        )
    else:  # the same attempt confirmed under a second transaction id
        attempt = attrs.evolve(attempt, collected_fen=collected)
    refund = RefundRecord(
        event.out_refund_no,
        event.out_trade_no,
        event.channel,
        event.amount_fen,
        event.reason,
        event.channel_txn_id,
        payment_fen=event.amount_fen,
    )
    return attrs.evolve(
        rental,
        payments={**rental.payments, event.out_trade_no: attempt},
        confirmed_txns=rental.confirmed_txns | {(event.channel, event.channel_txn_id)},
        refunds={**rental.refunds, event.out_refund_no: refund},
    )


def _duplicate_freeze(rental: Rental, event: DuplicateFreezeReleasing) -> Rental:
    attempt = rental.freezes[event.out_order_no]
    if attempt.state == "started":
        attempt = attrs.evolve(attempt, auth_no=event.auth_no, state="releasing")
    unfreeze = UnfreezeRecord(
        event.out_request_no,
        event.out_order_no,
        event.auth_no,
        event.channel,
        event.amount_fen,
        event.reason,
    )
    return attrs.evolve(
        rental,
        freezes={**rental.freezes, event.out_order_no: attempt},
        confirmed_txns=rental.confirmed_txns | {(event.channel, event.auth_no)},
        unfreezes={**rental.unfreezes, event.out_request_no: unfreeze},
    )


def _resolved(rental: Rental, resolution: Resolution | None, reason: str) -> Rental:
    """``rental`` with its hold resolved by ``resolution`` and the release's records made."""
    if resolution is None:
        return rental
    hold = rental.hold
    assert hold is not None and hold.resolution is None, "a hold resolves exactly once"
    hold = attrs.evolve(hold, resolution=resolution)
    release = resolution.release
    refunds, unfreezes = rental.refunds, rental.unfreezes
    if release.refund_no is not None:
        if hold.route is DepositRoute.PAY:
            trade_no, txn, total = hold.out_trade_no, hold.channel_txn_id, hold.amount_fen
        else:
            assert hold.conversion is not None
            conversion = hold.conversion
            trade_no, txn, total = (
                conversion.out_trade_no,
                conversion.channel_txn_id,
                conversion.amount_fen,
            )
        refund = RefundRecord(
            release.refund_no,
            trade_no,
            hold.channel,
            release.refund_fen,
            reason,
            txn,
            payment_fen=total,
            awaiting_conversion=release.refund_deferred,
        )
        refunds = {**refunds, release.refund_no: refund}
    if release.convert_trade_no is not None:
        conversion = ConversionRecord(
            release.convert_trade_no,
            release.convert_fen,
            release.unfreeze_rest_fen,
            False,
            resolution.at,
        )
        hold = attrs.evolve(hold, conversion=conversion)
    if release.unfreeze_request_no is not None:
        assert hold.out_order_no is not None and hold.auth_no is not None
        unfreeze = UnfreezeRecord(
            release.unfreeze_request_no,
            hold.out_order_no,
            hold.auth_no,
            hold.channel,
            release.unfreeze_fen,
            reason,
        )
        unfreezes = {**unfreezes, release.unfreeze_request_no: unfreeze}
    return attrs.evolve(rental, hold=hold, refunds=refunds, unfreezes=unfreezes)


def _cancelled(rental: Rental, event: RentalCancelled) -> Rental:
    rental = _resolved(rental, event.resolution, "rental_cancelled")
    return attrs.evolve(rental, status=RentalStatus.CANCELLED)


def _expired(rental: Rental, event: RentalExpired) -> Rental:
    return attrs.evolve(rental, status=RentalStatus.EXPIRED)


def _picked_up(rental: Rental, event: RentalPickedUp) -> Rental:
    return attrs.evolve(
        rental,
        status=RentalStatus.OUT,
        units=event.units,
        picked_up_at=event.at,
        first_due_at=event.due_at,
        due_at=event.due_at,
    )


def _with_units(rental: Rental, back: tuple[UnitOnRental, ...]) -> Rental:
    by_id = {unit.unit_id: unit for unit in back}
    return attrs.evolve(rental, units=tuple(by_id.get(u.unit_id, u) for u in rental.units))


def _units_returned(rental: Rental, event: UnitsReturned) -> Rental:
    return _with_units(rental, event.units)


def _settled(rental: Rental, event: RentalSettled) -> Rental:
    rental = _resolved(rental, event.resolution, "deposit_release")
    return attrs.evolve(
        rental,
        status=RentalStatus.SETTLED,
        overdue=False,
        charges=event.charges,
        split=event.split,
        compensation_order_id=event.compensation_order_id,
    )


def _overdue(rental: Rental, event: RentalOverdue) -> Rental:
    return attrs.evolve(rental, overdue=True)


def _extended(rental: Rental, event: RentalExtended) -> Rental:
    return attrs.evolve(rental, due_at=event.due_at, overdue=False)


def _forfeited(rental: Rental, event: DepositForfeited) -> Rental:
    rental = _resolved(rental, event.resolution, "deposit_forfeited")
    lost = tuple(
        UnitOnRental(u.unit_id, u.label, u.item_id, event.at, Condition.LOST)
        for u in rental.units
        if u.unit_id in event.lost_unit_ids
    )
    rental = _with_units(rental, lost)
    return attrs.evolve(
        rental, status=RentalStatus.FORFEITED, overdue=False, forfeit_reason=event.reason
    )


def _converting(rental: Rental, event: FreezeConverting) -> Rental:
    assert rental.hold is not None
    return attrs.evolve(rental, hold=attrs.evolve(rental.hold, conversion=event.conversion))


def _conversion_confirmed(rental: Rental, event: ConversionConfirmed) -> Rental:
    hold = rental.hold
    assert hold is not None and hold.conversion is not None
    conversion = attrs.evolve(hold.conversion, channel_txn_id=event.channel_txn_id, confirmed=True)
    refunds = {
        no: attrs.evolve(r, awaiting_conversion=False, channel_txn_id=event.channel_txn_id)
        if r.awaiting_conversion
        else r
        for no, r in rental.refunds.items()
    }
    return attrs.evolve(
        rental,
        hold=attrs.evolve(hold, conversion=conversion),
        refunds=refunds,
        confirmed_txns=rental.confirmed_txns | {(hold.channel, event.channel_txn_id)},
    )


def _unfreeze_confirmed(rental: Rental, event: UnfreezeConfirmed) -> Rental:
    unfreeze = attrs.evolve(rental.unfreezes[event.out_request_no], confirmed=True)
    freezes = rental.freezes
    attempt = freezes.get(unfreeze.out_order_no)
    if attempt is not None and attempt.state == "releasing":
        freezes = {**freezes, attempt.out_order_no: attrs.evolve(attempt, state="released")}
    return attrs.evolve(
        rental,
        freezes=freezes,
        unfreezes={**rental.unfreezes, event.out_request_no: unfreeze},
    )


def _lapsed(rental: Rental, event: FreezeLapsed) -> Rental:
    return _resolved(rental, event.resolution, "freeze_lapsed")


def _refund_confirmed(rental: Rental, event: RefundConfirmed) -> Rental:
    refund = attrs.evolve(rental.refunds[event.out_refund_no], confirmed=True, failure=None)
    return _with_refund(rental, refund, "refunded")


def _refund_failed(rental: Rental, event: RefundFailed) -> Rental:
    refund = attrs.evolve(rental.refunds[event.out_refund_no], failure=event.failure)
    return _with_refund(rental, refund, "refund_failed")


def _with_refund(rental: Rental, refund: RefundRecord, payment_state: str) -> Rental:
    """``rental`` with ``refund`` settled; a duplicate's attempt takes ``payment_state``."""
    payments = rental.payments
    attempt = payments.get(refund.out_trade_no)
    if attempt is not None and attempt.state in ("refunding", "refunded", "refund_failed"):
        payments = {**payments, refund.out_trade_no: attrs.evolve(attempt, state=payment_state)}
    return attrs.evolve(
        rental, payments=payments, refunds={**rental.refunds, refund.out_refund_no: refund}
    )


_EVOLVERS = {
    PaymentStarted: _payment_started,
    FreezeStarted: _freeze_started,
    DepositPaid: _deposit_paid,
    DepositFrozen: _deposit_frozen,
    VoucherIssued: _voucher_issued,
    DuplicatePaymentRefunding: _duplicate_payment,
    DuplicateFreezeReleasing: _duplicate_freeze,
    RentalCancelled: _cancelled,
    RentalExpired: _expired,
    RentalPickedUp: _picked_up,
    UnitsReturned: _units_returned,
    RentalSettled: _settled,
    RentalOverdue: _overdue,
    RentalExtended: _extended,
    DepositForfeited: _forfeited,
    FreezeConverting: _converting,
    ConversionConfirmed: _conversion_confirmed,
    UnfreezeConfirmed: _unfreeze_confirmed,
    FreezeLapsed: _lapsed,
    RefundConfirmed: _refund_confirmed,
    RefundFailed: _refund_failed,
}
