"""Expiry of unpaid orders: at its deadline a pending order is expired by its actor.

The watcher keeps a heap of (deadline, order id). At start it loads every
pending order from PostgreSQL, so deadlines survive a restart; new orders are
added with :meth:`ExpiryWatcher.watch`. When a deadline passes it asks the
order's actor to expire the order; the actor decides (a paid order stays
paid). A missed or failed attempt is retried on the next sweep.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import trio

from actors.orders.domain import ExpireOrder

log = logging.getLogger("scenic.expiry")

#: the longest the watcher sleeps before looking again, in seconds
SWEEP_INTERVAL_S = 30.0
_RETRY_DELAY = timedelta(seconds=5)


class ExpiryWatcher:
    """Expires pending orders at their deadlines; one task, owned by the server's nursery."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        ask: Callable[[str, object], Awaitable[object]],
        load_pending: Callable[[], Awaitable[list[tuple[datetime, str]]]],
    ) -> None:
        self._clock = clock
        self._ask = ask
        self._load_pending = load_pending
        self._heap: list[tuple[datetime, str]] = []
        self._changed = trio.Event()

    def watch(self, order_id: str, expires_at: datetime) -> None:
        """Expire ``order_id`` at ``expires_at`` unless it is paid or closed by then."""
        heapq.heappush(self._heap, (expires_at, order_id))
        self._changed.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load pending orders, then expire each at its deadline, until cancelled."""
        for expires_at, order_id in await self._load_pending():
            heapq.heappush(self._heap, (expires_at, order_id))
        task_status.started()
        while True:
            self._changed = trio.Event()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                expires_at, order_id = heapq.heappop(self._heap)
                await self._expire(order_id, expires_at)
            wait = SWEEP_INTERVAL_S
            if self._heap:
                wait = min(wait, (self._heap[0][0] - now).total_seconds())
            with trio.move_on_after(max(wait, 0.0)):
                await self._changed.wait()
            if not self._heap:
                for expires_at, order_id in await self._load_pending():
                    heapq.heappush(self._heap, (expires_at, order_id))

    async def _expire(self, order_id: str, expires_at: datetime) -> None:
        try:
            await self._ask(order_id, ExpireOrder(self._clock()))
        except Exception:
            log.exception("expiry.failed", extra={"order": order_id})
            # Try again on a later sweep rather than spin on a failing order.
            heapq.heappush(self._heap, (max(expires_at, self._clock()) + _RETRY_DELAY, order_id))
