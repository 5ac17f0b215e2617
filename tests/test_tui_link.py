"""The screens' link: backoff, reconnect after a server restart, bounded requests, refusals."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from clients.client import RemoteError
from clients.tui.link import Link, LinkDown, LinkState, NoReply, backoff_delay
from server.workers import free_port
from tests.helpers import running_server


@given(st.integers(1, 10_000))
def test_backoff_doubles_from_half_a_second_and_never_exceeds_the_cap(attempt):
    delay = backoff_delay(attempt)
    assert 0.5 <= delay <= 15.0
    assert delay == min(15.0, 0.5 * 2 ** (attempt - 1)) if attempt < 64 else delay == 15.0
    assert backoff_delay(attempt + 1) >= delay


def test_backoff_counts_from_one():
    assert [backoff_delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 15, 15]
    with pytest.raises(ValueError):
        backoff_delay(0)


async def wait_for_status(link: Link, status: str, within: float = 15.0) -> LinkState:
    with trio.fail_after(within):
        while link.state.status != status:
            await trio.sleep(0.02)
    return link.state


async def test_the_link_reconnects_after_the_server_restarts_and_bounds_requests_meanwhile(dsn, db):
    port = free_port()
    states: list[LinkState] = []
    async with trio.open_nursery() as nursery:
        async with running_server(dsn, db, {"kiosk-1": "kiosk"}, port=port) as server:
            link = Link(
                server.url,
                "kiosk-1",
                server.tokens["kiosk-1"],
                on_state=states.append,
                backoff_base_s=0.1,
                backoff_cap_s=0.5,
                request_timeout_s=2.0,
            )
            nursery.start_soon(link.run)
            assert await link.request("ping") == {}
            assert link.state == LinkState("connected")
        # the server is gone
        down = await wait_for_status(link, "reconnecting")
        assert down.code == "connection_lost" and down.attempt >= 1
        with pytest.raises(NoReply) as waited:
            await link.request("ping", timeout=0.3)
        assert waited.value.code == "no_reply"
        async with running_server(dsn, db, {}, port=port):
            await wait_for_status(link, "connected")
            assert await link.request("ping") == {}
            with pytest.raises(RemoteError) as refused:
                await link.request("order.get", order="O-NOPE")
            assert refused.value.code == "not_found"
        nursery.cancel_scope.cancel()
    assert [s.status for s in states][:2] == ["connected", "reconnecting"]


async def test_a_refused_device_fails_without_retrying_until_asked(dsn, db):
    async with running_server(dsn, db, {"kiosk-1": "kiosk"}) as server:
        link = Link(server.url, "kiosk-1", "wrong-token", backoff_base_s=0.05)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            failed = await wait_for_status(link, "failed")
            assert failed.code == "bad_credentials"
            with pytest.raises(LinkDown) as refused:
                await link.request("ping")
            assert refused.value.code == "bad_credentials"
            await trio.sleep(0.3)
            assert link.state.attempt == 1  # no retry by itself
            link._token = server.tokens["kiosk-1"]
            link.retry_now()
            await wait_for_status(link, "connected")
            nursery.cancel_scope.cancel()


async def test_a_dropped_connection_comes_back_by_itself(dsn, db):
    async with running_server(dsn, db, {"kiosk-1": "kiosk"}) as server:
        link = Link(server.url, "kiosk-1", server.tokens["kiosk-1"], backoff_base_s=0.05)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run)
            await wait_for_status(link, "connected")
            for _ in range(3):  # each drop after a good connection backs off from the start
                await link.drop()
                assert (await wait_for_status(link, "reconnecting", within=5)).attempt == 1
                await wait_for_status(link, "connected")
            assert await link.request("ping") == {}
            nursery.cancel_scope.cancel()
