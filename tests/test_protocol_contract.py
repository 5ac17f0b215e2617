"""docs/protocol.md pinned down: which error wins, what counts as garbage, what a device id is.

Real websockets against a real server, as a vendor's client would meet them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import cbor2
import pytest
from trio_websocket import ConnectionClosed

from tests.helpers import running_server
from tests.test_server import exchange, hello, raw_connection

DEVICES = {"kiosk-1": "kiosk", "counter-1": "counter", "G-MAIN-1": "gate"}


def _tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=2)).date().isoformat()


def _line(**fields) -> dict:
    return {"product": "adult", "quantity": 1, "date": _tomorrow(), **fields}


# Requests whose args pass the declared shapes but fail a check inside the op.
IN_OP_BAD_REQUESTS = {
    "empty lines": ("kiosk-1", "order.create", lambda: {"client_key": "k", "lines": []}),
    "unknown product": (
        "kiosk-1",
        "order.create",
        lambda: {"client_key": "k", "lines": [_line(product="unicorn")]},
    ),
    "a past date": (
        "kiosk-1",
        "order.create",
        lambda: {"client_key": "k", "lines": [_line(date="2001-01-01")]},
    ),
    "a missing slot": (
        "kiosk-1",
        "order.create",
        lambda: {"client_key": "k", "lines": [_line(product="adult-slot")]},
    ),
    "an unwanted slot": (
        "kiosk-1",
        "order.create",
        lambda: {"client_key": "k", "lines": [_line(slot="AM")]},
    ),
    "over 200 tickets": (
        "kiosk-1",
        "order.create",
        lambda: {"client_key": "k", "lines": [_line(quantity=150), _line(quantity=51)]},
    ),
    "order.find with no lookup": ("counter-1", "order.find", dict),
    "order.find with two lookups": (
        "counter-1",
        "order.find",
        lambda: {"order": "O1", "out_trade_no": "P1"},
    ),
    "a scan 11 minutes off": (
        "G-MAIN-1",
        "ticket.scan",
        lambda: {"scan_id": "s1", "code": "x", "at": time.time() - 660},
    ),
}


@pytest.mark.parametrize("case", list(IN_OP_BAD_REQUESTS))
async def test_bad_requests_found_inside_an_op_count_toward_the_garbage_limit(dsn, db, case):
    device, op, args = IN_OP_BAD_REQUESTS[case]
    async with running_server(dsn, db, DEVICES, max_bad_frames=3) as server:
        async with await raw_connection(server.url) as ws:
            assert "ok" in await hello(ws, device, server.tokens[device])
            codes = []
            with pytest.raises(ConnectionClosed):
                for n in range(5):
                    reply = await exchange(ws, {"id": n, "op": op, "args": args()})
                    codes.append(reply["error"]["code"])
            assert codes == ["bad_request"] * 3
            assert ws.closed.code == 1008


async def test_other_op_errors_do_not_count_as_garbage(dsn, db):
    async with running_server(dsn, db, DEVICES, max_bad_frames=3) as server:
        async with await raw_connection(server.url) as ws:
            await hello(ws, "counter-1", server.tokens["counter-1"])
            for n in range(5):
                reply = await exchange(ws, {"id": n, "op": "order.get", "args": {"order": "O1"}})
                assert reply["error"]["code"] == "not_found"
            assert await exchange(ws, {"id": 9, "op": "ping"}) == {"id": 9, "ok": {}}


async def test_envelope_errors_win_over_not_authenticated(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with await raw_connection(server.url) as ws:
            envelope = await exchange(ws, {"id": 1, "op": "ping", "extra": 1})
            unknown = await exchange(ws, {"id": 2, "op": "no.such.op"})
            tagged = await exchange(
                ws, cbor2.dumps({"id": 3, "op": "ping", "args": {"t": cbor2.CBORTag(1, 5)}})
            )
    assert envelope["id"] == 1 and envelope["error"]["code"] == "bad_request"
    assert unknown["error"]["code"] == "not_authenticated"  # before hello, any op but hello
    assert tagged["id"] is None and tagged["error"]["code"] == "bad_frame"


async def test_unknown_op_then_role_then_arguments(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with await raw_connection(server.url) as ws:
            await hello(ws, "kiosk-1", server.tokens["kiosk-1"])
            unknown = await exchange(ws, {"id": 1, "op": "no.such.op", "args": {"x": 1}})
            role = await exchange(ws, {"id": 2, "op": "ticket.scan", "args": {"surprise": 1}})
            arguments = await exchange(ws, {"id": 3, "op": "order.get", "args": {"surprise": 1}})
            again = await exchange(ws, {"id": 4, "op": "hello", "args": {}})
    assert unknown["error"]["code"] == "unknown_op"
    assert role["error"]["code"] == "forbidden"
    assert arguments["error"] == {"code": "bad_request", "message": "unknown argument 'surprise'"}
    assert again["error"]["code"] == "bad_request"


@pytest.mark.parametrize("device", ["bad id", "-leading-dash", "kiosk/1", "ü-kiosk", "k" * 65])
async def test_a_device_id_outside_the_format_is_a_bad_request_at_hello(dsn, db, device):
    async with running_server(dsn, db, DEVICES) as server:
        async with await raw_connection(server.url) as ws:
            refused = await hello(ws, device, "whatever")
            accepted = await hello(ws, "kiosk-1", server.tokens["kiosk-1"])
    assert refused["error"]["code"] == "bad_request"
    assert "ok" in accepted  # a bad request leaves the connection open


async def test_a_well_formed_unknown_device_id_gets_bad_credentials(dsn, db):
    async with running_server(dsn, db, DEVICES) as server:
        async with await raw_connection(server.url) as ws:
            refused = await hello(ws, "Kiosk_9.north-gate", "whatever")
            with pytest.raises(ConnectionClosed):
                await exchange(ws, {"id": 1, "op": "ping"})
    assert refused["error"]["code"] == "bad_credentials"
    assert ws.closed.code == 1008
