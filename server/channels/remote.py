"""A :class:`~server.channels.adapter.ChannelAdapter` for the simulator in another process.

:class:`RemoteChannel` speaks the simulator's API (see
:mod:`server.channels.sim_api`) over one websocket connection, opened on
the first call and opened again after it is lost. Calls from many tasks are
pipelined on it and matched to their replies by id. A call that cannot reach
the simulator, loses its connection before the reply, or gets no reply within
``timeout_s`` raises :class:`~server.channels.adapter.ChannelUnavailable` (it
may or may not have taken effect; every call is safe to repeat). Refusals
arrive as :class:`~server.channels.adapter.ChannelError` with the
simulator's code.

The connection lives in a nursery the channel owns, so use it as an async
context manager::

    async with RemoteChannel("wechat", url, secret, clock) as wechat:
        created = await wechat.create_payment(...)
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from server.channels import fund_auth
from server.channels.adapter import (
    ChannelError,
    ChannelUnavailable,
    CreatedFreeze,
    CreatedPayment,
    FreezeConversion,
    FreezeStatus,
    PaymentStatus,
    RefundStatus,
    UnfreezeStatus,
)
from server.channels.sim_api import MAX_MESSAGE_BYTES, SUBPROTOCOL
from server.channels.simulator import utc_now
from server.codec import decode_frame, encode
from server.errors import ScenicError

log = logging.getLogger("scenic.channels.remote")

_TIME_FIELDS = ("paid_at", "succeeded_at", "expires_at", "authorized_at", "unfrozen_at")


class _Reply:
    __slots__ = ("done", "frame")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.frame: dict[str, Any] | None = None


@attrs.define
class _Connection:
    ws: WebSocketConnection
    pending: dict[int, _Reply] = attrs.Factory(dict)


class RemoteChannel:
    """Channel ``name`` of the simulator API at ``url``; use it as ``async with``.

    ``secret`` and ``clock`` verify notifications locally, as the server does
    with a real channel's key.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: bytes,
        clock: Callable[[], datetime] = utc_now,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.clock = clock
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._connection: _Connection | None = None
        self._connecting = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._lifetime_cm: Any = None

    async def __aenter__(self) -> RemoteChannel:
        self._lifetime_cm = self._lifetime()
        return await self._lifetime_cm.__aenter__()

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._lifetime_cm.__aexit__(*exc_info)

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[RemoteChannel]:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    yield self
                finally:
                    self._nursery = None
                    connection, self._connection = self._connection, None
                    if connection is not None:
                        with trio.CancelScope(shield=True), trio.move_on_after(2):
                            await connection.ws.aclose()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Our tasks never raise, so a group holds the caller's own exception: unwrap it.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    # -- the adapter -----------------------------------------------------------------

    async def create_payment(
        self, out_trade_no: str, amount_fen: int, description: str, expires_at: datetime
    ) -> CreatedPayment:
        """Register a payment at the simulator; see the adapter's contract."""
        ok = await self._call(
            "create_payment",
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            description=description,
            expires_at=expires_at.timestamp(),
        )
        return _from_wire(CreatedPayment, ok)

    async def query_payment(self, out_trade_no: str) -> PaymentStatus:
        """The payment's state at the simulator; ``not_found`` if never created."""
        return _from_wire(
            PaymentStatus, await self._call("query_payment", out_trade_no=out_trade_no)
        )

    async def close_payment(self, out_trade_no: str) -> None:
        """Close an unpaid payment; ``already_paid`` if it is paid."""
        await self._call("close_payment", out_trade_no=out_trade_no)

    async def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
    ) -> RefundStatus:
        """Refund part or all of a paid payment, idempotently by ``out_refund_no``."""
        ok = await self._call(
            "refund",
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            refund_fen=refund_fen,
            total_fen=total_fen,
            reason=reason,
        )
        return _from_wire(RefundStatus, ok)

    async def query_refund(self, out_refund_no: str) -> RefundStatus:
        """The refund's state; ``not_found`` if never requested."""
        return _from_wire(
            RefundStatus, await self._call("query_refund", out_refund_no=out_refund_no)
        )

    def verify_notification(self, fields: dict[str, Any], kind: str = "payment") -> None:
        """Raise :class:`~server.channels.adapter.BadSignature` unless ``fields`` is a
        notification of ``kind`` signed with this channel's key and fresh by ``clock``."""
        fund_auth.verify_notification(fields, self.secret, self.clock().timestamp(), kind)

    async def create_freeze(
        self,
        out_order_no: str,
        out_request_no: str,
        amount_fen: int,
        description: str,
        expires_at: datetime,
    ) -> CreatedFreeze:
        """Register a freeze at the simulator; see the adapter's contract."""
        ok = await self._call(
            "create_freeze",
            out_order_no=out_order_no,
            out_request_no=out_request_no,
            amount_fen=amount_fen,
            description=description,
            expires_at=expires_at.timestamp(),
        )
        return _from_wire(CreatedFreeze, ok)

    async def query_freeze(self, out_order_no: str, out_request_no: str) -> FreezeStatus:
        """The freeze's state and amounts at the simulator; ``not_found`` if never created."""
        ok = await self._call(
            "query_freeze", out_order_no=out_order_no, out_request_no=out_request_no
        )
        return _from_wire(FreezeStatus, ok)

    async def close_freeze(self, out_order_no: str, out_request_no: str) -> None:
        """Close a freeze not yet authorised; ``already_authorized`` if it is."""
        await self._call("close_freeze", out_order_no=out_order_no, out_request_no=out_request_no)

    async def unfreeze(
        self, auth_no: str, out_request_no: str, amount_fen: int, reason: str
    ) -> UnfreezeStatus:
        """Release part or all of what is still frozen, idempotently by ``out_request_no``."""
        ok = await self._call(
            "unfreeze",
            auth_no=auth_no,
            out_request_no=out_request_no,
            amount_fen=amount_fen,
            reason=reason,
        )
        return _from_wire(UnfreezeStatus, ok)

    async def convert_to_payment(
        self,
        auth_no: str,
        out_trade_no: str,
        amount_fen: int,
        description: str,
        auth_confirm_mode: str = "COMPLETE",
    ) -> FreezeConversion:
        """Take part of what is still frozen as a payment, idempotently by ``out_trade_no``."""
        ok = await self._call(
            "convert_to_payment",
            auth_no=auth_no,
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            description=description,
            auth_confirm_mode=auth_confirm_mode,
        )
        return _from_wire(FreezeConversion, ok)

    async def statement(self, bill_date: date) -> bytes:
        """The channel's bill for ``bill_date``: the file's bytes."""
        ok = await self._call("statement", bill_date=bill_date.isoformat())
        data = ok.get("file")
        if not isinstance(data, bytes):
            raise ChannelError("the statement reply holds no file", code="bad_reply")
        return data

    async def pay(self, out_trade_no: str, *, amount_fen: int | None = None) -> dict[str, Any]:
        """Visitor side (tests, load test): pay ``out_trade_no`` at the simulator.

        Returns the unsigned notification; the simulator's notifier delivers it.
        """
        args: dict[str, Any] = {"out_trade_no": out_trade_no}
        if amount_fen is not None:
            args["amount_fen"] = amount_fen
        return (await self._call("pay", **args))["notification"]

    async def authorize_freeze(self, out_order_no: str, out_request_no: str) -> dict[str, Any]:
        """Visitor side (tests, load test): authorise a freeze at the simulator.

        Returns the unsigned notification; the simulator's notifier delivers it.
        """
        ok = await self._call(
            "authorize_freeze", out_order_no=out_order_no, out_request_no=out_request_no
        )
        return ok["notification"]

    async def inject_fault(
        self, call: str, fault: str, *, count: int = 1, stall_s: float = 0.0
    ) -> None:
        """Tests and load tests: make the simulator's next ``count`` calls of merchant op
        ``call`` fail (``system_busy``) or stall for ``stall_s`` seconds (its ``inject_fault``)."""
        await self._call("inject_fault", call=call, fault=fault, count=count, stall_s=stall_s)

    # -- the connection --------------------------------------------------------------

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        reply = _Reply()
        connection = None
        with trio.move_on_after(self.timeout_s) as timer:
            connection = await self._connect()
            connection.pending[request_id] = reply
            try:
                frame = encode({"id": request_id, "op": op, "args": {"channel": self.name, **args}})
                await connection.ws.send_message(frame)
                await reply.done.wait()
            except ConnectionClosed:
                pass  # reply.frame stays None: reported below as unavailable
            finally:
                connection.pending.pop(request_id, None)
        if timer.cancelled_caught:
            raise ChannelUnavailable(f"{self.name}: no reply to {op} within {self.timeout_s:g}s")
        frame = reply.frame
        if frame is None:
            raise ChannelUnavailable(f"{self.name}: the connection closed before the {op} reply")
        if "error" in frame:
            raise _error(frame["error"])
        ok = frame.get("ok")
        if not isinstance(ok, dict):
            raise ChannelError(f"{self.name}: the {op} reply holds no ok map", code="bad_reply")
        return ok

    async def _connect(self) -> _Connection:
        async with self._connecting:
            connection = self._connection
            if connection is not None and not connection.ws.closed:
                return connection
            if self._nursery is None:
                raise RuntimeError("use RemoteChannel as `async with RemoteChannel(...)`")
            try:
                ws = await connect_websocket_url(
                    self._nursery,
                    self.url,
                    subprotocols=[SUBPROTOCOL],
                    max_message_size=MAX_MESSAGE_BYTES,
                )
            except (OSError, HandshakeError, ConnectionClosed) as exc:
                raise ChannelUnavailable(f"cannot reach {self.name} at {self.url}: {exc}") from None
            connection = self._connection = _Connection(ws)
            self._nursery.start_soon(self._read_replies, connection)
            return connection

    async def _read_replies(self, connection: _Connection) -> None:
        try:
            while True:
                message = await connection.ws.get_message()
                try:
                    frame = decode_frame(message, max_bytes=MAX_MESSAGE_BYTES)
                except ScenicError as exc:
                    log.warning("remote_channel.bad_reply", extra={"error": exc.message})
                    continue
                reply = (
                    connection.pending.pop(frame.get("id"), None)
                    if isinstance(frame, dict)
                    else None
                )
                if reply is None:
                    log.warning(
                        "remote_channel.unmatched_reply", extra={"frame": repr(frame)[:200]}
                    )
                    continue
                reply.frame = frame
                reply.done.set()
        except ConnectionClosed:
            log.info("remote_channel.disconnected", extra={"channel": self.name, "url": self.url})
        finally:
            if self._connection is connection:
                self._connection = None
            for reply in connection.pending.values():
                reply.done.set()  # frame None: the caller raises ChannelUnavailable
            connection.pending.clear()


def _error(error: Any) -> ChannelError:
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return ChannelError(f"unreadable error reply {error!r:.200}", code="bad_reply")
    message = str(error.get("message", ""))
    if error["code"] == ChannelUnavailable.code:
        return ChannelUnavailable(message)
    return ChannelError(message, code=error["code"])


def _from_wire(cls: type, ok: dict[str, Any]) -> Any:
    """An adapter value of ``cls`` from a reply map (epoch seconds back to UTC datetimes)."""
    try:
        values = {}
        for field in attrs.fields(cls):
            value = ok.get(field.name) if field.default is not attrs.NOTHING else ok[field.name]
            if field.name in _TIME_FIELDS and value is not None:
                value = datetime.fromtimestamp(value, UTC)
            values[field.name] = value
        return cls(**values)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ChannelError(f"unreadable {cls.__name__} reply: {exc!r}", code="bad_reply") from None
