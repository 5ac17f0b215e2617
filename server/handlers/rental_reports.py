"""The ``rental.report`` op: one business date's rental report, for an admin.

The same report ``scenic report rentals`` prints: :func:`build_rental_report`
reads the rows (:mod:`server.storage.rental_reports`) and makes the figures
(:func:`server.rental_report.rental_report`). docs/reports.md defines every
figure.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from actors.catalog import Catalog
from actors.rentals.postings import RECEIVABLE
from server.errors import BadRequest
from server.ops import OpContext, OpGroup
from server.rental_report import local_day, rental_report
from server.schema import Arg
from server.storage.database import Database
from server.storage.rental_reports import report_rows

OPS = OpGroup()

DATE_PATTERN = r"\d{4}-\d{2}-\d{2}"


def parse_report_date(text: str) -> date:
    """The date ``text`` names (``YYYY-MM-DD``); raises :class:`BadRequest` for any other text."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{text!r} is not a date: give it as YYYY-MM-DD") from None


async def build_rental_report(
    db: Database, catalog: Catalog, business_date: date, now: datetime
) -> dict[str, Any]:
    """The rental report of ``business_date`` as of ``now``, read in one snapshot of ``db``."""
    day = local_day(business_date, catalog.timezone)
    rows = await db.run(report_rows, business_date, day.start, day.end, RECEIVABLE)
    return rental_report(rows, catalog, business_date, now)


@OPS.op(
    "rental.report",
    roles={"admin"},
    args=(Arg("date", "text", required=False, pattern=DATE_PATTERN),),
)
async def rental_report_op(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The rental report of a business date (default today's): counts, money, hours, use."""
    services = ctx.services
    now = services.clock()
    catalog = services.current_catalog()
    day = services.business_date(now) if args["date"] is None else parse_report_date(args["date"])
    return await build_rental_report(services.db, catalog, day, now)
