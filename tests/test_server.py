"""The server end to end: real websockets on loopback, a real PostgreSQL."""

from __future__ import annotations

import time

import cbor2
import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from clients.client import RemoteError, connect
from server.auth import hash_token, new_token
from server.config import ServerConfig
from server.handlers import build_op_table
from server.schema import Arg
from server.storage import devices
from tests.helpers import running_server


async def raw_connection(url: str):
    return open_websocket_url(url, subprotocols=["scenic.v1"])


async def exchange(ws, payload) -> dict:
    await ws.send_message(payload if isinstance(payload, bytes | str) else cbor2.dumps(payload))
    return cbor2.loads(await ws.get_message())


async def hello(ws, device: str, token: str) -> dict:
    return await exchange(ws, {"id": 0, "op": "hello", "args": {"device": device, "token": token}})


async def test_server_starts_listens_and_stops_gracefully(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        async with connect(server.url, "k1", server.tokens["k1"]) as client:
            assert client.role == "kiosk"
            assert await client.request("ping") == {}
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", server.port)


async def test_hello_reports_role_and_server_time(dsn, db):
    async with running_server(dsn, db, {"gate-1": "gate"}) as server:
        async with await raw_connection(server.url) as ws:
            reply = await hello(ws, "gate-1", server.tokens["gate-1"])
    ok = reply["ok"]
    assert reply["id"] == 0
    assert ok["role"] == "gate" and ok["device"] == "gate-1"
    assert ok["protocol"] == "scenic.v1"
    assert abs(ok["server_time"] - time.time()) < 60


async def test_wrong_token_gets_bad_credentials_and_the_connection_closes(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        async with await raw_connection(server.url) as ws:
            reply = await hello(ws, "k1", "not-the-token")
            assert reply["error"]["code"] == "bad_credentials"
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
            assert ws.closed.code == 1008


async def test_unknown_device_gets_bad_credentials(dsn, db):
    async with running_server(dsn, db, {}) as server:
        async with await raw_connection(server.url) as ws:
            reply = await hello(ws, "nobody", new_token())
            assert reply["error"]["code"] == "bad_credentials"


async def test_revoked_device_is_refused_at_hello(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        assert await devices.revoke_device(db, "k1")
        with pytest.raises(RemoteError) as refused:
            async with connect(server.url, "k1", server.tokens["k1"]):
                pass
        assert refused.value.code == "bad_credentials"


async def test_revoking_a_device_closes_its_open_connection(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk", "k2": "kiosk"}) as server:
        async with (
            await raw_connection(server.url) as ws,
            connect(server.url, "k2", server.tokens["k2"]) as other,
        ):
            assert "ok" in await hello(ws, "k1", server.tokens["k1"])
            await devices.revoke_device(db, "k1")
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                while True:
                    await ws.get_message()
            assert ws.closed.code == 4001
            assert await other.request("ping") == {}


async def test_requests_before_hello_get_not_authenticated(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        async with await raw_connection(server.url) as ws:
            reply = await exchange(ws, {"id": 5, "op": "ping", "args": {}})
            assert reply == {
                "id": 5,
                "error": {"code": "not_authenticated", "message": reply["error"]["message"]},
            }
            assert "ok" in await hello(ws, "k1", server.tokens["k1"])
            assert await exchange(ws, {"id": 6, "op": "ping"}) == {"id": 6, "ok": {}}


async def test_an_op_outside_the_role_is_forbidden(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk", "boss": "admin"}) as server:
        async with connect(server.url, "k1", server.tokens["k1"]) as kiosk:
            with pytest.raises(RemoteError) as refused:
                await kiosk.request("server.stats")
            assert refused.value.code == "forbidden"
            assert await kiosk.request("ping") == {}
        async with connect(server.url, "boss", server.tokens["boss"]) as admin:
            stats = await admin.request("server.stats")
            assert stats["connections"] == 1


async def test_a_connection_without_the_subprotocol_is_refused(dsn, db):
    async with running_server(dsn, db, {}) as server:
        with pytest.raises(HandshakeError):
            async with open_websocket_url(server.url):
                pass


BAD_INPUTS = [
    (b"\xff\xfe not cbor", "bad_frame"),
    (cbor2.dumps([1, 2]), "bad_frame"),
    ("a text frame", "bad_frame"),
    (cbor2.dumps({"id": 9, "op": "ping", "args": {"pad": b"x" * 70000}}), "too_large"),
    (cbor2.dumps({"id": 9, "op": "ping", "args": {"a": [[[[[[[[[[1]]]]]]]]]]}}), "bad_frame"),
    (cbor2.dumps({"id": 9, "op": "ping", "args": {"t": cbor2.CBORTag(1, 5)}}), "bad_frame"),
    (cbor2.dumps({"op": "ping"}), "bad_request"),
    (cbor2.dumps({"id": "x", "op": "ping"}), "bad_request"),
    (cbor2.dumps({"id": 9, "op": "ping", "args": {"surprise": 1}}), "bad_request"),
    (cbor2.dumps({"id": 9, "op": "no.such.op"}), "unknown_op"),
    (cbor2.dumps({"id": 9, "op": "hello", "args": {"device": "k1", "token": "t"}}), "bad_request"),
]


@pytest.mark.parametrize(("payload", "code"), BAD_INPUTS)
async def test_bad_input_gets_an_error_and_the_connection_stays_usable(dsn, db, payload, code):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        async with await raw_connection(server.url) as ws:
            await hello(ws, "k1", server.tokens["k1"])
            reply = await exchange(ws, payload)
            assert reply["error"]["code"] == code
            assert reply["error"]["message"]
            assert await exchange(ws, {"id": 10, "op": "ping"}) == {"id": 10, "ok": {}}


async def test_a_client_that_keeps_sending_garbage_is_disconnected_alone(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk", "k2": "kiosk"}) as server:
        async with (
            connect(server.url, "k2", server.tokens["k2"]) as bystander,
            await raw_connection(server.url) as ws,
        ):
            await hello(ws, "k1", server.tokens["k1"])
            codes = []
            with pytest.raises(ConnectionClosed):
                for _ in range(server.config.max_bad_frames + 5):
                    codes.append((await exchange(ws, b"\x00garbage"))["error"]["code"])
            assert codes == ["bad_frame"] * server.config.max_bad_frames
            assert ws.closed.code == 1008
            assert await bystander.request("ping") == {}


async def test_pipelined_requests_are_all_answered_by_id(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as server:
        async with await raw_connection(server.url) as ws:
            await hello(ws, "k1", server.tokens["k1"])
            for request_id in range(1, 201):
                await ws.send_message(cbor2.dumps({"id": request_id, "op": "ping"}))
            replies = [cbor2.loads(await ws.get_message()) for _ in range(200)]
    assert sorted(reply["id"] for reply in replies) == list(range(1, 201))
    assert all(reply["ok"] == {} for reply in replies)


def slow_op_table(release: trio.Event):
    table = build_op_table()

    @table.op("test.slow", roles={"kiosk"}, args=(Arg("n", "int"),))
    async def slow(ctx, args):
        """Wait until released, then echo n."""
        await release.wait()
        return {"n": args["n"]}

    return table


async def test_replies_may_come_out_of_order_and_still_match(dsn, db):
    release = trio.Event()
    async with running_server(dsn, db, {"k1": "kiosk"}, ops=slow_op_table(release)) as server:
        async with connect(server.url, "k1", server.tokens["k1"]) as client:
            slow = await client.start_request("test.slow", {"n": 7})
            assert await client.request("ping") == {}
            release.set()
            assert await slow.wait() == {"n": 7}


async def test_shutdown_lets_in_flight_requests_finish(dsn, db):
    release = trio.Event()
    async with running_server(dsn, db, {"k1": "kiosk"}, ops=slow_op_table(release)) as server:
        client_cm = connect(server.url, "k1", server.tokens["k1"])
        client = await client_cm.__aenter__()
        try:
            pending = await client.start_request("test.slow", {"n": 3})
            await trio.sleep(0.1)
            server.shutdown.set()
            await trio.sleep(0.2)
            release.set()
            assert await pending.wait(timeout=5) == {"n": 3}
        finally:
            await client_cm.__aexit__(None, None, None)


async def test_a_second_server_on_the_same_database_sees_the_same_devices(dsn, db):
    async with running_server(dsn, db, {"k1": "kiosk"}) as first:
        token = first.tokens["k1"]
        async with running_server(dsn, db, {}) as second:
            async with connect(second.url, "k1", token) as client:
                assert await client.request("ping") == {}


async def test_device_tokens_are_stored_only_as_hashes(dsn, db):
    token = new_token()
    await devices.add_device(db, "k9", "kiosk", hash_token(token))
    stored = await db.fetchval("select token_hash from devices where device_id = 'k9'")
    assert bytes(stored) == hash_token(token)
    assert token.encode() not in bytes(stored)


def test_config_reads_the_environment_and_flags_win():
    config = ServerConfig.from_env({"SCENIC_PORT": "9001", "SCENIC_DSN": "postgresql://x/y"})
    assert config.port == 9001 and config.dsn == "postgresql://x/y"
    with pytest.raises(ValueError, match="SCENIC_PORT"):
        ServerConfig.from_env({"SCENIC_PORT": "eighty"})
