"""The trio client library for protocol v1: connect, hello, requests, server events.

::

    async with connect("ws://127.0.0.1:8765", "kiosk-01", token) as client:
        catalog = await client.request("catalog.list")
        async for event, data in client.events():
            ...

Requests may be pipelined: call :meth:`Client.request` from many tasks at once
(or :meth:`Client.start_request` and wait later) and each waits for the reply
with its own id. Server events arrive on :meth:`Client.events`, a bounded
buffer; when nobody reads it and it fills, further events are dropped and
counted in :attr:`Client.events_dropped` rather than stalling replies.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import cbor2
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from server.errors import ScenicError

SUBPROTOCOL = "scenic.v1"
log = logging.getLogger("scenic.client")


class RemoteError(ScenicError):
    """The server answered a request with an error; ``code`` and ``message`` are its words."""


class ConnectionLost(ScenicError):
    """The connection closed before the reply arrived; the request may or may not have run."""

    code = "connection_lost"


class PendingReply:
    """A request sent and not yet answered; :meth:`wait` gives its result."""

    __slots__ = ("_done", "_error", "_result", "request_id")

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self._done = trio.Event()
        self._result: dict[str, Any] | None = None
        self._error: ScenicError | None = None

    def _settle(self, result: dict[str, Any] | None, error: ScenicError | None) -> None:
        self._result, self._error = result, error
        self._done.set()

    async def wait(self, timeout: float = 30.0) -> dict[str, Any]:
        """The reply's ``ok`` map.

        Raises :class:`RemoteError` for an error reply, :class:`ConnectionLost`
        if the connection closed first, and ``trio.TooSlowError`` after
        ``timeout`` seconds.
        """
        with trio.fail_after(timeout):
            await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result


class Client:
    """One authenticated connection to a scenic-gate server (see :func:`connect`)."""

    def __init__(self, ws: WebSocketConnection, event_buffer: int) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, PendingReply] = {}
        self._events_in, self._events_out = trio.open_memory_channel[tuple[str, dict]](event_buffer)
        self.events_dropped = 0
        #: set by :func:`connect` from the hello reply
        self.device: str | None = None
        self.role: str | None = None
        self.server_time: float | None = None

    async def start_request(self, op: str, args: dict[str, Any] | None = None) -> PendingReply:
        """Send a request now and return a handle to wait for its reply later.

        Raises :class:`ConnectionLost` if the connection is already closed.
        """
        request_id = next(self._ids)
        pending = PendingReply(request_id)
        self._pending[request_id] = pending
        frame = cbor2.dumps({"id": request_id, "op": op, "args": args or {}})
        try:
            await self.ws.send_message(frame)
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise ConnectionLost(f"connection closed: {exc.reason}") from None
        return pending

    async def request(self, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
        """Send ``op`` with ``args`` and return the reply's ``ok`` map.

        Raises :class:`RemoteError` carrying the server's code and message on
        an error reply, :class:`ConnectionLost`, or ``trio.TooSlowError``.
        """
        pending = await self.start_request(op, args)
        try:
            return await pending.wait(timeout)
        finally:
            self._pending.pop(pending.request_id, None)

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Server pushes as ``(event, data)`` pairs, until the connection closes."""
        async for item in self._events_out:
            yield item

    async def _read_replies(self) -> None:
        try:
            while True:
                message = await self.ws.get_message()
                frame = cbor2.loads(message)
                if "event" in frame:
                    try:
                        self._events_in.send_nowait((frame["event"], frame.get("data", {})))
                    except trio.WouldBlock:
                        self.events_dropped += 1
                    continue
                pending = self._pending.pop(frame.get("id"), None)
                if pending is None:
                    log.warning("client.unmatched_reply", extra={"frame": repr(frame)[:200]})
                elif "error" in frame:
                    error = frame["error"]
                    pending._settle(None, RemoteError(error["message"], code=error["code"]))
                else:
                    pending._settle(frame["ok"], None)
        except ConnectionClosed as exc:
            reason = exc.reason
            lost = ConnectionLost(f"connection closed ({reason.code} {reason.reason or ''})")
            for pending in self._pending.values():
                pending._settle(None, lost)
            self._pending.clear()
        finally:
            self._events_in.close()


@asynccontextmanager
async def connect(
    url: str,
    device: str,
    token: str,
    *,
    timeout: float = 10.0,
    event_buffer: int = 1000,
) -> AsyncIterator[Client]:
    """Connect to ``url``, say hello as ``device`` with ``token``, and yield the client.

    Raises :class:`RemoteError` (``bad_credentials``) if the server refuses the
    device, and ``trio.TooSlowError`` if connecting and hello take longer than
    ``timeout``.
    """
    async with open_websocket_url(
        url, subprotocols=[SUBPROTOCOL], connect_timeout=timeout, disconnect_timeout=timeout
    ) as ws:
        client = Client(ws, event_buffer)
        hello = await _hello(ws, device, token, timeout)
        client.device, client.role = hello["device"], hello["role"]
        client.server_time = hello["server_time"]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client._read_replies)
                yield client
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The reader never raises, so a group holds the caller's own exception: unwrap it.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


async def _hello(ws: WebSocketConnection, device: str, token: str, timeout: float) -> dict:
    """The hello exchange, done before anything else is in flight on ``ws``."""
    try:
        with trio.fail_after(timeout):
            await ws.send_message(
                cbor2.dumps({"id": 0, "op": "hello", "args": {"device": device, "token": token}})
            )
            reply = cbor2.loads(await ws.get_message())
    except ConnectionClosed as exc:
        raise ConnectionLost(f"connection closed during hello: {exc.reason}") from None
    if "error" in reply:
        raise RemoteError(reply["error"]["message"], code=reply["error"]["code"])
    return reply["ok"]


async def stay_connected(
    url: str,
    device: str,
    token: str,
    *,
    task_status: trio.TaskStatus[Client] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Connect, hand the client to ``nursery.start``, and keep it open until cancelled.

    For tools that hold many connections at once::

        client = await nursery.start(stay_connected, url, device, token)
    """
    async with connect(url, device, token) as client:
        task_status.started(client)
        await trio.sleep_forever()
