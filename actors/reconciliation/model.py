"""The facts reconciliation compares, and the differences it finds.

Amounts are integer fen, times aware UTC datetimes. A *line* is a bill's row
(or, where a channel publishes no bill, what its query API answers); the
*books* are what this server recorded: confirmations of money collected,
payments it started, refunds it asked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta

import attrs


class Kind(enum.StrEnum):
    """The classes of difference, as stored and shown."""

    #: the channel collected (or refunded) money this server has no record of
    UNKNOWN_HERE = "unknown_here"
    #: recorded here as collected (or refunded) but not on the channel's bill
    MISSING_AT_CHANNEL = "missing_at_channel"
    #: both sides know the transaction, with different amounts
    AMOUNT_MISMATCH = "amount_mismatch"
    #: a refund pending here and done at the channel, or failed at one side only
    STATUS_MISMATCH = "status_mismatch"
    #: one order or rental collected more than once and not given back, or a line billed twice
    DUPLICATE_COLLECTION = "duplicate_collection"
    #: the channel's fee is not its rate applied to the amount
    FEE_MISMATCH = "fee_mismatch"


@attrs.frozen
class Owner:
    """Whose money it is: an ``order`` or a ``rental``, by id."""

    kind: str = attrs.field(validator=attrs.validators.in_(("order", "rental")))
    id: str


@attrs.frozen
class Line:
    """One payment or refund as the channel reports it.

    ``fee_fen`` (positive for both kinds) and ``rate_bp`` are ``None`` when
    the source states none (a query answer; Alipay's bill states no rate).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(("payment", "refund")))
    out_trade_no: str
    channel_txn_id: str
    out_refund_no: str | None
    amount_fen: int
    at: datetime
    fee_fen: int | None = None
    rate_bp: int | None = None


@attrs.frozen
class Collection:
    """Money a channel confirmed here for an owner (a payment confirmation)."""

    out_trade_no: str
    channel_txn_id: str
    amount_fen: int
    at: datetime
    owner: Owner
    #: some refund was asked of this collection (a duplicate's, a staff refund...)
    refunded: bool = False


@attrs.frozen
class Started:
    """A payment this server started (and so may attach when the channel collected it)."""

    out_trade_no: str
    owner: Owner


@attrs.frozen
class Refund:
    """A refund this server asked. ``confirmed_at`` / ``failed`` say what it heard back."""

    out_refund_no: str
    out_trade_no: str
    amount_fen: int
    requested_at: datetime
    owner: Owner
    confirmed_at: datetime | None = None
    failed: bool = False

    @property
    def pending(self) -> bool:
        """Asked, and neither confirmed nor failed yet."""
        return self.confirmed_at is None and not self.failed


@attrs.frozen
class RefundAtChannel:
    """A refund's state by the channel's query: ``SUCCESS``, ``PROCESSING`` or a failure."""

    state: str
    at: datetime | None = None


@attrs.frozen
class Books:
    """What this server recorded for one channel around one business date."""

    collections: tuple[Collection, ...] = ()
    started: Mapping[str, Started] = attrs.field(factory=dict)
    refunds: tuple[Refund, ...] = ()
    #: what the channel's query says of pending refunds, by ``out_refund_no``
    refund_states: Mapping[str, RefundAtChannel] = attrs.field(factory=dict)


@attrs.frozen
class Day:
    """The business date's bounds (its local midnight to the next, as UTC) and the policy.

    ``scratch``: a record this close to a midnight may sit on the neighbouring
    day's bill. ``rate_bp``: the fee rate agreed with the channel.
    """

    start: datetime
    end: datetime
    scratch: timedelta
    rate_bp: int


@attrs.frozen
class AttachCollection:
    """Fix: confirm the collection through the owner's actor, as a notification would."""

    owner: Owner
    out_trade_no: str
    channel_txn_id: str
    amount_fen: int
    paid_at: datetime


@attrs.frozen
class ConfirmRefund:
    """Fix: tell the owner's actor the channel did the refund, as the outbox would."""

    owner: Owner
    out_refund_no: str
    at: datetime


Fix = AttachCollection | ConfirmRefund


@attrs.frozen
class Difference:
    """One difference: its class, a stable key, both sides' amounts and how it is settled.

    ``fix`` is what makes it right (``None``: a person decides, from
    ``detail`` and the fields). ``waiting``: a record near midnight whose
    neighbouring bill is not in yet; not a difference until it is.
    """

    kind: Kind
    key: str
    detail: str
    out_trade_no: str | None = None
    channel_txn_id: str | None = None
    out_refund_no: str | None = None
    local_fen: int | None = None
    channel_fen: int | None = None
    owner: Owner | None = None
    fix: Fix | None = None
    waiting: bool = False
