"""The TCP side of the server: the bounded handshake and the answer to plain HTTP."""

from __future__ import annotations

import psutil
import pytest
import trio

from server.listener import answer_to_head
from tests.helpers import running_server

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_a_websocket_upgrade_goes_on_to_the_handshake():
    assert answer_to_head(UPGRADE, "scenic.v1") is None
    assert answer_to_head(UPGRADE.replace(b"websocket", b"WebSocket"), "scenic.v1") is None


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
    ],
)
def test_a_plain_http_request_is_told_this_is_a_websocket_endpoint(head):
    answer = answer_to_head(head, "scenic.v1")
    assert answer.status == 426
    assert ("Upgrade", "websocket") in answer.headers
    assert "websocket endpoint for the subprotocol scenic.v1" in answer.body


@pytest.mark.parametrize(
    "head", [b"\x16\x03\x01\x02\x00\r\n\r\n", b"GET /\r\n\r\n", b"hello\r\n\r\n"]
)
def test_a_head_that_is_not_http_gets_400(head):
    assert answer_to_head(head, "scenic.v1").status == 400


async def _read_to_eof(stream: trio.SocketStream) -> bytes:
    received = b""
    while chunk := await stream.receive_some(65536):
        received += chunk
    return received


async def test_a_plain_http_get_is_answered_with_a_status_and_a_body(dsn, db):
    async with running_server(dsn, db, {}) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        with trio.fail_after(5):
            response = await _read_to_eof(stream)
        await stream.aclose()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"Content-Type: text/plain; charset=utf-8" in head
    assert b"a websocket endpoint for the subprotocol scenic.v1" in body


def _close_wait_sockets(port: int) -> list:
    return [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.status == psutil.CONN_CLOSE_WAIT and c.laddr and c.laddr.port == port
    ]


async def test_a_connection_closed_before_its_handshake_is_closed_at_once(dsn, db):
    async with running_server(dsn, db, {}) as server:
        for _ in range(3):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            await stream.aclose()
        partial = await trio.open_tcp_stream("127.0.0.1", server.port)
        await partial.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no end of head
        await partial.aclose()
        with trio.fail_after(5):  # trio-websocket alone held them for 60 s
            while _close_wait_sockets(server.port):
                await trio.sleep(0.05)


async def test_a_silent_connection_is_closed_after_the_handshake_timeout(dsn, db):
    async with running_server(dsn, db, {}, handshake_timeout_s=0.5) as server:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        with trio.fail_after(5):
            assert await _read_to_eof(stream) == b""
        await stream.aclose()


async def test_shutdown_does_not_wait_for_connections_in_their_handshake(dsn, db):
    async with running_server(dsn, db, {}) as server:  # handshake timeout 10 s, grace 5 s
        closed = await trio.open_tcp_stream("127.0.0.1", server.port)
        await closed.aclose()
        silent = await trio.open_tcp_stream("127.0.0.1", server.port)
        halfway = await trio.open_tcp_stream("127.0.0.1", server.port)
        await halfway.send_all(b"GET / HTTP/1.1\r\n")
        await trio.sleep(0.2)
        shutdown_began = trio.current_time()
    # It used to wait out the grace period plus 2 s (7 s here) for them.
    assert trio.current_time() - shutdown_began < 5
    with trio.fail_after(1):
        assert await _read_to_eof(silent) == b""
        assert await _read_to_eof(halfway) == b""
    await silent.aclose()
    await halfway.aclose()
