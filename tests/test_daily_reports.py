"""The daily (morning) report of a business date, from a day driven through a real server.

A server on loopback with a clock the test moves, the demo park, the
in-process channel simulators and a real PostgreSQL. One day at the park
(Asia/Shanghai, 2026-03-14); docs/reports.md works the same example:

- 09:00 A: kiosk-1 sells 2 adult (240.00), WeChat Pay;
- 09:10 B: kiosk-2 sells a combo-cablecar (250.00), paid by Alipay, then by
  WeChat Pay too: the second payment is refunded (duplicate payment);
- 09:20 C: counter-1 sells a child and a senior ticket (120.00), cash;
- 09:30 D: kiosk-1, an adult (120.00), paid at WeChat Pay in time, but the
  notification arrives after the order expired (09:45): refunded (expiry);
- 09:40 F: kiosk-1, an adult, paid 1.00 at Alipay: refunded (amount mismatch);
- 09:50 E: kiosk-1 sells a day-pass (180.00), Alipay;
- 10:00 counter-1 refunds one of A's tickets, unused (staff, 120.00);
- gates: A1 in at G-MAIN-1 09:05; A2 granted 09:06 but not walked through;
  B in at G-MAIN-2 09:15; C's two in at G-MAIN-2 09:25 and 09:26; B out at
  G-MAIN-2 10:20 and into the cable car at G-CABLE-1 10:30; A1 out 11:10;
  A2 (refunded) refused at G-MAIN-1 11:40; E in at G-MAIN-1 12:15; a forged
  code refused at G-MAIN-2 12:30; E out at G-MAIN-2 14:00;
- 13:00 a helmet rental paid by WeChat Pay (130.00: 100.00 deposit and
  30.00 prepaid use), out 13:10, back 15:00: settled.

The report is read at 17:00 through ``report.daily``, then through
``scenic report daily`` (whose "now" is the real one, long after the day).
"""

from __future__ import annotations

import csv
import struct
import subprocess
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import trio

from clients.client import RemoteError, connect
from loadtest.local_server import scenic_command
from tests.helpers import running_server
from tests.test_orders import next_event, settle_outbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = "2026-03-14"
GATES = ("G-MAIN-1", "G-MAIN-2", "G-CABLE-1")
DEVICES = {
    "kiosk-1": "kiosk",
    "kiosk-2": "kiosk",
    "counter-1": "counter",
    "desk-1": "rental",
    "admin-x": "admin",
    **dict.fromkeys(GATES, "gate"),
}
HELMET = "880104001"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def at(hour: int, minute: int = 0) -> datetime:
    """That local time of the report's day, in UTC."""
    return datetime(2026, 3, 14, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


class Clock:
    """The server's clock: it says what the test set last."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _lines(product: str, quantity: int = 1) -> list[dict]:
    return [{"product": product, "quantity": quantity, "date": DAY}]


async def _sell(kiosk, key: str, lines: list[dict], channel: str) -> list[dict]:
    order = await kiosk.request("order.create", client_key=key, lines=lines)
    start = await kiosk.request("payment.start", order=order["order"], channel=channel)
    await kiosk.request("sim.pay", channel=channel, out_trade_no=start["out_trade_no"])
    return (await next_event(kiosk, "order.paid"))["tickets"]


async def _until_status(kiosk, order_id: str, status: str) -> None:
    with trio.fail_after(10):
        while (await kiosk.request("order.get", order=order_id))["status"] != status:
            await trio.sleep(0.05)


async def _sales_and_refunds(server, clock: Clock, db, gates: Gates, kiosk, kiosk2, counter):
    """Sell A, B, C, E; refund B's duplicate, D's late payment, F's wrong amount, one of A's."""
    clock.now = at(9, 0)
    a = await _sell(kiosk, "a", _lines("adult", 2), "wechat")
    gates.sold(a, "a1", "a2")
    await gates.until(9, 10)

    clock.now = at(9, 10)
    order = await kiosk2.request("order.create", client_key="b", lines=_lines("combo-cablecar"))
    alipay = await kiosk2.request("payment.start", order=order["order"], channel="alipay")
    wechat = await kiosk2.request("payment.start", order=order["order"], channel="wechat")
    await kiosk2.request("sim.pay", channel="alipay", out_trade_no=alipay["out_trade_no"])
    b = (await next_event(kiosk2, "order.paid"))["tickets"]
    await kiosk2.request("sim.pay", channel="wechat", out_trade_no=wechat["out_trade_no"])
    assert (await next_event(kiosk2, "payment.refunded"))["reason"] == "already_paid"
    gates.sold(b, "b")
    await gates.until(9, 20)

    clock.now = at(9, 20)
    order = await counter.request(
        "order.create", client_key="c", lines=_lines("child") + _lines("senior")
    )
    paid = await counter.request(
        "payment.record", order=order["order"], channel="cash", amount_fen=12000, key="drawer-1"
    )
    assert paid["result"] == "captured"
    c = (await counter.request("order.get", order=order["order"]))["tickets"]
    gates.sold(c, "c1", "c2")
    await gates.until(9, 30)

    clock.now = at(9, 30)
    late = await kiosk.request("order.create", client_key="d", lines=_lines("adult"))
    start = await kiosk.request("payment.start", order=late["order"], channel="wechat")
    fields = server.channels.simulators["wechat"].pay(start["out_trade_no"])

    clock.now = at(9, 40)
    wrong = await kiosk.request("order.create", client_key="f", lines=_lines("adult"))
    start = await kiosk.request("payment.start", order=wrong["order"], channel="alipay")
    await kiosk.request(
        "sim.pay", channel="alipay", out_trade_no=start["out_trade_no"], amount_fen=100
    )
    assert (await next_event(kiosk, "payment.refunded"))["reason"] == "amount_mismatch"

    clock.now = at(9, 50)  # D's deadline (09:45) has passed; a new order wakes the watcher
    e = await _sell(kiosk, "e", _lines("day-pass"), "alipay")
    gates.sold(e, "e")
    await _until_status(kiosk, late["order"], "expired")
    server.channels.notifiers["wechat"].submit(fields)
    assert (await next_event(kiosk, "payment.refunded"))["reason"] == "order_expired"

    clock.now = at(10, 0)
    a_order = await db.fetchval("select order_id from tickets where ticket_id = $1", a[1]["ticket"])
    await counter.request(
        "order.refund", order=a_order, tickets=[a[1]["ticket"]], reason="rain", key="desk-9"
    )
    await settle_outbox(db)


#: (hour, minute, gate, ticket, direction, passed (None: no report), granted), in time order
SCANS = (
    (9, 5, "G-MAIN-1", "a1", "entry", True, True),
    (9, 6, "G-MAIN-1", "a2", "entry", False, True),
    (9, 15, "G-MAIN-2", "b", "entry", True, True),
    (9, 25, "G-MAIN-2", "c1", "entry", True, True),
    (9, 26, "G-MAIN-2", "c2", "entry", True, True),
    (10, 20, "G-MAIN-2", "b", "exit", True, True),
    (10, 30, "G-CABLE-1", "b", "entry", True, True),
    (11, 10, "G-MAIN-1", "a1", "exit", True, True),
    (11, 40, "G-MAIN-1", "a2", "entry", None, False),  # refunded at 10:00
    (12, 15, "G-MAIN-1", "e", "entry", True, True),
    (12, 30, "G-MAIN-2", "forged", "entry", None, False),
    (14, 0, "G-MAIN-2", "e", "exit", True, True),
)


class Gates:
    """The day's gates: each scan of :data:`SCANS` made, and its passage reported, in turn."""

    def __init__(self, clock: Clock, gates: dict) -> None:
        self.clock, self.gates = clock, gates
        self.codes = {"forged": "NOT-A-TICKET-CODE"}
        self.done = 0

    def sold(self, tickets: list[dict], *names: str) -> None:
        """Name the codes of ``tickets`` for the scans."""
        self.codes.update(zip(names, (t["code"] for t in tickets), strict=True))

    async def until(self, hour: int, minute: int = 0) -> None:
        """Make every scan before ``hour:minute``."""
        while self.done < len(SCANS) and SCANS[self.done][:2] < (hour, minute):
            h, m, gate, ticket, direction, passed, granted = SCANS[self.done]
            scan_id = f"s{self.done}"
            self.done += 1
            self.clock.now = at(h, m)
            verdict = await self.gates[gate].request(
                "ticket.scan",
                scan_id=scan_id,
                code=self.codes[ticket],
                at=self.clock.now.timestamp(),
                direction=direction,
            )
            assert verdict["granted"] is granted, (scan_id, verdict)
            if passed is not None:
                done = await self.gates[gate].request(
                    "gate.passage", scan_id=scan_id, passed=passed
                )
                assert done["recorded"] is True


async def _rental(clock: Clock, db, gates: Gates, kiosk, desk) -> None:
    clock.now = at(13, 0)
    rental = await kiosk.request(
        "rental.create", client_key="helmet", items=[{"item": "helmet", "quantity": 1}]
    )
    start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
    assert start["amount_fen"] == 13000
    await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
    voucher = (await next_event(kiosk, "rental.voucher"))["voucher"]
    clock.now = at(13, 10)
    await desk.request("rental.pickup", voucher=voucher, labels=[HELMET])
    await gates.until(15, 0)
    clock.now = at(15, 0)
    back = await desk.request(
        "rental.return", rental=rental["rental"], returns=[{"label": HELMET, "condition": "ok"}]
    )
    assert back["status"] == "settled"
    await settle_outbox(db)


async def _one_day(server, clock: Clock, db) -> dict:
    """Drive the day; return the report ``report.daily`` gives at 17:00."""

    def client(device: str):
        return connect(server.url, device, server.tokens[device])

    async with (
        client("kiosk-1") as kiosk,
        client("kiosk-2") as kiosk2,
        client("counter-1") as counter,
        client("desk-1") as desk,
        client("admin-x") as admin,
        client("G-MAIN-1") as main1,
        client("G-MAIN-2") as main2,
        client("G-CABLE-1") as cable,
    ):
        gates = Gates(clock, {"G-MAIN-1": main1, "G-MAIN-2": main2, "G-CABLE-1": cable})
        await _sales_and_refunds(server, clock, db, gates, kiosk, kiosk2, counter)
        await gates.until(13, 0)
        await _rental(clock, db, gates, kiosk, desk)
        assert gates.done == len(SCANS)

        clock.now = at(17, 0)
        report = await admin.request("report.daily", date=DAY)
        assert await admin.request("report.daily") == report  # today is the default
        codes = []
        for who, args in ((counter, {"date": DAY}), (admin, {"date": "2026-02-30"})):
            try:
                await who.request("report.daily", **args)
            except RemoteError as exc:
                codes.append(exc.code)
        assert codes == ["forbidden", "bad_request"]
        return report


def _scenic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(scenic_command(*args), capture_output=True, text=True, timeout=120)


def _assert_png(path) -> None:
    png = path.read_bytes()
    assert png[:8] == PNG_MAGIC, path
    assert struct.unpack(">II", png[16:24]) == (900, 450)


EXPECTED_SALES = {
    "orders": 4,
    "tickets": 6,
    "amount_fen": 79000,
    "by_product": [
        {"product": "adult", "name_en": "Adult", "name_zh": "成人票", "tickets": 2,
         "amount_fen": 24000},
        {"product": "child", "name_en": "Child (1.2-1.5 m)", "name_zh": "儿童票", "tickets": 1,
         "amount_fen": 6000},
        {"product": "senior", "name_en": "Senior (60+)", "name_zh": "老年票", "tickets": 1,
         "amount_fen": 6000},
        {"product": "combo-cablecar", "name_en": "Entry + cable car combo",
         "name_zh": "门票+索道联票", "tickets": 1, "amount_fen": 25000},
        {"product": "day-pass", "name_en": "Day pass, unlimited re-entry", "name_zh": "全日通票",
         "tickets": 1, "amount_fen": 18000},
    ],
    "by_channel": [
        {"channel": "alipay", "orders": 2, "amount_fen": 43000},
        {"channel": "wechat", "orders": 1, "amount_fen": 24000},
        {"channel": "cash", "orders": 1, "amount_fen": 12000},
    ],
    "by_device": [
        {"device": "kiosk-1", "orders": 2, "amount_fen": 42000},
        {"device": "kiosk-2", "orders": 1, "amount_fen": 25000},
        {"device": "counter-1", "orders": 1, "amount_fen": 12000},
    ],
}  # fmt: skip


def _reason(reason: str, count: int, fen: int) -> dict:
    return {
        "reason": reason,
        "count": count,
        "amount_fen": fen,
        "confirmed_fen": fen,
        "failed_fen": 0,
    }


async def test_the_daily_report_counts_the_day_exactly(dsn, db, tmp_path):
    clock = Clock(at(9, 0))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        report = await _one_day(server, clock, db)

    assert (report["date"], report["timezone"]) == (DAY, "Asia/Shanghai")
    assert report["as_of"] == at(17, 0).timestamp()
    assert report["sales"] == EXPECTED_SALES
    assert report["refunds"] == {
        "count": 4,
        "amount_fen": 49100,
        "by_reason": [
            _reason("duplicate_payment", 1, 25000),
            _reason("expiry", 1, 12000),
            _reason("cancelled", 0, 0),
            _reason("amount_mismatch", 1, 100),
            _reason("staff", 1, 12000),
        ],
    }

    gates = report["gates"]
    assert (gates["entries"], gates["exits"]) == (6, 3)
    assert len(gates["by_hour"]) == 24
    busy = {h["hour"]: (h["entries"], h["exits"]) for h in gates["by_hour"]}
    assert {hour: v for hour, v in busy.items() if v != (0, 0)} == {
        9: (4, 0),
        10: (1, 1),
        11: (0, 1),
        12: (1, 0),
        14: (0, 1),
    }
    assert gates["by_gate"] == [
        {"gate": "G-CABLE-1", "zone": "cablecar", "entries": 1, "exits": 0, "scans": 1,
         "refused": 0, "not_passed": 0},
        {"gate": "G-MAIN-1", "zone": "main", "entries": 2, "exits": 1, "scans": 5,
         "refused": 1, "not_passed": 1},
        {"gate": "G-MAIN-2", "zone": "main", "entries": 3, "exits": 2, "scans": 6,
         "refused": 1, "not_passed": 0},
    ]  # fmt: skip
    assert report["occupancy"] == [
        {"zone": "cablecar", "entries": 1, "exits": 0, "peak": 1,
         "peak_at": at(10, 30).timestamp(), "final": 1},
        {"zone": "main", "entries": 5, "exits": 3, "peak": 4,
         "peak_at": at(9, 26).timestamp(), "final": 2},
    ]  # fmt: skip

    assert report["deposits"] == {
        "held": {"count": 1, "amount_fen": 13000},
        "resolved": [
            {"resolution": "settled", "count": 1, "posted_fen": 3000, "voided_fen": 10000}
        ],
        "released_fen": 10000,
        "kept_fen": 3000,
        "forfeited_fen": 0,
        "outstanding": {"count": 0, "amount_fen": 0},
        "receivable_posted_fen": 0,
        "receivable_balance_fen": 0,
    }
    assert report["reconciliation"] == {"run": False, "status": "no reconciliation run"}

    # the command line, read after the day: the same figures (nothing was still out)
    csv_path, charts = tmp_path / "daily.csv", tmp_path / "charts"
    charts.mkdir()
    done = _scenic(
        "report", "daily", "--dsn", dsn, "--date", DAY, "--csv", str(csv_path),
        "--png", str(charts),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = done.stdout
    assert max(len(line) for line in table.splitlines()) <= 100
    assert table.startswith("Daily report of 2026-03-14 (Asia/Shanghai), as of ")
    rows_shown = {tuple(line.split()) for line in table.splitlines()}
    for words in (
        "Sales: 4 orders, 6 tickets, 790.00 yuan",
        "adult 2 240.00",
        "combo-cablecar 1 250.00",
        "alipay 2 430.00",
        "wechat 1 240.00",
        "cash 1 120.00",
        "kiosk-1 2 420.00",
        "counter-1 1 120.00",
        "Refunds asked this day: 4, 491.00 (yuan)",
        "duplicate payment 1 250.00 250.00 0.00",
        "expiry 1 120.00 120.00 0.00",
        "cancelled 0 0.00 0.00 0.00",
        "amount mismatch 1 1.00 1.00 0.00",
        "staff 1 120.00 120.00 0.00",
        "Gate passages: 6 entries, 3 exits; by local hour",
        "09:00 4 0",
        "10:00 1 1",
        "G-MAIN-1 main 2 1 5 1 1",
        "G-MAIN-2 main 3 2 6 1 0",
        "G-CABLE-1 cablecar 1 0 1 0 0",
        "main 5 3 4 09:26 2",
        "cablecar 1 0 1 10:30 1",
        "held this day: 1 holds, 130.00",
        "released 100.00, kept at settlement 30.00, forfeited 0.00",
        "Reconciliation: no reconciliation run",
    ):
        assert tuple(words.split()) in rows_shown, (words, table)

    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["date", "section", "key", "measure", "value"]
    assert all(r[0] == DAY for r in rows[1:])
    figures = {(r[1], r[2], r[3]): r[4] for r in rows[1:]}
    assert len(figures) == len(rows) - 1  # every figure once
    for key, value in {
        ("sales", "all", "amount_fen"): "79000",
        ("sales_product", "adult", "tickets"): "2",
        ("sales_channel", "alipay", "amount_fen"): "43000",
        ("sales_device", "kiosk-2", "orders"): "1",
        ("refunds", "duplicate_payment", "amount_fen"): "25000",
        ("refunds", "staff", "count"): "1",
        ("gates", "all", "entries"): "6",
        ("gate_hours", "09", "entries"): "4",
        ("gate_gates", "G-MAIN-1", "not_passed"): "1",
        ("occupancy", "main", "peak"): "4",
        ("occupancy", "main", "final"): "2",
        ("deposits", "settled", "posted_fen"): "3000",
        ("reconciliation", "run", "status"): "no reconciliation run",
    }.items():
        assert figures[key] == value, key
    for chart in ("entries", "sales"):
        _assert_png(charts / f"daily-{DAY}-{chart}.png")

    prefix = _scenic("report", "daily", "--dsn", dsn, "--date", DAY, "--png", str(tmp_path / "d"))
    assert prefix.returncode == 0, prefix.stderr
    _assert_png(tmp_path / "d-entries.png")
    _assert_png(tmp_path / "d-sales.png")


async def test_an_empty_day_reports_zeros_and_draws_its_charts(dsn, db, tmp_path):
    clock = Clock(at(12, 0))
    async with running_server(dsn, db, DEVICES, clock=clock) as server:
        async with connect(server.url, "admin-x", server.tokens["admin-x"]) as admin:
            report = await admin.request("report.daily", date="2026-03-13")
    assert report["sales"] == {
        "orders": 0,
        "tickets": 0,
        "amount_fen": 0,
        "by_product": [],
        "by_channel": [],
        "by_device": [],
    }
    assert report["refunds"]["count"] == 0
    assert [r["reason"] for r in report["refunds"]["by_reason"]] == [
        "duplicate_payment",
        "expiry",
        "cancelled",
        "amount_mismatch",
        "staff",
    ]
    assert {r["amount_fen"] for r in report["refunds"]["by_reason"]} == {0}
    assert report["gates"]["by_gate"] == [] and report["occupancy"] == []
    assert [h["hour"] for h in report["gates"]["by_hour"]] == list(range(24))
    assert sum(h["entries"] + h["exits"] for h in report["gates"]["by_hour"]) == 0
    assert report["deposits"]["held"] == {"count": 0, "amount_fen": 0}
    assert report["reconciliation"]["status"] == "no reconciliation run"

    done = _scenic(
        "report", "daily", "--dsn", dsn, "--date", "2026-03-13", "--png", str(tmp_path / "e")
    )
    assert done.returncode == 0, done.stderr
    assert "Sales: 0 orders, 0 tickets, 0.00 yuan" in done.stdout
    assert done.stdout.count("(none)") == 6  # products, channels, devices, hours, gates, zones
    _assert_png(tmp_path / "e-entries.png")
    _assert_png(tmp_path / "e-sales.png")


@pytest.mark.parametrize("date", ["14/03/2026", "2026-02-30", "2026-3-14", "tomorrow"])
def test_a_bad_date_is_one_usage_line(date):
    done = _scenic("report", "daily", "--date", date, "--dsn", "postgresql://127.0.0.1:1/x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"scenic report daily: argument --date: {date!r} is not a date: give it as "
        "YYYY-MM-DD; see scenic report daily --help"
    ]


async def test_no_catalog_or_an_unwritable_chart_is_one_line(dsn, db, tmp_path):
    done = _scenic("report", "daily", "--dsn", dsn)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip().splitlines() == [
        "scenic: no catalog loaded, so no day to report; scenic catalog load FILE"
    ]
    async with running_server(dsn, db, {}):
        pass  # loads the demo catalog
    missing = tmp_path / "no-such-dir" / "d"
    done = _scenic("report", "daily", "--dsn", dsn, "--png", str(missing))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"scenic: cannot write {missing}-entries.png: ")
