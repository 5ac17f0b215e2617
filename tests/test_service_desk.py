"""The service desk's question: was I charged, and was my ticket used? Through real websockets."""

from __future__ import annotations

import time

import pytest
import trio

from clients.client import RemoteError, connect
from tests.helpers import running_server
from tests.test_gates import GATES, buy, scan
from tests.test_orders import adults


def _ticket(order: dict, ticket_id: str) -> dict:
    return next(t for t in order["tickets"] if t["ticket"] == ticket_id)


def _use(ticket: dict) -> tuple:
    return (
        ticket["entries_allowed"],
        ticket["entries_used"],
        ticket["entries_left"],
        ticket["inside"],
    )


async def test_the_order_shows_each_tickets_use_a_moment_after_the_scan(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        first, second = await buy(server, quantity=2)
        (day_pass,) = await buy(server, product="day-pass")
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            before = await desk.request("order.get", order=first["order"])
            assert (await scan(gate, first["code"], scan_id="u1"))["granted"]
            just_scanned = await desk.request("order.get", order=first["order"])
            found = await desk.request("order.find", ticket=first["code"])
            await gate.request("gate.passage", scan_id="u1", passed=True)
            await scan(gate, first["code"], "exit", scan_id="u2")
            await gate.request("gate.passage", scan_id="u2", passed=True)
            left = await desk.request("order.get", order=first["order"])
            await scan(gate, day_pass["code"], scan_id="u3")
            unlimited = await desk.request("order.get", order=day_pass["order"])
    assert _use(_ticket(before, first["ticket"])) == (1, 0, 1, False)
    assert _use(_ticket(just_scanned, first["ticket"])) == (1, 1, 0, True)
    assert _use(_ticket(found, first["ticket"])) == (1, 1, 0, True)
    assert _use(_ticket(just_scanned, second["ticket"])) == (1, 0, 1, False)
    assert _use(_ticket(left, first["ticket"])) == (1, 1, 0, False)
    assert _use(_ticket(unlimited, day_pass["ticket"])) == (None, 1, None, True)


async def test_a_use_made_through_another_server_process_shows(dsn, db):
    async with running_server(dsn, db, GATES) as here:
        (day_pass,) = await buy(here, product="day-pass")
        async with (
            connect(here.url, "G-MAIN-1", here.tokens["G-MAIN-1"]) as gate,
            connect(here.url, "counter-1", here.tokens["counter-1"]) as desk,
        ):
            await scan(gate, day_pass["code"])  # this server's warm copy: used once, inside
            async with running_server(dsn, db, {}) as there:
                async with connect(there.url, "G-MAIN-2", here.tokens["G-MAIN-2"]) as other:
                    await scan(other, day_pass["code"], "exit")
                    await scan(other, day_pass["code"])
            shown = await desk.request("order.get", order=day_pass["order"])
    assert _use(_ticket(shown, day_pass["ticket"])) == (None, 2, None, True)


async def test_the_story_tells_every_scan_and_passage_of_the_orders_tickets(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        first, second = await buy(server, quantity=2)
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "G-MAIN-2", server.tokens["G-MAIN-2"]) as lane_2,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            await scan(gate, first["code"], scan_id="a-1")
            await gate.request("gate.passage", scan_id="a-1", passed=True)
            await scan(lane_2, first["code"], scan_id="a-2")  # refused: still inside
            await scan(gate, second["code"], scan_id="b-1")
            await gate.request("gate.passage", scan_id="b-1", passed=False)  # turned back
            await scan(gate, "not a code", scan_id="x-1")  # names no ticket: not in the story
            found = await desk.request("order.find", order=first["order"])
    money = [step for step in found["story"] if "gate" not in step]
    gates = [step for step in found["story"] if "gate" in step]
    assert [step["what"] for step in money] == [
        "created",
        "payment started (wechat)",
        "payment captured (wechat)",
    ]
    assert [
        (s["what"], s["ref"], s["ticket"], s["gate"], s.get("granted"), s.get("reason"))
        for s in gates
    ] == [
        ("entry granted", "a-1", first["ticket"], "G-MAIN-1", True, "ok"),
        ("entry passed", "a-1", first["ticket"], "G-MAIN-1", None, None),
        ("entry refused: passback", "a-2", first["ticket"], "G-MAIN-2", False, "passback"),
        ("entry granted", "b-1", second["ticket"], "G-MAIN-1", True, "ok"),
        ("entry not passed", "b-1", second["ticket"], "G-MAIN-1", None, None),
    ]
    scans = [s for s in gates if "granted" in s]
    passages = [s for s in gates if "passed" in s]
    assert all(
        set(s)
        == {
            "at",
            "what",
            "amount_fen",
            "ref",
            "ticket",
            "gate",
            "direction",
            "granted",
            "reason",
            "entries_left",
            "offline",
        }
        for s in scans
    )
    assert all(
        set(s) == {"at", "what", "amount_fen", "ref", "ticket", "gate", "direction", "passed"}
        for s in passages
    )
    assert [s["entries_left"] for s in scans] == [0, 0, 0]
    assert [s["passed"] for s in passages] == [True, False]
    times = [step["at"] for step in found["story"]]
    assert times == sorted(times)
    assert _use(_ticket(found, second["ticket"])) == (1, 0, 1, False)  # given back


async def test_an_offline_gates_scans_are_in_the_story_with_their_passage(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        entry = {
            "scan_id": "off-1",
            "code": ticket["code"],
            "at": time.time() - 300,
            "direction": "entry",
            "granted": True,
            "reason": "ok",
            "passed": True,
        }
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            await gate.request("gate.journal", entries=[entry])
            found = await desk.request("order.find", ticket=ticket["code"])
    steps = [(s["what"], s["at"], s.get("offline")) for s in found["story"] if "gate" in s]
    at = pytest.approx(entry["at"], abs=1e-5)
    assert steps == [("entry granted (offline)", at, True), ("entry passed", at, None)]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"ticket": ""}, "bad_request"),
        ({"order": ""}, "bad_request"),
        ({"ticket": "T" + "x" * 300}, "forged"),  # longer than any code, still judged
        ({"ticket": "c" * 513}, "bad_request"),
        ({"order": "O20260101NOSUCHORDER"}, "not_found"),
    ],
)
async def test_order_find_refuses_clearly(dsn, db, args, code):
    async with running_server(dsn, db, GATES) as server:
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            with pytest.raises(RemoteError) as refused:
                await desk.request("order.find", **args)
    assert refused.value.code == code


async def test_cancelling_an_expired_order_is_order_not_pending(dsn, db):
    async with running_server(dsn, db, GATES, order_ttl_s=0.5) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            order = await kiosk.request("order.create", client_key="late", lines=adults(1))
            with trio.fail_after(10):
                while (await kiosk.request("order.get", order=order["order"]))[
                    "status"
                ] != "expired":
                    await trio.sleep(0.1)
            with pytest.raises(RemoteError) as refused:
                await kiosk.request("order.cancel", order=order["order"])
            fresh = await kiosk.request("order.create", client_key="gone", lines=adults(1))
            cancelled = await kiosk.request("order.cancel", order=fresh["order"])
            again = await kiosk.request("order.cancel", order=fresh["order"])
    assert refused.value.code == "order_not_pending"
    assert cancelled["status"] == again["status"] == "cancelled"
