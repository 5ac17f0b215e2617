"""The load test's deposit checks: every rental acknowledgement of the run, against the database.

``scenic audit`` (server/audit.py) states the site-wide invariants; these
checks start from what the load generator was told (a rental made, its
deposit held, its units picked up, its settlement) and find each in
PostgreSQL, and they state the deposit pool, the units and the freezes at
the end of the run. Each check is ``{name, promise, ok, offenders}``, like
the others of :func:`loadtest.audit.audit_run`.
"""

from __future__ import annotations

import asyncpg

from loadtest.rentals import RentalWorld

#: at most this many offending rows are kept per check
MAX_OFFENDERS = 100


def _check(name: str, promise: str, offenders: list[dict]) -> dict:
    return {
        "name": name,
        "promise": promise,
        "ok": not offenders,
        "offenders": offenders[:MAX_OFFENDERS],
    }


async def rental_checks(conn: asyncpg.Connection, world: RentalWorld) -> list[dict]:
    """The rental checks of a run whose acknowledgements are ``world``."""
    return [
        await _acknowledged_rentals(conn, world),
        await _settlements(conn, world),
        await _releases(conn, world),
        await _deposit_pool(conn),
        await _units(conn, world),
        await _freezes(conn),
    ]


async def _acknowledged_rentals(conn: asyncpg.Connection, world: RentalWorld) -> dict:
    ids = sorted(world.created)
    rows = await conn.fetch(
        """SELECT r.rental_id, r.client_key, r.status, r.picked_up_at,
                  h.rental_id IS NOT NULL AS has_hold
             FROM rentals r LEFT JOIN rental_holds h USING (rental_id)
            WHERE r.rental_id = any($1::text[])""",
        ids,
    )
    found = {row["rental_id"]: row for row in rows}
    offenders = []
    for rental_id in ids:
        row = found.get(rental_id)
        if row is None:
            offenders.append({"rental_id": rental_id, "problem": "made, not in the database"})
        elif row["client_key"] != world.created[rental_id]:
            offenders.append({"rental_id": rental_id, "problem": "another client_key"})
        elif rental_id in world.held and not row["has_hold"]:
            offenders.append({"rental_id": rental_id, "problem": "held, but no hold recorded"})
        elif rental_id in world.picked_up and row["picked_up_at"] is None:
            offenders.append({"rental_id": rental_id, "problem": "picked up, not recorded"})
        elif rental_id in world.cancelled and row["status"] != "cancelled":
            offenders.append({"rental_id": rental_id, "problem": f"cancelled, is {row['status']}"})
    return _check(
        "acknowledged_rentals_recorded",
        f"each rental made ({len(ids)}), held ({len(world.held)}) and picked up "
        f"({len(world.picked_up)}) is recorded so",
        offenders,
    )


async def _settlements(conn: asyncpg.Connection, world: RentalWorld) -> dict:
    ids = sorted(world.settled)
    rows = await conn.fetch(
        """SELECT r.rental_id, r.status, h.resolution, h.amount_fen, h.posted_fen, h.voided_fen,
                  (SELECT coalesce(sum(e.amount_fen), 0)
                     FROM ledger_transactions t JOIN ledger_entries e USING (txn_id)
                    WHERE t.rental_id = r.rental_id AND e.account = 'receivable:rentals'
                      AND e.amount_fen > 0) AS owed_fen
             FROM rentals r LEFT JOIN rental_holds h USING (rental_id)
            WHERE r.rental_id = any($1::text[])""",
        ids,
    )
    found = {row["rental_id"]: row for row in rows}
    offenders = []
    for rental_id in ids:
        said, row = world.settled[rental_id], found.get(rental_id)
        problem = None
        balanced = said["charges_fen"] + said["released_fen"] == (
            said["paid_fen"] + said["compensation_fen"]
        )
        if not balanced:
            problem = "the reply's charges + released != paid + compensation"
        elif row is None or row["status"] != "settled" or row["resolution"] != "settled":
            problem = "acknowledged settled, not settled in the database"
        elif (row["amount_fen"], row["posted_fen"], row["voided_fen"]) != (
            said["paid_fen"],
            said["kept_fen"],
            said["released_fen"],
        ):
            problem = "the hold's amount, posted and voided differ from the reply"
        elif row["owed_fen"] != said["compensation_fen"]:
            problem = "the compensation posted differs from the reply"
        if problem:
            offenders.append({"rental_id": rental_id, "problem": problem, **said})
    return _check(
        "acknowledged_settlements_recorded",
        f"each settlement acknowledged ({len(ids)}) is settled in the database: "
        "charges + released = paid + compensation, as replied",
        offenders,
    )


async def _releases(conn: asyncpg.Connection, world: RentalWorld) -> dict:
    ids = sorted(world.settled)
    rows = await conn.fetch(
        """SELECT h.rental_id, h.route, h.voided_fen, h.posted_fen,
                  coalesce(f.refunded, 0) AS refunded_fen, coalesce(f.open, 0) AS refunds_open,
                  coalesce(u.unfrozen, 0) AS unfrozen_fen, coalesce(u.open, 0) AS unfreezes_open,
                  coalesce(c.converted, 0) AS converted_fen,
                  (SELECT coalesce(sum(amount_fen), 0) FROM rental_memos m
                    WHERE m.rental_id = h.rental_id) AS still_frozen_fen
             FROM rental_holds h
             LEFT JOIN LATERAL (
                  SELECT sum(amount_fen) AS refunded,
                         count(*) FILTER (WHERE confirmed_at IS NULL OR failure IS NOT NULL) AS open
                    FROM rental_refunds WHERE out_trade_no = h.reference) f ON true
             LEFT JOIN LATERAL (
                  SELECT sum(amount_fen) AS unfrozen,
                         count(*) FILTER (WHERE confirmed_at IS NULL) AS open
                    FROM rental_unfreezes WHERE out_order_no = h.reference) u ON true
             LEFT JOIN LATERAL (
                  SELECT sum(c.amount_fen) AS converted
                    FROM rental_payments p JOIN rental_confirmations c
                      ON c.reference = p.out_trade_no AND c.kind = 'conversion'
                   WHERE p.rental_id = h.rental_id AND p.kind = 'conversion') c ON true
            WHERE h.rental_id = any($1::text[])""",
        ids,
    )
    offenders = []
    for row in rows:
        if row["route"] == "pay":
            ok = row["refunded_fen"] == row["voided_fen"] and row["refunds_open"] == 0
        elif row["posted_fen"] > 0:  # converted, and the rest unfrozen by the same call
            ok = row["converted_fen"] == row["posted_fen"] and row["still_frozen_fen"] == 0
        else:
            ok = (
                row["unfrozen_fen"] == row["voided_fen"]
                and row["unfreezes_open"] == 0
                and row["still_frozen_fen"] == 0
            )
        if not ok:
            offenders.append(dict(row))
    return _check(
        "settled_deposits_released_once",
        f"each settled rental's released part ({len(ids)} rentals) is refunded once by its "
        "route and confirmed by the channel, or unfrozen (the kept part converted)",
        offenders,
    )


async def _deposit_pool(conn: asyncpg.Connection) -> dict:
    row = await conn.fetchrow(
        """SELECT (SELECT -coalesce(sum(amount_fen), 0) FROM ledger_entries
                    WHERE account = 'deposits:held') AS pool_fen,
                  (SELECT -coalesce(sum(amount_fen), 0) FROM ledger_entries
                    WHERE account = 'rentals:prepaid') AS prepaid_pool_fen,
                  coalesce(sum(r.deposit_fen), 0) AS held_fen,
                  coalesce(sum(r.prepaid_fen), 0) AS prepaid_fen,
                  count(*) AS rentals
             FROM rentals r JOIN rental_holds h USING (rental_id)
            WHERE h.resolution IS NULL
              AND (h.route = 'pay' OR EXISTS (
                   SELECT 1 FROM rental_payments p JOIN rental_confirmations c
                       ON c.reference = p.out_trade_no AND c.kind = 'conversion'
                    WHERE p.rental_id = r.rental_id AND p.kind = 'conversion'))"""
    )
    same = (row["pool_fen"], row["prepaid_pool_fen"]) == (row["held_fen"], row["prepaid_fen"])
    return _check(
        "deposit_pool_matches_holds",
        f"the deposit pool (deposits:held, rentals:prepaid) is the held deposits of the "
        f"{row['rentals']} unsettled rentals paid into it",
        [] if same else [dict(row)],
    )


async def _units(conn: asyncpg.Connection, world: RentalWorld) -> dict:
    rows = await conn.fetch(
        "SELECT label, state, rental_id FROM rental_units WHERE state = 'out' OR label = any($1)",
        sorted({label for labels in world.picked_up.values() for label in labels}),
    )
    unit = {row["label"]: row for row in rows}
    statuses = {
        row["rental_id"]: row["status"]
        for row in await conn.fetch(
            "SELECT rental_id, status FROM rentals WHERE rental_id = any($1::text[])",
            sorted({row["rental_id"] for row in rows if row["rental_id"]} | set(world.picked_up)),
        )
    }
    offenders = []
    for row in rows:
        if row["state"] == "out" and statuses.get(row["rental_id"]) != "out":
            offenders.append({**dict(row), "problem": "out on a rental that is not out"})
    holders: dict[str, list[str]] = {}
    for rental_id, labels in world.picked_up.items():
        out = statuses.get(rental_id) == "out"
        for label in labels:
            here = unit.get(label)
            on_it = here is not None and here["state"] == "out" and here["rental_id"] == rental_id
            if out and not on_it:
                offenders.append({"label": label, "rental_id": rental_id, "problem": "not out"})
            if out:
                holders.setdefault(label, []).append(rental_id)
    offenders += [
        {"label": label, "rental_id": ", ".join(ids), "problem": "out on two rentals"}
        for label, ids in holders.items()
        if len(ids) > 1
    ]
    return _check(
        "units_out_once",
        f"no unit is out on two rentals; each of the {len(world.picked_up)} pickups "
        "acknowledged is out on its rental until it settles",
        offenders,
    )


async def _freezes(conn: asyncpg.Connection) -> dict:
    rows = await conn.fetch(
        """SELECT m.rental_id, r.status, sum(m.amount_fen) AS still_frozen_fen
             FROM rental_memos m JOIN rentals r USING (rental_id)
            WHERE r.closed_at IS NOT NULL
            GROUP BY m.rental_id, r.status
           HAVING sum(m.amount_fen) <> 0
            LIMIT 100"""
    )
    return _check(
        "freezes_resolved",
        "every freeze of a closed rental is converted or unfrozen (its memos sum to zero)",
        [dict(row) for row in rows],
    )
