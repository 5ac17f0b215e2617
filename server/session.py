"""One websocket connection from one device: hello, authentication, pipelined requests.

A :class:`Session` reads frames one after another. Until a ``hello`` with a
valid device id and token succeeds, every other op is answered with
``not_authenticated``. After it, each request is checked (op known, role
admitted, args well-formed) and its handler runs in a task of its own, so many
requests are in flight at once and replies go out as they finish, matched by
id. Bad input of any kind is answered with an error reply; a connection that
keeps sending it is closed after ``max_bad_frames``. Nothing a session does
can disturb another.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from server.auth import authenticate
from server.envelope import Rejected, Request, error_frame, event_frame, ok_frame, read_request
from server.errors import (
    BadCredentials,
    BadFrame,
    BadRequest,
    Forbidden,
    NotAuthenticated,
    ScenicError,
    UnknownOp,
)
from server.logs import device_var, request_var
from server.metrics import UNKNOWN_OP
from server.ops import DEVICE_ID_PATTERN, OpContext, OpSpec, OpTable
from server.schema import Arg, parse_args

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.session")

#: websocket close codes the server uses
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_REVOKED = 4001

HELLO_ARGS = (
    Arg("device", "text", max_len=64, pattern=DEVICE_ID_PATTERN),
    Arg("token", "text", max_len=256),
)

# Errors that mean "this client sends garbage"; enough of them close the connection.
# A ``bad_request`` counts wherever it comes from: the envelope, the declared
# args, or a check inside the op (an unknown product, an empty order).
_GARBAGE_CODES = frozenset(
    {"bad_frame", "too_large", "bad_request", "unknown_op", "not_authenticated"}
)


class Session:
    """Serves one device's websocket connection until it closes or the server drains."""

    def __init__(self, ws: WebSocketConnection, services: Services, ops: OpTable) -> None:
        self.ws = ws
        self.services = services
        self.ops = ops
        self.device_id: str | None = None
        self.role: str | None = None
        self.remote = str(ws.remote)
        self._bad_frames = 0
        self._in_flight = trio.Semaphore(services.config.max_in_flight)
        self._reading = trio.CancelScope()
        self._requests = trio.CancelScope()
        self._close_code = 1000
        self._close_reason = "bye"

    @property
    def in_flight(self) -> int:
        """Requests of this connection whose reply has not been sent yet."""
        return self.services.config.max_in_flight - self._in_flight.value

    async def serve(self) -> None:
        """Read and answer requests until the peer leaves, the server drains, or we close.

        Returns normally in every case; the websocket is closed on the way out.
        """
        try:
            with self._requests:
                async with trio.open_nursery() as requests:
                    with self._reading:
                        await self._read_loop(requests)
        finally:
            self.services.sessions.discard(self)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.ws.aclose(self._close_code, self._close_reason)
            log.info(
                "connection.closed",
                extra={
                    "remote": self.remote,
                    "code": self._close_code,
                    "reason": self._close_reason,
                },
            )

    def drain(self, grace_s: float) -> None:
        """Stop reading new requests; give in-flight ones ``grace_s`` seconds to finish."""
        self._close_code, self._close_reason = CLOSE_GOING_AWAY, "server shutting down"
        self._reading.cancel()
        self._requests.deadline = min(self._requests.deadline, trio.current_time() + grace_s)

    def close_soon(self, code: int, reason: str) -> None:
        """Close the connection now, abandoning unanswered requests (used on revocation)."""
        self._close_code, self._close_reason = code, reason
        self._requests.cancel()

    async def push(self, event: str, data: dict[str, Any]) -> bool:
        """Send a server event to this device; ``False`` if the connection is gone."""
        try:
            await self.ws.send_message(event_frame(event, data))
        except ConnectionClosed:
            return False
        return True

    async def _read_loop(self, requests: trio.Nursery) -> None:
        try:
            await self._read_requests(requests)
        except ConnectionClosed:
            pass  # the peer left; requests in flight still finish (their replies are dropped)

    async def _read_requests(self, requests: trio.Nursery) -> None:
        config = self.services.config
        hello_deadline = trio.current_time() + config.hello_timeout_s
        while True:
            if self.device_id is None:
                with trio.move_on_at(hello_deadline):
                    message = await self.ws.get_message()
                if self.device_id is None and trio.current_time() >= hello_deadline:
                    self._close_code, self._close_reason = CLOSE_POLICY, "no hello in time"
                    return
            else:
                message = await self.ws.get_message()
            if isinstance(message, str):
                parsed: Request | Rejected = Rejected(
                    None, BadFrame("text frames are not accepted; send binary CBOR")
                )
            else:
                parsed = read_request(message, max_bytes=config.max_frame_bytes)
            if isinstance(parsed, Rejected):
                if not await self._refuse(parsed.id, parsed.error):
                    return
                continue
            if self.device_id is None:
                if not await self._hello_or_refuse(parsed):
                    return
                continue
            spec = self.ops.get(parsed.op)
            try:
                args = self._admit(parsed, spec)
            except ScenicError as exc:
                op = parsed.op if spec is not None else UNKNOWN_OP
                self.services.metrics.request_done(op, exc.code, 0.0)
                if not await self._refuse(parsed.id, exc):
                    return
                continue
            await self._in_flight.acquire()
            requests.start_soon(self._run, parsed, spec, args)

    def _admit(self, request: Request, spec: OpSpec | None) -> dict[str, Any]:
        if spec is None:
            if request.op == "hello":
                raise BadRequest("already authenticated on this connection")
            raise UnknownOp(f"unknown op {request.op!r}")
        if self.role not in spec.roles:
            raise Forbidden(f"a {self.role} device may not call {request.op}")
        return parse_args(spec.args, request.args)

    async def _refuse(self, request_id: int | None, error: ScenicError) -> bool:
        """Answer with ``error``; ``False`` when this client has now sent too much garbage."""
        log.info(
            "request.refused",
            extra={
                "remote": self.remote,
                "request": request_id,
                "code": error.code,
                "detail": error.message,
            },
        )
        await self.ws.send_message(error_frame(request_id, error.code, error.message))
        return not self._count_garbage(error.code)

    def _count_garbage(self, code: str) -> bool:
        """Count an error answered with ``code``; ``True`` when the connection must now close."""
        if code not in _GARBAGE_CODES:
            return False
        self._bad_frames += 1
        if self._bad_frames < self.services.config.max_bad_frames:
            return False
        log.warning("connection.garbage", extra={"remote": self.remote})
        self._close_code, self._close_reason = CLOSE_POLICY, "too many bad requests"
        return True

    async def _hello_or_refuse(self, request: Request) -> bool:
        if request.op != "hello":
            return await self._refuse(
                request.id, NotAuthenticated("send hello with your device id and token first")
            )
        try:
            args = parse_args(HELLO_ARGS, request.args)
        except BadRequest as exc:
            return await self._refuse(request.id, exc)
        try:
            device = await authenticate(self.services.db, args["device"], args["token"])
        except BadCredentials as exc:
            log.warning(
                "hello.refused",
                extra={"remote": self.remote, "claimed_device": args["device"]},
            )
            await self.ws.send_message(error_frame(request.id, exc.code, exc.message))
            self._close_code, self._close_reason = CLOSE_POLICY, "bad credentials"
            return False
        self.device_id, self.role = device.device_id, device.role
        device_var.set(device.device_id)
        self.services.sessions.add(self)
        log.info("hello.ok", extra={"remote": self.remote, "role": device.role})
        now = self.services.clock()
        await self.ws.send_message(
            ok_frame(
                request.id,
                {
                    "device": device.device_id,
                    "role": device.role,
                    "server_time": now.timestamp(),
                    "protocol": "scenic.v1",
                    "max_frame_bytes": self.services.config.max_frame_bytes,
                },
            )
        )
        return True

    async def _run(self, request: Request, spec: OpSpec, args: dict[str, Any]) -> None:
        request_var.set(request.id)
        context = OpContext(self.device_id, self.role, request.id, self, self.services)
        code = None
        began = time.perf_counter()
        try:
            result = await spec.handler(context, args)
            frame = ok_frame(request.id, result)
        except ScenicError as exc:
            code = exc.code
            frame = error_frame(request.id, exc.code, exc.message)
        except Exception:
            log.exception("request.failed", extra={"op": request.op})
            code = "internal"
            frame = error_frame(request.id, "internal", "internal error; see the server log")
        finally:
            self._in_flight.release()
            self.services.metrics.request_done(
                request.op, code or "ok", time.perf_counter() - began
            )
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed:
            log.info("reply.undeliverable", extra={"op": request.op})
            return
        if code is not None and self._count_garbage(code):
            # as for garbage the read loop finds: read no more, let in-flight replies go out
            self._reading.cancel()
