"""The payment channels' side, simulated in memory: their books and their rules.

:class:`ChannelSimulator` keeps one channel's ledger of payments and refunds
and answers the merchant API the way WeChat Pay and Alipay do (idempotent
creation, close, refunds idempotent by ``out_refund_no`` and never above the
paid amount, daily bills). Its visitor side, :meth:`ChannelSimulator.pay`,
is what a phone scanning the QR code does: the payment becomes paid and the
channel produces the notification it will send to the merchant. What a
notification says is what the channel collected and what its query reports.

Alipay's simulator also keeps fund authorisations (freezes; the rules of one
are :mod:`server.channels.fund_auth`): :meth:`ChannelSimulator.create_freeze`,
the visitor's :meth:`ChannelSimulator.authorize_freeze`, query, close,
unfreeze, and conversion into a payment, which then is an ordinary paid
payment of these books. WeChat Pay's answers every freeze call
``not_supported``.

Faults can be injected into the merchant API (:meth:`ChannelSimulator.inject_fault`):
the next calls of an op answer ``system_busy`` (a transient refusal, as
WeChat Pay's SYSTEMERROR), or are held for a while before they are served
(a slow channel; the async layers above do the waiting).

:class:`SimulatedChannel` is a :class:`~server.channels.adapter.ChannelAdapter`
over a simulator in the same process; :class:`CounterChannel` stands for cash
and bank card, which a cashier confirms and which send no notifications.

Nothing here sleeps or does I/O; time comes from the ``clock`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

import attrs
import trio

from actors.channels import COUNTER_CHANNELS, QR_CHANNELS, Channel
from server.channels import fund_auth
from server.channels.adapter import (
    MAX_FREEZE_DAYS,
    BadSignature,
    ChannelError,
    CreatedFreeze,
    CreatedPayment,
    FreezeConversion,
    FreezeStatus,
    PaymentStatus,
    RefundStatus,
    UnfreezeStatus,
)
from server.channels.fund_auth import Freeze
from server.channels.statement import (
    FEE_RATE_BP,
    StatementRow,
    fee_fen,
    local_date,
    write_statement,
)

Clock = Callable[[], datetime]
REFUND_MODES = ("instant", "processing")
#: the merchant API's freeze calls (Alipay's fund authorisation)
PREAUTH_OPS = (
    "create_freeze",
    "query_freeze",
    "close_freeze",
    "unfreeze",
    "convert_to_payment",
)
#: the merchant API's calls, the ones faults can be injected into
MERCHANT_OPS = (
    "create_payment",
    "query_payment",
    "close_payment",
    "refund",
    "query_refund",
    "statement",
    *PREAUTH_OPS,
)
#: the channels that offer a pre-authorisation
PREAUTH_CHANNELS = (Channel.ALIPAY,)
#: how long a freeze may be authorised for, by default: Alipay's maximum
MAX_FREEZE = timedelta(days=MAX_FREEZE_DAYS)
#: what an injected fault does to a call
FAULTS = ("system_busy", "stall", "no_bill")


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime (the default clock)."""
    return datetime.now(UTC)


@attrs.define
class _Payment:
    out_trade_no: str
    amount_fen: int
    description: str
    expires_at: datetime
    qr_payload: str
    state: str = "NOTPAY"
    channel_txn_id: str | None = None
    paid_at: datetime | None = None
    #: what the visitor paid: the amount notified, queried, refundable and billed
    paid_fen: int | None = None
    #: who paid, as the channel names them (an openid, an Alipay buyer id)
    payer: str | None = None


@attrs.define
class _Fault:
    remaining: int
    stall_s: float


@attrs.define
class _Refund:
    out_refund_no: str
    out_trade_no: str
    refund_fen: int
    refund_id: str
    state: str
    due_at: datetime


class ChannelSimulator:
    """One channel's books (``wechat`` or ``alipay``), kept in memory.

    ``refund_mode`` ``"instant"`` makes every refund succeed at once;
    ``"processing"`` answers ``PROCESSING`` first and reports ``SUCCESS`` to a
    query or a repeated request once ``processing_s`` seconds of clock time
    have passed, as real refunds to bank cards do. ``max_freeze`` bounds a
    freeze's ``expires_at`` from its creation (Alipay's 30 days by default).
    Every refusal is a :class:`~server.channels.adapter.ChannelError` with a
    stable code.
    """

    def __init__(
        self,
        name: str,
        secret: bytes,
        clock: Clock = utc_now,
        *,
        refund_mode: str = "instant",
        processing_s: float = 5.0,
        rng: random.Random | None = None,
        max_freeze: timedelta = MAX_FREEZE,
    ) -> None:
        if name not in QR_CHANNELS:
            raise ValueError(f"no simulator for channel {name!r}; QR channels: {QR_CHANNELS}")
        if refund_mode not in REFUND_MODES:
            raise ValueError(f"refund_mode must be one of {REFUND_MODES}, not {refund_mode!r}")
        if max_freeze <= timedelta(0):
            raise ValueError(f"max_freeze must be positive, not {max_freeze}")
        self.name = name
        self.secret = secret
        self.clock = clock
        self.refund_mode = refund_mode
        self.processing_s = processing_s
        self._rng = rng or random.Random()
        self._payments: dict[str, _Payment] = {}
        self._refunds: dict[str, _Refund] = {}
        self._issued_ids: set[str] = set()
        self._faults: dict[tuple[str, str], _Fault] = {}
        self.max_freeze = max_freeze
        #: freezes by out_order_no, and the indexes of auth_no and conversions to them
        self._freezes: dict[str, Freeze] = {}
        self._order_of_auth: dict[str, str] = {}
        self._order_of_conversion: dict[str, str] = {}

    # -- faults ----------------------------------------------------------------------

    def inject_fault(self, op: str, fault: str, count: int = 1, stall_s: float = 0.0) -> None:
        """Make the next ``count`` calls of merchant op ``op`` misbehave.

        ``fault`` ``"system_busy"``: the call is refused with the transient
        code ``system_busy`` and changes nothing. ``"stall"``: the call is
        served only after ``stall_s`` seconds (the async layer that serves it
        waits; see :meth:`take_stall`). Each (op, fault) pair counts down on
        its own, so a call may both stall and then be refused. ``"no_bill"``
        (``statement`` only): the channel answers that it has no bill for the
        date, the permanent code ``no_bill``. Injecting again
        adds to the count (the latest ``stall_s`` applies). Raises
        ``bad_request`` for an unknown op or fault, a count outside 1..10000
        or a stall outside 0..3600 s, ``not_supported`` for a freeze op of a
        channel without freezes.
        """
        _require(op in MERCHANT_OPS, "op")
        if op in PREAUTH_OPS:
            self._offers_preauth()
        _require(fault in FAULTS, "fault")
        _require(fault != "no_bill" or op == "statement", "fault")
        _require(type(count) is int and 1 <= count <= 10_000, "count")
        _require(type(stall_s) in (int, float) and 0 <= stall_s <= 3600, "stall_s")
        due = self._faults.setdefault((op, fault), _Fault(0, 0.0))
        due.remaining += count
        due.stall_s = float(stall_s)

    def take_stall(self, op: str) -> float:
        """Seconds the next call of ``op`` must wait before it is served (0: none); uses it up."""
        due = self._due(op, "stall")
        return 0.0 if due is None else due.stall_s

    def _due(self, op: str, fault: str) -> _Fault | None:
        due = self._faults.get((op, fault))
        if due is None or due.remaining == 0:
            return None
        due.remaining -= 1
        return due

    def _serve(self, op: str) -> None:
        """Refuse this call of ``op`` when a ``system_busy`` fault is due."""
        if self._due(op, "system_busy") is not None:
            raise ChannelError(f"{self.name} is busy; try again later", code="system_busy")
        if op == "statement" and self._due(op, "no_bill") is not None:
            raise ChannelError(f"{self.name} has no bill for this date", code="no_bill")

    # -- merchant API ----------------------------------------------------------------

    def create_payment(
        self, out_trade_no: str, amount_fen: int, description: str, expires_at: datetime
    ) -> CreatedPayment:
        """Register a scan-to-pay payment and return its QR payload.

        Asking again for the same ``out_trade_no`` and amount returns the same
        payment. Raises ``out_trade_no_used`` for another amount, ``already_paid``
        or ``closed`` when the payment is past waiting, ``bad_request`` for a
        non-positive amount or an empty ``out_trade_no``.
        """
        self._serve("create_payment")
        _require(isinstance(out_trade_no, str) and 0 < len(out_trade_no) <= 64, "out_trade_no")
        _require(type(amount_fen) is int and amount_fen > 0, "amount_fen")
        existing = self._payments.get(out_trade_no)
        if existing is not None:
            if existing.amount_fen != amount_fen:
                raise ChannelError(
                    f"out_trade_no {out_trade_no} was created for {existing.amount_fen} fen",
                    code="out_trade_no_used",
                )
            state = self._state(existing)
            if state in ("SUCCESS", "REFUND"):
                raise ChannelError(f"{out_trade_no} is already paid", code="already_paid")
            if state == "CLOSED":
                raise ChannelError(f"{out_trade_no} is closed", code="closed")
            return CreatedPayment(out_trade_no, amount_fen, existing.qr_payload)
        token = self._new_id(self._token_candidate)
        if self.name == "wechat":
            qr_payload = f"weixin://wxpay/bizpayurl?pr={token}"
        else:
            qr_payload = f"https://qr.alipay.com/{token}"
        self._payments[out_trade_no] = _Payment(
            out_trade_no, amount_fen, description, expires_at, qr_payload
        )
        return CreatedPayment(out_trade_no, amount_fen, qr_payload)

    def query_payment(self, out_trade_no: str) -> PaymentStatus:
        """The payment's state; raises ``not_found`` if it was never created.

        An unpaid payment past its ``expires_at`` reports ``CLOSED``;
        ``paid_fen`` is what the visitor paid.
        """
        self._serve("query_payment")
        payment = self._payment(out_trade_no)
        return PaymentStatus(
            out_trade_no,
            self._state(payment),
            payment.amount_fen,
            payment.channel_txn_id,
            payment.paid_at,
            payment.paid_fen,
            payment.payer,
        )

    def close_payment(self, out_trade_no: str) -> None:
        """Close an unpaid payment so it can no longer be paid; closing twice is fine.

        Raises ``not_found`` for an unknown payment, ``already_paid`` for a paid one.
        """
        self._serve("close_payment")
        payment = self._payment(out_trade_no)
        if payment.state in ("SUCCESS", "REFUND"):
            raise ChannelError(f"{out_trade_no} is already paid", code="already_paid")
        payment.state = "CLOSED"

    def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
    ) -> RefundStatus:
        """Refund ``refund_fen`` of a paid payment, idempotently by ``out_refund_no``.

        The same request again returns the same refund (advanced to ``SUCCESS``
        if its processing time has passed). Raises ``refund_no_used`` when
        ``out_refund_no`` names a refund of another payment or amount,
        ``not_found``/``not_paid`` for an unknown or unpaid payment,
        ``amount_mismatch`` when ``total_fen`` is not what the visitor paid,
        ``refund_exceeds_payment`` when the refunds would exceed it.
        """
        self._serve("refund")
        existing = self._refunds.get(out_refund_no)
        if existing is not None:
            if existing.out_trade_no != out_trade_no or existing.refund_fen != refund_fen:
                raise ChannelError(
                    f"out_refund_no {out_refund_no} was used for {existing.refund_fen} fen "
                    f"of {existing.out_trade_no}",
                    code="refund_no_used",
                )
            return self._refund_status(existing)
        _require(isinstance(out_refund_no, str) and 0 < len(out_refund_no) <= 64, "out_refund_no")
        _require(type(refund_fen) is int and refund_fen > 0, "refund_fen")
        payment = self._payment(out_trade_no)
        if payment.state not in ("SUCCESS", "REFUND"):
            raise ChannelError(f"{out_trade_no} is not paid", code="not_paid")
        if total_fen != payment.paid_fen:
            raise ChannelError(
                f"total_fen {total_fen} is not the paid {payment.paid_fen} fen",
                code="amount_mismatch",
            )
        refunded = sum(
            r.refund_fen for r in self._refunds.values() if r.out_trade_no == out_trade_no
        )
        if refunded + refund_fen > payment.paid_fen:
            raise ChannelError(
                f"{refund_fen} fen more would refund {refunded + refund_fen} of "
                f"{payment.paid_fen} fen",
                code="refund_exceeds_payment",
            )
        now = self.clock()
        instant = self.refund_mode == "instant"
        refund = _Refund(
            out_refund_no,
            out_trade_no,
            refund_fen,
            self._new_id(self._refund_id_candidate),
            "SUCCESS" if instant else "PROCESSING",
            now if instant else now + timedelta(seconds=self.processing_s),
        )
        self._refunds[out_refund_no] = refund
        payment.state = "REFUND"
        return self._refund_status(refund)

    def query_refund(self, out_refund_no: str) -> RefundStatus:
        """The refund's state; raises ``not_found`` if it was never requested."""
        self._serve("query_refund")
        refund = self._refunds.get(out_refund_no)
        if refund is None:
            raise ChannelError(f"no refund {out_refund_no}", code="not_found")
        return self._refund_status(refund)

    def statement(self, bill_date: date) -> bytes:
        """The bill of ``bill_date`` (Asia/Shanghai): payments paid and refunds
        succeeded on that date, in time order, in this channel's layout (the
        file's bytes: WeChat's text, Alipay's zip)."""
        self._serve("statement")
        rows = [
            StatementRow(
                "payment",
                p.out_trade_no,
                p.channel_txn_id,
                None,
                p.paid_fen,
                p.paid_at.replace(microsecond=0),
                fee_fen(p.paid_fen),
                rate_bp=self._bill_rate,
            )
            for p in self._payments.values()
            if p.paid_at is not None and local_date(p.paid_at) == bill_date
        ]
        for refund in self._refunds.values():
            status = self._refund_status(refund)
            if status.state != "SUCCESS" or local_date(status.succeeded_at) != bill_date:
                continue
            rows.append(
                StatementRow(
                    "refund",
                    refund.out_trade_no,
                    self._payments[refund.out_trade_no].channel_txn_id,
                    refund.out_refund_no,
                    refund.refund_fen,
                    status.succeeded_at.replace(microsecond=0),
                    fee_fen(refund.refund_fen),
                    refund.refund_id if self.name == "wechat" else None,
                    self._bill_rate,
                )
            )
        rows.sort(key=lambda row: (row.at, row.kind, row.out_trade_no, row.out_refund_no or ""))
        return write_statement(self.name, rows, bill_date)

    @property
    def _bill_rate(self) -> int | None:
        """The rate a bill states on each row: WeChat's 费率 column; Alipay's bill has none."""
        return FEE_RATE_BP if self.name == "wechat" else None

    # -- merchant API: pre-authorisation (Alipay's fund authorisation) ---------------

    def create_freeze(
        self,
        out_order_no: str,
        out_request_no: str,
        amount_fen: int,
        description: str,
        expires_at: datetime,
    ) -> CreatedFreeze:
        """Register a freeze for the visitor to authorise and return its QR payload.

        Asking again with the same ``out_order_no``, ``out_request_no`` and
        amount returns the same freeze while it waits. Raises
        ``not_supported`` (no freezes at this channel), ``request_no_used``
        for the same numbers and another amount, ``out_order_no_used`` for
        the same ``out_order_no`` and another ``out_request_no``,
        ``already_authorized`` or ``closed`` when the freeze is past waiting,
        ``expires_too_late`` for an ``expires_at`` more than
        :attr:`max_freeze` from now, ``bad_request`` for an empty or long
        number, an amount below 1 fen, or an ``expires_at`` that is naive or
        not in the future.
        """
        self._offers_preauth()
        self._serve("create_freeze")
        _require(_is_number(out_order_no), "out_order_no")
        _require(_is_number(out_request_no), "out_request_no")
        _require(type(amount_fen) is int and amount_fen > 0, "amount_fen")
        existing = self._freezes.get(out_order_no)
        if existing is not None:
            return self._created_again(existing, out_request_no, amount_fen)
        now = self.clock()
        _require(isinstance(expires_at, datetime) and expires_at.tzinfo is not None, "expires_at")
        _require(expires_at > now, "expires_at")
        if expires_at > now + self.max_freeze:
            raise ChannelError(
                f"expires_at {expires_at.isoformat()} is more than {self.max_freeze.days} days "
                f"away; {self.name} authorises a freeze for at most {self.max_freeze}",
                code="expires_too_late",
            )
        freeze = Freeze(
            out_order_no,
            out_request_no,
            amount_fen,
            description,
            expires_at,
            f"https://qr.alipay.com/{self._new_id(self._token_candidate)}",
        )
        self._freezes[out_order_no] = freeze
        return _created(freeze)

    def query_freeze(self, out_order_no: str, out_request_no: str) -> FreezeStatus:
        """The freeze's state and amounts now, a lapse included (see
        :func:`server.channels.fund_auth.status`). Raises ``not_supported``,
        ``not_found`` (no such freeze under these numbers)."""
        self._offers_preauth()
        self._serve("query_freeze")
        return fund_auth.status(self._freeze(out_order_no, out_request_no), self.clock())

    def close_freeze(self, out_order_no: str, out_request_no: str) -> None:
        """Close a freeze not yet authorised so it can no longer be; closing twice is fine.

        Raises ``not_supported``, ``not_found``, ``already_authorized``.
        """
        self._offers_preauth()
        self._serve("close_freeze")
        freeze = self._freeze(out_order_no, out_request_no)
        self._freezes[out_order_no] = fund_auth.close(freeze, self.clock())

    def unfreeze(
        self, auth_no: str, out_request_no: str, amount_fen: int, reason: str
    ) -> UnfreezeStatus:
        """Release ``amount_fen`` of what the authorisation ``auth_no`` still holds.

        Idempotent by ``out_request_no`` (within the authorisation). Raises
        ``not_supported``, ``not_found`` (no such ``auth_no``),
        ``request_no_used``, ``auth_expired``, ``unfreeze_exceeds_rest``,
        ``bad_request`` (see :func:`server.channels.fund_auth.unfreeze`).
        """
        self._offers_preauth()
        self._serve("unfreeze")
        _require(_is_number(out_request_no), "out_request_no")
        freeze = self._authorised(auth_no)
        freeze, done = fund_auth.unfreeze(freeze, out_request_no, amount_fen, self.clock())
        self._freezes[freeze.out_order_no] = freeze
        return done

    def convert_to_payment(
        self,
        auth_no: str,
        out_trade_no: str,
        amount_fen: int,
        description: str,
        auth_confirm_mode: str = "COMPLETE",
    ) -> FreezeConversion:
        """Take ``amount_fen`` of the authorisation ``auth_no`` as the payment ``out_trade_no``.

        The payment is then paid at once, as any other: ``query_payment``
        shows it ``SUCCESS`` with ``paid_fen`` = ``amount_fen``, ``refund``
        refunds it, the day's statement bills it. ``COMPLETE`` releases the
        rest of the freeze with it, ``NOT_COMPLETE`` leaves it frozen. The
        same ``out_trade_no``, authorisation and amount again returns the
        same conversion. Raises ``not_supported``, ``not_found``,
        ``out_trade_no_used`` (a number used by another payment or
        conversion), ``not_authorized``, ``auth_expired``,
        ``convert_exceeds_rest``, ``bad_request``.
        """
        self._offers_preauth()
        self._serve("convert_to_payment")
        order_no = self._order_of_conversion.get(out_trade_no)
        if order_no is not None:
            done = next(
                c for c in self._freezes[order_no].conversions if c.out_trade_no == out_trade_no
            )
            if done.auth_no != auth_no or done.amount_fen != amount_fen:
                raise ChannelError(
                    f"out_trade_no {out_trade_no} took {done.amount_fen} fen of {done.auth_no}",
                    code="out_trade_no_used",
                )
            return done
        if out_trade_no in self._payments:
            raise ChannelError(
                f"out_trade_no {out_trade_no} is another payment's", code="out_trade_no_used"
            )
        _require(_is_number(out_trade_no), "out_trade_no")
        freeze = self._authorised(auth_no)
        now = self.clock()
        freeze, done = fund_auth.convert(
            freeze,
            out_trade_no,
            amount_fen,
            auth_confirm_mode,
            now,
            lambda: self._new_id(lambda: self._txn_id_candidate(now)),
        )
        self._freezes[freeze.out_order_no] = freeze
        self._order_of_conversion[out_trade_no] = freeze.out_order_no
        self._payments[out_trade_no] = _Payment(
            out_trade_no,
            amount_fen,
            description,
            now,
            "",
            "SUCCESS",
            done.channel_txn_id,
            now,
            amount_fen,
        )
        return done

    # -- visitor side ----------------------------------------------------------------

    def pay(
        self,
        out_trade_no: str,
        *,
        amount_fen: int | None = None,
        at: datetime | None = None,
        payer: str | None = None,
    ) -> dict[str, Any]:
        """A visitor pays: the payment becomes paid; returns the unsigned notification.

        The notification fields are ``channel``, ``out_trade_no``,
        ``channel_txn_id`` (fresh), ``amount_fen`` (what was paid) and
        ``paid_at`` (epoch seconds). ``amount_fen`` makes the visitor pay
        another amount than the payment asked for (a wrong-amount payment):
        the channel collects it, notifies it, reports it to queries and bounds
        refunds by it. The payer (a fresh openid or Alipay buyer id, or
        ``payer``) is reported to queries only, as the real channels' query
        answers carry it. Raises ``not_found``, ``closed`` (closed or expired),
        ``already_paid`` or ``bad_request`` (an amount below 1 fen).
        """
        payment = self._payment(out_trade_no)
        at = at or self.clock()
        state = self._state(payment, at)
        if state == "CLOSED":
            raise ChannelError(f"{out_trade_no} is closed; it cannot be paid", code="closed")
        if state != "NOTPAY":
            raise ChannelError(f"{out_trade_no} is already paid", code="already_paid")
        paid_fen = payment.amount_fen if amount_fen is None else amount_fen
        _require(type(paid_fen) is int and paid_fen > 0, "amount_fen")
        payment.state = "SUCCESS"
        payment.channel_txn_id = self._new_id(lambda: self._txn_id_candidate(at))
        payment.paid_at = at
        payment.paid_fen = paid_fen
        payment.payer = payer or self._payer_candidate()
        return {
            "channel": self.name,
            "out_trade_no": out_trade_no,
            "channel_txn_id": payment.channel_txn_id,
            "amount_fen": paid_fen,
            "paid_at": at.timestamp(),
        }

    def authorize_freeze(
        self, out_order_no: str, out_request_no: str, *, at: datetime | None = None
    ) -> dict[str, Any]:
        """A visitor authorises a freeze in their app: its amount is frozen under a
        fresh ``auth_no``; returns the unsigned notification.

        The notification fields are :data:`~server.channels.fund_auth.FREEZE_NOTIFICATION_FIELDS`
        but ``nonce`` and ``sign_ts`` (the notifier adds those when it signs):
        ``kind`` (``"freeze"``), ``channel``, ``out_order_no``,
        ``out_request_no``, ``auth_no``, ``amount_fen`` (what is frozen) and
        ``authorized_at`` (epoch seconds). Raises ``not_supported``,
        ``not_found``, ``closed`` (closed, or past its ``expires_at``),
        ``already_authorized``.
        """
        self._offers_preauth()
        freeze = self._freeze(out_order_no, out_request_no)
        at = at or self.clock()
        freeze = fund_auth.authorize(
            freeze, at, lambda: self._new_id(lambda: self._auth_no_candidate(at))
        )
        self._freezes[out_order_no] = freeze
        self._order_of_auth[freeze.auth_no] = out_order_no
        return fund_auth.notification(freeze, self.name)

    # -- internals -------------------------------------------------------------------

    def _offers_preauth(self) -> None:
        if self.name not in PREAUTH_CHANNELS:
            raise ChannelError(
                f"{self.name} offers no pre-authorisation; pay and refund the rest instead",
                code="not_supported",
            )

    def _freeze(self, out_order_no: str, out_request_no: str) -> Freeze:
        freeze = self._freezes.get(out_order_no)
        if freeze is None or freeze.out_request_no != out_request_no:
            raise ChannelError(
                f"no freeze {out_order_no} with request {out_request_no}", code="not_found"
            )
        return freeze

    def _authorised(self, auth_no: str) -> Freeze:
        order_no = self._order_of_auth.get(auth_no)
        if order_no is None:
            raise ChannelError(f"no authorisation {auth_no}", code="not_found")
        return self._freezes[order_no]

    def _created_again(self, freeze: Freeze, out_request_no: str, amount_fen: int) -> CreatedFreeze:
        if freeze.out_request_no != out_request_no:
            raise ChannelError(
                f"out_order_no {freeze.out_order_no} was created with request "
                f"{freeze.out_request_no}",
                code="out_order_no_used",
            )
        if freeze.amount_fen != amount_fen:
            raise ChannelError(
                f"out_request_no {out_request_no} was created for {freeze.amount_fen} fen",
                code="request_no_used",
            )
        if freeze.auth_no is not None:
            raise ChannelError(
                f"freeze {freeze.out_order_no} is already authorised", code="already_authorized"
            )
        if fund_auth.status(freeze, self.clock()).state == "CLOSED":
            raise ChannelError(f"freeze {freeze.out_order_no} is closed", code="closed")
        return _created(freeze)

    def _payment(self, out_trade_no: str) -> _Payment:
        payment = self._payments.get(out_trade_no)
        if payment is None:
            raise ChannelError(f"no payment {out_trade_no}", code="not_found")
        return payment

    def _state(self, payment: _Payment, now: datetime | None = None) -> str:
        if payment.state == "NOTPAY" and (now or self.clock()) >= payment.expires_at:
            return "CLOSED"
        return payment.state

    def _refund_status(self, refund: _Refund) -> RefundStatus:
        if refund.state == "PROCESSING" and self.clock() >= refund.due_at:
            refund.state = "SUCCESS"
        succeeded = refund.due_at if refund.state == "SUCCESS" else None
        return RefundStatus(
            refund.out_refund_no,
            refund.out_trade_no,
            refund.state,
            refund.refund_fen,
            refund.refund_id,
            succeeded,
        )

    def _new_id(self, candidate: Callable[[], str]) -> str:
        while True:
            value = candidate()
            if value not in self._issued_ids:
                self._issued_ids.add(value)
                return value

    def _digits(self, count: int) -> str:
        return "".join(self._rng.choices("0123456789", k=count))

    def _txn_id_candidate(self, at: datetime) -> str:
        day = local_date(at).strftime("%Y%m%d")
        if self.name == "wechat":
            return f"420000{self._digits(4)}{day}{self._digits(10)}"
        return f"{day}2200{self._digits(16)}"

    def _payer_candidate(self) -> str:
        if self.name == "wechat":  # an openid: "o" and 27 characters of [A-Za-z0-9_-]
            return "o" + "".join(self._rng.choices(_OPENID_CHARS, k=27))
        return f"2088{self._digits(12)}"  # an Alipay buyer_user_id

    def _token_candidate(self) -> str:
        return "".join(self._rng.choices(_TOKEN_CHARS, k=24))

    def _auth_no_candidate(self, at: datetime) -> str:
        return f"{local_date(at).strftime('%Y%m%d')}2001{self._digits(16)}"

    def _refund_id_candidate(self) -> str:
        day = local_date(self.clock()).strftime("%Y%m%d")
        if self.name == "wechat":
            return f"50{self._digits(9)}{day}{self._digits(10)}"
        return f"{day}2300{self._digits(16)}"


_TOKEN_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
_OPENID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def _is_number(value: Any) -> bool:
    """Whether ``value`` can be a merchant's order, request or trade number."""
    return isinstance(value, str) and 0 < len(value) <= 64


def _created(freeze: Freeze) -> CreatedFreeze:
    return CreatedFreeze(
        freeze.out_order_no,
        freeze.out_request_no,
        freeze.amount_fen,
        freeze.qr_payload,
        freeze.expires_at,
    )


def _require(condition: bool, name: str) -> None:
    if not condition:
        raise ChannelError(f"{name} is missing or out of range", code="bad_request")


class SimulatedChannel:
    """A :class:`~server.channels.adapter.ChannelAdapter` over an in-process simulator.

    Each call first waits out a ``stall`` fault injected for it, if any.
    """

    def __init__(self, simulator: ChannelSimulator) -> None:
        self.simulator = simulator
        self.name = simulator.name

    async def create_payment(
        self, out_trade_no: str, amount_fen: int, description: str, expires_at: datetime
    ) -> CreatedPayment:
        """See :meth:`ChannelSimulator.create_payment`."""
        await self._stall("create_payment")
        return self.simulator.create_payment(out_trade_no, amount_fen, description, expires_at)

    async def query_payment(self, out_trade_no: str) -> PaymentStatus:
        """See :meth:`ChannelSimulator.query_payment`."""
        await self._stall("query_payment")
        return self.simulator.query_payment(out_trade_no)

    async def close_payment(self, out_trade_no: str) -> None:
        """See :meth:`ChannelSimulator.close_payment`."""
        await self._stall("close_payment")
        self.simulator.close_payment(out_trade_no)

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
    ) -> RefundStatus:
        """See :meth:`ChannelSimulator.refund`."""
        await self._stall("refund")
        return self.simulator.refund(out_trade_no, out_refund_no, refund_fen, total_fen, reason)

    async def query_refund(self, out_refund_no: str) -> RefundStatus:
        """See :meth:`ChannelSimulator.query_refund`."""
        await self._stall("query_refund")
        return self.simulator.query_refund(out_refund_no)

    def verify_notification(self, fields: dict[str, Any], kind: str = "payment") -> None:
        """Raise :class:`BadSignature` unless ``fields`` is a notification of ``kind``
        signed by this channel and fresh (:func:`server.channels.fund_auth.verify_notification`)."""
        fund_auth.verify_notification(
            fields, self.simulator.secret, self.simulator.clock().timestamp(), kind
        )

    async def create_freeze(
        self,
        out_order_no: str,
        out_request_no: str,
        amount_fen: int,
        description: str,
        expires_at: datetime,
    ) -> CreatedFreeze:
        """See :meth:`ChannelSimulator.create_freeze`."""
        await self._stall("create_freeze")
        return self.simulator.create_freeze(
            out_order_no, out_request_no, amount_fen, description, expires_at
        )

    async def query_freeze(self, out_order_no: str, out_request_no: str) -> FreezeStatus:
        """See :meth:`ChannelSimulator.query_freeze`."""
        await self._stall("query_freeze")
        return self.simulator.query_freeze(out_order_no, out_request_no)

    async def close_freeze(self, out_order_no: str, out_request_no: str) -> None:
        """See :meth:`ChannelSimulator.close_freeze`."""
        await self._stall("close_freeze")
        self.simulator.close_freeze(out_order_no, out_request_no)

    async def unfreeze(
        self, auth_no: str, out_request_no: str, amount_fen: int, reason: str
    ) -> UnfreezeStatus:
        """See :meth:`ChannelSimulator.unfreeze`."""
        await self._stall("unfreeze")
        return self.simulator.unfreeze(auth_no, out_request_no, amount_fen, reason)

    async def convert_to_payment(
        self,
        auth_no: str,
        out_trade_no: str,
        amount_fen: int,
        description: str,
        auth_confirm_mode: str = "COMPLETE",
    ) -> FreezeConversion:
        """See :meth:`ChannelSimulator.convert_to_payment`."""
        await self._stall("convert_to_payment")
        return self.simulator.convert_to_payment(
            auth_no, out_trade_no, amount_fen, description, auth_confirm_mode
        )

    async def _stall(self, op: str) -> None:
        stall_s = self.simulator.take_stall(op)
        if stall_s:
            await trio.sleep(stall_s)
        else:
            await trio.lowlevel.checkpoint()

    async def statement(self, bill_date: date) -> bytes:
        """See :meth:`ChannelSimulator.statement`."""
        await self._stall("statement")
        return self.simulator.statement(bill_date)


#: the header of a counter channel's (empty) bill
COUNTER_STATEMENT_HEADER = "交易时间,商户订单号,商户退款单号,金额（元）\n".encode()


class CounterChannel:
    """Cash or bank card: a cashier confirms the payment; no notifications, no bill.

    Creating a payment just acknowledges it (no QR code). A refund is money
    handed back at the counter or a card terminal reversal: ``SUCCESS`` at
    once, idempotent by ``out_refund_no``.
    """

    def __init__(self, name: str, clock: Clock = utc_now) -> None:
        if name not in COUNTER_CHANNELS:
            raise ValueError(f"counter channels are {COUNTER_CHANNELS}, not {name!r}")
        self.name = name
        self.clock = clock
        self._refunds: dict[str, RefundStatus] = {}

    async def create_payment(
        self, out_trade_no: str, amount_fen: int, description: str, expires_at: datetime
    ) -> CreatedPayment:
        """Acknowledge the payment; the cashier collects it. ``qr_payload`` is empty."""
        await trio.lowlevel.checkpoint()
        return CreatedPayment(out_trade_no, amount_fen, "")

    async def query_payment(self, out_trade_no: str) -> PaymentStatus:
        """Always raises ``not_supported``: only the cashier knows."""
        await trio.lowlevel.checkpoint()
        raise ChannelError(f"{self.name} payments cannot be queried", code="not_supported")

    async def close_payment(self, out_trade_no: str) -> None:
        """Nothing to close at a counter."""
        await trio.lowlevel.checkpoint()

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
    ) -> RefundStatus:
        """Hand the money back: ``SUCCESS`` at once; the same ``out_refund_no`` again
        returns the same refund, and with another payment or amount raises
        ``refund_no_used``."""
        await trio.lowlevel.checkpoint()
        existing = self._refunds.get(out_refund_no)
        if existing is not None:
            if existing.out_trade_no != out_trade_no or existing.refund_fen != refund_fen:
                raise ChannelError(
                    f"out_refund_no {out_refund_no} was used for {existing.refund_fen} fen",
                    code="refund_no_used",
                )
            return existing
        _require(type(refund_fen) is int and 0 < refund_fen <= total_fen, "refund_fen")
        status = RefundStatus(
            out_refund_no, out_trade_no, "SUCCESS", refund_fen, None, self.clock()
        )
        self._refunds[out_refund_no] = status
        return status

    async def query_refund(self, out_refund_no: str) -> RefundStatus:
        """The refund handed back earlier; ``not_found`` if none."""
        await trio.lowlevel.checkpoint()
        status = self._refunds.get(out_refund_no)
        if status is None:
            raise ChannelError(f"no refund {out_refund_no}", code="not_found")
        return status

    def verify_notification(self, fields: dict[str, Any], kind: str = "payment") -> None:
        """Always raises :class:`BadSignature`: cash and card send no notifications."""
        raise BadSignature("cash and card have no notifications")

    async def create_freeze(
        self,
        out_order_no: str,
        out_request_no: str,
        amount_fen: int,
        description: str,
        expires_at: datetime,
    ) -> CreatedFreeze:
        """Always raises ``not_supported``: a counter cannot freeze money."""
        await self._no_preauth()

    async def query_freeze(self, out_order_no: str, out_request_no: str) -> FreezeStatus:
        """Always raises ``not_supported``."""
        await self._no_preauth()

    async def close_freeze(self, out_order_no: str, out_request_no: str) -> None:
        """Always raises ``not_supported``."""
        await self._no_preauth()

    async def unfreeze(
        self, auth_no: str, out_request_no: str, amount_fen: int, reason: str
    ) -> UnfreezeStatus:
        """Always raises ``not_supported``."""
        await self._no_preauth()

    async def convert_to_payment(
        self,
        auth_no: str,
        out_trade_no: str,
        amount_fen: int,
        description: str,
        auth_confirm_mode: str = "COMPLETE",
    ) -> FreezeConversion:
        """Always raises ``not_supported``."""
        await self._no_preauth()

    async def _no_preauth(self) -> NoReturn:
        await trio.lowlevel.checkpoint()
        raise ChannelError(
            f"{self.name} offers no pre-authorisation; take the deposit as a payment",
            code="not_supported",
        )

    async def statement(self, bill_date: date) -> bytes:
        """An empty bill: the header only (the cash drawer is reconciled by hand)."""
        await trio.lowlevel.checkpoint()
        return COUNTER_STATEMENT_HEADER
