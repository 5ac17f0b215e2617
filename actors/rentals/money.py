"""The rental's money commands: collecting the deposit, the channel's answers, freezes.

What each command about money at a channel means for a rental, called by
:func:`~actors.rentals.domain.decide`: starting a payment or a freeze,
their confirmations (the first exact one holds the deposit and issues the
voucher; any other is given back whole), converting a freeze before it
lapses, the lapse itself, and the confirmations of conversions, unfreezes
and refunds. Each returns the events, or raises
:class:`~actors.rentals.rules.RentalRefused`.
"""

from __future__ import annotations

from datetime import datetime

from actors.rentals.commands import (
    ConfirmConversion,
    ConfirmFreeze,
    ConfirmPayment,
    ConfirmRefund,
    ConfirmUnfreeze,
    ConvertFreeze,
    FailRefund,
    ReportLapse,
    StartFreeze,
    StartPayment,
)
from actors.rentals.events import (
    ConversionConfirmed,
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
    UnfreezeConfirmed,
    VoucherIssued,
)
from actors.rentals.rules import RentalRefused, capture_refusal, convert_by
from actors.rentals.state import (
    CHANNELS,
    PREAUTH_CHANNELS,
    ConversionRecord,
    DepositRoute,
    Hold,
    RefundRecord,
    Rental,
    RentalStatus,
    Resolution,
    ResolutionKind,
)


def _still_pending(rental: Rental, at: datetime) -> None:
    if rental.status is not RentalStatus.PENDING:
        raise RentalRefused(f"the rental is {rental.status.value}", code="rental_not_pending")
    if at >= rental.hold_until:
        raise RentalRefused("the rental's hold has expired", code="rental_not_pending")


def decide_start_payment(rental: Rental, command: StartPayment) -> list[Event]:
    """Start paying the deposit: refused unless pending and within the hold."""
    if not command.money_taken:
        _still_pending(rental, command.at)
    if command.channel not in CHANNELS:
        raise RentalRefused(f"unknown channel {command.channel!r}", code="bad_request")
    if command.out_trade_no in rental.payments:
        return []
    return [
        PaymentStarted(
            rental.rental_id,
            command.out_trade_no,
            command.channel,
            rental.amount_due_fen,
            command.at,
        )
    ]


def decide_start_freeze(rental: Rental, command: StartFreeze) -> list[Event]:
    """Start freezing the deposit at a channel that offers pre-authorisation."""
    _still_pending(rental, command.at)
    if command.channel not in PREAUTH_CHANNELS:
        raise RentalRefused(
            f"{command.channel} offers no pre-authorisation: pay the deposit instead",
            code="bad_request",
        )
    if command.expires_at <= command.at:
        raise RentalRefused("a freeze must last a while", code="bad_request")
    if command.out_order_no in rental.freezes:
        return []
    return [
        FreezeStarted(
            rental.rental_id,
            command.out_order_no,
            command.out_request_no,
            command.channel,
            rental.amount_due_fen,
            command.at,
            command.expires_at,
        )
    ]


def decide_payment(rental: Rental, paid: ConfirmPayment) -> list[Event]:
    """A confirmed payment: the first exact one holds the deposit; any other is refunded."""
    if (paid.channel, paid.channel_txn_id) in rental.confirmed_txns:
        return []  # a replayed notification changes nothing
    attempt = rental.payments.get(paid.out_trade_no)
    if attempt is None:
        raise RentalRefused(
            f"no payment {paid.out_trade_no} on this rental", code="unknown_payment"
        )
    if attempt.channel != paid.channel:
        raise RentalRefused(
            f"payment {paid.out_trade_no} was started for {attempt.channel}",
            code="channel_mismatch",
        )
    reason = "already_paid" if attempt.state != "started" else None
    reason = reason or capture_refusal(rental, paid.paid_at, paid.amount_fen)
    if reason is not None:
        return [
            DuplicatePaymentRefunding(
                rental.rental_id,
                paid.out_trade_no,
                paid.channel,
                paid.channel_txn_id,
                paid.amount_fen,
                paid.paid_at,
                paid.out_refund_no,
                reason,
                paid.at,
            )
        ]
    return [
        DepositPaid(
            rental.rental_id,
            paid.out_trade_no,
            paid.channel,
            paid.channel_txn_id,
            rental.deposit_fen,
            rental.prepaid_fen,
            paid.paid_at,
            paid.at,
        ),
        VoucherIssued(rental.rental_id, paid.at),
    ]


def decide_freeze(rental: Rental, frozen: ConfirmFreeze) -> list[Event]:
    """A confirmed freeze: the first exact one holds the deposit; any other is unfrozen."""
    if (frozen.channel, frozen.auth_no) in rental.confirmed_txns:
        return []
    attempt = rental.freezes.get(frozen.out_order_no)
    if attempt is None:
        raise RentalRefused(
            f"no freeze {frozen.out_order_no} on this rental", code="unknown_freeze"
        )
    if attempt.channel != frozen.channel:
        raise RentalRefused(
            f"freeze {frozen.out_order_no} was started for {attempt.channel}",
            code="channel_mismatch",
        )
    reason = "already_paid" if attempt.state != "started" else None
    reason = reason or capture_refusal(rental, frozen.frozen_at, frozen.amount_fen)
    if reason is not None:
        return [
            DuplicateFreezeReleasing(
                rental.rental_id,
                frozen.out_order_no,
                frozen.channel,
                frozen.auth_no,
                frozen.amount_fen,
                frozen.out_request_no,
                reason,
                frozen.at,
            )
        ]
    return [
        DepositFrozen(
            rental.rental_id,
            frozen.out_order_no,
            frozen.channel,
            frozen.auth_no,
            rental.deposit_fen,
            rental.prepaid_fen,
            frozen.frozen_at,
            frozen.at,
            attempt.expires_at,
            convert_by(frozen.frozen_at, attempt.expires_at),
        ),
        VoucherIssued(rental.rental_id, frozen.at),
    ]


def _frozen_hold(rental: Rental) -> Hold:
    hold = rental.hold
    if hold is None or hold.route is not DepositRoute.PREAUTH:
        raise RentalRefused("the deposit is not held by a freeze", code="not_frozen")
    return hold


def decide_convert(rental: Rental, command: ConvertFreeze) -> list[Event]:
    """Convert the whole freeze into a payment, before it lapses."""
    hold = _frozen_hold(rental)
    if not hold.frozen:
        return []  # converted or resolved already: a late timer changes nothing
    assert hold.expires_at is not None
    if command.at >= hold.expires_at:
        raise RentalRefused("the freeze has lapsed at its channel", code="freeze_lapsed")
    conversion = ConversionRecord(command.out_trade_no, hold.amount_fen, 0, True, command.at)
    return [FreezeConverting(rental.rental_id, conversion)]


def decide_confirm_conversion(rental: Rental, command: ConfirmConversion) -> list[Event]:
    """The channel converted frozen funds as asked."""
    conversion = rental.hold.conversion if rental.hold is not None else None
    if conversion is None or conversion.out_trade_no != command.out_trade_no:
        raise RentalRefused(
            f"no conversion {command.out_trade_no} on this rental", code="unknown_payment"
        )
    if conversion.confirmed:
        return []
    if rental.hold.secured_fen == 0:
        raise RentalRefused("the freeze lapsed before it was converted", code="freeze_lapsed")
    if command.amount_fen != conversion.amount_fen:
        raise RentalRefused(
            f"{command.amount_fen} converted where {conversion.amount_fen} was asked",
            code="amount_mismatch",
        )
    return [
        ConversionConfirmed(
            rental.rental_id,
            command.out_trade_no,
            command.channel_txn_id,
            command.amount_fen,
            command.at,
        )
    ]


def decide_confirm_unfreeze(rental: Rental, command: ConfirmUnfreeze) -> list[Event]:
    """The channel unfroze what was asked."""
    unfreeze = rental.unfreezes.get(command.out_request_no)
    if unfreeze is None:
        raise RentalRefused(f"no unfreeze {command.out_request_no}", code="unknown_unfreeze")
    if unfreeze.confirmed:
        return []
    return [UnfreezeConfirmed(rental.rental_id, command.out_request_no, command.at)]


def decide_lapse(rental: Rental, command: ReportLapse) -> list[Event]:
    """The freeze lapsed unconverted: the hold is void; a rental not picked up is cancelled.

    Also when its whole conversion was asked and the channel never made
    it before the timeout (the channel says the freeze lapsed, so nothing
    was converted).
    """
    hold = _frozen_hold(rental)
    if not hold.may_lapse:
        return []  # converted or resolved: the channel's close answers that work
    assert hold.expires_at is not None and hold.out_order_no is not None
    if command.at < hold.expires_at:
        raise RentalRefused("the freeze has not reached its timeout", code="bad_request")
    resolution = Resolution(ResolutionKind.LAPSED, 0, hold.amount_fen, command.at)
    events: list[Event] = [
        FreezeLapsed(rental.rental_id, hold.out_order_no, hold.amount_fen, resolution, command.at)
    ]
    if rental.status is RentalStatus.HELD:
        events.append(
            RentalCancelled(rental.rental_id, hold.channel, "freeze_lapsed", None, command.at)
        )
    return events


def _refund(rental: Rental, out_refund_no: str) -> RefundRecord:
    refund = rental.refunds.get(out_refund_no)
    if refund is None:
        raise RentalRefused(f"no refund {out_refund_no}", code="unknown_refund")
    if refund.awaiting_conversion:
        raise RentalRefused(
            f"refund {out_refund_no} waits for its conversion", code="refund_not_requested"
        )
    return refund


def decide_confirm_refund(rental: Rental, command: ConfirmRefund) -> list[Event]:
    """The channel confirmed a refund."""
    if _refund(rental, command.out_refund_no).confirmed:
        return []
    return [RefundConfirmed(rental.rental_id, command.out_refund_no, command.at)]


def decide_fail_refund(rental: Rental, command: FailRefund) -> list[Event]:
    """The channel refused a refund for good."""
    refund = _refund(rental, command.out_refund_no)
    if refund.failure is not None:
        return []
    if refund.confirmed:
        raise RentalRefused(
            f"refund {command.out_refund_no} was confirmed by the channel", code="refund_settled"
        )
    return [RefundFailed(rental.rental_id, command.out_refund_no, command.failure, command.at)]
