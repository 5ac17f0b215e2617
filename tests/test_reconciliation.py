"""Reconciliation end to end: a real server, real PostgreSQL, the simulator's real bills.

Each kind of difference is planted, either at the simulated channel (a
payment collected whose notification was lost) or in the bill file a person
gives, and the run is checked to find it and to fix it through the owner's
actor or list it; a second run fixes nothing twice; the CLI prints the run
and exits 1 while a difference is open; a malformed bill is refused naming
its line.
"""

from __future__ import annotations

import trio

from clients.client import RemoteError, connect
from loadtest.local_server import scenic_command
from server.app import utc_now
from server.channels.statement import (
    StatementRow,
    fee_fen,
    local_date,
    parse_statement,
    write_statement,
)
from server.workers import free_port
from tests.helpers import running_server
from tests.test_metrics import get, samples
from tests.test_orders import adults, assert_audit_clean, next_event, settle_outbox

DEVICES = {"kiosk-1": "kiosk", "admin-x": "admin"}
#: no scratch window: a test that runs near Beijing midnight still gets differences, not waits
SETTINGS = {"recon_scratch_s": 0.0, "recon_at": "off"}


async def paid_order(kiosk, key: str, channel: str = "wechat") -> tuple[str, str]:
    order = await kiosk.request("order.create", client_key=key, lines=adults(1))
    start = await kiosk.request("payment.start", order=order["order"], channel=channel)
    await kiosk.request("sim.pay", channel=channel, out_trade_no=start["out_trade_no"])
    await next_event(kiosk, "order.paid")
    return order["order"], start["out_trade_no"]


async def kinds_of(admin, **args) -> dict[str, tuple[str, str]]:
    report = await admin.request("recon.report", **args)
    return {d["key"]: (d["kind"], d["status"]) for d in report["differences"]}


async def test_collections_whose_notification_was_lost_are_attached_and_a_duplicate_refunded(
    dsn, db
):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            await paid_order(kiosk, "matched")
            lost = await kiosk.request("order.create", client_key="lost", lines=adults(1))
            lost_pay = await kiosk.request("payment.start", order=lost["order"], channel="wechat")
            lost_txn = wechat.pay(lost_pay["out_trade_no"])["channel_txn_id"]  # no notification
            twice = await kiosk.request("order.create", client_key="twice", lines=adults(1))
            first = await kiosk.request("payment.start", order=twice["order"], channel="wechat")
            second = await kiosk.request("payment.start", order=twice["order"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=first["out_trade_no"])
            await next_event(kiosk, "order.paid")
            second_txn = wechat.pay(second["out_trade_no"])["channel_txn_id"]
            today = local_date(utc_now()).isoformat()

            result = await admin.request("recon.run", date=today, channel="wechat")
            [run] = result["runs"]
            assert (run["source"], run["lines"], run["fixed"], run["open"]) == ("bill", 4, 2, 0)
            found = {d["key"]: (d["kind"], d["status"]) for d in run["differences"]}
            assert found == {
                f"unknown_here:{lost_txn}": ("unknown_here", "fixed"),
                f"duplicate_collection:{second_txn}": ("duplicate_collection", "fixed"),
            }
            assert (await kiosk.request("order.get", order=lost["order"]))["status"] == "paid"
            await settle_outbox(db)
            refunded = await db.fetchval(
                "select count(*) from refunds where order_id = $1 and channel_txn_id = $2",
                twice["order"],
                second_txn,
            )
            assert refunded == 1

            again = await admin.request("recon.run", date=today, channel="wechat")
            [run] = again["runs"]
            assert (run["lines"], run["fixed"], run["open"], run["differences"]) == (5, 0, 0, [])
            assert await db.fetchval("select count(*) from refunds") == 1
            assert await kinds_of(admin, date=today) == found
    await assert_audit_clean(db)


def plant(rows: list[StatementRow], out_trade_no: str, **changes) -> list[StatementRow]:
    """``rows`` with the payment row of ``out_trade_no`` changed (``None``: removed)."""
    import attrs

    if changes.get("drop"):
        return [r for r in rows if r.out_trade_no != out_trade_no]
    return [
        attrs.evolve(r, **changes) if r.out_trade_no == out_trade_no and r.kind == "payment" else r
        for r in rows
    ]


async def test_each_difference_planted_in_a_bill_file_is_found_fixed_or_listed(dsn, db, tmp_path):
    port = free_port()
    async with running_server(dsn, db, DEVICES, metrics_port=port, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            _, billed_twice = await paid_order(kiosk, "a")
            _, wrong_amount = await paid_order(kiosk, "b")
            _, wrong_fee = await paid_order(kiosk, "c")
            _, not_billed = await paid_order(kiosk, "d")
            wechat.refund_mode, wechat.processing_s = "processing", 3600.0
            dup = await kiosk.request("order.create", client_key="e", lines=adults(1))
            one = await kiosk.request("payment.start", order=dup["order"], channel="wechat")
            two = await kiosk.request("payment.start", order=dup["order"], channel="wechat")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=one["out_trade_no"])
            await next_event(kiosk, "order.paid")
            await kiosk.request("sim.pay", channel="wechat", out_trade_no=two["out_trade_no"])
            with trio.fail_after(10):
                while not await db.fetchval("select count(*) from refunds"):
                    await trio.sleep(0.05)
            pending = await db.fetchrow("select * from refunds")
            assert pending["confirmed_at"] is None  # the channel says PROCESSING

            today = local_date(utc_now())
            rows = parse_statement("wechat", wechat.statement(today))
            rows = plant(rows, wrong_amount, amount_fen=12001, fee_fen=fee_fen(12001))
            rows = plant(rows, wrong_fee, fee_fen=99)
            rows = plant(rows, not_billed, drop=True)
            [twice] = [r for r in rows if r.out_trade_no == billed_twice]
            rows.append(twice)
            stranger = StatementRow(
                "payment",
                "PNEVERSTARTED",
                "4200000000000000000000000001",
                None,
                500,
                twice.at,
                fee_fen(500),
                rate_bp=60,
            )
            done_there = StatementRow(
                "refund",
                pending["out_trade_no"],
                pending["channel_txn_id"],
                pending["out_refund_no"],
                pending["amount_fen"],
                twice.at,
                fee_fen(pending["amount_fen"]),
                rate_bp=60,
            )
            rows += [stranger, done_there]
            bill = tmp_path / "bill.csv"
            bill.write_bytes(write_statement("wechat", rows, today))

            command = scenic_command(
                "reconcile",
                "--date",
                today.isoformat(),
                "--channel",
                "wechat",
                "--statement",
                str(bill),
                "--server",
                server.url,
                "--device",
                "admin-x",
                "--token",
                server.tokens["admin-x"],
            )
            cli = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
            out = cli.stdout.decode()
            assert cli.returncode == 1, cli.stderr.decode()
            assert out.splitlines()[0].startswith(f"reconcile {today} wechat (file, ")
            assert "5 open" in out.splitlines()[0] and "1 fixed" in out.splitlines()[0]
            found = await kinds_of(admin, date=today.isoformat())
            txn = {r.out_trade_no: r.channel_txn_id for r in rows if r.kind == "payment"}
            not_billed_txn = await db.fetchval(
                "select channel_txn_id from payment_confirmations where out_trade_no = $1",
                not_billed,
            )
            assert found == {
                f"duplicate_collection:bill:payment:{txn[billed_twice]}": (
                    "duplicate_collection",
                    "open",
                ),
                f"amount_mismatch:{txn[wrong_amount]}": ("amount_mismatch", "open"),
                f"fee_mismatch:{txn[wrong_fee]}": ("fee_mismatch", "open"),
                f"missing_at_channel:{not_billed_txn}": ("missing_at_channel", "open"),
                f"unknown_here:{stranger.channel_txn_id}": ("unknown_here", "open"),
                f"status_mismatch:refund:{pending['out_refund_no']}": ("status_mismatch", "fixed"),
            }
            for line in (
                "amount_mismatch",
                "fee_mismatch",
                "missing_at_channel",
                "unknown_here",
                "duplicate_collection",
                "status_mismatch",
            ):
                assert line in out
            confirmed = await db.fetchval(
                "select confirmed_at from refunds where out_refund_no = $1",
                pending["out_refund_no"],
            )
            assert confirmed is not None  # the fix went through the order's actor

            again = await trio.run_process(command, capture_stdout=True, check=False)
            assert again.returncode == 1
            assert "0 fixed, 5 open" in again.stdout.decode()
            shown = await trio.run_process(
                [
                    *command[: command.index("--statement")],
                    *command[command.index("--server") :],
                    "--show",
                ],
                capture_stdout=True,
                check=False,
            )
            assert shown.returncode == 1 and "status_mismatch" in shown.stdout.decode()
            status, _, text = await trio.to_thread.run_sync(get, f"http://127.0.0.1:{port}/metrics")
            assert status == 200
            assert (
                samples(text)[("scenic_recon_differences_unresolved", (("channel", "wechat"),))]
                == 5
            )

            clean = await admin.request("recon.run", date=today.isoformat(), channel="wechat")
            [run] = clean["runs"]
            assert run["source"] == "bill" and run["fixed"] == 0
            # the planted file said the refund was done; the channel's own bill does not yet
            assert [d["key"] for d in run["differences"]] == [
                f"missing_at_channel:refund:{pending['out_refund_no']}"
            ]
            assert (await kinds_of(admin, date=today.isoformat()))[
                f"amount_mismatch:{txn[wrong_amount]}"
            ] == ("amount_mismatch", "resolved")


async def test_a_malformed_bill_is_refused_naming_its_line(dsn, db, tmp_path):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            await paid_order(kiosk, "a")
            today = local_date(utc_now())
            text = server.channels.simulators["wechat"].statement(today).decode()
            broken = text.replace("`NATIVE", "`NATIVE,`extra", 1).encode()
            try:
                await admin.request(
                    "recon.run", date=today.isoformat(), channel="wechat", statement=broken
                )
            except RemoteError as exc:
                assert exc.code == "bad_statement"
                assert exc.message.startswith("line 2: 28 values; the layout has 27")
            else:
                raise AssertionError("a malformed bill was taken")
            bill = tmp_path / "bill.csv"
            bill.write_bytes(broken)
            cli = await trio.run_process(
                scenic_command(
                    "reconcile",
                    "--date",
                    today.isoformat(),
                    "--channel",
                    "wechat",
                    "--statement",
                    str(bill),
                    "--server",
                    server.url,
                    "--device",
                    "admin-x",
                    "--token",
                    server.tokens["admin-x"],
                ),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert cli.returncode == 1
            assert cli.stderr.decode().splitlines() == [
                "scenic reconcile: the server refused: line 2: 28 values; the layout has 27 "
                "(bad_statement)"
            ]
            assert await db.fetchval("select count(*) from recon_runs") == 0


async def test_the_cli_needs_an_admin_device_and_a_channel_for_a_file():
    cli = await trio.run_process(
        scenic_command("reconcile", "--date", "2026-12-01", "--statement", "x"),
        capture_stderr=True,
        check=False,
    )
    assert cli.returncode == 2
    assert cli.stderr.decode().startswith("scenic reconcile: give --device and --token")
    cli = await trio.run_process(
        scenic_command("reconcile", "--date", "2026-13-01"), capture_stderr=True, check=False
    )
    assert cli.returncode == 2 and b"is not a date" in cli.stderr


async def test_without_a_bill_the_query_api_answers_for_each_record(dsn, db):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        alipay = server.channels.simulators["alipay"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            await paid_order(kiosk, "q", channel="alipay")
            dup = await kiosk.request("order.create", client_key="q2", lines=adults(1))
            one = await kiosk.request("payment.start", order=dup["order"], channel="alipay")
            two = await kiosk.request("payment.start", order=dup["order"], channel="alipay")
            await kiosk.request("sim.pay", channel="alipay", out_trade_no=one["out_trade_no"])
            await next_event(kiosk, "order.paid")
            await kiosk.request("sim.pay", channel="alipay", out_trade_no=two["out_trade_no"])
            with trio.fail_after(10):
                while not await db.fetchval("select count(*) from refunds"):
                    await trio.sleep(0.05)
            await settle_outbox(db)
            alipay.inject_fault("statement", "no_bill")
            today = local_date(utc_now()).isoformat()
            [run] = (await admin.request("recon.run", date=today, channel="alipay"))["runs"]
            # three collections and the duplicate's refund, each asked of the query API
            assert (run["source"], run["lines"], run["differences"]) == ("query", 4, [])
            [run] = (await admin.request("recon.run", date=today, channel="alipay"))["runs"]
            assert (run["source"], run["lines"], run["differences"]) == ("bill", 4, [])


async def test_two_runs_of_one_date_at_once_take_turns_and_fix_once(dsn, db):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            for n in range(5):
                order = await kiosk.request("order.create", client_key=f"l{n}", lines=adults(1))
                start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
                wechat.pay(start["out_trade_no"])  # the notification is lost
            today = local_date(utc_now()).isoformat()
            results = []

            async def run_once():
                reply = await admin.request("recon.run", date=today, channel="wechat")
                results.append(reply["runs"][0]["fixed"])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_once)
                nursery.start_soon(run_once)
    assert sorted(results) == [0, 5]
    assert await db.fetchval("select count(*) from recon_differences where status = 'fixed'") == 5


async def test_a_rental_deposit_whose_notification_was_lost_is_held_through_its_actor(dsn, db):
    items = [{"item": "skis", "quantity": 1}]
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            rental = await kiosk.request("rental.create", client_key="r1", items=items)
            start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
            txn = wechat.pay(start["out_trade_no"])["channel_txn_id"]  # the notification is lost
            today = local_date(utc_now()).isoformat()
            [run] = (await admin.request("recon.run", date=today, channel="wechat"))["runs"]
            [difference] = run["differences"]
            assert (difference["key"], difference["status"]) == (f"unknown_here:{txn}", "fixed")
            assert (difference["owner_kind"], difference["owner_id"]) == (
                "rental",
                rental["rental"],
            )
            voucher = await next_event(kiosk, "rental.voucher")
            assert voucher["rental"] == rental["rental"]
            [run] = (await admin.request("recon.run", date=today, channel="wechat"))["runs"]
            assert (run["fixed"], run["differences"]) == (0, [])
    await assert_audit_clean(db)


async def test_the_desk_and_the_daily_report_show_what_reconciliation_found(dsn, db):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            order = await kiosk.request("order.create", client_key="d", lines=adults(1))
            start = await kiosk.request("payment.start", order=order["order"], channel="wechat")
            txn = wechat.pay(start["out_trade_no"])["channel_txn_id"]  # the notification is lost
            today = local_date(utc_now()).isoformat()
            before = await admin.request("desk.lookup", order=order["order"])
            assert before["reconciliation"] is None
            report = await admin.request("report.daily", date=today)
            assert report["reconciliation"] == {"run": False, "status": "no reconciliation run"}
            await admin.request("recon.run", date=today)
            story = await admin.request("desk.lookup", order=order["order"])
            [checked] = story["reconciliation"]["checked"]
            assert (checked["channel"], checked["date"]) == ("wechat", today)
            assert checked["last_run_at"] is not None
            [difference] = story["reconciliation"]["differences"]
            assert (difference["key"], difference["status"]) == (f"unknown_here:{txn}", "fixed")
            report = await admin.request("report.daily", date=today)
            recon = report["reconciliation"]
            assert (recon["run"], recon["channels"], recon["lines"]) == (True, "alipay wechat", 1)
            assert (recon["open"], recon["waiting"], recon["fixed"], recon["resolved"]) == (
                0,
                0,
                1,
                0,
            )


async def test_a_bill_larger_than_a_frame_is_sent_in_parts_and_reconciled_whole(dsn, db, tmp_path):
    async with running_server(dsn, db, DEVICES, **SETTINGS) as server:
        wechat = server.channels.simulators["wechat"]
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "admin-x", server.tokens["admin-x"]) as admin,
        ):
            await paid_order(kiosk, "a")
            today = local_date(utc_now())
            [paid] = parse_statement("wechat", wechat.statement(today))
            strangers = [
                StatementRow(
                    "payment",
                    f"PSTRANGER{n:05d}",
                    f"42000000000000000000{n:08d}",
                    None,
                    500,
                    paid.at,
                    fee_fen(500),
                    rate_bp=60,
                )
                for n in range(400)
            ]
            bill = tmp_path / "bill.csv"
            bill.write_bytes(write_statement("wechat", [paid, *strangers], today))
            assert bill.stat().st_size > 64 * 1024  # more than one frame carries
            command = scenic_command(
                "reconcile",
                *("--date", today.isoformat(), "--channel", "wechat"),
                *("--statement", str(bill), "--server", server.url),
                *("--device", "admin-x", "--token", server.tokens["admin-x"]),
            )
            cli = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False
            )
            found = await kinds_of(admin, date=today.isoformat())
            data = bill.read_bytes()
            codes = []
            await admin.request("recon.upload", upload="u1", part=0, data=data[:10], last=False)
            try:
                await admin.request("recon.upload", upload="u1", part=0, data=data[:11], last=False)
            except RemoteError as exc:
                codes.append(exc.code)
            await admin.request("recon.upload", upload="u1", part=2, data=data[10:20], last=True)
            try:  # part 1 is missing
                await admin.request(
                    "recon.run", date=today.isoformat(), channel="wechat", upload="u1"
                )
            except RemoteError as exc:
                codes.append((exc.code, exc.message))
    assert cli.returncode == 1, cli.stderr.decode()
    assert "400 open" in cli.stdout.decode().splitlines()[0]
    assert sum(1 for kind, _ in found.values() if kind == "unknown_here") == 400
    assert await db.fetchval("select count(*) from bill_uploads where upload_id <> 'u1'") == 0
    assert codes == [
        "bad_request",  # part 0 again with other bytes
        ("bad_request", "upload u1 is not complete: it has parts [0, 2]"),
    ]
