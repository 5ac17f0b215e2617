"""The Prometheus endpoint: ``GET /metrics`` over plain HTTP/1.1 on its own port, on trio.

Off unless ``--metrics-port`` (``SCENIC_METRICS_PORT``) is given; it listens
on ``--metrics-host`` (``SCENIC_METRICS_HOST``, 127.0.0.1 by default). Each
scrape reads the live gauges first (:meth:`ServerMetrics.refresh`), then
answers with the text exposition format. Anything but ``GET /metrics`` gets
404 (or 405 for another method); a request head over 8 KiB, or not complete
within 5 seconds, is dropped. One connection, one answer, then close.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

import trio
from prometheus_client import CONTENT_TYPE_LATEST

from server.listener import open_listeners

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.metrics")

#: the largest request head read, bytes
MAX_HEAD_BYTES = 8192
#: how long a client has to send its request head, seconds
HEAD_TIMEOUT_S = 5.0
#: how long a scrape may take to gather and send, seconds
SCRAPE_TIMEOUT_S = 10.0


async def serve_metrics(
    services: Services, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer scrapes until cancelled; ``started`` with the port it listens on.

    Raises :class:`~server.startup.StartupError` (one line) when the port
    cannot be bound.
    """
    config = services.config
    listeners = await open_listeners(
        config.metrics_host,
        config.metrics_port or 0,
        host_flag="--metrics-host (SCENIC_METRICS_HOST)",
        port_flag="--metrics-port (SCENIC_METRICS_PORT)",
    )
    port = listeners[0].socket.getsockname()[1]
    log.info("metrics.listening", extra={"url": f"http://{config.metrics_host}:{port}/metrics"})
    async with trio.open_nursery() as nursery:
        task_status.started(port)
        await trio.serve_listeners(
            lambda stream: _answer(stream, services), listeners, handler_nursery=nursery
        )


async def _answer(stream: trio.SocketStream, services: Services) -> None:
    async with stream:
        head = b""
        with trio.move_on_after(HEAD_TIMEOUT_S):
            while b"\r\n\r\n" not in head and len(head) <= MAX_HEAD_BYTES:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                head += chunk
        if b"\r\n\r\n" not in head:
            return  # incomplete, too long or too slow: nothing to answer
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        with trio.move_on_after(SCRAPE_TIMEOUT_S):
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                await _send(stream, 400, "text/plain", b"bad request\n")
            elif parts[0] != "GET":
                await _send(stream, 405, "text/plain", b"only GET is served\n")
            elif parts[1].split("?", 1)[0] != "/metrics":
                await _send(stream, 404, "text/plain", b"the metrics are at /metrics\n")
            else:
                await _send(stream, 200, CONTENT_TYPE_LATEST, await scrape(services))


async def scrape(services: Services) -> bytes:
    """The server's metrics now, in Prometheus' text format (the live gauges read first)."""

    def roles() -> dict[str, int]:
        return dict(Counter(session.role for session in services.sessions if session.role))

    def actors() -> tuple[dict[str, int], dict[str, int]]:
        stats = services.registry.stats()
        return stats.live_by_kind, stats.mailbox_by_kind

    metrics = services.metrics
    await metrics.refresh(roles, actors, services.db.run, services.clock())
    return metrics.text()


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


async def _send(stream: trio.SocketStream, status: int, content_type: str, body: bytes) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    await stream.send_all(head.encode("latin-1") + body)
