"""The payment channels' side, simulated in memory: their books and their rules.

:class:`ChannelSimulator` keeps one channel's ledger of payments and refunds
and answers the merchant API the way WeChat Pay and Alipay do (idempotent
creation, close, refunds idempotent by ``out_refund_no`` and never above the
paid amount, daily bills). Its visitor side, :meth:`ChannelSimulator.pay`,
is what a phone scanning the QR code does: the payment becomes paid and the
channel produces the notification it will send to the merchant. What a
notification says is what the channel collected and what its query reports.

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
from typing import Any

import attrs
import trio

from actors.channels import COUNTER_CHANNELS, QR_CHANNELS
from server.channels import signing
from server.channels.adapter import (
    BadSignature,
    ChannelError,
    CreatedPayment,
    PaymentStatus,
    RefundStatus,
)
from server.channels.statement import StatementRow, fee_fen, local_date, write_statement

Clock = Callable[[], datetime]
REFUND_MODES = ("instant", "processing")
#: the merchant API's calls, the ones faults can be injected into
MERCHANT_OPS = (
    "create_payment",
    "query_payment",
    "close_payment",
    "refund",
    "query_refund",
    "statement",
)
#: what an injected fault does to a call
FAULTS = ("system_busy", "stall")


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
    have passed, as real refunds to bank cards do. Every refusal is a
    :class:`~server.channels.adapter.ChannelError` with a stable code.
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
    ) -> None:
        if name not in QR_CHANNELS:
            raise ValueError(f"no simulator for channel {name!r}; QR channels: {QR_CHANNELS}")
        if refund_mode not in REFUND_MODES:
            raise ValueError(f"refund_mode must be one of {REFUND_MODES}, not {refund_mode!r}")
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

    # -- faults ----------------------------------------------------------------------

    def inject_fault(self, op: str, fault: str, count: int = 1, stall_s: float = 0.0) -> None:
        """Make the next ``count`` calls of merchant op ``op`` misbehave.

        ``fault`` ``"system_busy"``: the call is refused with the transient
        code ``system_busy`` and changes nothing. ``"stall"``: the call is
        served only after ``stall_s`` seconds (the async layer that serves it
        waits; see :meth:`take_stall`). Each (op, fault) pair counts down on
        its own, so a call may both stall and then be refused. Injecting again
        adds to the count (the latest ``stall_s`` applies). Raises
        ``bad_request`` for an unknown op or fault, a count outside 1..10000
        or a stall outside 0..3600 s.
        """
        _require(op in MERCHANT_OPS, "op")
        _require(fault in FAULTS, "fault")
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
        token = self._new_id(lambda: "".join(self._rng.choices(_TOKEN_CHARS, k=24)))
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

    def statement(self, bill_date: date) -> str:
        """The bill of ``bill_date`` (Asia/Shanghai): payments paid and refunds
        succeeded on that date, in time order, in this channel's CSV layout."""
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
                )
            )
        rows.sort(key=lambda row: (row.at, row.kind, row.out_trade_no, row.out_refund_no or ""))
        return write_statement(self.name, rows, bill_date)

    # -- visitor side ----------------------------------------------------------------

    def pay(
        self, out_trade_no: str, *, amount_fen: int | None = None, at: datetime | None = None
    ) -> dict[str, Any]:
        """A visitor pays: the payment becomes paid; returns the unsigned notification.

        The notification fields are ``channel``, ``out_trade_no``,
        ``channel_txn_id`` (fresh), ``amount_fen`` (what was paid) and
        ``paid_at`` (epoch seconds). ``amount_fen`` makes the visitor pay
        another amount than the payment asked for (a wrong-amount payment):
        the channel collects it, notifies it, reports it to queries and bounds
        refunds by it. Raises ``not_found``, ``closed`` (closed or expired),
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
        return {
            "channel": self.name,
            "out_trade_no": out_trade_no,
            "channel_txn_id": payment.channel_txn_id,
            "amount_fen": paid_fen,
            "paid_at": at.timestamp(),
        }

    # -- internals -------------------------------------------------------------------

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

    def _refund_id_candidate(self) -> str:
        day = local_date(self.clock()).strftime("%Y%m%d")
        if self.name == "wechat":
            return f"50{self._digits(9)}{day}{self._digits(10)}"
        return f"{day}2300{self._digits(16)}"


_TOKEN_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


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

    def verify_notification(self, fields: dict[str, Any]) -> None:
        """Raise :class:`BadSignature` unless ``fields`` is signed by this channel and fresh."""
        signing.verify(fields, self.simulator.secret, self.simulator.clock().timestamp())

    async def _stall(self, op: str) -> None:
        stall_s = self.simulator.take_stall(op)
        if stall_s:
            await trio.sleep(stall_s)
        else:
            await trio.lowlevel.checkpoint()

    async def statement(self, bill_date: date) -> str:
        """See :meth:`ChannelSimulator.statement`."""
        await self._stall("statement")
        return self.simulator.statement(bill_date)


#: the header of a counter channel's (empty) bill
COUNTER_STATEMENT_HEADER = "交易时间,商户订单号,商户退款单号,金额（元）\n"


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

    def verify_notification(self, fields: dict[str, Any]) -> None:
        """Always raises :class:`BadSignature`: cash and card send no notifications."""
        raise BadSignature("cash and card have no notifications")

    async def statement(self, bill_date: date) -> str:
        """An empty bill: the header only (the cash drawer is reconciled by hand)."""
        await trio.lowlevel.checkpoint()
        return COUNTER_STATEMENT_HEADER
