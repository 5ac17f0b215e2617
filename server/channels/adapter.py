"""The interface a payment channel integration implements, and the values it returns.

The server talks to WeChat Pay, Alipay (and, in tests and the load test, the
simulator standing in for them) only through :class:`ChannelAdapter`. The
calls mirror what the real channels offer a merchant: create a scan-to-pay
payment, query it, close it, refund it (idempotent by ``out_refund_no``),
query a refund, verify a notification, fetch a day's statement.

Alipay also offers a **pre-authorisation** (fund authorisation, 资金授权): an
amount the visitor authorises is frozen in their account, and the merchant
later converts part of it into a payment and unfreezes the rest, or
unfreezes all of it; what is still frozen when the authorisation times out
is released by the channel itself (it *lapses*). The freeze calls
(:meth:`ChannelAdapter.create_freeze` and the rest) answer ``not_supported``
on every other channel, a permanent refusal, so the server falls back to
paying and refunding the rest.

Errors a channel reports are :class:`ChannelError` with a stable code
(``already_paid``, ``not_found``, ``refund_exceeds_payment``, ``system_busy``,
...). A call that cannot reach the channel raises :class:`ChannelUnavailable`.
An error is *transient* (:attr:`ChannelError.transient`: the channel could
not serve the call now; the same call later may succeed) or *permanent*
(the channel refused it and will refuse it again): the outbox retries the
first kind with backoff and stops at the second.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Protocol

import attrs

from server.errors import ScenicError

#: codes of answers that mean "not now" (WeChat Pay's SYSTEMERROR and FREQUENCY_LIMITED,
#: Alipay's ACQ.SYSTEM_ERROR): the same call may succeed later
TRANSIENT_CODES = frozenset({"channel_unavailable", "system_busy", "frequency_limited"})

#: a freeze's states, as Alipay spells them: waiting for the visitor to authorise,
#: something frozen, nothing frozen any more after a conversion, nothing frozen and
#: nothing converted (never authorised, or all of it unfrozen or lapsed)
FREEZE_STATES = ("INIT", "AUTHORIZED", "FINISH", "CLOSED")
#: what a conversion does with the rest: release it at once, or leave it frozen
AUTH_CONFIRM_MODES = ("COMPLETE", "NOT_COMPLETE")
#: the longest a freeze may be authorised for at Alipay, from its creation
MAX_FREEZE_DAYS = 30


class ChannelError(ScenicError):
    """The channel refused a request; ``code`` says why."""

    @property
    def transient(self) -> bool:
        """True when the channel could not serve the call now and it may be tried again."""
        return self.code in TRANSIENT_CODES


class ChannelUnavailable(ChannelError):
    """The channel could not be reached or timed out; try again later."""

    code = "channel_unavailable"


class BadSignature(ScenicError):
    """A notification whose signature, timestamp or fields do not verify."""

    code = "bad_signature"


@attrs.frozen
class CreatedPayment:
    """A payment the channel now expects: what the kiosk shows as a QR code."""

    out_trade_no: str
    amount_fen: int
    qr_payload: str


@attrs.frozen
class PaymentStatus:
    """The channel's view of one payment (``state`` as the channels spell it).

    ``NOTPAY`` (waiting), ``SUCCESS`` (paid), ``CLOSED`` (closed unpaid),
    ``REFUND`` (paid, then refunded in part or whole). ``amount_fen`` is what
    the payment was created for; ``paid_fen`` what the channel collected
    (``None`` until paid): the amount any refund is bounded by. ``payer`` is
    the channel's identifier of who paid (WeChat Pay's ``payer.openid``,
    Alipay's ``buyer_user_id``; ``None`` until paid): personal data, shown
    only through :func:`server.payer_mask.mask_payer` and never stored.
    """

    out_trade_no: str
    state: str
    amount_fen: int
    channel_txn_id: str | None = None
    paid_at: datetime | None = None
    paid_fen: int | None = None
    payer: str | None = None


@attrs.frozen
class RefundStatus:
    """The channel's view of one refund: ``PROCESSING``, ``SUCCESS`` or ``ABNORMAL``."""

    out_refund_no: str
    out_trade_no: str
    state: str
    refund_fen: int
    refund_id: str | None = None
    succeeded_at: datetime | None = None


@attrs.frozen
class CreatedFreeze:
    """A freeze the channel now expects the visitor to authorise: the QR code to show.

    ``expires_at`` is when the authorisation times out: unauthorised by then,
    the freeze is closed; authorised, what is still frozen then lapses.
    """

    out_order_no: str
    out_request_no: str
    amount_fen: int
    qr_payload: str
    expires_at: datetime


@attrs.frozen
class FreezeStatus:
    """The channel's view of one freeze (``state`` one of :data:`FREEZE_STATES`).

    ``amount_fen`` is what the freeze was created for; once authorised it
    splits, at every moment, into ``rest_fen`` (still frozen),
    ``converted_fen`` (taken as payments), ``unfrozen_fen`` (released by the
    merchant, including what a ``COMPLETE`` conversion released) and
    ``lapsed_fen`` (released by the channel at ``expires_at``). Before the
    visitor authorises, nothing is frozen (``rest_fen`` 0, ``auth_no`` and
    ``authorized_at`` ``None``). An authorised freeze is ``FINISH`` or
    ``CLOSED`` exactly when ``rest_fen`` is 0: ``FINISH`` if something was
    converted, ``CLOSED`` if not.
    """

    out_order_no: str
    out_request_no: str
    state: str
    amount_fen: int
    expires_at: datetime
    auth_no: str | None = None
    authorized_at: datetime | None = None
    rest_fen: int = 0
    unfrozen_fen: int = 0
    converted_fen: int = 0
    lapsed_fen: int = 0


@attrs.frozen
class UnfreezeStatus:
    """One unfreeze of a freeze: ``amount_fen`` released at ``unfrozen_at``,
    ``rest_fen`` still frozen right after it."""

    auth_no: str
    out_request_no: str
    amount_fen: int
    rest_fen: int
    unfrozen_at: datetime


@attrs.frozen
class FreezeConversion:
    """A part of a freeze taken as a payment (Alipay's ``trade.pay`` with ``auth_no``).

    The payment ``out_trade_no`` is then an ordinary paid payment of
    ``amount_fen`` at the channel (``channel_txn_id``, ``paid_at``): queried,
    refunded and billed like any other. ``released_fen`` is what the
    conversion unfroze at once (the whole rest for ``COMPLETE``, 0 for
    ``NOT_COMPLETE``), ``rest_fen`` what was still frozen right after it.
    """

    out_trade_no: str
    auth_no: str
    amount_fen: int
    channel_txn_id: str
    paid_at: datetime
    auth_confirm_mode: str
    released_fen: int
    rest_fen: int


class ChannelAdapter(Protocol):
    """What the server needs of one payment channel."""

    name: str

    async def create_payment(
        self, out_trade_no: str, amount_fen: int, description: str, expires_at: datetime
    ) -> CreatedPayment:
        """Register a payment and return the QR payload to show; idempotent by out_trade_no."""

    async def query_payment(self, out_trade_no: str) -> PaymentStatus:
        """The payment's state at the channel; ``not_found`` if never created."""

    async def close_payment(self, out_trade_no: str) -> None:
        """Close an unpaid payment so it can no longer be paid; ``already_paid`` if paid."""

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
    ) -> RefundStatus:
        """Refund ``refund_fen`` of a paid payment; asking again with the same
        ``out_refund_no`` returns the same refund, never a second one."""

    async def query_refund(self, out_refund_no: str) -> RefundStatus:
        """The refund's state; ``not_found`` if never requested."""

    def verify_notification(self, fields: dict[str, Any], kind: str = "payment") -> None:
        """Raise :class:`BadSignature` unless ``fields`` is a genuine, fresh notification
        of ``kind``: ``"payment"`` (no ``kind`` field) or ``"freeze"`` (a signed
        ``kind`` field saying so). One kind never verifies as the other."""

    async def statement(self, bill_date: date) -> bytes:
        """The channel's bill for ``bill_date`` (its local date): the file's bytes, in the
        layout of :mod:`server.channels.statement`."""

    # -- pre-authorisation (Alipay's fund authorisation; ``not_supported`` elsewhere) ----

    async def create_freeze(
        self,
        out_order_no: str,
        out_request_no: str,
        amount_fen: int,
        description: str,
        expires_at: datetime,
    ) -> CreatedFreeze:
        """Register a freeze for the visitor to authorise and return its QR payload;
        idempotent by (``out_order_no``, ``out_request_no``). ``expires_at`` may be at
        most :data:`MAX_FREEZE_DAYS` days away (``expires_too_late``)."""

    async def query_freeze(self, out_order_no: str, out_request_no: str) -> FreezeStatus:
        """The freeze's state and amounts at the channel; ``not_found`` if never created."""

    async def close_freeze(self, out_order_no: str, out_request_no: str) -> None:
        """Close a freeze not yet authorised so it can no longer be;
        ``already_authorized`` if the visitor beat us to it."""

    async def unfreeze(
        self, auth_no: str, out_request_no: str, amount_fen: int, reason: str
    ) -> UnfreezeStatus:
        """Release ``amount_fen`` of what is still frozen; idempotent by ``out_request_no``;
        never more than the rest (``unfreeze_exceeds_rest``)."""

    async def convert_to_payment(
        self,
        auth_no: str,
        out_trade_no: str,
        amount_fen: int,
        description: str,
        auth_confirm_mode: str = "COMPLETE",
    ) -> FreezeConversion:
        """Take ``amount_fen`` of what is still frozen as the payment ``out_trade_no``
        (``COMPLETE`` releases the rest at once); idempotent by ``out_trade_no``;
        ``auth_expired`` once the authorisation timed out."""
