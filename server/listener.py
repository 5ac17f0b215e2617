"""The server's TCP side: ports, a bounded websocket handshake, and a word for plain HTTP.

:func:`open_listeners` binds the port and says in one line why it could not
(:class:`~server.startup.StartupError`: in use, not an address here, needs
privileges). :class:`WebsocketListener` accepts connections and, for each,
reads the HTTP request head itself before trio-websocket sees it:

- a connection closed before its head is complete is closed at once (no
  socket left in CLOSE-WAIT); one still without a complete head (or not done
  with its handshake) after ``handshake_timeout_s`` is closed then;
- a request that is not a websocket upgrade (a browser, ``curl``) is answered
  ``426 Upgrade Required`` with a text body saying this is a websocket
  endpoint for ``scenic.v1`` (a head that is not HTTP: ``400``); a head over
  ``MAX_HEAD_BYTES``: ``431``;
- a websocket upgrade that does not offer the subprotocol is refused with
  ``400`` and a body naming it;
- otherwise the handshake completes and ``on_connection(ws)`` serves it.

:meth:`WebsocketListener.stop` stops accepting and closes the connections
still in their handshake; connections already handed to ``on_connection``
are the caller's to drain. The answer to a head is decided by the pure
:func:`answer_to_head`.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable

import attrs
import trio
from trio_websocket import ConnectionClosed, Endpoint, WebSocketConnection, wrap_server_stream

from server.startup import StartupError

log = logging.getLogger("scenic.listener")

#: the longest HTTP request head the listener reads
MAX_HEAD_BYTES = 16 * 1024
#: how long closing a websocket may take once ``on_connection`` returns
DISCONNECT_TIMEOUT_S = 5.0


@attrs.frozen
class HttpAnswer:
    """A complete HTTP response to send before closing the connection."""

    status: int
    reason: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    def to_bytes(self, *, with_body: bool = True) -> bytes:
        """The response as bytes on the wire (``with_body=False`` for ``HEAD``)."""
        body = self.body.encode()
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines += [
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body if with_body else b"")


def endpoint_text(subprotocol: str) -> str:
    """The body of every answer to a request that is not a ``subprotocol`` websocket."""
    return (
        f"This is a scenic-gate server: a websocket endpoint for the subprotocol {subprotocol}.\n"
        f"Connect with a websocket client offering {subprotocol}; one CBOR map per binary "
        "message (see docs/protocol.md).\n"
    )


def answer_to_head(head: bytes, subprotocol: str) -> HttpAnswer | None:
    """What to answer the HTTP request head ``head``; ``None`` for a websocket upgrade.

    A websocket upgrade (``Upgrade: websocket``) goes on to the handshake,
    whatever else it holds (its subprotocol is checked there). Anything else
    that parses as an HTTP request gets ``426``; a head that does not, ``400``.
    """
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/"):
        return HttpAnswer(400, "Bad Request", endpoint_text(subprotocol))
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return HttpAnswer(400, "Bad Request", endpoint_text(subprotocol))
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return None
    return HttpAnswer(
        426,
        "Upgrade Required",
        endpoint_text(subprotocol),
        (("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", subprotocol)),
    )


async def open_listeners(
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    host_flag: str = "--host (SCENIC_HOST)",
    port_flag: str = "--port (SCENIC_PORT)",
) -> list[trio.SocketListener]:
    """Listen on ``host``:``port`` (0: a free port); with ``reuse_port``, beside other workers.

    Raises :class:`~server.startup.StartupError` with one line when the port
    cannot be bound (in use, an address this machine does not have, a port
    that needs privileges, a host name that does not resolve); the line names
    ``host_flag`` or ``port_flag`` as the way to choose another.
    """
    try:
        if reuse_port:
            return [await _reuse_port_listener(host, port)]
        return await trio.open_tcp_listeners(port, host=host)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {host!r}: no such address here; give {host_flag} an address "
            "of this machine, e.g. 127.0.0.1"
        ) from exc
    except OSError as exc:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = (
                "the port is in use by another process; stop it, or choose a free port "
                f"with {port_flag}"
            )
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = (
                f"{host} is not an address of this machine; give {host_flag} one that is, "
                "e.g. 127.0.0.1"
            )
        elif exc.errno == errno.EACCES:
            reason = f"this user may not use that port; choose one above 1023 with {port_flag}"
        else:
            reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {where}: {reason}") from exc


async def _reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    """A listener sharing ``port`` with the other workers (the kernel spreads connections)."""
    family = trio.socket.AF_INET6 if ":" in host else trio.socket.AF_INET
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


class WebsocketListener:
    """Accepts connections on ``listeners`` and hands each websocket to ``on_connection``.

    ``on_connection(ws)`` runs in ``handler_nursery`` (the caller's, so the
    caller decides how long connections may outlive :meth:`stop`); the
    websocket is closed when it returns. See the module docstring for what
    happens before.
    """

    def __init__(
        self,
        on_connection: Callable[[WebSocketConnection], Awaitable[None]],
        listeners: list[trio.SocketListener],
        *,
        subprotocol: str,
        handshake_timeout_s: float,
        max_message_size: int,
    ) -> None:
        self.on_connection = on_connection
        self.listeners = listeners
        self.subprotocol = subprotocol
        self.handshake_timeout_s = handshake_timeout_s
        self.max_message_size = max_message_size
        self._accepting = trio.CancelScope()
        self._handshaking: set[trio.CancelScope] = set()

    @property
    def port(self) -> int:
        """The port the first listener is bound to."""
        return self.listeners[0].socket.getsockname()[1]

    @property
    def handshaking(self) -> int:
        """Connections accepted and not yet handed to ``on_connection``."""
        return len(self._handshaking)

    async def run(self, handler_nursery: trio.Nursery) -> None:
        """Accept connections until :meth:`stop` (or cancellation); then close the listeners."""
        with self._accepting:
            await trio.serve_listeners(
                self._handle, self.listeners, handler_nursery=handler_nursery
            )
        for listener in self.listeners:
            await trio.aclose_forcefully(listener)

    def stop(self) -> None:
        """Stop accepting, and close every connection still in its handshake, now."""
        self._accepting.cancel()
        for scope in list(self._handshaking):
            scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        ws = None
        async with trio.open_nursery() as websocket_tasks:
            deadline = trio.current_time() + self.handshake_timeout_s
            with trio.CancelScope(deadline=deadline) as handshake:
                self._handshaking.add(handshake)
                try:
                    ws = await self._handshake(stream, websocket_tasks)
                except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
                    pass  # the client went away mid-handshake
                except Exception:
                    # One connection's oddity must not take the listener down.
                    log.exception("connection.handshake_failed", extra={"remote": _peer(stream)})
                finally:
                    self._handshaking.discard(handshake)
            if ws is None:
                websocket_tasks.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)
                return
            try:
                await self.on_connection(ws)
            finally:
                with trio.move_on_after(DISCONNECT_TIMEOUT_S):
                    await ws.aclose()  # returns at once when already closed
                websocket_tasks.cancel_scope.cancel()

    async def _handshake(
        self, stream: trio.SocketStream, websocket_tasks: trio.Nursery
    ) -> WebSocketConnection | None:
        """The accepted websocket, or ``None`` once the connection has had its answer."""
        head = await _read_head(stream)
        if head is None:
            return None
        if b"\r\n\r\n" not in head:
            answer = HttpAnswer(
                431, "Request Header Fields Too Large", endpoint_text(self.subprotocol)
            )
        else:
            answer = answer_to_head(head, self.subprotocol)
        if answer is not None:
            await stream.send_all(answer.to_bytes(with_body=not head.startswith(b"HEAD ")))
            log.info(
                "connection.not_websocket",
                extra={"remote": _peer(stream), "status": answer.status},
            )
            return None
        request = await wrap_server_stream(
            websocket_tasks, _Replayed(stream, head), max_message_size=self.max_message_size
        )
        if self.subprotocol not in request.proposed_subprotocols:
            await request.reject(
                400, body=f"offer the websocket subprotocol {self.subprotocol}".encode()
            )
            return None
        return await request.accept(subprotocol=self.subprotocol)


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """Bytes up to the end of the HTTP request head (and any that came with it).

    ``None`` when the peer closes first; more than ``MAX_HEAD_BYTES`` without
    the end of the head is returned as is (the caller answers ``431``).
    """
    received = bytearray()
    while b"\r\n\r\n" not in received:
        if len(received) > MAX_HEAD_BYTES:
            break
        chunk = await stream.receive_some(MAX_HEAD_BYTES)
        if not chunk:
            return None
        received += chunk
    return bytes(received)


def _peer(stream: trio.SocketStream) -> str:
    try:
        address, port, *_ = stream.socket.getpeername()
    except OSError:
        return "?"
    return repr(Endpoint(address, port, False))


class _Replayed(trio.abc.Stream):
    """``stream`` with the bytes already read from it put back in front."""

    def __init__(self, stream: trio.SocketStream, already_read: bytes) -> None:
        self._stream = stream
        self._pending = already_read
        self._peer = _peer(stream)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """The bytes read before, then whatever the socket gives."""
        if self._pending:
            size = len(self._pending) if max_bytes is None else max_bytes
            chunk, self._pending = self._pending[:size], self._pending[size:]
            return chunk
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send on the socket."""
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """As the socket's."""
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the socket."""
        await self._stream.aclose()

    def __repr__(self) -> str:
        # trio-websocket names a stream that is not a SocketStream by its repr
        # (``ws.remote``, which the session logs): keep the socket's endpoint.
        return self._peer
