"""What a running server keeps doing beside answering requests, each task owned by one nursery.

:func:`run_background` starts them and reports ``started`` once the pending
orders' deadlines are loaded:

- the expiry watcher (unpaid orders expire at their deadline, across restarts);
- the rentals' deadlines (unpaid holds, due times, freeze conversions and lapses);
- the outbox worker (refunds and payment closes sent until the channel confirms);
- the catalog and ticket-key followers (an operator's change reaches every server);
- the gates' passage timers and occupancy pushes;
- the in-process channel simulators' notifiers, when WeChat Pay and Alipay are
  simulated here (their notifications go through the same path as a real
  channel's ``payment.notify``);
- the notices of the other server processes (:mod:`server.fanout`), and the
  closing of a revoked device's connections;
- the daily reconciliation against the channels' bills (:mod:`server.recon_daily`).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from server.channels.notifier import Notifier
from server.errors import ScenicError
from server.fanout import listen
from server.handlers.orders import confirm_notification
from server.handlers.rentals import confirm_freeze_notification
from server.recon_daily import run_daily
from server.session import CLOSE_REVOKED
from server.site import follow_catalog, follow_keys
from server.storage import devices
from server.storage.orders import load_order
from server.wiring import Services

log = logging.getLogger("scenic.background")


async def run_background(
    services: Services, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the server's long-running tasks until cancelled; ``started`` once they are up."""
    db = services.db
    async with trio.open_nursery() as tasks:
        await tasks.start(services.expiry.run)
        tasks.start_soon(services.outbox.run)
        # The followers of NOTIFY report started once they listen: a change made after
        # the server says it listens is never missed.
        await tasks.start(follow_catalog, db, services.site)
        await tasks.start(follow_keys, db, services.site)
        await tasks.start(
            listen,
            db,
            services.pushes,
            lambda order_id: db.run(load_order, order_id),
            services.gates.mode_seen,
            services.rentals.load,
        )
        await tasks.start(close_revoked_devices, services)
        await tasks.start(services.rental_timers.run)
        tasks.start_soon(services.gates.run_timers)
        tasks.start_soon(services.gates.push_occupancy)
        await tasks.start(run_daily, services)
        channels = services.channels
        for name, simulator in channels.simulators.items():
            notifier = Notifier(
                _deliverer(services), simulator.secret, services.clock, channels.notify_policy
            )
            channels.notifiers[name] = notifier
            tasks.start_soon(notifier.run)
        task_status.started()


def _deliverer(services: Services) -> Any:
    """How an in-process simulator's notifier delivers: as ``payment.notify`` (or, for a
    freeze, ``freeze.notify``) would."""

    async def deliver(fields: dict[str, Any]) -> bool:
        try:
            if fields.get("kind") == "freeze":
                await confirm_freeze_notification(services, fields)
            else:
                await confirm_notification(services, fields)
        except ScenicError as exc:
            log.info("notify.not_acknowledged", extra={"code": exc.code, "detail": exc.message})
            return False
        return True

    return deliver


async def close_revoked_devices(
    services: Services, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Close the connections of devices revoked by ``scenic device revoke``, at once."""
    async with services.db.listen(devices.REVOKED_CHANNEL) as notices:
        task_status.started()
        async for device_id in notices:
            for session in services.sessions.of_device(device_id):
                log.warning("device.revoked_closed", extra={"revoked_device": device_id})
                session.close_soon(CLOSE_REVOKED, "device revoked")
