"""The simulated channels' merchant API: requests in, replies out, and its websocket server.

:class:`ChannelApi` is sans-IO (a frame in, a reply frame out);
:func:`serve_channel_api` serves it over a websocket (subprotocol
``scenic-channel-sim.v1``; one CBOR map per binary message, ``{"id", "op",
"args"}`` answered by ``{"id", "ok"}`` or ``{"id", "error": {"code",
"message"}}``, the same envelope as the scenic protocol). ``scenic
channel-sim`` (:mod:`clients.channel_sim`) runs it; the server's
:class:`~server.channels.remote.RemoteChannel` calls it. The ops are
``create_payment``, ``query_payment``, ``close_payment``, ``refund``,
``query_refund``, ``statement`` and Alipay's pre-authorisation
``create_freeze``, ``query_freeze``, ``close_freeze``, ``unfreeze``,
``convert_to_payment`` (each takes ``channel``), the visitor-side ``pay``
and ``authorize_freeze``, and ``inject_fault`` for tests and load tests (the
next calls of an op answer ``system_busy``, or stall). Times travel as float
seconds since the epoch, dates as ``YYYY-MM-DD``. Requests on one
connection are served concurrently (up to :data:`MAX_IN_FLIGHT`) and replies
carry the request's id: a stalled call holds up no other. A ``pay`` or an
``authorize_freeze`` hands its notification to the channel's
:class:`~server.channels.notifier.Notifier`, which delivers it to the scenic
server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, WebSocketServer

from server.channels.adapter import AUTH_CONFIRM_MODES, ChannelError, ChannelUnavailable
from server.channels.notifier import Notifier
from server.channels.simulator import FAULTS, MERCHANT_OPS, ChannelSimulator
from server.envelope import Rejected, Request, error_frame, ok_frame, read_request
from server.errors import BadFrame, BadRequest, ScenicError, UnknownOp
from server.listener import open_listeners
from server.schema import Arg, parse_args

log = logging.getLogger("scenic.channels.sim")

SUBPROTOCOL = "scenic-channel-sim.v1"
#: the largest request frame the API reads
MAX_REQUEST_BYTES = 64 * 1024
#: the largest message either side accepts (a day's bill can be long)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: requests of one connection served at once; reading waits while this many are open
MAX_IN_FLIGHT = 256

_CHANNEL = Arg("channel", "text", max_len=16)
_OUT_TRADE_NO = Arg("out_trade_no", "text", max_len=64)
_OUT_REFUND_NO = Arg("out_refund_no", "text", max_len=64)
_OUT_ORDER_NO = Arg("out_order_no", "text", max_len=64)
_OUT_REQUEST_NO = Arg("out_request_no", "text", max_len=64)
_AUTH_NO = Arg("auth_no", "text", max_len=64)
_FEN = {"low": 1, "high": 10**12}

#: every op of the API and its arguments
OP_ARGS: dict[str, tuple[Arg, ...]] = {
    "create_payment": (
        _CHANNEL,
        _OUT_TRADE_NO,
        Arg("amount_fen", "int", **_FEN),
        Arg("description", "text", required=False, max_len=256, default=""),
        Arg("expires_at", "number"),
    ),
    "query_payment": (_CHANNEL, _OUT_TRADE_NO),
    "close_payment": (_CHANNEL, _OUT_TRADE_NO),
    "refund": (
        _CHANNEL,
        _OUT_TRADE_NO,
        _OUT_REFUND_NO,
        Arg("refund_fen", "int", **_FEN),
        Arg("total_fen", "int", **_FEN),
        Arg("reason", "text", required=False, max_len=256, default=""),
    ),
    "query_refund": (_CHANNEL, _OUT_REFUND_NO),
    "statement": (_CHANNEL, Arg("bill_date", "text", pattern=r"\d{4}-\d{2}-\d{2}")),
    "pay": (_CHANNEL, _OUT_TRADE_NO, Arg("amount_fen", "int", required=False, **_FEN)),
    "create_freeze": (
        _CHANNEL,
        _OUT_ORDER_NO,
        _OUT_REQUEST_NO,
        Arg("amount_fen", "int", **_FEN),
        Arg("description", "text", required=False, max_len=256, default=""),
        Arg("expires_at", "number"),
    ),
    "query_freeze": (_CHANNEL, _OUT_ORDER_NO, _OUT_REQUEST_NO),
    "close_freeze": (_CHANNEL, _OUT_ORDER_NO, _OUT_REQUEST_NO),
    "unfreeze": (
        _CHANNEL,
        _AUTH_NO,
        _OUT_REQUEST_NO,
        Arg("amount_fen", "int", **_FEN),
        Arg("reason", "text", required=False, max_len=256, default=""),
    ),
    "convert_to_payment": (
        _CHANNEL,
        _AUTH_NO,
        _OUT_TRADE_NO,
        Arg("amount_fen", "int", **_FEN),
        Arg("description", "text", required=False, max_len=256, default=""),
        Arg(
            "auth_confirm_mode",
            "text",
            required=False,
            pattern="|".join(AUTH_CONFIRM_MODES),
            default="COMPLETE",
        ),
    ),
    "authorize_freeze": (_CHANNEL, _OUT_ORDER_NO, _OUT_REQUEST_NO),
    "inject_fault": (
        _CHANNEL,
        Arg("call", "text", pattern="|".join(MERCHANT_OPS)),
        Arg("fault", "text", pattern="|".join(FAULTS)),
        Arg("count", "int", required=False, low=1, high=10_000, default=1),
        Arg("stall_s", "number", required=False, low=0, high=3600, default=0.0),
    ),
}


def to_wire(value: Any) -> dict[str, Any]:
    """An attrs value as a reply map, datetimes as float epoch seconds."""
    return {
        key: item.timestamp() if isinstance(item, datetime) else item
        for key, item in attrs.asdict(value).items()
    }


class ChannelApi:
    """The API's request handling, sans-IO: a frame in, a reply frame out.

    ``notifiers`` (by channel) receive the notifications of ``pay`` and
    ``authorize_freeze``; without one, these only answer with the unsigned
    notification.
    """

    def __init__(
        self,
        simulators: Mapping[str, ChannelSimulator],
        notifiers: Mapping[str, Notifier] | None = None,
    ) -> None:
        self.simulators = dict(simulators)
        self.notifiers = dict(notifiers or {})

    def answer(self, message: bytes | str) -> bytes:
        """The reply frame to one message; never raises for bad input.

        Bad frames and unknown ops get ``bad_frame``/``bad_request``/``unknown_op``
        replies, refusals the channel's code; anything unexpected is logged and
        answered ``internal``. (Stall faults are the caller's to wait out first:
        :meth:`stall_for`.)
        """
        return self.reply(self.read(message))

    def read(self, message: bytes | str) -> Request | Rejected:
        """One message as a request, or the reason it cannot be one."""
        if isinstance(message, str):
            return Rejected(None, BadFrame("text frames are not accepted; send binary CBOR"))
        return read_request(message, max_bytes=MAX_REQUEST_BYTES)

    def stall_for(self, request: Request | Rejected) -> float:
        """Seconds to wait before serving ``request`` (a ``stall`` fault); uses the fault up."""
        if isinstance(request, Rejected) or request.op not in MERCHANT_OPS:
            return 0.0
        simulator = self.simulators.get(request.args.get("channel"))
        return 0.0 if simulator is None else simulator.take_stall(request.op)

    def reply(self, request: Request | Rejected) -> bytes:
        """The reply frame to a request read by :meth:`read`."""
        if isinstance(request, Rejected):
            return error_frame(request.id, request.error.code, request.error.message)
        try:
            return ok_frame(request.id, self.handle(request.op, request.args))
        except ScenicError as exc:
            return error_frame(request.id, exc.code, exc.message)
        except Exception:
            log.exception("channel_sim.internal", extra={"op": request.op})
            return error_frame(request.id, "internal", "internal error; see the simulator log")

    def handle(self, op: str, raw_args: dict[str, Any]) -> dict[str, Any]:
        """Run ``op`` with ``raw_args``; returns the ``ok`` map or raises ScenicError."""
        spec = OP_ARGS.get(op)
        if spec is None:
            raise UnknownOp(f"unknown op {op!r}; ops: {', '.join(OP_ARGS)}")
        args = parse_args(spec, raw_args)
        simulator = self.simulators.get(args["channel"])
        if simulator is None:
            raise ChannelError(
                f"no channel {args['channel']!r}; channels: {', '.join(self.simulators)}",
                code="unknown_channel",
            )
        return getattr(self, "_" + op)(simulator, args)

    def _create_payment(self, simulator: ChannelSimulator, args: dict) -> dict:
        expires_at = _from_epoch(args["expires_at"])
        created = simulator.create_payment(
            args["out_trade_no"], args["amount_fen"], args["description"], expires_at
        )
        return to_wire(created)

    def _query_payment(self, simulator: ChannelSimulator, args: dict) -> dict:
        return to_wire(simulator.query_payment(args["out_trade_no"]))

    def _close_payment(self, simulator: ChannelSimulator, args: dict) -> dict:
        simulator.close_payment(args["out_trade_no"])
        return {}

    def _refund(self, simulator: ChannelSimulator, args: dict) -> dict:
        status = simulator.refund(
            args["out_trade_no"],
            args["out_refund_no"],
            args["refund_fen"],
            args["total_fen"],
            args["reason"],
        )
        return to_wire(status)

    def _query_refund(self, simulator: ChannelSimulator, args: dict) -> dict:
        return to_wire(simulator.query_refund(args["out_refund_no"]))

    def _statement(self, simulator: ChannelSimulator, args: dict) -> dict:
        try:
            bill_date = date.fromisoformat(args["bill_date"])
        except ValueError:
            raise BadRequest(f"bill_date {args['bill_date']!r} is not a date") from None
        return {"file": simulator.statement(bill_date)}

    def _inject_fault(self, simulator: ChannelSimulator, args: dict) -> dict:
        simulator.inject_fault(args["call"], args["fault"], args["count"], args["stall_s"])
        return {}

    def _create_freeze(self, simulator: ChannelSimulator, args: dict) -> dict:
        created = simulator.create_freeze(
            args["out_order_no"],
            args["out_request_no"],
            args["amount_fen"],
            args["description"],
            _from_epoch(args["expires_at"]),
        )
        return to_wire(created)

    def _query_freeze(self, simulator: ChannelSimulator, args: dict) -> dict:
        return to_wire(simulator.query_freeze(args["out_order_no"], args["out_request_no"]))

    def _close_freeze(self, simulator: ChannelSimulator, args: dict) -> dict:
        simulator.close_freeze(args["out_order_no"], args["out_request_no"])
        return {}

    def _unfreeze(self, simulator: ChannelSimulator, args: dict) -> dict:
        done = simulator.unfreeze(
            args["auth_no"], args["out_request_no"], args["amount_fen"], args["reason"]
        )
        return to_wire(done)

    def _convert_to_payment(self, simulator: ChannelSimulator, args: dict) -> dict:
        done = simulator.convert_to_payment(
            args["auth_no"],
            args["out_trade_no"],
            args["amount_fen"],
            args["description"],
            args["auth_confirm_mode"],
        )
        return to_wire(done)

    def _pay(self, simulator: ChannelSimulator, args: dict) -> dict:
        notifier = self._notifier_with_room(simulator, "pay")
        fields = simulator.pay(args["out_trade_no"], amount_fen=args["amount_fen"])
        if notifier is not None:
            notifier.submit(fields)
        return {"notification": fields}

    def _authorize_freeze(self, simulator: ChannelSimulator, args: dict) -> dict:
        notifier = self._notifier_with_room(simulator, "authorise")
        fields = simulator.authorize_freeze(args["out_order_no"], args["out_request_no"])
        if notifier is not None:
            notifier.submit(fields)
        return {"notification": fields}

    def _notifier_with_room(self, simulator: ChannelSimulator, verb: str) -> Notifier | None:
        """The channel's notifier, if any; refuses (transiently) while its queue is full."""
        notifier = self.notifiers.get(simulator.name)
        if notifier is not None and not notifier.has_room():
            raise ChannelUnavailable(f"the notification queue is full; {verb} again later")
        return notifier


def _from_epoch(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRequest(f"{seconds} is not a time") from None


async def serve_channel_api(
    simulators: Mapping[str, ChannelSimulator],
    host: str,
    port: int,
    *,
    notifiers: Mapping[str, Notifier] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the merchant API of ``simulators`` on ``host``:``port`` until cancelled.

    ``port`` 0 picks a free port; ``task_status.started`` receives the API's
    ``ws://`` url. Each connection's requests are served concurrently, up to
    :data:`MAX_IN_FLIGHT` at once, each reply as soon as it is ready. Raises
    :class:`~server.startup.StartupError` when the port cannot be bound.
    """
    api = ChannelApi(simulators, notifiers)

    async def serve_one(ws: Any, request: Request | Rejected, slots: trio.Semaphore) -> None:
        try:
            stall_s = api.stall_for(request)
            if stall_s:
                await trio.sleep(stall_s)
            await ws.send_message(api.reply(request))
        except ConnectionClosed:
            pass  # the merchant left before its reply
        finally:
            slots.release()

    async def handle(request: WebSocketRequest) -> None:
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(400, body=f"offer the subprotocol {SUBPROTOCOL}".encode())
            return
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        slots = trio.Semaphore(MAX_IN_FLIGHT)
        async with trio.open_nursery() as requests:
            try:
                while True:
                    message = await ws.get_message()
                    await slots.acquire()
                    requests.start_soon(serve_one, ws, api.read(message), slots)
            except ConnectionClosed:
                pass  # the merchant left
            requests.cancel_scope.cancel()

    listeners = await open_listeners(
        host, port, host_flag="--listen-host", port_flag="--listen-port"
    )
    async with trio.open_nursery() as nursery:
        server = WebSocketServer(
            handle,
            listeners,
            handler_nursery=nursery,
            max_message_size=MAX_REQUEST_BYTES * 2,
            connect_timeout=10,
            disconnect_timeout=5,
        )
        await nursery.start(server.run)
        task_status.started(f"ws://{host}:{server.port}")
