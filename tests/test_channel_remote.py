"""The simulator as its own process: its websocket API, RemoteChannel, and notifications.

Everything runs in-process on 127.0.0.1 with real websockets, bounded by fail_after.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import cbor2
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url, serve_websocket

from clients.channel_sim import add_channel_sim_parser, run_channel_sim
from server.channels import fund_auth, signing
from server.channels.adapter import BadSignature, ChannelError, ChannelUnavailable
from server.channels.keys import load_or_create_channel_keys
from server.channels.notifier import Notifier, NotifyPolicy
from server.channels.remote import RemoteChannel
from server.channels.sim_api import SUBPROTOCOL, serve_channel_api
from server.channels.simulator import ChannelSimulator
from server.channels.statement import local_date, parse_statement
from server.config import ServerConfig

KEYS = {"wechat": b"w" * 32, "alipay": b"a" * 32}
LIMIT_S = 20


def utc_now():
    return datetime.now(UTC)


def soon(minutes=15):
    return utc_now() + timedelta(minutes=minutes)


async def start_api(nursery, simulators=None, port=0):
    simulators = simulators or {
        name: ChannelSimulator(name, KEYS[name], utc_now, rng=random.Random(1)) for name in KEYS
    }
    url = await nursery.start(partial(serve_channel_api, simulators, "127.0.0.1", port))
    return url, simulators


async def test_every_adapter_call_works_across_the_wire():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, sims = await start_api(nursery)
            async with RemoteChannel("wechat", url, KEYS["wechat"], utc_now) as wechat:
                expires = soon()
                created = await wechat.create_payment("T1", 12800, "门票 成人", expires)
                assert created.qr_payload.startswith("weixin://wxpay/bizpayurl?pr=")
                assert created == await wechat.create_payment("T1", 12800, "门票 成人", expires)
                assert (await wechat.query_payment("T1")).state == "NOTPAY"

                notification = await wechat.pay("T1")
                status = await wechat.query_payment("T1")
                assert status.state == "SUCCESS"
                assert status.channel_txn_id == notification["channel_txn_id"]
                assert status.paid_at == sims["wechat"].query_payment("T1").paid_at
                assert status.paid_at.tzinfo is not None

                refund = await wechat.refund("T1", "R1", 2800, 12800, "child ticket")
                assert refund.state == "SUCCESS"
                assert refund.succeeded_at is not None
                assert await wechat.query_refund("R1") == refund
                assert await wechat.refund("T1", "R1", 2800, 12800, "child ticket") == refund

                await wechat.create_payment("T2", 500, "", soon())
                await wechat.close_payment("T2")
                assert (await wechat.query_payment("T2")).state == "CLOSED"

                text = await wechat.statement(local_date(utc_now()))
                kinds = [(row.kind, row.out_trade_no) for row in parse_statement("wechat", text)]
                assert kinds == [("payment", "T1"), ("refund", "T1")]

                signed = signing.signed(notification, KEYS["wechat"], time.time())
                wechat.verify_notification(signed)
                with pytest.raises(BadSignature):
                    wechat.verify_notification({**signed, "amount_fen": 1})
            nursery.cancel_scope.cancel()


async def expect_code(code, call):
    with pytest.raises(ChannelError) as raised:
        await call
    assert raised.value.code == code, raised.value.message
    assert raised.value.message


async def test_the_channels_refusals_arrive_with_their_codes():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            async with (
                RemoteChannel("alipay", url, KEYS["alipay"]) as alipay,
                RemoteChannel("paypal", url, b"p" * 32) as paypal,
            ):
                await expect_code("not_found", alipay.query_payment("nope"))
                await alipay.create_payment("T1", 100, "", soon())
                await expect_code("out_trade_no_used", alipay.create_payment("T1", 200, "", soon()))
                await expect_code("not_paid", alipay.refund("T1", "R1", 100, 100, ""))
                await alipay.pay("T1")
                await expect_code("already_paid", alipay.pay("T1"))
                await expect_code("already_paid", alipay.close_payment("T1"))
                await expect_code("amount_mismatch", alipay.refund("T1", "R1", 50, 99, ""))
                await expect_code("refund_exceeds_payment", alipay.refund("T1", "R1", 101, 100, ""))
                await expect_code("not_found", alipay.query_refund("R404"))
                await expect_code("unknown_channel", paypal.query_payment("T1"))
                await expect_code("bad_request", alipay.create_payment("T3", -5, "", soon()))
            nursery.cancel_scope.cancel()


async def test_pipelined_calls_are_matched_to_their_replies():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            results = {}
            async with RemoteChannel("wechat", url, KEYS["wechat"]) as wechat:

                async def create(n):
                    results[n] = await wechat.create_payment(f"T{n}", 100 + n, "", soon())

                async with trio.open_nursery() as calls:
                    for n in range(50):
                        calls.start_soon(create, n)
            assert {n: (r.out_trade_no, r.amount_fen) for n, r in results.items()} == {
                n: (f"T{n}", 100 + n) for n in range(50)
            }
            nursery.cancel_scope.cancel()


async def raw_request(ws, message):
    await ws.send_message(message)
    return cbor2.loads(await ws.get_message())


async def test_bad_frames_and_unknown_ops_are_answered_not_fatal():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            async with open_websocket_url(url, subprotocols=[SUBPROTOCOL]) as ws:
                reply = await raw_request(ws, "a text frame")
                assert reply["error"]["code"] == "bad_frame"
                reply = await raw_request(ws, b"\xff\x00garbage")
                assert reply["error"]["code"] == "bad_frame"
                reply = await raw_request(ws, cbor2.dumps([1, 2, 3]))
                assert reply["error"]["code"] == "bad_frame"
                reply = await raw_request(ws, cbor2.dumps({"id": 7, "op": "mint", "args": {}}))
                assert reply == {"id": 7, "error": reply["error"]}
                assert reply["error"]["code"] == "unknown_op"
                frame = {"id": 8, "op": "query_payment", "args": {"channel": "wechat"}}
                reply = await raw_request(ws, cbor2.dumps(frame))
                assert (reply["id"], reply["error"]["code"]) == (8, "bad_request")
                frame = {
                    "id": 9,
                    "op": "statement",
                    "args": {"channel": "wechat", "bill_date": "2026-13-45"},
                }
                reply = await raw_request(ws, cbor2.dumps(frame))
                assert (reply["id"], reply["error"]["code"]) == (9, "bad_request")
                frame = {
                    "id": 10,
                    "op": "query_payment",
                    "args": {"channel": "wechat", "out_trade_no": "x", "extra": 1},
                }
                reply = await raw_request(ws, cbor2.dumps(frame))
                assert reply["error"]["code"] == "bad_request"
                frame = {
                    "id": 11,
                    "op": "query_refund",
                    "args": {"channel": "wechat", "out_refund_no": "R"},
                }
                reply = await raw_request(ws, cbor2.dumps(frame))
                assert (reply["id"], reply["error"]["code"]) == (11, "not_found")
            nursery.cancel_scope.cancel()


async def test_a_stalled_call_holds_up_no_other_call_on_its_connection():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            async with RemoteChannel("wechat", url, KEYS["wechat"]) as wechat:
                await wechat.create_payment("T1", 100, "", soon())
                await wechat.inject_fault("query_payment", "stall", stall_s=30)
                answered = []

                async def stalled():
                    await wechat.query_payment("T1")
                    answered.append("stalled")

                async with trio.open_nursery() as held:
                    held.start_soon(stalled)
                    await trio.sleep(0.2)
                    with trio.fail_after(5):
                        assert (await wechat.query_payment("T1")).state == "NOTPAY"
                    assert answered == []  # still held
                    held.cancel_scope.cancel()
                await expect_code("bad_request", wechat.inject_fault("pay", "stall", stall_s=1))
            nursery.cancel_scope.cancel()


async def test_a_client_without_the_subprotocol_is_rejected():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            with pytest.raises(ConnectionRejected) as raised:
                async with open_websocket_url(url) as ws:
                    await ws.get_message()
            assert raised.value.status_code == 400
            nursery.cancel_scope.cancel()


async def test_an_unreachable_simulator_is_unavailable():
    with trio.fail_after(LIMIT_S):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()  # nothing listens there now
        async with RemoteChannel("wechat", f"ws://127.0.0.1:{port}", KEYS["wechat"]) as wechat:
            with pytest.raises(ChannelUnavailable):
                await wechat.query_payment("T1")


async def test_a_silent_simulator_times_out_as_unavailable():
    async def silent(request):
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(serve_websocket, silent, "127.0.0.1", 0, None))
            url = f"ws://127.0.0.1:{server.port}"
            async with RemoteChannel("wechat", url, KEYS["wechat"], timeout_s=0.5) as wechat:
                with pytest.raises(ChannelUnavailable, match="no reply"):
                    await wechat.query_payment("T1")
            nursery.cancel_scope.cancel()


async def test_the_channel_reconnects_after_the_connection_is_lost():
    simulators = {"wechat": ChannelSimulator("wechat", KEYS["wechat"], utc_now)}

    async def api_until(scope, port, task_status=trio.TASK_STATUS_IGNORED):
        with scope:
            await serve_channel_api(simulators, "127.0.0.1", port, task_status=task_status)

    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            first_life = trio.CancelScope()
            url = await nursery.start(api_until, first_life, 0)
            port = int(url.rsplit(":", 1)[1])
            async with RemoteChannel("wechat", url, KEYS["wechat"], timeout_s=2) as wechat:
                await wechat.create_payment("T1", 100, "", soon())
                first_life.cancel()
                await trio.sleep(0.1)
                with pytest.raises(ChannelUnavailable):
                    await wechat.query_payment("T1")
                await nursery.start(api_until, trio.CancelScope(), port)
                assert (await wechat.query_payment("T1")).state == "NOTPAY"
                reached_the_end = True
            assert reached_the_end
            nursery.cancel_scope.cancel()


# -- pre-authorisation (Alipay's fund authorisation) across the wire ----------------


async def test_every_freeze_call_works_across_the_wire():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, sims = await start_api(nursery)
            async with RemoteChannel("alipay", url, KEYS["alipay"], utc_now) as alipay:
                expires = utc_now().replace(microsecond=0) + timedelta(days=2)
                created = await alipay.create_freeze("D1", "F1", 50000, "雪板 押金", expires)
                assert created.qr_payload.startswith("https://qr.alipay.com/")
                assert created.expires_at == expires
                assert created == await alipay.create_freeze("D1", "F1", 50000, "", expires)
                status = await alipay.query_freeze("D1", "F1")
                assert (status.state, status.auth_no, status.rest_fen) == ("INIT", None, 0)

                notification = await alipay.authorize_freeze("D1", "F1")
                assert notification["kind"] == "freeze"
                auth_no = notification["auth_no"]
                status = await alipay.query_freeze("D1", "F1")
                assert status == sims["alipay"].query_freeze("D1", "F1")
                assert (status.state, status.auth_no, status.rest_fen) == (
                    "AUTHORIZED",
                    auth_no,
                    50000,
                )
                assert status.authorized_at.tzinfo is not None

                unfrozen = await alipay.unfreeze(auth_no, "U1", 10000, "helmet back")
                assert (unfrozen.amount_fen, unfrozen.rest_fen) == (10000, 40000)
                assert unfrozen.unfrozen_at.tzinfo is not None
                assert await alipay.unfreeze(auth_no, "U1", 10000, "again") == unfrozen

                first = await alipay.convert_to_payment(
                    auth_no, "T1", 6000, "day 1", "NOT_COMPLETE"
                )
                assert (first.released_fen, first.rest_fen) == (0, 34000)
                last = await alipay.convert_to_payment(auth_no, "T2", 4000, "day 2")
                assert (last.auth_confirm_mode, last.released_fen, last.rest_fen) == (
                    "COMPLETE",
                    30000,
                    0,
                )
                assert await alipay.convert_to_payment(auth_no, "T2", 4000, "") == last
                status = await alipay.query_freeze("D1", "F1")
                assert status.state == "FINISH"
                amounts = (status.rest_fen, status.converted_fen, status.unfrozen_fen)
                assert amounts == (0, 10000, 40000)

                payment = await alipay.query_payment("T2")
                assert (payment.state, payment.paid_fen) == ("SUCCESS", 4000)
                assert payment.channel_txn_id == last.channel_txn_id
                refund = await alipay.refund("T2", "R1", 1000, 4000, "")
                assert refund.state == "SUCCESS"
                rows = parse_statement("alipay", await alipay.statement(local_date(utc_now())))
                assert [(r.kind, r.out_trade_no) for r in rows] == [
                    ("payment", "T1"),
                    ("payment", "T2"),
                    ("refund", "T2"),
                ]

                await alipay.create_freeze("D2", "F2", 100, "", expires)
                await alipay.close_freeze("D2", "F2")
                assert (await alipay.query_freeze("D2", "F2")).state == "CLOSED"

                signed = signing.signed(notification, KEYS["alipay"], time.time())
                alipay.verify_notification(signed, "freeze")
                with pytest.raises(BadSignature):
                    alipay.verify_notification(signed)
                with pytest.raises(BadSignature):
                    alipay.verify_notification({**signed, "amount_fen": 50001}, "freeze")
            nursery.cancel_scope.cancel()


async def test_the_freeze_refusals_arrive_with_their_codes():
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery)
            async with (
                RemoteChannel("alipay", url, KEYS["alipay"]) as alipay,
                RemoteChannel("wechat", url, KEYS["wechat"]) as wechat,
            ):
                expires = soon()
                await expect_code("not_found", alipay.query_freeze("D1", "F1"))
                await alipay.create_freeze("D1", "F1", 500, "", expires)
                await expect_code(
                    "request_no_used", alipay.create_freeze("D1", "F1", 501, "", expires)
                )
                await expect_code(
                    "out_order_no_used", alipay.create_freeze("D1", "F9", 500, "", expires)
                )
                await expect_code(
                    "expires_too_late",
                    alipay.create_freeze("D2", "F2", 500, "", utc_now() + timedelta(days=31)),
                )
                await expect_code("bad_request", alipay.create_freeze("D3", "F3", 0, "", expires))
                auth_no = (await alipay.authorize_freeze("D1", "F1"))["auth_no"]
                await expect_code("already_authorized", alipay.authorize_freeze("D1", "F1"))
                await expect_code("already_authorized", alipay.close_freeze("D1", "F1"))
                await expect_code("unfreeze_exceeds_rest", alipay.unfreeze(auth_no, "U1", 501, ""))
                await expect_code("request_no_used", alipay.unfreeze(auth_no, "F1", 1, ""))
                await expect_code(
                    "convert_exceeds_rest", alipay.convert_to_payment(auth_no, "T1", 501, "")
                )
                await expect_code(
                    "bad_request", alipay.convert_to_payment(auth_no, "T1", 1, "", "SOME")
                )
                await expect_code("not_found", alipay.unfreeze("nope", "U1", 1, ""))

                for call in (
                    wechat.create_freeze("D1", "F1", 500, "", expires),
                    wechat.query_freeze("D1", "F1"),
                    wechat.close_freeze("D1", "F1"),
                    wechat.unfreeze(auth_no, "U1", 1, ""),
                    wechat.convert_to_payment(auth_no, "T1", 1, ""),
                    wechat.authorize_freeze("D1", "F1"),
                    wechat.inject_fault("unfreeze", "system_busy"),
                ):
                    await expect_code("not_supported", call)

                await alipay.inject_fault("unfreeze", "system_busy")
                with pytest.raises(ChannelError) as raised:
                    await alipay.unfreeze(auth_no, "U1", 100, "")
                assert raised.value.code == "system_busy"
                assert raised.value.transient
                assert (await alipay.unfreeze(auth_no, "U1", 100, "")).rest_fen == 400
            nursery.cancel_scope.cancel()


async def test_a_freeze_lapses_on_the_simulators_clock_across_the_wire():
    now = [utc_now().replace(microsecond=0)]
    simulators = {"alipay": ChannelSimulator("alipay", KEYS["alipay"], lambda: now[0])}
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            url, _ = await start_api(nursery, simulators)
            async with RemoteChannel("alipay", url, KEYS["alipay"]) as alipay:
                expires = now[0] + timedelta(days=30)
                await alipay.create_freeze("D1", "F1", 50000, "", expires)
                auth_no = (await alipay.authorize_freeze("D1", "F1"))["auth_no"]
                await alipay.convert_to_payment(auth_no, "T1", 20000, "", "NOT_COMPLETE")
                now[0] = expires
                status = await alipay.query_freeze("D1", "F1")
                assert status.state == "FINISH"
                assert (status.rest_fen, status.converted_fen, status.lapsed_fen) == (
                    0,
                    20000,
                    30000,
                )
                await expect_code("auth_expired", alipay.convert_to_payment(auth_no, "T2", 1, ""))
                await expect_code("auth_expired", alipay.unfreeze(auth_no, "U1", 1, ""))
                assert (await alipay.query_payment("T1")).state == "SUCCESS"
            nursery.cancel_scope.cancel()


async def test_an_authorised_freeze_is_notified_to_the_merchant_signed_as_a_freeze():
    delivered = []
    arrived = trio.Event()
    checker = RemoteChannel("alipay", "ws://unused", KEYS["alipay"])

    async def deliver(fields):
        checker.verify_notification(fields, "freeze")  # raises, so unacknowledged, if not
        delivered.append(fields)
        arrived.set()
        return True

    simulators = {"alipay": ChannelSimulator("alipay", KEYS["alipay"], utc_now)}
    notifier = Notifier(deliver, KEYS["alipay"], utc_now, NotifyPolicy(), random.Random(3))
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.run)
            url = await nursery.start(
                partial(
                    serve_channel_api,
                    simulators,
                    "127.0.0.1",
                    0,
                    notifiers={"alipay": notifier},
                )
            )
            async with RemoteChannel("alipay", url, KEYS["alipay"]) as alipay:
                await alipay.create_freeze("D1", "F1", 50000, "", soon())
                unsigned = await alipay.authorize_freeze("D1", "F1")
                await arrived.wait()
            [notified] = delivered
            assert {key: notified[key] for key in unsigned} == unsigned
            assert set(notified) == {*fund_auth.FREEZE_NOTIFICATION_FIELDS, "signature"}
            with pytest.raises(BadSignature):
                checker.verify_notification(notified)  # never as a payment
            nursery.cancel_scope.cancel()


class FakeScenicServer:
    """Speaks just enough of scenic.v1: hello, then payment.notify, verified and acked."""

    def __init__(self, *, keys=KEYS, refuse_first=0, drop_first=0):
        self.keys = keys
        self.refuse_first = refuse_first
        self.drop_first = drop_first
        self.hellos = 0
        self.attempts = []
        self.accepted = []
        self.changed = trio.Event()

    def _notify_changed(self):
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, condition):
        while not condition():
            await self.changed.wait()

    async def handle(self, request):
        ws = await request.accept(subprotocol="scenic.v1")
        try:
            while True:
                frame = cbor2.loads(await ws.get_message())
                if frame["op"] == "hello":
                    self.hellos += 1
                    ok = {"device": frame["args"]["device"], "role": "channel", "server_time": 0.0}
                    await ws.send_message(cbor2.dumps({"id": frame["id"], "ok": ok}))
                    self._notify_changed()
                    continue
                args = frame["args"]
                self.attempts.append(args)
                self._notify_changed()
                if self.drop_first:
                    self.drop_first -= 1
                    await ws.aclose()
                    return
                try:
                    signing.verify(args, self.keys[args["channel"]], time.time())
                except BadSignature as exc:
                    await self._error(ws, frame["id"], "bad_signature", exc.message)
                    continue
                if self.refuse_first:
                    self.refuse_first -= 1
                    await self._error(ws, frame["id"], "overloaded", "busy")
                    continue
                self.accepted.append(args)
                await ws.send_message(cbor2.dumps({"id": frame["id"], "ok": {}}))
                self._notify_changed()
        except ConnectionClosed:
            pass

    async def _error(self, ws, request_id, code, message):
        reply = {"id": request_id, "error": {"code": code, "message": message}}
        await ws.send_message(cbor2.dumps(reply))


async def run_sim_against(nursery, fake, **policy):
    server = await nursery.start(partial(serve_websocket, fake.handle, "127.0.0.1", 0, None))
    policy = NotifyPolicy(**{"retry_base_s": 0.05, "retry_max_s": 0.2, "timeout_s": 2, **policy})
    return await nursery.start(
        partial(
            run_channel_sim,
            f"ws://127.0.0.1:{server.port}",
            "channel-sim-1",
            "token",
            "127.0.0.1",
            0,
            KEYS,
            policy,
            "instant",
            rng=random.Random(5),
        )
    )


async def test_a_payment_at_the_simulator_is_notified_to_the_server_signed():
    fake = FakeScenicServer()
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            sim = await run_sim_against(nursery, fake)
            async with RemoteChannel("alipay", sim.url, KEYS["alipay"]) as alipay:
                await alipay.create_payment("T1", 6600, "索道", soon())
                unsigned = await alipay.pay("T1")
                await fake.wait_for(lambda: fake.accepted)
            [notified] = fake.accepted
            assert {key: notified[key] for key in unsigned} == unsigned
            assert notified["channel"] == "alipay"
            assert notified["amount_fen"] == 6600
            assert fake.hellos == 1
            nursery.cancel_scope.cancel()


async def test_a_refused_notification_is_retried_until_acknowledged():
    fake = FakeScenicServer(refuse_first=3)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            sim = await run_sim_against(nursery, fake)
            sim.simulators["wechat"].create_payment("T1", 100, "", soon())
            async with RemoteChannel("wechat", sim.url, KEYS["wechat"]) as wechat:
                await wechat.pay("T1")
            await fake.wait_for(lambda: fake.accepted)
            assert len(fake.attempts) == 4
            assert len({attempt["nonce"] for attempt in fake.attempts}) == 4
            await sim.notifiers["wechat"].wait_idle()
            assert sim.notifiers["wechat"].stats().delivered == 1
            nursery.cancel_scope.cancel()


async def test_a_lost_server_connection_is_reopened_and_the_notification_redelivered():
    fake = FakeScenicServer(drop_first=1)
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            sim = await run_sim_against(nursery, fake)
            await sim.link.wait_connected()
            sim.simulators["wechat"].create_payment("T1", 100, "", soon())
            async with RemoteChannel("wechat", sim.url, KEYS["wechat"]) as wechat:
                await wechat.pay("T1")
            await fake.wait_for(lambda: fake.accepted)
            assert fake.hellos == 2
            assert [a["out_trade_no"] for a in fake.attempts][-1] == "T1"
            assert len(fake.attempts) >= 2
            nursery.cancel_scope.cancel()


async def test_a_notification_the_server_cannot_verify_is_never_acknowledged():
    fake = FakeScenicServer(keys={**KEYS, "wechat": b"x" * 32})
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            sim = await run_sim_against(nursery, fake, max_attempts=3)
            sim.simulators["wechat"].create_payment("T1", 100, "", soon())
            async with RemoteChannel("wechat", sim.url, KEYS["wechat"]) as wechat:
                await wechat.pay("T1")
            await sim.notifiers["wechat"].wait_idle()
            assert fake.accepted == []
            assert len(fake.attempts) == 3
            assert sim.notifiers["wechat"].stats().given_up == 1
            nursery.cancel_scope.cancel()


async def test_a_wrong_amount_can_be_reported_through_the_api():
    fake = FakeScenicServer()
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            sim = await run_sim_against(nursery, fake)
            async with RemoteChannel("wechat", sim.url, KEYS["wechat"]) as wechat:
                await wechat.create_payment("T1", 10000, "", soon())
                await wechat.pay("T1", amount_fen=1)
                await fake.wait_for(lambda: fake.accepted)
                assert fake.accepted[0]["amount_fen"] == 1
                status = await wechat.query_payment("T1")
                assert (status.amount_fen, status.paid_fen) == (10000, 1)
            nursery.cancel_scope.cancel()


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
        self.listening = trio.Event()

    def emit(self, record):
        self.records.append(record)
        if record.getMessage() == "channel_sim.listening":
            self.listening.set()


async def test_the_channel_sim_command_starts_and_logs_where_it_listens(tmp_path):
    parser = argparse.ArgumentParser()
    add_channel_sim_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["channel-sim", "--server", "ws://127.0.0.1:1", "--device", "sim", "--token", "t"]
    )
    assert (args.listen_host, args.listen_port, args.refund_mode) == ("127.0.0.1", 8766, "instant")
    assert (args.duplicate_rate, args.max_delay_s, args.keys) == (0.0, 0.0, None)
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "channel-sim",
                "--server",
                "x",
                "--device",
                "d",
                "--token",
                "t",
                "--duplicate-rate",
                "2",
            ]
        )

    fake = FakeScenicServer()
    records = Records()
    logger = logging.getLogger("scenic.channels.sim")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    try:
        with trio.fail_after(LIMIT_S):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(
                    partial(serve_websocket, fake.handle, "127.0.0.1", 0, None)
                )
                args = parser.parse_args(
                    [
                        "channel-sim",
                        "--server",
                        f"ws://127.0.0.1:{server.port}",
                        "--device",
                        "sim",
                        "--token",
                        "t",
                        "--listen-port",
                        "0",
                    ]
                )
                config = ServerConfig(data_dir=tmp_path / "data")
                nursery.start_soon(args.run, config, args)
                await fake.wait_for(lambda: fake.hellos == 1)
                await records.listening.wait()
                nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(records)
    [listening] = [r for r in records.records if r.getMessage() == "channel_sim.listening"]
    assert listening.url.startswith("ws://127.0.0.1:")
    keys = load_or_create_channel_keys(tmp_path / "data" / "channel_keys.json")
    assert set(keys) == {"wechat", "alipay"}


async def test_a_restarted_simulator_keeps_its_books_and_delivers_what_it_still_owed(tmp_path):
    from clients.channel_sim import load_state, save_state

    refusing = FakeScenicServer(refuse_first=10**6)  # nothing gets acknowledged
    state_path = tmp_path / "sim.state"
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            first = await run_sim_against(nursery, refusing)
            async with RemoteChannel("wechat", first.url, KEYS["wechat"]) as wechat:
                await wechat.create_payment("T9", 4200, "门票", soon())
                await wechat.pay("T9")
                await refusing.wait_for(lambda: refusing.attempts)
            save_state(state_path, first)
            nursery.cancel_scope.cancel()
        accepting = FakeScenicServer()
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(serve_websocket, accepting.handle, "127.0.0.1", 0, None)
            )
            policy = NotifyPolicy(retry_base_s=0.05, retry_max_s=0.2, timeout_s=2)
            second = await nursery.start(
                partial(
                    run_channel_sim,
                    f"ws://127.0.0.1:{server.port}",
                    "channel-sim-1",
                    "token",
                    "127.0.0.1",
                    0,
                    KEYS,
                    policy,
                    state=load_state(state_path),
                )
            )
            async with RemoteChannel("wechat", second.url, KEYS["wechat"]) as wechat:
                status = await wechat.query_payment("T9")
                await accepting.wait_for(lambda: accepting.accepted)
            nursery.cancel_scope.cancel()
    assert status.state == "SUCCESS"
    assert [n["out_trade_no"] for n in accepting.accepted] == ["T9"]
    assert load_state(tmp_path / "missing.state") is None
