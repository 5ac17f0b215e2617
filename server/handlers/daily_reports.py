"""The ``report.daily`` op: one business date's morning report, for an admin.

The same report ``scenic report daily`` prints: :func:`build_daily_report`
reads the rows (:mod:`server.storage.daily_reports`) in one snapshot and
makes the figures (:func:`server.daily_report.daily_report`).
docs/reports.md defines every figure.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from actors.catalog import Catalog
from actors.rentals.postings import RECEIVABLE
from server.daily_report import daily_report
from server.handlers.rental_reports import DATE_PATTERN, parse_report_date
from server.ops import OpContext, OpGroup
from server.rental_report import local_day
from server.schema import Arg
from server.storage.daily_reports import daily_rows
from server.storage.database import Database

OPS = OpGroup()


async def build_daily_report(
    db: Database, catalog: Catalog, business_date: date, now: datetime
) -> dict[str, Any]:
    """The daily report of ``business_date`` as of ``now``, read in one snapshot of ``db``."""
    day = local_day(business_date, catalog.timezone)
    rows = await db.run(daily_rows, business_date, day.start, day.end, RECEIVABLE)
    return daily_report(rows, catalog, business_date, now)


@OPS.op(
    "report.daily",
    roles={"admin"},
    args=(Arg("date", "text", required=False, pattern=DATE_PATTERN),),
)
async def daily_report_op(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The daily report of a business date (default today's): sales, refunds, gates, deposits."""
    services = ctx.services
    now = services.clock()
    catalog = services.current_catalog()
    day = services.business_date(now) if args["date"] is None else parse_report_date(args["date"])
    return await build_daily_report(services.db, catalog, day, now)
