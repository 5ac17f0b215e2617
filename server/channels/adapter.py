"""The interface a payment channel integration implements, and the values it returns.

The server talks to WeChat Pay, Alipay (and, in tests and the load test, the
simulator standing in for them) only through :class:`ChannelAdapter`. The
calls mirror what the real channels offer a merchant: create a scan-to-pay
payment, query it, close it, refund it (idempotent by ``out_refund_no``),
query a refund, verify a notification, fetch a day's statement.

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
    (``None`` until paid): the amount any refund is bounded by.
    """

    out_trade_no: str
    state: str
    amount_fen: int
    channel_txn_id: str | None = None
    paid_at: datetime | None = None
    paid_fen: int | None = None


@attrs.frozen
class RefundStatus:
    """The channel's view of one refund: ``PROCESSING``, ``SUCCESS`` or ``ABNORMAL``."""

    out_refund_no: str
    out_trade_no: str
    state: str
    refund_fen: int
    refund_id: str | None = None
    succeeded_at: datetime | None = None


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

    def verify_notification(self, fields: dict[str, Any]) -> None:
        """Raise :class:`BadSignature` unless ``fields`` is a genuine, fresh notification."""

    async def statement(self, bill_date: date) -> str:
        """The channel's bill for ``bill_date`` (its local date) as CSV text."""
