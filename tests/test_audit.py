"""The audit catches each broken promise it is meant to catch, and passes a healthy ledger."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import trio

from loadtest.local_server import scenic_command
from server.audit import run_audit

NOW = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


async def failing(db) -> dict[str, tuple]:
    return {r.check.name: r.offenders for r in await db.run(run_audit) if not r.ok}


async def plant_order(db, order_id: str, status: str = "paid", total: int = 12000) -> None:
    await db.execute(
        """INSERT INTO orders (order_id, device_id, client_key, status, total_fen, lines,
                               created_at, expires_at, paid_at)
           VALUES ($1, 'k1', $1, $2, $3, '[]', $4, $5, $6)""",
        order_id,
        status,
        total,
        NOW,
        NOW + timedelta(minutes=15),
        NOW if status == "paid" else None,
    )
    await db.execute(
        """INSERT INTO payments (out_trade_no, order_id, channel, amount_fen, state, started_at,
                                 started_by) VALUES ($1, $2, 'wechat', $3, 'captured', $4, 'k1')""",
        f"P-{order_id}",
        order_id,
        total,
        NOW,
    )


async def confirm(db, order_id: str, txn: str, captured: bool, amount: int = 12000) -> None:
    await db.execute(
        """INSERT INTO payment_confirmations (channel, channel_txn_id, out_trade_no, order_id,
               amount_fen, paid_at, received_at, captured)
           VALUES ('wechat', $1, $2, $3, $4, $5, $5, $6)""",
        txn,
        f"P-{order_id}",
        order_id,
        amount,
        NOW,
        captured,
    )


async def test_a_healthy_database_passes_every_check(db):
    assert await failing(db) == {}


async def test_an_unbalanced_posting_is_caught(db):
    await db.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_transaction_balances")
    await db.execute(
        "INSERT INTO ledger_transactions (txn_id, memo, at) VALUES (77, 'planted', now())"
    )
    await db.execute(
        "INSERT INTO ledger_entries (txn_id, account, amount_fen) VALUES (77, 'revenue:tickets', 5)"
    )
    broken = await failing(db)
    assert set(broken) == {"ledger_transactions_balance", "ledger_balances"}
    assert broken["ledger_transactions_balance"] == ({"txn_id": 77, "imbalance_fen": 5},)


async def test_a_double_collection_is_caught(db):
    await db.execute("DROP INDEX one_capture_per_order")  # what the schema would have refused
    await plant_order(db, "O-double")
    await confirm(db, "O-double", "42000001", captured=True)
    await confirm(db, "O-double", "42000002", captured=True)
    broken = await failing(db)
    assert broken["collected_once"] == ({"order_id": "O-double", "captures": 2},)
    assert "net_collected" in broken


async def test_a_duplicate_payment_without_a_refund_is_caught(db):
    await plant_order(db, "O-dup")
    await confirm(db, "O-dup", "42000003", captured=True)
    await confirm(db, "O-dup", "42000004", captured=False)
    broken = await failing(db)
    assert broken["duplicates_refunded"][0]["channel_txn_id"] == "42000004"


async def test_a_refund_above_its_payment_is_caught(db):
    await db.execute("ALTER TABLE refunds DISABLE TRIGGER refund_within_payment")
    await plant_order(db, "O-over")
    await confirm(db, "O-over", "42000005", captured=True)
    await db.execute(
        """INSERT INTO refunds (out_refund_no, order_id, out_trade_no, channel, channel_txn_id,
               amount_fen, reason, staff, requested_at)
           VALUES ('R-over', 'O-over', 'P-O-over', 'wechat', '42000005', 99999, 'x', true, now())"""
    )
    broken = await failing(db)
    assert broken["refunds_within_payment"][0]["refunded_fen"] == 99999


def test_scenic_audit_exits_non_zero_naming_the_offenders(dsn):
    clean = subprocess.run(
        scenic_command("audit", "--dsn", dsn), capture_output=True, text=True, timeout=120
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, asyncpg, sys\n"
            "async def main():\n"
            "    c = await asyncpg.connect(sys.argv[1])\n"
            "    await c.execute('ALTER TABLE ledger_entries DISABLE TRIGGER "
            "ledger_transaction_balances')\n"
            '    await c.execute("INSERT INTO ledger_transactions (txn_id, memo, at) '
            "VALUES (9, 'planted', now())\")\n"
            '    await c.execute("INSERT INTO ledger_entries (txn_id, account, amount_fen) '
            "VALUES (9, 'clearing:cash', 3)\")\n"
            "asyncio.run(main())\n",
            dsn,
        ],
        check=True,
        timeout=60,
    )
    broken = subprocess.run(
        scenic_command("audit", "--dsn", dsn), capture_output=True, text=True, timeout=120
    )
    assert broken.returncode == 1
    assert "FAIL ledger_transactions_balance" in broken.stdout
    assert "'txn_id': 9" in broken.stdout


async def test_an_over_admitted_ticket_is_caught(db):
    await plant_order(db, "O-gate")
    await db.execute(
        """INSERT INTO tickets (ticket_id, order_id, product_id, visit_date, entries_allowed,
                                price_fen, status, issued_at, entries_used)
           VALUES ('T-over', 'O-gate', 'adult', '2026-10-01', 1, 12000, 'valid', now(), 1)"""
    )
    for scan_id in ("s1", "s2"):  # two admissions recorded for a single-entry ticket
        await db.execute(
            """INSERT INTO scans (gate_id, scan_id, ticket_id, zone, direction, at, recorded_at,
                                  granted, reason, entries_left, consumed)
               VALUES ('G1', $1, 'T-over', 'main', 'entry', now(), now(), true, 'ok', 0, true)""",
            scan_id,
        )
    broken = await failing(db)
    assert broken["tickets_within_entitlement"] == (
        {"ticket_id": "T-over", "entries_allowed": 1, "admitted": 2},
    )
    assert broken["ticket_use_matches_scans"][0]["admitted"] == 2


async def plant_refund(db, order_id: str, requested_at, *, failed: bool = False) -> None:
    """A duplicate payment of ``order_id`` and its refund, asked at ``requested_at``."""
    await db.execute(
        """INSERT INTO payments (out_trade_no, order_id, channel, amount_fen, state, started_at,
                                 started_by) VALUES ($1, $2, 'wechat', 12000, $3, $4, 'k1')""",
        f"P2-{order_id}",
        order_id,
        "refund_failed" if failed else "refunding",
        NOW,
    )
    await db.execute(
        """INSERT INTO payment_confirmations (channel, channel_txn_id, out_trade_no, order_id,
               amount_fen, paid_at, received_at, captured)
           VALUES ('wechat', $1, $2, $3, 12000, $4, $4, false)""",
        f"wx2-{order_id}",
        f"P2-{order_id}",
        order_id,
        NOW,
    )
    await db.execute(
        """INSERT INTO refunds (out_refund_no, order_id, out_trade_no, channel, channel_txn_id,
               amount_fen, reason, staff, requested_at, failed_at, failure)
           VALUES ($1, $2, $3, 'wechat', $4, 12000, 'already_paid', false, $5, $6, $7)""",
        f"R-{order_id}",
        order_id,
        f"P2-{order_id}",
        f"wx2-{order_id}",
        requested_at,
        requested_at if failed else None,
        "refund_exceeds_payment: no" if failed else None,
    )
    await db.execute(
        """INSERT INTO outbox (kind, dedupe_key, payload, created_at, next_attempt_at, failed_at)
           VALUES ('refund', $1, '{}', $2, $2, $3)""",
        f"refund:R-{order_id}",
        requested_at,
        requested_at if failed else None,
    )
    await db.execute(
        """INSERT INTO ledger_transactions (txn_id, order_id, memo, at)
           VALUES (77, $1, 'duplicate', $2)""",
        order_id,
        NOW,
    )
    await db.execute(
        """INSERT INTO ledger_entries (txn_id, account, amount_fen)
           VALUES (77, 'clearing:wechat', 12000), (77, 'refunds:payable', -12000)"""
    )


def audit(dsn: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        scenic_command("audit", "--dsn", dsn, *flags), capture_output=True, text=True, timeout=120
    )


async def test_a_refund_unconfirmed_past_the_bound_fails_the_audit_naming_it(db, dsn):
    await plant_order(db, "O-late")
    await confirm(db, "O-late", "wx-late", True)
    await plant_refund(db, "O-late", datetime.now(UTC) - timedelta(minutes=11))
    assert set(await failing(db)) == {"refunds_confirmed_in_time"}
    within = await trio.to_thread.run_sync(audit, dsn, "--refund-bound-s", "3600")
    assert within.returncode == 0, within.stdout
    late = await trio.to_thread.run_sync(audit, dsn)  # the default bound: 10 minutes
    assert late.returncode == 1
    assert "FAIL refunds_confirmed_in_time" in late.stdout
    assert "'out_refund_no': 'R-O-late'" in late.stdout


async def test_a_refund_the_channel_refused_for_good_fails_the_audit_naming_it(db, dsn):
    await plant_order(db, "O-fail")
    await confirm(db, "O-fail", "wx-fail", True)
    await plant_refund(db, "O-fail", datetime.now(UTC), failed=True)
    assert set(await failing(db)) == {"no_failed_refunds"}
    failed = await trio.to_thread.run_sync(audit, dsn)
    assert failed.returncode == 1
    assert "FAIL no_failed_refunds" in failed.stdout
    assert "refund_exceeds_payment: no" in failed.stdout
