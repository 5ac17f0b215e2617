"""A channel's notification sender: delays, reordering, retries and duplicates.

Real channels tell the merchant about a payment by calling it back, and they
are not polite about it: a notification may arrive late, after a later one,
more than once, or only after many retries. :class:`Notifier` reproduces that
so the server's handling of each case is exercised: every notification waits
its own random delay (so later ones overtake earlier ones), each attempt is
freshly signed (new ``nonce`` and ``sign_ts``), an unacknowledged attempt is
retried with exponential backoff until ``max_attempts``, and an acknowledged
one is, with probability ``duplicate_rate``, delivered once more.

The notifier sleeps on trio's clock, so tests drive it with ``autojump_clock``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs
import trio

from server.channels import signing
from server.channels.adapter import ChannelUnavailable

log = logging.getLogger("scenic.channels.notifier")

Deliver = Callable[[dict[str, Any]], Awaitable[bool]]

_rate = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))
_non_negative = attrs.validators.ge(0.0)


@attrs.frozen
class NotifyPolicy:
    """How a simulated channel delivers its notifications.

    ``duplicate_rate``: the chance an acknowledged notification is sent once
    more. ``max_delay_s``: each notification first waits a uniform random
    delay up to this. Retries wait ``retry_base_s``, doubling each time, at
    most ``retry_max_s``; after ``max_attempts`` unacknowledged attempts the
    notification is given up. One attempt may take ``timeout_s`` seconds.
    """

    duplicate_rate: float = attrs.field(default=0.0, validator=_rate)
    max_delay_s: float = attrs.field(default=0.0, validator=_non_negative)
    retry_base_s: float = attrs.field(default=1.0, validator=_non_negative)
    retry_max_s: float = attrs.field(default=60.0, validator=_non_negative)
    max_attempts: int = attrs.field(default=15, validator=attrs.validators.ge(1))
    timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))

    def backoff_s(self, failed_attempts: int) -> float:
        """The wait after the ``failed_attempts``-th unacknowledged attempt (1-based)."""
        return min(self.retry_base_s * 2 ** (failed_attempts - 1), self.retry_max_s)


@attrs.frozen
class NotifierStats:
    """Counters of a :class:`Notifier` since it was made.

    ``delivered`` counts notifications acknowledged (once each), ``attempts``
    every delivery attempt including duplicates, ``pending`` notifications
    neither acknowledged nor given up yet.
    """

    submitted: int
    delivered: int
    attempts: int
    duplicates_sent: int
    given_up: int
    pending: int


class Notifier:
    """Delivers one channel's notifications through ``deliver`` until acknowledged.

    ``deliver(fields)`` sends one signed notification and returns ``True`` when
    the merchant acknowledged it; ``False``, an exception or taking longer
    than ``policy.timeout_s`` count as not acknowledged. Run :meth:`run` in a
    nursery; :meth:`submit` hands it notifications.

    At most ``queue_size`` notifications wait to be picked up and at most
    ``max_in_flight`` are being delayed or delivered at once; when the queue
    is full, :meth:`submit` raises rather than dropping the notification
    silently.
    """

    def __init__(
        self,
        deliver: Deliver,
        secret: bytes,
        clock: Callable[[], datetime],
        policy: NotifyPolicy,
        rng: random.Random | None = None,
        *,
        queue_size: int = 1000,
        max_in_flight: int = 1000,
    ) -> None:
        self._deliver = deliver
        self._secret = secret
        self._clock = clock
        self.policy = policy
        self._rng = rng or random.Random()
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](queue_size)
        self._queue_size = queue_size
        self._max_in_flight = max_in_flight
        self._submitted = self._delivered = self._attempts = 0
        self._duplicates = self._given_up = self._pending = 0
        self._busy = 0
        self._idle = trio.Event()
        self._idle.set()
        #: submitted and neither acknowledged nor given up yet, by the identity of the copy
        self._outstanding: dict[int, dict[str, Any]] = {}

    def outstanding(self) -> list[dict[str, Any]]:
        """The notifications not acknowledged nor given up yet (to hand on after a restart)."""
        return [dict(fields) for fields in self._outstanding.values()]

    def has_room(self) -> bool:
        """Whether :meth:`submit` would accept a notification now."""
        return self._send.statistics().current_buffer_used < self._queue_size

    def submit(self, fields: dict[str, Any]) -> None:
        """Queue the unsigned notification ``fields`` for delivery; never blocks.

        Raises :class:`~server.channels.adapter.ChannelUnavailable` when the
        queue is full (check :meth:`has_room` first to avoid that).
        """
        copy = dict(fields)
        try:
            self._send.send_nowait(copy)
        except trio.WouldBlock:
            log.warning("notifier.queue_full", extra={"out_trade_no": fields.get("out_trade_no")})
            raise ChannelUnavailable("the notification queue is full") from None
        self._outstanding[id(copy)] = copy
        self._submitted += 1
        self._pending += 1
        self._enter()

    def stats(self) -> NotifierStats:
        """The counters now."""
        return NotifierStats(
            self._submitted,
            self._delivered,
            self._attempts,
            self._duplicates,
            self._given_up,
            self._pending,
        )

    async def wait_idle(self) -> None:
        """Wait until every submitted notification is delivered (duplicates included)
        or given up."""
        await self._idle.wait()

    async def run(self) -> None:
        """Deliver queued notifications, each in its own task, until cancelled."""
        limiter = trio.Semaphore(self._max_in_flight)
        async with trio.open_nursery() as deliveries:
            async for fields in self._receive:
                await limiter.acquire()
                deliveries.start_soon(self._deliver_one, fields, limiter)

    async def _deliver_one(self, fields: dict[str, Any], limiter: trio.Semaphore) -> None:
        try:
            await trio.sleep(self._rng.uniform(0.0, self.policy.max_delay_s))
            acknowledged = await self._until_acknowledged(fields)
            self._outstanding.pop(id(fields), None)
            self._pending -= 1
            if acknowledged and self._rng.random() < self.policy.duplicate_rate:
                await trio.sleep(self._rng.uniform(0.0, self.policy.max_delay_s))
                self._duplicates += 1
                await self._attempt(fields)
        finally:
            limiter.release()
            self._leave()

    async def _until_acknowledged(self, fields: dict[str, Any]) -> bool:
        for attempt in range(1, self.policy.max_attempts + 1):
            if await self._attempt(fields):
                self._delivered += 1
                return True
            if attempt < self.policy.max_attempts:
                await trio.sleep(self.policy.backoff_s(attempt))
        self._given_up += 1
        log.error(
            "notifier.given_up",
            extra={
                "channel": fields.get("channel"),
                "out_trade_no": fields.get("out_trade_no"),
                "attempts": self.policy.max_attempts,
            },
        )
        return False

    async def _attempt(self, fields: dict[str, Any]) -> bool:
        """One signed delivery; ``True`` only if acknowledged in time."""
        self._attempts += 1
        body = signing.signed(fields, self._secret, self._clock().timestamp())
        acknowledged = False
        with trio.move_on_after(self.policy.timeout_s):
            try:
                acknowledged = await self._deliver(body) is True
            except Exception as exc:
                log.warning(
                    "notifier.deliver_failed",
                    extra={"out_trade_no": fields.get("out_trade_no"), "error": repr(exc)},
                )
        return acknowledged

    def _enter(self) -> None:
        if self._busy == 0:
            self._idle = trio.Event()
        self._busy += 1

    def _leave(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()
