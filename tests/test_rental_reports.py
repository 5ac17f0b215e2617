"""The rental report of a business date, from rentals driven through a real server.

A server on loopback with a clock the test moves, the demo park, the
in-process channel simulators and a real PostgreSQL. One day at the ski
area and the boat dock (Asia/Shanghai, 2026-03-14):

- 09:00 a ski-day-gear ticket is sold (its skis and boots usage is covered);
- A: skis + boots on that ticket, paid 1000.00 by WeChat Pay, out 09:30, back 14:10;
- B: two skis, paid 1840.00 by Alipay (1600.00 deposit, 240.00 prepaid),
  out 09:40, back 16:20, one damaged (400.00);
- C: a boat, paid 500.00 by WeChat Pay, out 10:05, back 12:35 (2 h 30 min: 260.00);
- E: a helmet, paid 130.00 by WeChat Pay, out 16:30, still out.

The report is read at 17:00 through ``rental.report`` and later through
``scenic report rentals`` (whose "now" is the real one, long after the day).
docs/reports.md works the same example.
"""

from __future__ import annotations

import csv
import struct
import subprocess
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from clients.client import RemoteError, connect
from loadtest.local_server import scenic_command
from tests.helpers import running_server
from tests.test_orders import next_event, settle_outbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = "2026-03-14"
DEVICES = {"kiosk-1": "kiosk", "desk-1": "rental", "admin-x": "admin"}
SKIS = ["880101001", "880101002", "880101003"]
BOOT = "880103001"
HELMET = "880104001"
BOAT = "DOCK-BOAT-01"
#: 08:00 (the AM slot's start) to 17:30 (due_back): 9.5 hours
OPEN_S = 34200


def at(hour: int, minute: int = 0) -> datetime:
    """That local time of the report's day, in UTC."""
    return datetime(2026, 3, 14, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


class Clock:
    """The server's clock: it says what the test set last."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _paid(kiosk, key: str, items: list[dict], channel: str, **more) -> dict:
    rental = await kiosk.request("rental.create", client_key=key, items=items, **more)
    start = await kiosk.request("rental.pay", rental=rental["rental"], channel=channel)
    await kiosk.request("sim.pay", channel=channel, out_trade_no=start["out_trade_no"])
    voucher = await next_event(kiosk, "rental.voucher")
    return {"rental": rental["rental"], "voucher": voucher["voucher"], "paid": start["amount_fen"]}


async def _one_day(server, clock: Clock, db) -> dict:
    """Drive the day's rentals; return the report ``rental.report`` gives at 17:00."""
    async with (
        connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
        connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
    ):
        clock.now = at(9, 0)
        lines = [{"product": "ski-day-gear", "quantity": 1, "date": DAY}]
        order = await kiosk.request("order.create", client_key="ticket-1", lines=lines)
        start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
        await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
        ticket = (await next_event(kiosk, "order.paid"))["tickets"][0]["code"]

        clock.now = at(9, 5)
        gear = [{"item": "skis", "quantity": 1}, {"item": "boots", "quantity": 1}]
        a = await _paid(kiosk, "a", gear, "wechat", ticket=ticket)
        clock.now = at(9, 10)
        b = await _paid(kiosk, "b", [{"item": "skis", "quantity": 2}], "alipay")
        clock.now = at(9, 20)
        c = await _paid(kiosk, "c", [{"item": "boat", "quantity": 1}], "wechat")
        assert (a["paid"], b["paid"], c["paid"]) == (100000, 184000, 50000)

        for hour, minute, rental, labels in (
            (9, 30, a, [SKIS[0], BOOT]),
            (9, 40, b, SKIS[1:]),
            (10, 5, c, [BOAT]),
        ):
            clock.now = at(hour, minute)
            await desk.request("rental.pickup", voucher=rental["voucher"], labels=labels)

        for hour, minute, rental, returns in (
            (12, 35, c, [(BOAT, "ok")]),
            (14, 10, a, [(SKIS[0], "ok"), (BOOT, "ok")]),
            (16, 20, b, [(SKIS[1], "ok"), (SKIS[2], "damaged")]),
        ):
            clock.now = at(hour, minute)
            back = await desk.request(
                "rental.return",
                rental=rental["rental"],
                returns=[{"label": label, "condition": cond} for label, cond in returns],
            )
            assert back["status"] == "settled"
            await settle_outbox(db)

        clock.now = at(16, 25)
        e = await _paid(kiosk, "e", [{"item": "helmet", "quantity": 1}], "wechat")
        clock.now = at(16, 30)
        await desk.request("rental.pickup", voucher=e["voucher"], labels=[HELMET])

        clock.now = at(17, 0)
        report = await admin.request("rental.report", date=DAY)
        assert await admin.request("rental.report") == report  # today is the default
        codes = []
        for who, args in ((desk, {"date": DAY}), (admin, {"date": "2026-02-30"})):
            try:
                await who.request("rental.report", **args)
            except RemoteError as exc:
                codes.append(exc.code)
        assert codes == ["forbidden", "bad_request"]
        return report


def _scenic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(scenic_command(*args), capture_output=True, text=True, timeout=120)


def _by(entries: list[dict], key: str) -> dict:
    return {entry[key]: entry for entry in entries}


async def test_the_rental_report_counts_the_day_exactly(dsn, db, tmp_path):
    clock = Clock(at(9, 0))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        report = await _one_day(server, clock, db)

    assert (report["date"], report["timezone"]) == (DAY, "Asia/Shanghai")
    assert report["as_of"] == at(17, 0).timestamp()
    assert report["rentals"]["made"] == 4 and report["rentals"]["held"] == 4
    assert {k: v for k, v in report["rentals"]["by_status"].items() if v} == {
        "out": 1,
        "settled": 3,
    }
    assert [
        (i["item"], i["rentals"], i["units_booked"], i["units_out"]) for i in report["items"]
    ] == [("skis", 2, 3, 3), ("boots", 1, 1, 1), ("helmet", 1, 1, 1), ("boat", 1, 1, 1)]

    charges = _by(report["charges"], "item")
    assert list(charges) == ["skis", "boots", "boat"]
    assert charges["skis"] == {
        "item": "skis",
        "name_en": "Skis with poles",
        "name_zh": "双板滑雪板",
        "units": 3,
        "usage_fen": 24000,  # B's two skis, a day each (prepaid)
        "covered_usage_fen": 12000,  # A's ski, on the ticket
        "late_fen": 0,
        "damage_fen": 40000,
        "lost_fen": 0,
        "total_fen": 64000,
    }
    assert (charges["boots"]["covered_usage_fen"], charges["boots"]["total_fen"]) == (4000, 0)
    assert charges["boat"]["usage_fen"] == 26000  # 3 started hours: 2 x 80 + 100 yuan

    money = report["money"]
    assert _by(money["channels"], "channel") == {
        "alipay": {
            "channel": "alipay",
            "collected_fen": 184000,
            "refunded_fen": 120000,
            "net_fen": 64000,
        },
        "wechat": {
            "channel": "wechat",
            "collected_fen": 163000,  # A 1000 + C 500 + E 130 yuan; the ticket is not a rental
            "refunded_fen": 124000,  # A 1000 + C 240 yuan
            "net_fen": 39000,
        },
    }
    assert {k: v for k, v in money.items() if k != "channels"} == {
        "collected_fen": 347000,
        "refunded_fen": 244000,
        "net_fen": 103000,
        "revenue_fen": 90000,  # C 260 + A 0 + B 640 yuan
        "deposits_in_fen": 320000,
        "deposits_out_fen": 310000,
        "prepaid_in_fen": 27000,
        "prepaid_out_fen": 24000,
        "refunds_owed_fen": 244000,
        "refunds_paid_fen": 244000,
    }
    assert [(g["kind"], g["amount_fen"], g["state"]) for g in report["give_backs"]] == [
        ("refund", 24000, "confirmed"),
        ("refund", 100000, "confirmed"),
        ("refund", 120000, "confirmed"),
    ]

    assert report["deposits"] == {
        "held": {"count": 4, "amount_fen": 347000},
        "resolved": [
            {"resolution": "settled", "count": 3, "posted_fen": 90000, "voided_fen": 244000}
        ],
        "released_fen": 244000,
        "kept_fen": 90000,
        "forfeited_fen": 0,
        "outstanding": {"count": 1, "amount_fen": 13000},
        "receivable_posted_fen": 0,
        "receivable_balance_fen": 0,
    }

    busy = {h["hour"]: (h["pickups"], h["returns"]) for h in report["hours"]}
    assert len(report["hours"]) == 24
    assert {h: v for h, v in busy.items() if v != (0, 0)} == {
        9: (4, 0),
        10: (1, 0),
        12: (0, 1),
        14: (0, 2),
        16: (1, 2),
    }

    assert report["opening"] == {
        "opens": at(8, 0).timestamp(),
        "closes": at(17, 30).timestamp(),
        "seconds": OPEN_S,
    }
    use = _by(report["utilization"], "item")
    assert list(use) == ["skis", "snowboard", "boots", "helmet", "boat", "life-jacket"]
    # skis: A 09:30-14:10 (16800 s), B 2 x 09:40-16:20 (2 x 24000 s)
    assert (use["skis"]["units"], use["skis"]["unit_seconds_out"]) == (60, 64800)
    assert use["skis"]["unit_seconds_open"] == 60 * OPEN_S
    assert use["skis"]["utilization"] == 64800 / (60 * OPEN_S)
    assert (use["boots"]["units"], use["boots"]["unit_seconds_out"]) == (90, 16800)
    assert (use["boat"]["units"], use["boat"]["unit_seconds_out"]) == (12, 9000)
    assert use["helmet"]["unit_seconds_out"] == 1800  # out at 16:30, still out at 17:00
    assert use["snowboard"]["utilization"] == 0.0

    assert [(w["ticket"], w["name_en"], w["rentals"]) for w in report["who_rents"]] == [
        (None, "no ticket named", 3),
        ("ski-day-gear", "Ski day with skis and boots", 1),
    ]

    # the command line: the same day read later (the helmet counts until closing, 17:30)
    csv_path, png_path = tmp_path / "rentals.csv", tmp_path / "rentals.png"
    done = _scenic(
        "report", "rentals", "--dsn", dsn, "--date", DAY, "--csv", str(csv_path),
        "--png", str(png_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stdout
    assert max(len(line) for line in table.splitlines()) <= 100
    assert "Rentals of 2026-03-14 (Asia/Shanghai): 4 made, 4 with a deposit held" in table
    rows_shown = {tuple(line.split()) for line in table.splitlines()}
    for words in (
        "skis 2 3 3",
        "skis 3 240.00 120.00 0.00 400.00 0.00 640.00",
        "alipay 1840.00 1200.00 640.00",
        "wechat 1630.00 1240.00 390.00",
        "revenue 900.00; deposits in 3200.00, out 3100.00; prepaid in 270.00, out 240.00",
        "refunds owed 2440.00, paid 2440.00",
        "held this day: 4 holds, 3470.00",
        "released 2440.00, kept at settlement 900.00, forfeited 0.00",
        "still held at the day's end: 1 holds, 130.00",
        "09:00 4 0",
        "16:00 1 2",
        "skis 60 18.00 570.00 3.2%",
        "helmet 60 1.00 570.00 0.2%",
        "no ticket named 3",
        "ski-day-gear 1",
    ):
        assert tuple(words.split()) in rows_shown, (words, table)

    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["date", "section", "key", "measure", "value"]
    figures = {(r[1], r[2], r[3]): r[4] for r in rows[1:]}
    assert all(r[0] == DAY for r in rows[1:])
    assert figures[("utilization", "skis", "unit_seconds_out")] == "64800"
    assert figures[("utilization", "helmet", "unit_seconds_out")] == "3600"
    assert figures[("money", "wechat", "collected_fen")] == "163000"
    assert figures[("deposits", "settled", "posted_fen")] == "90000"
    assert figures[("hours", "14", "returns")] == "2"
    assert figures[("who_rents", "ski-day-gear", "rentals")] == "1"
    assert figures[("charges", "boat", "usage_fen")] == "26000"

    png = png_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 450)
    assert 10_000 < len(png) < 1_000_000


async def test_a_day_without_rentals_reports_zeros(dsn, db):
    clock = Clock(at(12, 0))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with connect(server.url, "admin-x", server.tokens["admin-x"]) as admin:
            report = await admin.request("rental.report", date="2026-03-13")
    assert report["rentals"] == {
        "made": 0,
        "held": 0,
        "by_status": dict.fromkeys(
            ("pending", "held", "out", "settled", "cancelled", "expired", "forfeited"), 0
        ),
    }
    assert report["items"] == report["charges"] == report["give_backs"] == []
    assert report["who_rents"] == [] and report["money"]["channels"] == []
    assert sum(h["pickups"] + h["returns"] for h in report["hours"]) == 0
    assert {u["utilization"] for u in report["utilization"]} == {0.0}


@pytest.mark.parametrize("date", ["14/03/2026", "2026-02-30", "2026-3-14", "tomorrow"])
def test_a_bad_date_is_one_usage_line(date, tmp_path):
    done = _scenic("report", "rentals", "--date", date, "--dsn", "postgresql://127.0.0.1:1/x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"scenic report rentals: argument --date: {date!r} is not a date: give it as "
        "YYYY-MM-DD; see scenic report rentals --help"
    ]


async def test_no_catalog_or_no_database_is_one_line(dsn, tmp_path):
    done = _scenic("report", "rentals", "--dsn", dsn)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip().splitlines() == [
        "scenic: no catalog loaded, so no rentals to report; scenic catalog load FILE"
    ]
    gone = _scenic("report", "rentals", "--dsn", "postgresql://127.0.0.1:1/nothing")
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1
    assert "Traceback" not in gone.stderr


async def test_report_needs_a_report_name(tmp_path):
    done = _scenic("report")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
