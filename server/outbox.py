"""The outbox worker: delivers side effects written in the same commit as their cause.

An order actor that decides a refund writes an ``outbox`` row in the same
transaction as the refund itself. This worker claims due rows, performs them
against the channel (refund, close a payment), and marks them done only when
the channel confirms; a failure is retried with exponential backoff, for as
long as it takes. Refund requests carry their ``out_refund_no``, so asking
twice is harmless: the channel treats it as the same refund.

Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease, so two server
processes on one database never deliver the same row at the same moment, and
a row whose worker died is picked up again when its lease runs out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import attrs
import trio

from actors.orders.domain import ConfirmRefund
from server.errors import ScenicError

log = logging.getLogger("scenic.outbox")

LEASE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=10)
BATCH = 50


@attrs.frozen
class OutboxItem:
    """One claimed side effect."""

    outbox_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 1 s doubling, capped at 10 min."""
    return min(timedelta(seconds=2 ** min(attempts, 20)) / 2, MAX_BACKOFF)


async def claim_due(conn: asyncpg.Connection, now: datetime) -> list[OutboxItem]:
    """Claim up to :data:`BATCH` due rows for one lease (runs in the database thread)."""
    rows = await conn.fetch(
        """update outbox set next_attempt_at = $2
           where outbox_id in (
             select outbox_id from outbox
              where done_at is null and next_attempt_at <= $1
              order by next_attempt_at limit $3
              for update skip locked)
           returning outbox_id, kind, payload, attempts""",
        now,
        now + LEASE,
        BATCH,
    )
    return [
        OutboxItem(r["outbox_id"], r["kind"], json.loads(r["payload"]), r["attempts"]) for r in rows
    ]


async def mark_done(conn: asyncpg.Connection, outbox_id: int, now: datetime) -> None:
    """Record that a side effect was confirmed."""
    await conn.execute(
        "update outbox set done_at = $2, attempts = attempts + 1, last_error = null "
        "where outbox_id = $1",
        outbox_id,
        now,
    )


async def mark_failed(
    conn: asyncpg.Connection, outbox_id: int, now: datetime, retry_at: datetime, error: str
) -> None:
    """Record a failed attempt and when to try again."""
    await conn.execute(
        "update outbox set attempts = attempts + 1, next_attempt_at = $2, last_error = $3 "
        "where outbox_id = $1",
        outbox_id,
        retry_at,
        error[:500],
    )


class OutboxWorker:
    """Delivers outbox rows until cancelled; :meth:`kick` makes it look at once."""

    def __init__(
        self,
        run: Callable[..., Awaitable[Any]],
        channels: Mapping[str, Any],
        ask_order: Callable[[str, object], Awaitable[Any]],
        clock: Callable[[], datetime],
        idle_poll_s: float = 1.0,
    ) -> None:
        self._run = run
        self._channels = channels
        self._ask_order = ask_order
        self._clock = clock
        self._idle_poll_s = idle_poll_s
        self._kicked = trio.Event()
        self.delivered = 0
        self.failures = 0

    def kick(self) -> None:
        """Something was just committed to the outbox: look now rather than at the next poll."""
        self._kicked.set()

    async def run(self) -> None:
        """Claim and deliver due rows forever; never raises for a delivery failure."""
        while True:
            self._kicked = trio.Event()
            try:
                items = await self._run(claim_due, self._clock())
                for item in items:
                    await self._deliver(item)
            except Exception:
                # The database is away or refused us: the rows stay due (or their
                # lease runs out) and the next round tries again.
                log.exception("outbox.round_failed")
                items = []
            if len(items) < BATCH:
                with trio.move_on_after(self._idle_poll_s):
                    await self._kicked.wait()

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            with trio.fail_after(10):
                done = await self._perform(item)
        except (ScenicError, OSError, trio.TooSlowError) as exc:
            done, error = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            log.exception("outbox.crashed", extra={"outbox_id": item.outbox_id, "kind": item.kind})
            done, error = False, f"{type(exc).__name__}: {exc}"
        else:
            error = "not confirmed yet"
        now = self._clock()
        if done:
            await self._run(mark_done, item.outbox_id, now)
            self.delivered += 1
            return
        self.failures += 1
        retry_at = now + backoff(item.attempts + 1)
        log.info(
            "outbox.retry",
            extra={
                "outbox_id": item.outbox_id,
                "kind": item.kind,
                "error": error,
                "attempts": item.attempts + 1,
            },
        )
        await self._run(mark_failed, item.outbox_id, now, retry_at, error)

    async def _perform(self, item: OutboxItem) -> bool:
        payload = item.payload
        channel = self._channels.get(payload["channel"])
        if channel is None:
            raise ScenicError(f"channel {payload['channel']} is not configured", code="no_channel")
        if item.kind == "refund":
            status = await channel.refund(
                payload["out_trade_no"],
                payload["out_refund_no"],
                payload["refund_fen"],
                payload["total_fen"],
                payload["reason"],
            )
            if status.state != "SUCCESS":
                return False
            await self._ask_order(
                payload["order_id"], ConfirmRefund(payload["out_refund_no"], self._clock())
            )
            log.info("refund.confirmed", extra={"out_refund_no": payload["out_refund_no"]})
            return True
        if item.kind == "close_payment":
            try:
                await channel.close_payment(payload["out_trade_no"])
            except ScenicError as exc:
                # A paid attempt cannot be closed; its notification will come and be refunded.
                log.info(
                    "close_payment.refused",
                    extra={"out_trade_no": payload["out_trade_no"], "code": exc.code},
                )
            return True
        raise ValueError(f"unknown outbox kind {item.kind!r}")
