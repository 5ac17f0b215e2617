"""SQL of ticket use: ticket records, scans and their verdicts, passages, gate modes.

Asyncio coroutine functions taking an asyncpg connection, run in the database
thread: the writes inside a group-commit batch, the reads through
:meth:`Database.run`. A write that changes a ticket checks the version it
read (:class:`StaleTicket` otherwise), so a second server process's stale
copy can never admit a ticket twice; a scan id is recorded once per gate.
:mod:`server.storage.ticket_store` turns the ticket and gate actors' events
into these rows.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import attrs
import outcome

from actors.tickets.actor import StaleTicket


@attrs.frozen
class TicketRecord:
    """A ticket as stored (product facts such as zones come from the catalog)."""

    ticket_id: str
    order_id: str
    product_id: str
    visit_date: date
    slot: str | None
    entries_allowed: int | None
    entries_used: int
    inside: bool
    refunded: bool
    version: int


@attrs.frozen
class ScanRecord:
    """One scan and its verdict, as recorded."""

    gate_id: str
    scan_id: str
    ticket_id: str | None
    zone: str
    direction: str
    at: datetime
    recorded_at: datetime
    granted: bool
    reason: str
    entries_left: int | None
    consumed: bool
    offline: bool = False
    passed: bool | None = None
    code_hint: str | None = None


@attrs.frozen
class TicketChange:
    """A ticket's use after a scan, and the version it was decided on."""

    ticket_id: str
    entries_used: int
    inside: bool
    expected_version: int


_TICKET_COLUMNS = """ticket_id, order_id, product_id, visit_date, slot, entries_allowed,
                     entries_used, inside, status = 'refunded' AS refunded, version"""


def _record(row: asyncpg.Record) -> TicketRecord:
    return TicketRecord(*row.values())


async def load_ticket(conn: asyncpg.Connection, ticket_id: str) -> TicketRecord | None:
    """The ticket ``ticket_id`` as stored, or ``None``."""
    row = await conn.fetchrow(
        f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE ticket_id = $1", ticket_id
    )
    return None if row is None else _record(row)


async def tickets_of_order(conn: asyncpg.Connection, order_id: str) -> list[TicketRecord]:
    """The tickets of order ``order_id`` as stored, by ticket id (their use, for the desk)."""
    rows = await conn.fetch(
        f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE order_id = $1 ORDER BY ticket_id", order_id
    )
    return [_record(row) for row in rows]


async def tickets_of_dates(conn: asyncpg.Connection, first: date, last: date) -> list[TicketRecord]:
    """Every ticket for a visit date from ``first`` to ``last`` (to keep warm in memory)."""
    rows = await conn.fetch(
        f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE visit_date BETWEEN $1 AND $2", first, last
    )
    return [_record(row) for row in rows]


_INSERT_SCAN = """INSERT INTO scans (gate_id, scan_id, ticket_id, zone, direction, at, recorded_at,
                                     granted, reason, entries_left, consumed, offline, passed,
                                     code_hint)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                  ON CONFLICT (gate_id, scan_id) DO NOTHING"""


def _scan_args(scan: ScanRecord) -> tuple:
    return (
        scan.gate_id,
        scan.scan_id,
        scan.ticket_id,
        scan.zone,
        scan.direction,
        scan.at,
        scan.recorded_at,
        scan.granted,
        scan.reason,
        scan.entries_left,
        scan.consumed,
        scan.offline,
        scan.passed,
        scan.code_hint,
    )


async def record_scan(conn: asyncpg.Connection, scan: ScanRecord) -> bool:
    """Record ``scan`` alone (no ticket change); False when its scan id was recorded before."""
    return bool(await conn.fetchval(_INSERT_SCAN + " RETURNING true", *_scan_args(scan)))


async def stored_verdict(conn: asyncpg.Connection, gate_id: str, scan_id: str) -> ScanRecord | None:
    """The scan ``scan_id`` of ``gate_id`` as first recorded."""
    row = await conn.fetchrow(
        """SELECT gate_id, scan_id, ticket_id, zone, direction, at, recorded_at, granted, reason,
                  entries_left, consumed, offline, passed, code_hint
             FROM scans WHERE gate_id = $1 AND scan_id = $2""",
        gate_id,
        scan_id,
    )
    return None if row is None else ScanRecord(*row.values())


async def give_back_entry(
    conn: asyncpg.Connection, gate_id: str, scan_id: str, change: TicketChange, at: datetime
) -> int | None:
    """The visitor did not walk through: mark the scan and restore the ticket's entry.

    Returns the ticket's new version, or ``None`` if the passage was already
    settled. Raises :class:`StaleTicket` when the ticket moved past
    ``change.expected_version``.
    """
    row = await conn.fetchrow(
        """WITH settled AS (
             UPDATE scans SET passed = false, passed_at = $3
              WHERE gate_id = $1 AND scan_id = $2 AND granted AND passed IS NULL
             RETURNING 1),
           restored AS (
             UPDATE tickets SET entries_used = $5, inside = $6, version = version + 1
              WHERE ticket_id = $4 AND version = $7 AND EXISTS (SELECT 1 FROM settled)
             RETURNING version)
           SELECT EXISTS (SELECT 1 FROM settled) AS settled, (SELECT version FROM restored)""",
        gate_id,
        scan_id,
        at,
        change.ticket_id,
        change.entries_used,
        change.inside,
        change.expected_version,
    )
    if not row["settled"]:
        return None
    if row["version"] is None:
        raise StaleTicket(f"ticket {change.ticket_id} moved past version {change.expected_version}")
    return row["version"]


async def record_scan_and_conflict(
    conn: asyncpg.Connection, scan: ScanRecord, kind: str, detail: str
) -> bool:
    """Record an offline admission the server would have refused, and flag it.

    ``kind`` is the reason the server would have given; the conflict row
    goes in with the scan, or not at all: False (nothing written) when the
    scan id was recorded before.
    """
    if not await record_scan(conn, scan):
        return False
    await conn.execute(
        """INSERT INTO gate_conflicts (gate_id, scan_id, ticket_id, kind, detail, at, found_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        scan.gate_id,
        scan.scan_id,
        scan.ticket_id,
        kind,
        detail,
        scan.at,
        scan.recorded_at,
    )
    return True


async def conflicts(conn: asyncpg.Connection, since: datetime) -> list[dict]:
    """Offline conflicts found since ``since``, newest first."""
    rows = await conn.fetch(
        """SELECT gate_id, scan_id, ticket_id, kind, detail, at, found_at FROM gate_conflicts
            WHERE found_at >= $1 ORDER BY found_at DESC, conflict_id DESC LIMIT 500""",
        since,
    )
    return [dict(row) for row in rows]


async def gate_modes(conn: asyncpg.Connection) -> dict[str, str]:
    """The mode of every gate whose mode was ever set."""
    return {row["gate_id"]: row["mode"] for row in await conn.fetch("SELECT * FROM gates")}


async def set_gate_mode(
    conn: asyncpg.Connection, gate_id: str, mode: str, by: str, at: datetime
) -> None:
    """Store a gate's mode."""
    await conn.execute(
        """INSERT INTO gates (gate_id, mode, changed_at, changed_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (gate_id) DO UPDATE SET mode = $2, changed_at = $3, changed_by = $4""",
        gate_id,
        mode,
        at,
        by,
    )


async def occupancy_since(conn: asyncpg.Connection, since: datetime) -> dict[str, tuple[int, int]]:
    """Per zone, ``(entries, exits)`` that passed since ``since``."""
    rows = await conn.fetch(
        """SELECT zone, count(*) FILTER (WHERE direction = 'entry') AS entries,
                  count(*) FILTER (WHERE direction = 'exit') AS exits
             FROM scans WHERE passed AND at >= $1 GROUP BY zone""",
        since,
    )
    return {row["zone"]: (row["entries"], row["exits"]) for row in rows}


class ScanWriter:
    """Bulk writer of scans and the ticket use they decided: three statements per batch.

    Items are ``(ScanRecord, TicketChange | None)``; each answers with the
    ticket's new version (0 without a change), ``None`` for a scan id
    recorded before (nothing is changed then), or a :class:`StaleTicket` error
    (its scan row is then removed again, so scan and ticket always agree).
    A batch never holds two changes of one ticket: its actor waits for each.
    """

    async def write_many(self, conn: asyncpg.Connection, items: list) -> list:
        """Write the batch's scans and ticket changes."""
        columns = list(zip(*(_scan_args(scan) for scan, _ in items), strict=True))
        recorded = await conn.fetch(
            """INSERT INTO scans (gate_id, scan_id, ticket_id, zone, direction, at, recorded_at,
                                  granted, reason, entries_left, consumed, offline, passed,
                                  code_hint)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::timestamptz[], $7::timestamptz[], $8::bool[], $9::text[],
                                    $10::int[], $11::bool[], $12::bool[], $13::bool[], $14::text[])
               ON CONFLICT (gate_id, scan_id) DO NOTHING
               RETURNING gate_id, scan_id""",
            *columns,
        )
        inserted = {(row["gate_id"], row["scan_id"]) for row in recorded}
        changes = [
            change
            for scan, change in items
            if change is not None and (scan.gate_id, scan.scan_id) in inserted
        ]
        versions: dict[str, int] = {}
        if changes:
            rows = await conn.fetch(
                """UPDATE tickets t SET entries_used = c.used, inside = c.inside,
                                        version = t.version + 1
                     FROM unnest($1::text[], $2::int[], $3::bool[], $4::int[])
                          AS c(ticket_id, used, inside, expected)
                    WHERE t.ticket_id = c.ticket_id AND t.version = c.expected
                   RETURNING t.ticket_id, t.version""",
                [c.ticket_id for c in changes],
                [c.entries_used for c in changes],
                [c.inside for c in changes],
                [c.expected_version for c in changes],
            )
            versions = {row["ticket_id"]: row["version"] for row in rows}
        stale = [
            scan
            for scan, change in items
            if change is not None
            and (scan.gate_id, scan.scan_id) in inserted
            and change.ticket_id not in versions
        ]
        if stale:
            await conn.execute(
                """DELETE FROM scans s USING unnest($1::text[], $2::text[]) AS x(gate_id, scan_id)
                    WHERE s.gate_id = x.gate_id AND s.scan_id = x.scan_id""",
                [scan.gate_id for scan in stale],
                [scan.scan_id for scan in stale],
            )
        answers = []
        for scan, change in items:
            if (scan.gate_id, scan.scan_id) not in inserted:
                answers.append(outcome.Value(None))
            elif change is None:
                answers.append(outcome.Value(0))
            elif change.ticket_id in versions:
                answers.append(outcome.Value(versions[change.ticket_id]))
            else:
                answers.append(
                    outcome.Error(StaleTicket(f"ticket {change.ticket_id} changed elsewhere"))
                )
        return answers


class PassageWriter:
    """Bulk writer of passages: one statement per batch.

    Items are ``(gate_id, scan_id, passed, at)``; each answers with the scan's
    ``(zone, direction)``, or ``None`` when the scan is unknown, was denied,
    its passage is already settled, or it is a *not passed* for a scan of a
    ticket: that one's entry goes back only through the ticket's actor
    (:func:`give_back_entry`, for a passage its gate still awaits), so here,
    where the gate no longer awaits it (a server restarted since the grant),
    the entry stays used and the scan stays unsettled, as docs/gates.md says.
    """

    async def write_many(self, conn: asyncpg.Connection, items: list) -> list:
        """Write the batch's passages."""
        gate_ids, scan_ids, passed, ats = (list(column) for column in zip(*items, strict=True))
        rows = await conn.fetch(
            """UPDATE scans s SET passed = c.passed, passed_at = c.at
                 FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[])
                      AS c(gate_id, scan_id, passed, at)
                WHERE s.gate_id = c.gate_id AND s.scan_id = c.scan_id AND s.granted
                  AND s.passed IS NULL AND (c.passed OR s.ticket_id IS NULL)
               RETURNING s.gate_id, s.scan_id, s.zone, s.direction""",
            gate_ids,
            scan_ids,
            passed,
            ats,
        )
        settled = {(r["gate_id"], r["scan_id"]): (r["zone"], r["direction"]) for r in rows}
        return [outcome.Value(settled.get((item[0], item[1]))) for item in items]


#: the writers the actors share (one each, so a batch groups their items)
SCAN_WRITER = ScanWriter()
PASSAGE_WRITER = PassageWriter()
