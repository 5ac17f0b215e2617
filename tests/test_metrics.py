"""The Prometheus endpoint, scraped by a real HTTP GET, read with prometheus-client's parser."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from clients.client import RemoteError, connect
from server import metrics_http
from server.cli import build_parser
from server.workers import free_port
from tests.helpers import running_server
from tests.test_orders import adults, next_event

DEVICES = {"kiosk-1": "kiosk", "admin-x": "admin"}


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_the_endpoint_counts_requests_connections_actors_payments_and_commits(dsn, db):
    port = free_port()
    async with running_server(dsn, db, DEVICES, metrics_port=port) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            for _ in range(3):
                await kiosk.request("ping")
            with pytest.raises(RemoteError):
                await kiosk.request("no.such.op")
            with pytest.raises(RemoteError):
                await kiosk.request("server.stats")  # an admin's op
            order = await kiosk.request("order.create", client_key="m", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
            await next_event(kiosk, "order.paid")
            status, kind, text = await trio.to_thread.run_sync(
                get, f"http://127.0.0.1:{port}/metrics"
            )
    assert status == 200 and kind.startswith("text/plain")
    found = samples(text)
    assert found[("scenic_requests_total", (("op", "ping"), ("outcome", "ok")))] == 3
    assert found[("scenic_requests_total", (("op", "unknown"), ("outcome", "unknown_op")))] == 1
    assert found[("scenic_requests_total", (("op", "server.stats"), ("outcome", "forbidden")))] == 1
    assert found[("scenic_request_seconds_count", (("op", "ping"),))] == 3
    assert found[("scenic_connections", (("role", "kiosk"),))] == 1
    assert found[("scenic_actors_live", (("kind", "order"),))] >= 1
    assert ("scenic_actor_mailbox_depth", (("kind", "order"),)) in found
    payments = ("scenic_payments_total", (("channel", "wechat"), ("outcome", "captured")))
    assert found[payments] == 1
    assert found[("scenic_group_commit_batch_size_count", ())] >= 2
    assert found[("scenic_group_commit_seconds_count", ())] >= 2
    assert found[("scenic_outbox_backlog", ())] == 0
    assert found[("scenic_outbox_oldest_age_seconds", ())] == 0


async def test_other_paths_and_methods_are_refused_and_a_silent_client_is_dropped(
    dsn, db, monkeypatch
):
    monkeypatch.setattr(metrics_http, "HEAD_TIMEOUT_S", 0.5)
    port = free_port()
    async with running_server(dsn, db, DEVICES, metrics_port=port):
        base = f"http://127.0.0.1:{port}"
        not_found = await trio.to_thread.run_sync(get, base + "/")
        wrong_method = await trio.to_thread.run_sync(get, base + "/metrics", "POST")

        def silent() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # never finishes its head
                return sock.recv(100)

        dropped = await trio.to_thread.run_sync(silent)
    assert not_found[0] == 404 and wrong_method[0] == 405
    assert dropped == b""


async def test_the_endpoint_is_off_unless_asked_for(dsn, db):
    port = free_port()
    async with running_server(dsn, db, DEVICES):

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except ConnectionRefusedError:
                return True
            return False

        assert await trio.to_thread.run_sync(refused)


def test_the_metrics_port_flag_is_checked():
    args = build_parser().parse_args(["serve", "--metrics-port", "9464"])
    assert args.metrics_port == 9464
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--metrics-port", "70000"])
    assert exited.value.code == 2
