"""What the outside world must hear once a rental's event is committed: :func:`react`.

:func:`react` turns one committed event into the side effects it asks for,
as frozen values the shell carries out; it decides them all, nowhere else
does. Three kinds:

- **asked of the channel while the visitor waits** (not durable): a
  payment to collect (:class:`CollectPayment`: the QR the kiosk shows) or
  a freeze to request (:class:`RequestFreeze`). Lost to a crash, nothing
  was collected; the kiosk asks again.
- **durable** (:data:`DurableEffect`): money work at a channel that must
  happen even if the server dies a moment later: a refund by the route the
  money came (:class:`RequestRentalRefund`), a part of a freeze converted
  into a payment with the rest unfrozen (:class:`ConvertFrozen`), an
  unfreeze (:class:`Unfreeze`), a freeze request of a closed rental
  cancelled (:class:`CancelFreeze`), a QR payment nobody paid closed
  (``ClosePayment``), and the compensation order for charges beyond the
  hold (:class:`OpenCompensationOrder`, created through the order path).
  Storage writes them as outbox rows in the same transaction as the event.
- **after the commit**: pushes (``PushToDevice``, ``PushToRole``, the
  orders' own): ``rental.voucher`` to the visitor's device and every
  rental desk, ``deposit.refunded`` when a release is on its way and again
  when the channel confirms it, ``rental.overdue`` to desks and admins...

The push payloads are built in :mod:`actors.rentals.pushes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import attrs

from actors.orders.effects import ClosePayment, PushToDevice, PushToRole
from actors.rentals.events import (
    ConversionConfirmed,
    DepositForfeited,
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
    RentalExpired,
    RentalExtended,
    RentalOverdue,
    RentalPickedUp,
    RentalSettled,
    UnfreezeConfirmed,
    VoucherIssued,
)
from actors.rentals.pushes import (
    forfeited_data,
    notice_of,
    picked_up_data,
    refunded_data,
    settled_data,
    voucher_data,
)
from actors.rentals.state import (
    NOTIFYING_CHANNELS,
    FreezeRecord,
    PaymentRecord,
    Rental,
    Resolution,
    UnitCharge,
)


@attrs.frozen
class CollectPayment:
    """Ask ``channel`` for a payment of ``amount_fen`` under ``out_trade_no`` (a kiosk's QR).

    The payment stays open until ``expires_at`` (the rental's unpaid hold).
    """

    rental_id: str
    channel: str
    out_trade_no: str
    amount_fen: int
    expires_at: datetime


@attrs.frozen
class RequestFreeze:
    """Ask ``channel`` to freeze ``amount_fen`` of the visitor's funds until ``expires_at``.

    Alipay's fund authorisation: idempotent by ``out_order_no`` +
    ``out_request_no``; the channel answers with its ``auth_no``.
    """

    rental_id: str
    channel: str
    out_order_no: str
    out_request_no: str
    amount_fen: int
    expires_at: datetime


@attrs.frozen
class RequestRentalRefund:
    """Refund ``refund_fen`` of channel transaction ``out_trade_no`` by its channel (durable).

    ``total_fen`` is what the channel collected in that transaction. Asking
    twice is harmless: the channel knows the refund by ``out_refund_no``.
    """

    rental_id: str
    out_refund_no: str
    channel: str
    out_trade_no: str
    refund_fen: int
    total_fen: int
    reason: str
    at: datetime


@attrs.frozen
class ConvertFrozen:
    """Convert ``amount_fen`` of freeze ``auth_no`` into payment ``out_trade_no`` (durable).

    ``unfreeze_rest_fen`` of the freeze is unfrozen by the same call
    (Alipay's ``auth_confirm_mode`` COMPLETE); the payment's number makes
    it idempotent.
    """

    rental_id: str
    channel: str
    auth_no: str
    out_order_no: str
    out_trade_no: str
    amount_fen: int
    unfreeze_rest_fen: int
    at: datetime


@attrs.frozen
class Unfreeze:
    """Unfreeze ``amount_fen`` of freeze ``auth_no`` under ``out_request_no`` (durable)."""

    rental_id: str
    channel: str
    auth_no: str
    out_order_no: str
    out_request_no: str
    amount_fen: int
    reason: str
    at: datetime


@attrs.frozen
class CancelFreeze:
    """Cancel freeze request ``out_order_no`` of a closed rental at its channel (durable).

    A freeze the channel confirms after all is unfrozen whole when its
    confirmation comes.
    """

    rental_id: str
    channel: str
    out_order_no: str
    out_request_no: str
    at: datetime


@attrs.frozen
class OpenCompensationOrder:
    """Open order ``order_id`` for ``amount_fen``, the charges the hold did not cover (durable).

    Created through the normal order path, for the rental's device;
    ``charges`` says what it is for.
    """

    rental_id: str
    order_id: str
    device_id: str
    amount_fen: int
    charges: tuple[UnitCharge, ...]
    at: datetime


#: effects written to the outbox in the event's transaction
DurableEffect = (
    RequestRentalRefund
    | ConvertFrozen
    | Unfreeze
    | CancelFreeze
    | ClosePayment
    | OpenCompensationOrder
)
Effect = DurableEffect | CollectPayment | RequestFreeze | PushToDevice | PushToRole

_DURABLE = (
    RequestRentalRefund,
    ConvertFrozen,
    Unfreeze,
    CancelFreeze,
    ClosePayment,
    OpenCompensationOrder,
)


def react(before: Rental | None, event: Event, after: Rental) -> list[Effect]:
    """The side effects ``event`` asks for, once committed (``before``/``after``: the rental).

    - a payment started by a QR channel: collect it; a freeze started: request it;
    - the voucher issued: ``rental.voucher`` to the visitor's device and every desk;
    - a duplicate payment: its refund, in full; a duplicate freeze: its unfreeze, whole;
    - a cancel or an expiry: open QR payments closed, open freeze requests
      cancelled, the release of a held deposit, ``rental.cancelled`` to desks;
    - a pickup: ``rental.picked_up`` to desks (the voucher is used);
    - a settlement: the release (refund, conversion, unfreeze) with
      ``deposit.refunded`` to the device, ``rental.settled`` with the
      charges, and the compensation order for charges beyond the hold;
    - overdue: ``rental.overdue`` to desks and admins; an extension:
      ``rental.extended`` to desks;
    - a forfeit: its conversion if frozen, ``deposit.forfeited`` to the
      device and admins;
    - a whole conversion asked: :class:`ConvertFrozen`; confirmed: the
      refunds that waited for it are asked, and a rest unfrozen with it is
      confirmed to the device;
    - an unfreeze or a refund confirmed: ``deposit.refunded`` (confirmed);
      a refund refused for good: ``refund.failed`` to admins; a lapse:
      ``deposit.lapsed`` to admins.
    """
    rid = after.rental_id
    if isinstance(event, PaymentStarted):
        if event.channel not in NOTIFYING_CHANNELS:
            return []
        return [
            CollectPayment(
                rid, event.channel, event.out_trade_no, event.amount_fen, after.hold_until
            )
        ]
    if isinstance(event, FreezeStarted):
        return [
            RequestFreeze(
                rid,
                event.channel,
                event.out_order_no,
                event.out_request_no,
                event.amount_fen,
                event.expires_at,
            )
        ]
    if isinstance(event, VoucherIssued):
        data = voucher_data(after)
        notice = {"rental": rid}
        return [
            PushToDevice(after.device_id, "rental.voucher", data, notice),
            PushToRole("rental", "rental.voucher", data),
        ]
    if isinstance(event, DuplicatePaymentRefunding):
        return [_refund_request(after, event.out_refund_no, event.at)]
    if isinstance(event, DuplicateFreezeReleasing):
        return [_unfreeze_request(after, event.out_request_no, event.at)]
    if isinstance(event, RentalCancelled | RentalExpired):
        effects: list[Effect] = [
            ClosePayment(payment.channel, payment.out_trade_no, event.at)
            for payment in payments_to_close(after)
        ]
        effects += [
            CancelFreeze(rid, freeze.channel, freeze.out_order_no, freeze.out_request_no, event.at)
            for freeze in freezes_to_cancel(after)
        ]
        if isinstance(event, RentalCancelled):
            effects += _release(after, event.resolution, event.at)
        effects.append(PushToRole("rental", "rental.cancelled", {"rental": rid}))
        return effects
    if isinstance(event, RentalPickedUp):
        return [PushToRole("rental", "rental.picked_up", picked_up_data(after))]
    if isinstance(event, RentalSettled):
        effects = _release(after, event.resolution, event.at)
        if event.compensation_order_id is not None:
            effects.append(
                OpenCompensationOrder(
                    rid,
                    event.compensation_order_id,
                    after.device_id,
                    event.split.compensation_fen,
                    tuple(c for c in event.charges if c.total_fen),
                    event.at,
                )
            )
        effects.append(
            PushToDevice(after.device_id, "rental.settled", settled_data(after), {"rental": rid})
        )
        return effects
    if isinstance(event, RentalOverdue):
        data = {"rental": rid, "due_at": event.due_at.timestamp(), "units": len(after.units_out)}
        return [
            PushToRole("rental", "rental.overdue", data),
            PushToRole("admin", "rental.overdue", data),
        ]
    if isinstance(event, RentalExtended):
        data = {"rental": rid, "due_at": event.due_at.timestamp(), "reason": event.reason}
        return [PushToRole("rental", "rental.extended", data)]
    if isinstance(event, DepositForfeited):
        effects = _release(after, event.resolution, event.at)
        data = forfeited_data(after)
        effects.append(PushToDevice(after.device_id, "deposit.forfeited", data, {"rental": rid}))
        effects.append(PushToRole("admin", "deposit.forfeited", data))
        return effects
    if isinstance(event, FreezeConverting):
        hold = after.hold
        assert hold is not None and hold.auth_no is not None and hold.out_order_no is not None
        conversion = event.conversion
        return [
            ConvertFrozen(
                rid,
                hold.channel,
                hold.auth_no,
                hold.out_order_no,
                conversion.out_trade_no,
                conversion.amount_fen,
                conversion.unfreeze_rest_fen,
                conversion.at,
            )
        ]
    if isinstance(event, ConversionConfirmed):
        return _after_conversion(before, after, event)
    if isinstance(event, UnfreezeConfirmed):
        unfreeze = after.unfreezes[event.out_request_no]
        data = refunded_data(after, "unfreeze", event.out_request_no, unfreeze.amount_fen, True)
        return [PushToDevice(after.device_id, "deposit.refunded", data, notice_of(data))]
    if isinstance(event, RefundConfirmed):
        refund = after.refunds[event.out_refund_no]
        data = refunded_data(after, "refund", event.out_refund_no, refund.amount_fen, True)
        return [PushToDevice(after.device_id, "deposit.refunded", data, notice_of(data))]
    if isinstance(event, RefundFailed):
        refund = after.refunds[event.out_refund_no]
        data = refunded_data(after, "refund", event.out_refund_no, refund.amount_fen, False)
        failed = {**data, "state": "failed", "failure": event.failure}
        return [PushToRole("admin", "refund.failed", failed)]
    if isinstance(event, FreezeLapsed):
        data = {"rental": rid, "out_order_no": event.out_order_no, "amount_fen": event.amount_fen}
        return [PushToRole("admin", "deposit.lapsed", data)]
    return []


def durable(effects: Iterable[Effect]) -> list[DurableEffect]:
    """The effects of ``effects`` that storage writes to the outbox, in order."""
    return [effect for effect in effects if isinstance(effect, _DURABLE)]


def payments_to_close(rental: Rental) -> list[PaymentRecord]:
    """The QR payments a closed rental closes at their channel: started, never confirmed."""
    return [
        payment
        for payment in rental.payments.values()
        if payment.state == "started" and payment.channel in NOTIFYING_CHANNELS
    ]


def freezes_to_cancel(rental: Rental) -> list[FreezeRecord]:
    """The freeze requests a closed rental cancels at their channel: started, never confirmed."""
    return [freeze for freeze in rental.freezes.values() if freeze.state == "started"]


def _release(rental: Rental, resolution: Resolution | None, at: datetime) -> list[Effect]:
    """The channel work of ``resolution`` and the device's ``deposit.refunded`` (on its way)."""
    if resolution is None:
        return []
    release = resolution.release
    hold = rental.hold
    assert hold is not None
    effects: list[Effect] = []
    told: list[dict[str, Any]] = []
    if release.refund_no is not None:
        refund = rental.refunds[release.refund_no]
        if not refund.awaiting_conversion:
            effects.append(_refund_request(rental, release.refund_no, at))
        told.append(refunded_data(rental, "refund", release.refund_no, release.refund_fen, False))
    if release.convert_trade_no is not None:
        assert hold.auth_no is not None and hold.out_order_no is not None
        effects.append(
            ConvertFrozen(
                rental.rental_id,
                hold.channel,
                hold.auth_no,
                hold.out_order_no,
                release.convert_trade_no,
                release.convert_fen,
                release.unfreeze_rest_fen,
                at,
            )
        )
        if release.unfreeze_rest_fen:
            told.append(
                refunded_data(
                    rental, "unfreeze", release.convert_trade_no, release.unfreeze_rest_fen, False
                )
            )
    if release.unfreeze_request_no is not None:
        effects.append(_unfreeze_request(rental, release.unfreeze_request_no, at))
        told.append(
            refunded_data(
                rental, "unfreeze", release.unfreeze_request_no, release.unfreeze_fen, False
            )
        )
    effects += [
        PushToDevice(rental.device_id, "deposit.refunded", data, notice_of(data)) for data in told
    ]
    return effects


def _after_conversion(
    before: Rental | None, after: Rental, event: ConversionConfirmed
) -> list[Effect]:
    effects: list[Effect] = []
    waiting = {no for no, r in (before.refunds if before else {}).items() if r.awaiting_conversion}
    for out_refund_no in sorted(waiting):
        effects.append(_refund_request(after, out_refund_no, event.at))
    hold = after.hold
    assert hold is not None and hold.conversion is not None
    if hold.conversion.unfreeze_rest_fen:
        data = refunded_data(
            after, "unfreeze", event.out_trade_no, hold.conversion.unfreeze_rest_fen, True
        )
        effects.append(PushToDevice(after.device_id, "deposit.refunded", data, notice_of(data)))
    return effects


def _refund_request(rental: Rental, out_refund_no: str, at: datetime) -> RequestRentalRefund:
    refund = rental.refunds[out_refund_no]
    return RequestRentalRefund(
        rental.rental_id,
        out_refund_no,
        refund.channel,
        refund.out_trade_no,
        refund.amount_fen,
        refund.payment_fen,
        refund.reason,
        at,
    )


def _unfreeze_request(rental: Rental, out_request_no: str, at: datetime) -> Unfreeze:
    unfreeze = rental.unfreezes[out_request_no]
    return Unfreeze(
        rental.rental_id,
        unfreeze.channel,
        unfreeze.auth_no,
        unfreeze.out_order_no,
        out_request_no,
        unfreeze.amount_fen,
        unfreeze.reason,
        at,
    )
