"""The chaos run's extra audit: the acknowledgements the plain run does not check, and refunds.

Beside :func:`loadtest.audit.audit_run` (every ``scenic audit`` check, every
order, payment announcement, grant and rental acknowledged), a chaos run
checks that every refusal a gate was given is recorded with the same
reason, that every cash payment a counter was told recorded is collected,
and that every refund the server decided was confirmed by its channel by
the end. :func:`lost_writes` counts the acknowledgements the database does
not hold; :func:`refund_waits` says how long refunds waited for their
channel's confirmation.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

#: the checks whose offenders are acknowledged writes the database lacks
ACKNOWLEDGEMENT_CHECKS = (
    "acknowledged_orders_recorded",
    "announced_payments_recorded",
    "acknowledged_grants_recorded",
    "acknowledged_denials_recorded",
    "acknowledged_cash_recorded",
    "acknowledged_rentals_recorded",
    "acknowledged_settlements_recorded",
    "acknowledged_agent_scans_recorded",
)


async def chaos_checks(
    conn: asyncpg.Connection,
    denied_scans: Iterable[tuple[str, str, str]],
    cash_recorded: Iterable[str],
) -> list[dict]:
    """The chaos run's own checks, in the audit's shape (name, promise, ok, offenders)."""
    denied = sorted(set(denied_scans))
    rows = await conn.fetch(
        """SELECT d.gate_id, d.scan_id, d.reason, s.reason AS recorded
             FROM unnest($1::text[], $2::text[], $3::text[]) AS d(gate_id, scan_id, reason)
             LEFT JOIN scans s ON s.gate_id = d.gate_id AND s.scan_id = d.scan_id
            WHERE s.scan_id IS NULL OR s.granted OR s.reason <> d.reason""",
        [d[0] for d in denied],
        [d[1] for d in denied],
        [d[2] for d in denied],
    )
    cash = sorted(set(cash_recorded))
    uncollected = await conn.fetch(
        """SELECT o.order_id FROM unnest($1::text[]) AS o(order_id)
            WHERE NOT EXISTS (SELECT 1 FROM payment_confirmations c
                               WHERE c.order_id = o.order_id AND c.channel = 'cash'
                                 AND c.captured)""",
        cash,
    )
    unconfirmed = await conn.fetch(
        """SELECT out_refund_no, order_id, channel, amount_fen, reason, requested_at
             FROM refunds WHERE confirmed_at IS NULL ORDER BY requested_at"""
    )
    return [
        _check(
            "acknowledged_denials_recorded",
            f"every scan the server refused ({len(denied)}) is recorded, refused, for that reason",
            [dict(row) for row in rows],
        ),
        _check(
            "acknowledged_cash_recorded",
            f"every cash payment a counter was told recorded ({len(cash)}) is collected",
            [dict(row) for row in uncollected],
        ),
        _check(
            "refunds_confirmed",
            "every refund the server decided was confirmed by its channel by the end",
            [dict(row) for row in unconfirmed],
        ),
    ]


def _check(name: str, promise: str, offenders: list[dict]) -> dict:
    return {"name": name, "promise": promise, "ok": not offenders, "offenders": offenders[:100]}


def lost_writes(checks: list[dict]) -> int:
    """Acknowledged writes the database does not hold (each check shows at most 100)."""
    return sum(len(c["offenders"]) for c in checks if c["name"] in ACKNOWLEDGEMENT_CHECKS)


async def refund_waits(conn: asyncpg.Connection) -> dict:
    """How long refunds waited from decided to confirmed: count, p50, p99, max (seconds)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS confirmed,
                  percentile_disc(0.5) WITHIN GROUP (ORDER BY w) AS p50_s,
                  percentile_disc(0.99) WITHIN GROUP (ORDER BY w) AS p99_s,
                  max(w) AS max_s
             FROM (SELECT extract(epoch FROM confirmed_at - requested_at)::float8 AS w
                     FROM refunds WHERE confirmed_at IS NOT NULL) AS waits"""
    )
    pending = await conn.fetchval("SELECT count(*) FROM refunds WHERE confirmed_at IS NULL")
    out = {key: row[key] for key in ("confirmed", "p50_s", "p99_s", "max_s")}
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
    return {**out, "pending": pending}
