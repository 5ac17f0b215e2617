"""Gates end to end: scans through real websockets, every rule, modes, passages, journals."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import trio

from actors.tickets.codes import Entitlement, SiteKey, make_code, verify_offline
from clients.client import connect, stay_connected
from server.storage import site
from tests.helpers import running_server
from tests.test_orders import next_event

GATES = {
    "kiosk-1": "kiosk",
    "counter-1": "counter",
    "admin-1": "admin",
    "G-MAIN-1": "gate",
    "G-MAIN-2": "gate",
    "G-CABLE-1": "gate",
}


def site_today(days: int = 0) -> str:
    return (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=days)).isoformat()


async def buy(server, product: str = "adult", quantity: int = 1, days: int = 0) -> list[dict]:
    """Sell and pay tickets through a kiosk; returns [{ticket, code}]."""
    async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
        order = await kiosk.request(
            "order.create",
            client_key=f"buy-{time.perf_counter_ns()}",
            lines=[{"product": product, "quantity": quantity, "date": site_today(days)}],
        )
        start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
        paid = await next_event(kiosk, "order.paid")
    return [{**t, "order": order["order"]} for t in paid["tickets"]]


_scan_numbers = iter(range(1, 10**9))


async def scan(gate, code: str, direction: str = "entry", scan_id: str | None = None) -> dict:
    return await gate.request(
        "ticket.scan",
        scan_id=scan_id or f"s{next(_scan_numbers)}",
        code=code,
        at=time.time(),
        direction=direction,
    )


async def test_a_ticket_enters_once_leaves_and_is_then_used_up(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            first = await scan(gate, ticket["code"], scan_id="a1")
            # Durable before the reply: the grant and the used entry are in the database.
            row = await db.fetchrow("SELECT granted, consumed FROM scans WHERE scan_id = 'a1'")
            used = await db.fetchval(
                "SELECT entries_used FROM tickets WHERE ticket_id = $1", ticket["ticket"]
            )
            assert await gate.request("gate.passage", scan_id="a1", passed=True) == {
                "scan_id": "a1",
                "recorded": True,
            }
            again = await scan(gate, ticket["code"])
            leaving = await scan(gate, ticket["code"], "exit", scan_id="a3")
            await gate.request("gate.passage", scan_id="a3", passed=True)
            back = await scan(gate, ticket["code"])
    assert (first["granted"], first["reason"], first["entries_left"]) == (True, "ok", 0)
    assert first["text_zh"] and first["text_en"] == "Welcome" and first["passage_timeout_s"] > 0
    assert dict(row) == {"granted": True, "consumed": True} and used == 1
    assert (again["granted"], again["reason"]) == (False, "passback")
    assert leaving["granted"] and leaving["reason"] == "ok"
    assert (back["granted"], back["reason"]) == (False, "used_up")


async def test_forged_truncated_and_foreign_codes_are_refused(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        code = ticket["code"]
        foreign = SiteKey("k1", b"f" * 32, b"\x01" * 32)
        forged_codes = [
            "hello",
            code[:-5],
            code[:30],
            code.replace(code.split(".")[2], "AAAAAAAAAA"),
            make_code(
                Entitlement(ticket["ticket"], datetime.now(UTC).date(), None, 1, "adult"), foreign
            ),
        ]
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            replies = [await scan(gate, bad) for bad in forged_codes]
            genuine = await scan(gate, code)
    assert [(r["granted"], r["reason"]) for r in replies] == [(False, "forged")] * 5
    assert genuine["granted"]
    assert await db.fetchval("SELECT count(*) FROM scans WHERE reason = 'forged'") == 5


async def test_unknown_wrong_gate_not_today_and_refunded_tickets_are_refused(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (today,) = await buy(server)
        (tomorrow,) = await buy(server, days=1)
        (refunded,) = await buy(server)
        async with connect(server.url, "counter-1", server.tokens["counter-1"]) as desk:
            await desk.request(
                "order.refund",
                order=refunded["order"],
                tickets=[refunded["ticket"]],
                reason="changed plans",
                key="r1",
            )
        keys = await db.run(site.ticket_keys)
        current = SiteKey(keys[-1].key_id, keys[-1].secret, keys[-1].signing_key)
        unknown = make_code(
            Entitlement("T20261126NOSUCHTICKET", datetime.now(UTC).date(), None, 1, "adult"),
            current,
        )
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "G-CABLE-1", server.tokens["G-CABLE-1"]) as cable_car,
        ):
            verdicts = {
                "unknown": await scan(gate, unknown),
                "wrong_gate": await scan(cable_car, today["code"]),
                "not_today": await scan(gate, tomorrow["code"]),
                "refunded": await scan(gate, refunded["code"]),
            }
    assert {name: (v["granted"], v["reason"]) for name, v in verdicts.items()} == {
        name: (False, name) for name in verdicts
    }


async def test_the_same_code_at_many_gates_at_once_is_granted_exactly_once(dsn, db):
    gates = {f"G-RUSH-{n}": "gate" for n in range(8)}
    async with running_server(dsn, db, {**GATES, **gates}) as server:
        tickets = await buy(server, quantity=5)
        verdicts = []
        async with trio.open_nursery() as nursery:
            clients = []
            for gate_id in gates:
                clients.append(
                    await nursery.start(stay_connected, server.url, gate_id, server.tokens[gate_id])
                )

            async def rush(client, ticket):
                verdicts.append((ticket["ticket"], (await scan(client, ticket["code"]))["granted"]))

            async with trio.open_nursery() as scans:
                for ticket in tickets:
                    for client in clients:
                        scans.start_soon(rush, client, ticket)
            nursery.cancel_scope.cancel()
    for ticket in tickets:
        grants = [granted for ticket_id, granted in verdicts if ticket_id == ticket["ticket"]]
        assert len(grants) == 8 and sum(grants) == 1
    assert await db.fetchval("SELECT max(entries_used) FROM tickets") == 1


async def test_a_scan_sent_twice_gets_the_same_verdict_and_uses_one_entry(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            first = await scan(gate, ticket["code"], scan_id="dup-1")
            again = await scan(gate, ticket["code"], scan_id="dup-1")
    assert first["granted"] and again["granted"] and again["entries_left"] == 0
    assert await db.fetchval("SELECT count(*) FROM scans") == 1
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1


async def test_no_passage_gives_the_entry_back(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            await scan(gate, ticket["code"], scan_id="p1")
            settled = await gate.request("gate.passage", scan_id="p1", passed=False)
            retry = await scan(gate, ticket["code"], scan_id="p2")
    assert settled["recorded"] and retry["granted"]
    assert await db.fetchval("SELECT passed FROM scans WHERE scan_id = 'p1'") is False


async def test_a_passage_nobody_reports_counts_as_walked_through_and_keeps_the_entry(
    dsn, db, mock_clock
):
    mock_clock.rate = 1.0  # real time passes, and the test can skip ahead
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
        ):
            first = await scan(gate, ticket["code"], scan_id="t1")
            assert not (await scan(gate, ticket["code"]))["granted"]
            mock_clock.jump(first["passage_timeout_s"] + 1)  # the report was lost
            with trio.fail_after(10):
                while await db.fetchval("SELECT passed FROM scans WHERE scan_id = 't1'") is None:
                    await trio.sleep(0.02)
            retry = await scan(gate, ticket["code"])
            late = await gate.request("gate.passage", scan_id="t1", passed=False)
            occupancy = await admin.request("site.occupancy")
    assert await db.fetchval("SELECT passed FROM scans WHERE scan_id = 't1'") is True
    assert (retry["granted"], retry["reason"]) == (False, "passback")
    assert not late["recorded"]  # settled already: a late report changes nothing
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1
    assert sum(zone["inside"] for zone in occupancy["zones"].values()) == 1


async def test_gate_modes_are_pushed_and_obeyed(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        tickets = await buy(server, quantity=2)
        async with (
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
        ):
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="locked")
            pushed = await next_event(gate, "gate.mode")
            locked = await scan(gate, tickets[0]["code"])
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="free")
            free = [await scan(gate, tickets[0]["code"]), await scan(gate, "not-even-a-code")]
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="normal")
            normal = await scan(gate, tickets[0]["code"])
            config = await gate.request("gate.config")
    assert pushed == {"gate": "G-MAIN-1", "mode": "locked"}
    assert (locked["granted"], locked["reason"]) == (False, "gate_closed")
    assert all(v["granted"] for v in free)
    assert normal["granted"] and normal["entries_left"] == 0  # free passage used nothing
    assert config["mode"] == "normal"
    assert await db.fetchval("SELECT mode FROM gates WHERE gate_id = 'G-MAIN-1'") == "normal"


async def test_a_forged_code_let_through_in_free_passage_is_recorded_once_and_awaits_its_passage(
    dsn, db
):
    async with running_server(dsn, db, GATES) as server:
        async with (
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
        ):
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="free")
            first = await scan(gate, "hello", scan_id="f1")
            passage = await gate.request("gate.passage", scan_id="f1", passed=True)
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="normal")
            again = await scan(gate, "hello", scan_id="f1")
            occupancy = await admin.request("site.occupancy")
    assert (first["granted"], first["ticket"], first["passage_timeout_s"] > 0) == (True, None, True)
    assert passage == {"scan_id": "f1", "recorded": True}
    assert (again["granted"], again["reason"]) == (True, "ok")  # the first verdict stands
    row = await db.fetchrow("SELECT ticket_id, granted, passed FROM scans WHERE scan_id = 'f1'")
    assert dict(row) == {"ticket_id": None, "granted": True, "passed": True}
    assert occupancy["zones"]["main"]["entries"] == 1


async def test_occupancy_counts_passages_and_is_pushed_to_admins(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        tickets = await buy(server, quantity=3)
        async with (
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
        ):
            for n, ticket in enumerate(tickets):
                await scan(gate, ticket["code"], scan_id=f"o{n}")
                await gate.request("gate.passage", scan_id=f"o{n}", passed=n < 2)
            await scan(gate, tickets[0]["code"], "exit", scan_id="o-exit")
            await gate.request("gate.passage", scan_id="o-exit", passed=True)
            pushed = await next_event(admin, "site.occupancy")
            now = await admin.request("site.occupancy")
    assert now["zones"]["main"] == {"inside": 1, "entries": 2, "exits": 1}
    assert pushed["zones"]["main"]["entries"] >= 1


async def test_gate_config_gives_the_keys_that_verify_codes_offline(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server, product="combo-cablecar")
        async with connect(server.url, "G-CABLE-1", server.tokens["G-CABLE-1"]) as gate:
            config = await gate.request("gate.config")
    keys = {k["key_id"]: k["public_key"] for k in config["keys"]}
    entitlement = verify_offline(ticket["code"], keys)
    assert entitlement.ticket_id == ticket["ticket"] and entitlement.entries == 2
    assert config["zone"] == "cablecar" and config["timezone"] == "Asia/Shanghai"
    assert {p["product"] for p in config["products"]} >= {"adult", "combo-cablecar"}


async def test_offline_journals_merge_and_flag_a_ticket_used_at_two_offline_gates(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        entry = {
            "code": ticket["code"],
            "at": time.time() - 60,
            "direction": "entry",
            "granted": True,
            "reason": "ok",
            "passed": True,
        }
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate_1,
            connect(server.url, "G-MAIN-2", server.tokens["G-MAIN-2"]) as gate_2,
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
        ):
            first = await gate_1.request("gate.journal", entries=[{**entry, "scan_id": "off-1"}])
            second = await gate_2.request("gate.journal", entries=[{**entry, "scan_id": "off-9"}])
            again = await gate_2.request("gate.journal", entries=[{**entry, "scan_id": "off-9"}])
            report = await admin.request("gate.conflicts")
    assert first == {"merged": 1, "repeated": 0, "conflicts": []}
    assert second["merged"] == 1 and second["conflicts"][0]["kind"] in ("passback", "used_up")
    assert again == {"merged": 0, "repeated": 1, "conflicts": []}
    assert [c["scan_id"] for c in report["conflicts"]] == ["off-9"]
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1  # never overdrawn
    assert await db.fetchval("SELECT count(*) FROM scans WHERE offline") == 2


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"scan_id": "x", "code": "c", "at": 0}, "bad_request"),  # a clock 56 years off
        ({"scan_id": "x" * 41, "code": "c", "at": 1.0}, "bad_request"),
        ({"scan_id": "x", "code": "c" * 600, "at": 1.0}, "bad_request"),
        ({"scan_id": "x", "code": "c", "at": 1.0, "direction": "sideways"}, "bad_request"),
        ({"scan_id": "x", "code": 5, "at": 1.0}, "bad_request"),
    ],
)
async def test_bad_scans_get_clear_errors(dsn, db, args, code):
    from clients.client import RemoteError

    async with running_server(dsn, db, GATES) as server:
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            with pytest.raises(RemoteError) as refused:
                await gate.request("ticket.scan", **args)
            assert await gate.request("ping") == {}
    assert refused.value.code == code


async def test_only_gates_may_scan(dsn, db):
    from clients.client import RemoteError

    async with running_server(dsn, db, GATES) as server:
        async with connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk:
            with pytest.raises(RemoteError) as refused:
                await kiosk.request("ticket.scan", scan_id="x", code="c", at=time.time())
    assert refused.value.code == "forbidden"


async def test_rotated_keys_keep_old_codes_valid_until_retired(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (old,) = await buy(server)
        old_key = old["code"].split(".")[1]
        new_key = await db.run(site.add_key)
        with trio.fail_after(10):  # running servers reload the keys on the notice
            while True:
                (new,) = await buy(server)
                if new["code"].split(".")[1] == new_key:
                    break
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            assert (await scan(gate, new["code"]))["granted"]
            with pytest.raises(Exception) as in_use:
                await db.run(site.retire_key, new_key)
            assert await db.run(site.retire_key, old_key)
            with trio.fail_after(10):
                while (verdict := await scan(gate, old["code"]))["reason"] != "forged":
                    await trio.sleep(0.05)
            config = await gate.request("gate.config")
    assert getattr(in_use.value, "code", None) == "key_in_use"
    assert verdict["granted"] is False
    assert [k["key_id"] for k in config["keys"]] == [new_key]


async def test_only_unused_tickets_can_be_refunded(dsn, db):
    from clients.client import RemoteError

    async with running_server(dsn, db, GATES) as server:
        used, unused = await buy(server, quantity=2)
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "counter-1", server.tokens["counter-1"]) as desk,
        ):
            assert (await scan(gate, used["code"]))["granted"]
            with pytest.raises(RemoteError) as refused:
                await desk.request(
                    "order.refund",
                    order=used["order"],
                    tickets=[used["ticket"]],
                    reason="too late",
                    key="r-used",
                )
            refund = await desk.request(
                "order.refund",
                order=unused["order"],
                tickets=[unused["ticket"]],
                reason="rain",
                key="r-unused",
            )
            assert (await scan(gate, unused["code"]))["reason"] == "refunded"
    assert refused.value.code == "ticket_used"
    assert [t["refunded"] for t in refund["tickets"] if t["ticket"] == unused["ticket"]] == [True]
    assert await db.fetchval("SELECT count(*) FROM refunds") == 1


async def test_a_no_passage_reported_to_a_restarted_server_keeps_the_entry_used(dsn, db):
    # The grant's passage was awaited by the server that granted it; that process died
    # (the chaos load test kills it). The gate's report, retried to the new process, must
    # not mark the scan "not passed" while the ticket's entry stays used.
    from server.audit import run_audit

    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            assert (await scan(gate, ticket["code"], scan_id="r1"))["granted"]
        token = server.tokens["G-MAIN-1"]
    async with running_server(dsn, db, {}) as server:
        async with connect(server.url, "G-MAIN-1", token) as gate:
            late = await gate.request("gate.passage", scan_id="r1", passed=False)
            again = await scan(gate, ticket["code"])
    assert not late["recorded"]
    assert (again["granted"], again["reason"]) == (False, "passback")
    assert await db.fetchval("SELECT passed FROM scans WHERE scan_id = 'r1'") is None
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1
    results = {r.check.name: r for r in await db.run(run_audit)}
    assert results["ticket_use_matches_scans"].ok, results["ticket_use_matches_scans"].offenders
