"""The rentals' timers: each fires its command through the rental's actor at its deadline.

:class:`RentalTimers` keeps a heap of :class:`~actors.rentals.timers.Deadline`
values. At start it reads every open rental (so deadlines survive a
restart); an op that changes a rental hands it to :meth:`RentalTimers.watch`.
When a deadline passes it asks the rental's actor for what the timer
means: expire an unpaid rental, mark one overdue, convert a frozen deposit
before it lapses, or, at the freeze's timeout, ask the channel whether it
lapsed and report it. The rules decide whether anything happens; a failed
attempt is tried again a little later.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import trio

from actors.ids import new_out_trade_no
from actors.rentals.commands import ConvertFreeze, ExpireRental, MarkOverdue, ReportLapse
from actors.rentals.domain import RentalRefused
from actors.rentals.state import Rental
from actors.rentals.timers import Deadline, Timer, deadlines_of

log = logging.getLogger("scenic.rental_timers")

#: the longest the worker sleeps before looking again, in seconds
SWEEP_INTERVAL_S = 30.0
_RETRY_DELAY = timedelta(seconds=5)


class RentalTimers:
    """Fires rentals' deadlines; one task, owned by the server's background work.

    ``ask`` sends a command to a rental's actor; ``load`` reads one rental
    and ``load_open`` every rental not yet closed; ``freeze_lapsed`` asks a
    rental's channel whether its freeze lapsed (true only when the channel
    says so).
    """

    def __init__(
        self,
        clock: Callable[[], datetime],
        ask: Callable[[str, object], Awaitable[Any]],
        load: Callable[[str], Awaitable[Rental | None]],
        load_open: Callable[[], Awaitable[Iterable[Rental]]],
        freeze_lapsed: Callable[[Rental], Awaitable[bool]],
    ) -> None:
        self._clock = clock
        self._ask = ask
        self._load = load
        self._load_open = load_open
        self._freeze_lapsed = freeze_lapsed
        self._heap: list[Deadline] = []
        self._changed = trio.Event()

    def watch(self, rental: Rental | None) -> None:
        """Fire ``rental``'s deadlines when they come (a rental that needs none adds none)."""
        if rental is None:
            return
        for deadline in deadlines_of(rental):
            heapq.heappush(self._heap, deadline)
        self._changed.set()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the open rentals' deadlines, then fire each at its time, until cancelled."""
        for rental in await self._load_open():
            self.watch(rental)
        task_status.started()
        while True:
            self._changed = trio.Event()
            now = self._clock()
            while self._heap and self._heap[0].at <= now:
                await self._fire(heapq.heappop(self._heap))
            wait = SWEEP_INTERVAL_S
            if self._heap:
                wait = min(wait, (self._heap[0].at - now).total_seconds())
            with trio.move_on_after(max(wait, 0.0)):
                await self._changed.wait()

    async def _fire(self, deadline: Deadline) -> None:
        now = self._clock()
        try:
            if deadline.timer is Timer.LAPSE:
                outcome = await self._report_lapse(deadline.rental_id, now)
            else:
                outcome = await self._ask(deadline.rental_id, _command(deadline, now))
        except RentalRefused as exc:
            # The rules' last word on a rental that moved on (converted, resolved, lapsed):
            # nothing to try again; its next deadlines come with the change that moved it.
            log.info(
                "rental_timer.refused",
                extra={
                    "rental": deadline.rental_id,
                    "timer": deadline.timer.value,
                    "code": exc.code,
                    "detail": exc.message,
                },
            )
            return
        except Exception:
            log.exception(
                "rental_timer.failed",
                extra={"rental": deadline.rental_id, "timer": deadline.timer.value},
            )
            again = Deadline(
                max(deadline.at, now) + _RETRY_DELAY, deadline.rental_id, deadline.timer
            )
            heapq.heappush(self._heap, again)
            return
        if outcome is not None:
            self.watch(outcome.rental)

    async def _report_lapse(self, rental_id: str, now: datetime) -> Any:
        """At a freeze's timeout: if its channel let it lapse unconverted, the rental hears so."""
        rental = await self._load(rental_id)
        if rental is None or rental.hold is None or not rental.hold.may_lapse:
            return None  # converted or resolved meanwhile
        if not await self._freeze_lapsed(rental):
            raise RuntimeError(
                f"the freeze of rental {rental_id} has not lapsed at its channel yet"
            )
        return await self._ask(rental_id, ReportLapse(now))


def _command(deadline: Deadline, now: datetime) -> object:
    """The command a passing deadline sends (the lapse is asked of the channel first)."""
    if deadline.timer is Timer.HOLD:
        return ExpireRental(now)
    if deadline.timer is Timer.DUE:
        return MarkOverdue(now)
    return ConvertFreeze(new_out_trade_no(now), now)


def freeze_lapsed_at(
    adapters: Mapping[str, Any],
) -> Callable[[Rental], Awaitable[bool]]:
    """The check :class:`RentalTimers` makes at a freeze's timeout: did its channel let it lapse?

    True only when the channel's query says the freeze holds nothing any
    more and nothing of it was converted (``CLOSED``), which is what a
    lapse looks like; a channel that cannot be asked says nothing (False).
    """

    async def lapsed(rental: Rental) -> bool:
        hold = rental.hold
        if hold is None or hold.out_order_no is None:
            return False
        freeze = rental.freezes.get(hold.out_order_no)
        adapter = adapters.get(hold.channel)
        if freeze is None or adapter is None:
            return False
        status = await adapter.query_freeze(freeze.out_order_no, freeze.out_request_no)
        return status.state == "CLOSED" and status.lapsed_fen > 0

    return lapsed
