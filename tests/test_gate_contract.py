"""docs/gates.md pinned down: start-up, roles, forged codes in journals, code limits, gate zones."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import date

import pytest

from actors.catalog import parse_catalog
from actors.tickets.codes import Entitlement, SiteKey, make_code, parse_code
from clients.client import RemoteError, connect
from server.site import demo_catalog_source
from server.storage import site
from tests.helpers import running_server
from tests.test_gates import GATES, buy, scan, site_today


@contextmanager
def captured(logger_name: str):
    """The records ``logger_name`` emits inside the block (whatever the logging setup)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(logger_name)
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_the_start_up_log_counts_the_gates_the_catalog_lists(dsn, db):
    with captured("scenic.gates") as records:
        async with running_server(dsn, db, GATES):
            pass
    (loaded,) = [r for r in records if r.getMessage() == "gates.loaded"]
    assert loaded.gates == len(parse_catalog(demo_catalog_source()).gates) == 5
    assert loaded.gate_modes == 0


async def test_site_occupancy_is_for_admins_only(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
        ):
            with pytest.raises(RemoteError) as refused:
                await gate.request("site.occupancy")
            assert "zones" in await admin.request("site.occupancy")
    assert refused.value.code == "forbidden"


def _offline(scan_id: str, code: str, *, granted: bool = True, passed: bool | None = True) -> dict:
    return {
        "scan_id": scan_id,
        "code": code,
        "at": time.time() - 120,
        "direction": "entry",
        "granted": granted,
        "reason": "ok" if granted else "forged",
        "passed": passed,
    }


def _wrong_tag(code: str) -> str:
    fields = code.split(".")
    fields[2] = "AAAAAAAAAA" if fields[2] != "AAAAAAAAAA" else "BBBBBBBBBB"
    return ".".join(fields)


async def test_forged_codes_an_offline_gate_let_through_are_recorded_and_flagged(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        foreign = make_code(
            Entitlement(ticket["ticket"], date.fromisoformat(site_today()), None, 1, "adult"),
            SiteKey("zz9", b"f" * 32, b"\x01" * 32),
        )
        journal = [
            _offline("j-genuine", ticket["code"]),
            _offline("j-tag", _wrong_tag(ticket["code"])),
            _offline("j-key", foreign),
            _offline("j-garbage", "hello"),
        ]
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
        ):
            first = await gate.request("gate.journal", entries=journal)
            again = await gate.request("gate.journal", entries=journal)
            report = await admin.request("gate.conflicts")
            occupancy = await admin.request("site.occupancy")
    forged = [
        {"scan_id": s, "ticket": None, "kind": "forged"} for s in ("j-tag", "j-key", "j-garbage")
    ]
    assert first == {"merged": 4, "repeated": 0, "conflicts": forged}
    assert again == {"merged": 0, "repeated": 4, "conflicts": []}
    flagged = sorted(report["conflicts"], key=lambda c: c["scan_id"])
    assert [(c["gate_id"], c["scan_id"], c["ticket_id"], c["kind"]) for c in flagged] == [
        ("G-MAIN-1", "j-garbage", None, "forged"),
        ("G-MAIN-1", "j-key", None, "forged"),
        ("G-MAIN-1", "j-tag", None, "forged"),
    ]
    assert all(
        set(c) == {"gate_id", "scan_id", "ticket_id", "kind", "detail", "at", "found_at"}
        for c in flagged
    )
    assert "tag does not match" in next(c for c in flagged if c["scan_id"] == "j-tag")["detail"]
    assert all(c["found_at"] >= c["at"] for c in flagged)
    rows = await db.fetch(
        "SELECT scan_id, ticket_id, granted, offline, code_hint FROM scans ORDER BY scan_id"
    )
    assert [(r["scan_id"], r["ticket_id"], r["granted"], r["offline"]) for r in rows] == [
        ("j-garbage", None, True, True),
        ("j-genuine", ticket["ticket"], True, True),
        ("j-key", None, True, True),
        ("j-tag", None, True, True),
    ]
    assert await db.fetchval("SELECT count(*) FROM gate_conflicts") == 3
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1
    assert occupancy["zones"]["main"]["entries"] == 4  # four visitors walked in


async def test_an_offline_gate_that_refused_a_forged_code_is_no_conflict(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            refused = await gate.request(
                "gate.journal", entries=[_offline("r-1", "hello", granted=False, passed=None)]
            )
            let_through = await gate.request(
                "gate.journal", entries=[_offline("r-2", "hello", passed=False)]
            )
    assert refused == {"merged": 1, "repeated": 0, "conflicts": []}
    # a gate that accepted a forged code is flagged even when nobody walked through
    assert let_through["conflicts"] == [{"scan_id": "r-2", "ticket": None, "kind": "forged"}]
    assert await db.fetchval("SELECT reason FROM scans WHERE scan_id = 'r-1'") == "forged"


async def test_a_journal_is_judged_as_a_gate_in_normal_mode_whatever_its_mode_now(dsn, db):
    async with running_server(dsn, db, GATES) as server:
        (ticket,) = await buy(server)
        async with (
            connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate,
            connect(server.url, "admin-1", server.tokens["admin-1"]) as admin,
        ):
            await admin.request("gate.set_mode", gate="G-MAIN-1", mode="locked")
            merged = await gate.request("gate.journal", entries=[_offline("n-1", ticket["code"])])
            online = await scan(gate, ticket["code"], scan_id="n-2")
    assert merged == {"merged": 1, "repeated": 0, "conflicts": []}
    assert (online["granted"], online["reason"], online["ticket"]) == (
        False,
        "gate_closed",
        ticket["ticket"],
    )
    rows = await db.fetch("SELECT scan_id, ticket_id, reason FROM scans ORDER BY scan_id")
    assert [tuple(r) for r in rows] == [
        ("n-1", ticket["ticket"], "ok"),
        ("n-2", ticket["ticket"], "gate_closed"),
    ]
    assert await db.fetchval("SELECT entries_used FROM tickets") == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [("", "bad_request"), ("c" * 513, "bad_request"), ("c" * 512, "forged"), ("c", "forged")],
)
async def test_a_code_is_1_to_512_characters_and_anything_else_in_that_range_is_forged(
    dsn, db, code, expected
):
    async with running_server(dsn, db, GATES) as server:
        async with connect(server.url, "G-MAIN-1", server.tokens["G-MAIN-1"]) as gate:
            try:
                verdict = await scan(gate, code)
                answer = verdict["reason"]
            except RemoteError as exc:
                answer = exc.code
            with pytest.raises(RemoteError) as journal:
                await gate.request("gate.journal", entries=[_offline("e-1", "")])
    assert answer == expected
    assert journal.value.code == "bad_request"


def test_a_genuine_code_is_at_most_205_characters():
    longest = Entitlement("T" + "Z" * 24, date(2026, 12, 31), "ABCDEFGH", 9999, "p" * 32)
    code = make_code(longest, SiteKey("k" * 8, b"s" * 32, b"\x02" * 32))
    assert len(code) == 205
    assert parse_code(code).entitlement == longest


# The demo park with a second ski gate that takes only the day pass for the slope.
SKI_CATALOG = (
    demo_catalog_source()
    + """
[[products]]
id = "ski-day"
name_zh = "滑雪日票"
name_en = "Ski slope, all day"
price_fen = 38000
entries = 1
zones = ["ski"]

[[gates]]
id = "G-SKI-2"
name = "Ski slope, day passes"
zone = "ski"
products = ["ski-day"]
"""
)


async def test_a_gate_takes_its_zone_and_products_from_the_catalog_entry_with_its_id(dsn, db):
    catalog = parse_catalog(SKI_CATALOG)
    await db.run(site.store_catalog, SKI_CATALOG, catalog, date.fromisoformat(site_today()))
    gates = {**GATES, "G-SKI-1": "gate", "G-SKI-2": "gate", "G-UNLISTED": "gate"}
    async with running_server(dsn, db, gates) as server:
        (ski_day,) = await buy(server, product="ski-day")
        (adult,) = await buy(server)
        configs, verdicts = {}, {}
        for gate_id in ("G-SKI-1", "G-SKI-2", "G-UNLISTED"):
            async with connect(server.url, gate_id, server.tokens[gate_id]) as gate:
                configs[gate_id] = await gate.request("gate.config")
                verdicts[gate_id] = (
                    (await scan(gate, ski_day["code"]))["reason"],
                    (await scan(gate, adult["code"]))["reason"],
                )
    assert {g: (c["zone"], c["products_allowed"]) for g, c in configs.items()} == {
        "G-SKI-1": ("ski", ["ski-4h"]),
        "G-SKI-2": ("ski", ["ski-day"]),
        "G-UNLISTED": ("main", None),
    }
    assert verdicts == {
        "G-SKI-1": ("wrong_gate", "wrong_gate"),  # a ski gate for other products
        "G-SKI-2": ("ok", "wrong_gate"),  # adult tickets admit to main only
        "G-UNLISTED": ("wrong_gate", "ok"),  # not listed: the main zone, every product
    }
