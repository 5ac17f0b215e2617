"""The daily reconciliation: every morning, yesterday against each channel's bill.

:func:`run_daily` is one of the server's background tasks (owned by
:func:`server.background.run_background`'s nursery). At ``recon_at`` site
time (default 10:30, after the channels' bills are ready at about 10:00
Beijing time) it reconciles the previous business date with every
configured channel that publishes a bill, as ``recon.run`` would; a channel
it cannot reach is logged and tried again at the next day's run (or by hand
with ``scenic reconcile``). With ``recon_at`` = ``off`` it does nothing.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import trio

from server.channels.statement import CHANNEL_TZ
from server.errors import ScenicError
from server.handlers.reconciliation import run_reconciliation
from server.reconciliation import channels_to_reconcile
from server.wiring import Services

log = logging.getLogger("scenic.reconciliation")


def next_run(now: datetime, at: str, zone: tzinfo) -> tuple[datetime, date]:
    """The first ``at`` (``HH:MM`` in ``zone``) after ``now``, and the business date it reconciles
    (the day before, in ``zone``)."""
    hours, minutes = (int(part) for part in at.split(":"))
    local = now.astimezone(zone)
    due = datetime.combine(local.date(), time(hours, minutes), zone)
    if due <= local:
        due = datetime.combine(local.date() + timedelta(days=1), time(hours, minutes), zone)
    return due, due.date() - timedelta(days=1)


async def run_daily(
    services: Services, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Reconcile yesterday every day at ``recon_at`` until cancelled."""
    task_status.started()
    at = services.config.recon_at
    if at == "off":
        return
    while True:
        now = services.clock()
        due, bill_date = next_run(now, at, _site_zone(services))
        await trio.sleep((due - now).total_seconds())
        for name in channels_to_reconcile(services):
            try:
                await run_reconciliation(services, bill_date, name)
            except ScenicError as exc:
                log.error(
                    "recon.daily_failed",
                    extra={"channel": name, "bill_date": bill_date.isoformat(), "code": exc.code},
                )


def _site_zone(services: Services) -> tzinfo:
    catalog = services.site.catalog
    return ZoneInfo(catalog.timezone) if catalog is not None else CHANNEL_TZ
