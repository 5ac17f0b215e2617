"""The gate agent's offline journal: every decision it made alone, on disk before it acts.

One JSON object per line, appended and flushed with ``fsync`` before the
turnstile opens, so a power cut cannot lose an admission: ``scan`` lines
(scan id, code, time, direction, verdict) and ``passage`` lines (scan id,
passed). :meth:`Journal.pending` folds them into the entries ``gate.journal``
takes; after the server merged them, :meth:`Journal.mark_uploaded` moves the
file aside (kept for the record) and starts a fresh one.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.tickets.rules import Use, Verdict
from devices.offline import LocalUse, grant_of


class Journal:
    """An append-only file of offline decisions at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(record, ensure_ascii=False) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def scan(
        self,
        scan_id: str,
        code: str,
        at: datetime,
        direction: str,
        granted: bool,
        reason: str,
        ticket_id: str | None,
    ) -> None:
        """Record an offline verdict (before the turnstile acts on it)."""
        self._append(
            {
                "type": "scan",
                "scan_id": scan_id,
                "code": code,
                "at": at.timestamp(),
                "direction": direction,
                "granted": granted,
                "reason": reason,
                "ticket": ticket_id,
            }
        )

    def passage(self, scan_id: str, passed: bool) -> None:
        """Record whether the visitor of an offline grant walked through."""
        self._append({"type": "passage", "scan_id": scan_id, "passed": passed})

    def _records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a power cut mid-write: the rest still counts
        return records

    def pending(self) -> list[dict[str, Any]]:
        """The journal's scans as ``gate.journal`` entries, oldest first."""
        scans: dict[str, dict[str, Any]] = {}
        for record in self._records():
            if record.get("type") == "scan":
                scans[record["scan_id"]] = {
                    "scan_id": record["scan_id"],
                    "code": record["code"][:512],
                    "at": record["at"],
                    "direction": record["direction"],
                    "granted": record["granted"],
                    "reason": record["reason"],
                }
            elif record.get("type") == "passage" and record.get("scan_id") in scans:
                scans[record["scan_id"]]["passed"] = record["passed"]
        return list(scans.values())

    def local_use(self) -> LocalUse:
        """What this gate admitted offline, rebuilt from the journal (survives a restart)."""
        use = LocalUse()
        #: scan id -> (ticket, the grant, the ticket's use before it) of each granted scan
        granted: dict[str, tuple[str, Verdict, Use]] = {}
        for record in self._records():
            if record.get("type") == "scan" and record["granted"] and record.get("ticket"):
                grant = grant_of(record["direction"])  # as the offline rules granted it
                before = use.admitted(record["ticket"], grant)
                granted[record["scan_id"]] = (record["ticket"], grant, before)
            elif record.get("type") == "passage" and not record["passed"]:
                scan = granted.get(record["scan_id"])
                if scan is not None:
                    ticket_id, grant, before = scan
                    use.given_back(ticket_id, grant.consumed, before.inside)
        return use

    def mark_uploaded(self) -> Path | None:
        """Move the merged journal aside; returns where it went."""
        if not self.path.exists():
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        done = self.path.with_name(f"{self.path.name}.merged-{stamp}")
        self.path.rename(done)
        return done
