"""The load test's audit: the server's money and entry invariants, and every acknowledgement.

After a run, against the server's database: every check of ``scenic audit``
(no order collected twice, each duplicate refunded or its refund pending in
the outbox, the ledger balanced, no ticket admitted beyond its entitlement,
...), plus what only the load generator knows: every order the server
acknowledged exists, every order it announced as paid is paid, every
scan it granted is recorded as granted, and every rental acknowledgement
(made, held, picked up, settled) with the deposit pool, the units and the
freezes at the end (:mod:`loadtest.rental_audit`). A failure names the
offending rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from loadtest.chaos_audit import chaos_checks, lost_writes, refund_waits
from loadtest.chaos_gates import agent_checks
from loadtest.rental_audit import rental_checks
from loadtest.rentals import RentalWorld
from server.audit import run_audit


async def audit_run(
    dsn: str,
    acknowledged_orders: Iterable[str],
    paid_orders: Iterable[str],
    granted_scans: Iterable[tuple[str, str]],
    rentals: RentalWorld | None = None,
    *,
    chaos: Any = None,
    agents: Any = None,
) -> dict:
    """Run every check; ``{"ok": bool, "checks": [{name, promise, ok, offenders}]}``.

    ``chaos`` (the scenario's world, in a chaos run) adds the checks of
    :mod:`loadtest.chaos_audit` (and ``agents``, its agent gates' scans, those
    of :mod:`loadtest.chaos_gates`), and ``lost_writes`` and ``refund_waits``.
    """
    conn = await asyncpg.connect(dsn)
    try:
        checks = [
            {
                "name": result.check.name,
                "promise": result.check.promise,
                "ok": result.ok,
                "offenders": list(result.offenders),
            }
            for result in await run_audit(conn)
        ]
        orders = sorted(set(acknowledged_orders))
        found = {
            row["order_id"]
            for row in await conn.fetch(
                "SELECT order_id FROM orders WHERE order_id = any($1::text[])", orders
            )
        }
        missing = [{"order_id": o} for o in orders if o not in found][:100]
        checks.append(
            {
                "name": "acknowledged_orders_recorded",
                "promise": f"each order the server acknowledged ({len(orders)}) is in the database",
                "ok": not missing,
                "offenders": missing,
            }
        )
        paid = sorted(set(paid_orders))
        rows = await conn.fetch(
            "SELECT order_id, status FROM orders WHERE order_id = any($1::text[])", paid
        )
        status = {row["order_id"]: row["status"] for row in rows}
        unpaid = [{"order_id": o, "status": status.get(o)} for o in paid if status.get(o) != "paid"]
        checks.append(
            {
                "name": "announced_payments_recorded",
                "promise": f"each order announced as paid ({len(paid)}) is paid in the database",
                "ok": not unpaid,
                "offenders": unpaid[:100],
            }
        )
        grants = sorted(set(granted_scans))
        rows = await conn.fetch(
            """SELECT g.gate_id, g.scan_id
                 FROM unnest($1::text[], $2::text[]) AS g(gate_id, scan_id)
                WHERE NOT EXISTS (SELECT 1 FROM scans s WHERE s.gate_id = g.gate_id
                                    AND s.scan_id = g.scan_id AND s.granted)
                LIMIT 100""",
            [g for g, _ in grants],
            [s for _, s in grants],
        )
        checks.append(
            {
                "name": "acknowledged_grants_recorded",
                "promise": f"every scan the server granted ({len(grants)}) is recorded as granted",
                "ok": not rows,
                "offenders": [dict(row) for row in rows],
            }
        )
        checks += await rental_checks(conn, rentals or RentalWorld())
        extra = {}
        if chaos is not None:
            checks += await chaos_checks(conn, chaos.denied_scans, chaos.cash_recorded)
            if agents is not None:
                checks += await agent_checks(conn, agents)
            extra = {"lost_writes": lost_writes(checks), "refund_waits": await refund_waits(conn)}
    finally:
        await conn.close()
    return {"ok": all(check["ok"] for check in checks), "checks": checks, **extra}
