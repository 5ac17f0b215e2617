"""Alipay's fund authorisation (资金授权) as the simulator keeps it: the rules of one freeze.

A freeze is created for an amount and a timeout (``expires_at``) and waits
for the visitor to authorise it in their app (``INIT``). Authorised, the
amount is frozen in their account (``AUTHORIZED``) and the merchant, with the
``auth_no`` the channel gave it, takes parts of it as payments
(:func:`convert`; ``COMPLETE`` releases the rest at once, ``NOT_COMPLETE``
leaves it frozen) and releases parts of it (:func:`unfreeze`), each
idempotent by its own request number. When nothing is left frozen the freeze
is ``FINISH`` (something was converted) or ``CLOSED`` (nothing was). At
``expires_at`` whatever is still frozen **lapses**: the channel releases it
itself and refuses any later conversion or unfreeze (``auth_expired``). An
unauthorised freeze is ``CLOSED`` at ``expires_at``, or earlier by
:func:`close`.

A :class:`Freeze` is a frozen value and every function here is pure: the
moment (``now``) and fresh ids come in as arguments, so the lapse is
nothing but :func:`status` read at or after ``expires_at``. The books
(which freezes exist, the payments conversions create) are
:class:`~server.channels.simulator.ChannelSimulator`'s.

Freeze notifications are signed like payment ones (:mod:`server.channels.signing`)
over their own fields, :data:`FREEZE_NOTIFICATION_FIELDS`, among them
``kind`` = ``"freeze"``; :func:`verify_notification` checks a notification
of either kind and never lets one pass as the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

from server.channels import signing
from server.channels.adapter import (
    AUTH_CONFIRM_MODES,
    BadSignature,
    ChannelError,
    FreezeConversion,
    FreezeStatus,
    UnfreezeStatus,
)

#: the ``kind`` a freeze notification carries (a payment notification carries none)
FREEZE_KIND = "freeze"
#: the fields every freeze notification carries, all covered by its signature
FREEZE_NOTIFICATION_FIELDS = (
    "kind",
    "channel",
    "out_order_no",
    "out_request_no",
    "auth_no",
    "amount_fen",
    "authorized_at",
    "nonce",
    "sign_ts",
)
#: the kinds of notification :func:`verify_notification` knows
NOTIFICATION_KINDS = ("payment", FREEZE_KIND)


@attrs.frozen
class Freeze:
    """One freeze and everything done to it so far; its amounts are derived (:func:`status`)."""

    out_order_no: str
    out_request_no: str
    amount_fen: int
    description: str
    expires_at: datetime
    qr_payload: str
    auth_no: str | None = None
    authorized_at: datetime | None = None
    #: closed by the merchant before the visitor authorised it
    closed: bool = False
    unfreezes: tuple[UnfreezeStatus, ...] = ()
    conversions: tuple[FreezeConversion, ...] = ()


def status(freeze: Freeze, now: datetime) -> FreezeStatus:
    """What the channel reports for ``freeze`` at ``now``, the lapse included.

    Authorised, ``converted + unfrozen + lapsed + rest == amount`` always, and
    the state is ``FINISH``/``CLOSED`` exactly when ``rest`` is 0.
    """
    if freeze.auth_no is None:
        state = "CLOSED" if freeze.closed or now >= freeze.expires_at else "INIT"
        return FreezeStatus(
            freeze.out_order_no,
            freeze.out_request_no,
            state,
            freeze.amount_fen,
            freeze.expires_at,
        )
    converted = sum(c.amount_fen for c in freeze.conversions)
    unfrozen = sum(u.amount_fen for u in freeze.unfreezes) + sum(
        c.released_fen for c in freeze.conversions
    )
    held = freeze.amount_fen - converted - unfrozen
    lapsed = held if now >= freeze.expires_at else 0
    rest = held - lapsed
    state = "AUTHORIZED" if rest > 0 else "FINISH" if converted > 0 else "CLOSED"
    return FreezeStatus(
        freeze.out_order_no,
        freeze.out_request_no,
        state,
        freeze.amount_fen,
        freeze.expires_at,
        freeze.auth_no,
        freeze.authorized_at,
        rest,
        unfrozen,
        converted,
        lapsed,
    )


def authorize(freeze: Freeze, at: datetime, new_auth_no: Callable[[], str]) -> Freeze:
    """The visitor authorises ``freeze`` at ``at``: its amount is frozen under a fresh
    ``auth_no`` that ``new_auth_no`` makes.

    Raises ``closed`` (closed, or past ``expires_at``) or ``already_authorized``.
    """
    if freeze.auth_no is not None:
        raise ChannelError(
            f"freeze {freeze.out_order_no} is already authorised", code="already_authorized"
        )
    if status(freeze, at).state == "CLOSED":
        raise ChannelError(
            f"freeze {freeze.out_order_no} is closed; it cannot be authorised", code="closed"
        )
    return attrs.evolve(freeze, auth_no=new_auth_no(), authorized_at=at)


def close(freeze: Freeze, now: datetime) -> Freeze:
    """Close ``freeze`` so it can no longer be authorised; closing a closed one is fine.

    Raises ``already_authorized`` when the visitor authorised it (unfreeze it instead).
    """
    state = status(freeze, now).state
    if state == "CLOSED":
        return freeze
    if state != "INIT":
        raise ChannelError(
            f"freeze {freeze.out_order_no} is authorised; unfreeze it instead",
            code="already_authorized",
        )
    return attrs.evolve(freeze, closed=True)


def unfreeze(
    freeze: Freeze, out_request_no: str, amount_fen: int, now: datetime
) -> tuple[Freeze, UnfreezeStatus]:
    """Release ``amount_fen`` of what ``freeze`` still holds, idempotently by ``out_request_no``.

    The same request again returns the recorded unfreeze and changes
    nothing, even after the freeze ended. Raises ``request_no_used`` when
    ``out_request_no`` names another amount or another operation of this
    freeze, ``not_authorized`` before the visitor authorised, ``auth_expired``
    at or after ``expires_at``, ``unfreeze_exceeds_rest`` above the rest,
    ``bad_request`` for an amount below 1 fen.
    """
    for done in freeze.unfreezes:
        if done.out_request_no == out_request_no:
            if done.amount_fen != amount_fen:
                raise ChannelError(
                    f"out_request_no {out_request_no} unfroze {done.amount_fen} fen",
                    code="request_no_used",
                )
            return freeze, done
    if out_request_no == freeze.out_request_no:
        raise ChannelError(
            f"out_request_no {out_request_no} is this freeze's own request number",
            code="request_no_used",
        )
    _require_amount(amount_fen)
    rest = _rest_to_use(freeze, now)
    if amount_fen > rest:
        raise ChannelError(
            f"{amount_fen} fen is more than the {rest} fen still frozen",
            code="unfreeze_exceeds_rest",
        )
    done = UnfreezeStatus(freeze.auth_no, out_request_no, amount_fen, rest - amount_fen, now)
    return attrs.evolve(freeze, unfreezes=(*freeze.unfreezes, done)), done


def convert(
    freeze: Freeze,
    out_trade_no: str,
    amount_fen: int,
    auth_confirm_mode: str,
    now: datetime,
    new_txn_id: Callable[[], str],
) -> tuple[Freeze, FreezeConversion]:
    """Take ``amount_fen`` of what ``freeze`` holds as the payment ``out_trade_no`` at ``now``.

    ``COMPLETE`` releases the whole rest with it; ``NOT_COMPLETE`` leaves the
    rest frozen for later conversions or unfreezes. ``new_txn_id`` makes the
    payment's channel transaction id. (Whether ``out_trade_no`` is free is
    the books' question; a repeat is answered there.) Raises
    ``not_authorized``, ``auth_expired`` (at or after ``expires_at``),
    ``convert_exceeds_rest`` above the rest, ``bad_request`` for an amount
    below 1 fen or an unknown mode.
    """
    if auth_confirm_mode not in AUTH_CONFIRM_MODES:
        raise ChannelError(
            f"auth_confirm_mode must be one of {', '.join(AUTH_CONFIRM_MODES)}",
            code="bad_request",
        )
    _require_amount(amount_fen)
    rest = _rest_to_use(freeze, now)
    if amount_fen > rest:
        raise ChannelError(
            f"{amount_fen} fen is more than the {rest} fen still frozen",
            code="convert_exceeds_rest",
        )
    left = rest - amount_fen
    released = left if auth_confirm_mode == "COMPLETE" else 0
    done = FreezeConversion(
        out_trade_no,
        freeze.auth_no,
        amount_fen,
        new_txn_id(),
        now,
        auth_confirm_mode,
        released,
        left - released,
    )
    return attrs.evolve(freeze, conversions=(*freeze.conversions, done)), done


def notification(freeze: Freeze, channel: str) -> dict[str, Any]:
    """The unsigned notification the channel sends when ``freeze`` is authorised."""
    return {
        "kind": FREEZE_KIND,
        "channel": channel,
        "out_order_no": freeze.out_order_no,
        "out_request_no": freeze.out_request_no,
        "auth_no": freeze.auth_no,
        "amount_fen": freeze.amount_fen,
        "authorized_at": freeze.authorized_at.timestamp(),
    }


def verify_notification(
    fields: Mapping[str, Any], secret: bytes, now_ts: float, kind: str = "payment"
) -> None:
    """Raise :class:`BadSignature` unless ``fields`` is a complete, fresh notification
    of ``kind`` signed by ``secret``.

    A payment notification carries no ``kind`` field and is checked by
    :func:`server.channels.signing.verify`; a freeze notification carries
    ``kind`` = ``"freeze"`` and is checked the same way over
    :data:`FREEZE_NOTIFICATION_FIELDS`. Either signature covers its own field
    list only, and the lists differ (``kind`` is in one), so a genuine
    notification of one kind, with fields added or removed, never verifies as
    the other.
    """
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"kind must be one of {NOTIFICATION_KINDS}, not {kind!r}")
    said = fields.get("kind")
    if kind == "payment":
        if said is not None:
            raise BadSignature(f"a {said!r} notification is not a payment notification")
        signing.verify(fields, secret, now_ts)
        return
    if said != FREEZE_KIND:
        raise BadSignature("the notification is not a freeze notification (kind is not 'freeze')")
    signing.verify(fields, secret, now_ts, FREEZE_NOTIFICATION_FIELDS)


def _rest_to_use(freeze: Freeze, now: datetime) -> int:
    """What is still frozen and may be converted or unfrozen now; refuses otherwise."""
    if freeze.auth_no is None:
        raise ChannelError(f"freeze {freeze.out_order_no} is not authorised", code="not_authorized")
    if now >= freeze.expires_at:
        raise ChannelError(
            f"the authorisation {freeze.auth_no} expired at {freeze.expires_at.isoformat()}",
            code="auth_expired",
        )
    return status(freeze, now).rest_fen


def _require_amount(amount_fen: int) -> None:
    if type(amount_fen) is not int or amount_fen < 1:
        raise ChannelError("amount_fen is missing or out of range", code="bad_request")
