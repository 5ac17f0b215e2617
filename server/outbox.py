"""The outbox worker: delivers side effects written in the same commit as their cause.

An order actor that decides a refund writes an ``outbox`` row in the same
transaction as the refund itself. This worker claims due rows, performs them
against the channel (refund, close a payment), and marks them done only when
the channel confirms. A rental's actor writes its own (a refund of the
deposit's unused part, a freeze converted or unfrozen, a freeze request
cancelled, its compensation order to open). What the channel answers
decides what happens next:

- confirmed: the row is done (the answer goes to the money's owner: the
  order's or the rental's actor);
- a *transient* failure (no answer, a timeout, ``system_busy``, a reply we
  could not read): tried again with exponential backoff, 1 s doubling to
  10 minutes, for as long as it takes;
- a *permanent* refusal of a refund (``refund_exceeds_payment``,
  ``not_found``, ``amount_mismatch``, ...): the channel will refuse it again,
  so the row is not tried again; the refund is marked failed with the
  channel's reason through its order's actor, admin devices are told
  (``refund.failed``) and the error log says so. ``scenic audit`` names every
  such refund until a person settles it.

Refund requests carry their ``out_refund_no``, so asking twice is harmless:
the channel treats it as the same refund.

Claims are leases tied to the claiming server's database session: each
worker holds a session-level advisory lock (``pg_advisory_lock(space,
key)``) on a connection of its own and stamps the rows it claims with
``key``. Another worker may take a claimed row only when its lease time
(:data:`LEASE`) has run out or when no session holds that lock any more:
the claimer died (``kill -9``, a lost machine) and PostgreSQL ended its
session, so its work is taken over at the next round, not after the lease.
``FOR UPDATE SKIP LOCKED`` keeps two live workers off the same row.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import attrs
import trio

from actors.orders import commands as order_cmd
from actors.orders.domain import CreatePaymentOrder, Purpose
from actors.rentals import commands as rental_cmd
from server.channels.adapter import ChannelError
from server.errors import ScenicError
from server.storage.database import Database, DedicatedSession

log = logging.getLogger("scenic.outbox")

#: how long a claim holds while its worker's session lives
LEASE = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=10)
BATCH = 50
#: the first key of the outbox workers' advisory locks (the second is the worker's own)
LEASE_LOCK_SPACE = 0x5CE1_0B0C
#: how long a delivery may take before it counts as a transient failure
DELIVERY_TIMEOUT_S = 10.0
#: how long to wait before opening a new session after the last one was lost
RECONNECT_S = 1.0
#: the outbox row that opens a rental's compensation order
RENTAL_COMPENSATION = "rental.open_compensation_order"
#: how long a compensation order waits to be paid before it expires
COMPENSATION_TTL = timedelta(days=7)


@attrs.frozen
class OutboxItem:
    """One claimed side effect."""

    outbox_id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


@attrs.frozen
class Delivery:
    """How one delivery went: ``done``, or ``error`` and whether it is ``permanent``."""

    done: bool
    error: str | None = None
    permanent: bool = False


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 1 s doubling, capped at 10 min."""
    return min(timedelta(seconds=2 ** min(attempts, 20)) / 2, MAX_BACKOFF)


async def take_lease_key(conn: asyncpg.Connection) -> int:
    """Hold a session advisory lock of a fresh key in :data:`LEASE_LOCK_SPACE`; return the key."""
    while True:
        key = secrets.randbelow(2**31 - 1) + 1
        if await conn.fetchval("select pg_try_advisory_lock($1, $2)", LEASE_LOCK_SPACE, key):
            return key


async def claim_due(
    conn: asyncpg.Connection, now: datetime, lease_key: int, limit: int = BATCH
) -> list[OutboxItem]:
    """Claim up to ``limit`` rows that are due, or whose claimer's session is gone."""
    rows = await conn.fetch(
        """update outbox set next_attempt_at = $2, lease_key = $4
           where outbox_id in (
             select o.outbox_id from outbox o
              where o.done_at is null and o.failed_at is null
                and (o.next_attempt_at <= $1
                     or (o.lease_key is not null and not exists (
                           select 1 from pg_locks l
                            where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                              and l.classid = $5::bigint::oid
                              and l.objid = o.lease_key::bigint::oid)))
              order by o.next_attempt_at limit $3
              for update of o skip locked)
           returning outbox_id, kind, payload, attempts""",
        now,
        now + LEASE,
        limit,
        lease_key,
        LEASE_LOCK_SPACE,
    )
    return [
        OutboxItem(r["outbox_id"], r["kind"], json.loads(r["payload"]), r["attempts"]) for r in rows
    ]


async def mark_done(conn: asyncpg.Connection, outbox_id: int, now: datetime) -> None:
    """Record that a side effect was confirmed."""
    await conn.execute(
        "update outbox set done_at = $2, attempts = attempts + 1, last_error = null, "
        "lease_key = null where outbox_id = $1",
        outbox_id,
        now,
    )


async def mark_failed(
    conn: asyncpg.Connection, outbox_id: int, now: datetime, retry_at: datetime, error: str
) -> None:
    """Record a failed attempt and when to try again."""
    await conn.execute(
        "update outbox set attempts = attempts + 1, next_attempt_at = $2, last_error = $3, "
        "lease_key = null where outbox_id = $1",
        outbox_id,
        retry_at,
        error[:500],
    )


async def mark_abandoned(
    conn: asyncpg.Connection, outbox_id: int, now: datetime, error: str
) -> None:
    """Record that the channel refused the side effect for good: it is not tried again."""
    await conn.execute(
        "update outbox set attempts = attempts + 1, failed_at = $2, last_error = $3, "
        "lease_key = null where outbox_id = $1",
        outbox_id,
        now,
        error[:500],
    )


class OutboxWorker:
    """Delivers outbox rows until cancelled; :meth:`kick` makes it look at once.

    ``ask_order`` and ``ask_rental`` send a command to an order's or a
    rental's actor: the channel's answers (a refund confirmed or refused, a
    freeze converted or unfrozen) go to the money's owner, and a rental's
    compensation order is opened through the order path.
    """

    def __init__(
        self,
        db: Database,
        channels: Mapping[str, Any],
        ask_order: Callable[[str, object], Awaitable[Any]],
        clock: Callable[[], datetime],
        idle_poll_s: float = 1.0,
        ask_rental: Callable[[str, object], Awaitable[Any]] | None = None,
        on_refund_failed: Callable[[str], None] | None = None,
    ) -> None:
        self._db = db
        self._channels = channels
        self._ask_order = ask_order
        self._ask_rental = ask_rental
        #: told the channel of each refund refused for good (the metrics count them)
        self._on_refund_failed = on_refund_failed
        self._clock = clock
        self._idle_poll_s = idle_poll_s
        self._kicked = trio.Event()
        self.delivered = 0
        self.failures = 0
        self.abandoned = 0

    def kick(self) -> None:
        """Something was just committed to the outbox: look now rather than at the next poll."""
        self._kicked.set()

    async def run(self) -> None:
        """Claim and deliver due rows forever; never raises for a delivery failure.

        Holds a database session for its lease lock; when the session is
        lost (PostgreSQL restarted) it opens another with a new key.
        """
        while True:
            try:
                async with self._db.session() as session:
                    lease_key = await session.run(take_lease_key)
                    log.info("outbox.leasing", extra={"lease_key": lease_key})
                    await self._serve(session, lease_key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("outbox.session_lost", extra={"error": repr(exc)})
            await trio.sleep(RECONNECT_S)

    async def _serve(self, session: DedicatedSession, lease_key: int) -> None:
        while not session.lost.is_set():
            self._kicked = trio.Event()
            try:
                items = await self._db.run(claim_due, self._clock(), lease_key)
                for item in items:
                    if session.lost.is_set():
                        break  # our claims are free for others now: stop delivering them
                    await self._deliver(item)
            except Exception:
                # The database is away or refused us: the rows stay due (or their
                # claimer's session is gone) and the next round tries again.
                log.exception("outbox.round_failed")
                items = []
            if len(items) < BATCH:
                with trio.move_on_after(self._idle_poll_s):
                    await self._kicked.wait()

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            with trio.fail_after(DELIVERY_TIMEOUT_S):
                delivery = await self._perform(item)
        except (ScenicError, OSError, trio.TooSlowError) as exc:
            delivery = Delivery(False, f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("outbox.crashed", extra={"outbox_id": item.outbox_id, "kind": item.kind})
            delivery = Delivery(False, f"{type(exc).__name__}: {exc}")
        now = self._clock()
        if delivery.done:
            await self._db.run(mark_done, item.outbox_id, now)
            self.delivered += 1
            return
        error = delivery.error or "not confirmed yet"
        if delivery.permanent:
            await self._db.run(mark_abandoned, item.outbox_id, now, error)
            self.abandoned += 1
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
        await self._db.run(mark_failed, item.outbox_id, now, retry_at, error)

    async def _perform(self, item: OutboxItem) -> Delivery:
        payload = item.payload
        if item.kind == RENTAL_COMPENSATION:
            return await self._open_compensation(payload)
        channel = self._channels.get(payload["channel"])
        if channel is None:
            log.error("outbox.no_channel", extra={"channel": payload["channel"]})
            raise ScenicError(f"channel {payload['channel']} is not configured", code="no_channel")
        if item.kind in ("refund", "rental.request_rental_refund"):
            return await self._refund(channel, payload)
        if item.kind == "rental.convert_frozen":
            return await self._convert(channel, payload)
        if item.kind == "rental.unfreeze":
            return await self._unfreeze(channel, payload)
        if item.kind == "rental.cancel_freeze":
            try:
                await channel.close_freeze(payload["out_order_no"], payload["out_request_no"])
            except ChannelError as exc:
                if exc.transient:
                    raise
                # Authorised after all: its confirmation comes and the freeze is unfrozen whole.
                log.info("cancel_freeze.refused", extra={"code": exc.code, **_ref(payload)})
            return Delivery(True)
        if item.kind in ("close_payment", "rental.close_payment"):
            try:
                await channel.close_payment(payload["out_trade_no"])
            except ChannelError as exc:
                if exc.transient:
                    raise
                # A paid attempt cannot be closed; its notification will come and be refunded.
                log.info(
                    "close_payment.refused",
                    extra={"out_trade_no": payload["out_trade_no"], "code": exc.code},
                )
            return Delivery(True)
        raise ValueError(f"unknown outbox kind {item.kind!r}")

    async def _refund(self, channel: Any, payload: dict[str, Any]) -> Delivery:
        out_refund_no = payload["out_refund_no"]
        try:
            status = await channel.refund(
                payload["out_trade_no"],
                out_refund_no,
                payload["refund_fen"],
                payload["total_fen"],
                payload["reason"],
            )
        except ChannelError as exc:
            if exc.transient:
                raise
            return await self._refund_failed(payload, f"{exc.code}: {exc.message}")
        if status.state == "ABNORMAL":  # the money could not reach the visitor's account
            return await self._refund_failed(
                payload, "abnormal: the channel could not pay the refund out; settle it by hand"
            )
        if status.state != "SUCCESS":
            return Delivery(False, f"the channel says {status.state}")
        await self._answer(
            payload, order_cmd.ConfirmRefund, rental_cmd.ConfirmRefund, out_refund_no
        )
        log.info("refund.confirmed", extra={"out_refund_no": out_refund_no})
        return Delivery(True)

    async def _answer(self, payload: dict[str, Any], for_order: type, for_rental: type, *args):
        """Tell the money's owner (the order or the rental of ``payload``) what the channel said."""
        if "rental_id" in payload:
            command = for_rental(*args, self._clock())
            return await self._rental_actor()(payload["rental_id"], command)
        return await self._ask_order(payload["order_id"], for_order(*args, self._clock()))

    def _rental_actor(self) -> Callable[[str, object], Awaitable[Any]]:
        if self._ask_rental is None:
            raise RuntimeError("this outbox worker was made without rentals")
        return self._ask_rental

    async def _convert(self, channel: Any, payload: dict[str, Any]) -> Delivery:
        """Convert a part of a freeze into a payment (the rest unfrozen with it)."""
        try:
            converted = await channel.convert_to_payment(
                payload["auth_no"],
                payload["out_trade_no"],
                payload["amount_fen"],
                f"rental {payload['rental_id']}",
                "COMPLETE",
            )
        except ChannelError as exc:
            if exc.transient:
                raise
            return self._money_work_failed("convert_frozen", payload, exc)
        command = rental_cmd.ConfirmConversion(
            converted.out_trade_no, converted.channel_txn_id, converted.amount_fen, self._clock()
        )
        await self._rental_actor()(payload["rental_id"], command)
        return Delivery(True)

    async def _unfreeze(self, channel: Any, payload: dict[str, Any]) -> Delivery:
        """Unfreeze a part or all of a freeze."""
        try:
            await channel.unfreeze(
                payload["auth_no"],
                payload["out_request_no"],
                payload["amount_fen"],
                payload["reason"],
            )
        except ChannelError as exc:
            if exc.transient:
                raise
            return self._money_work_failed("unfreeze", payload, exc)
        command = rental_cmd.ConfirmUnfreeze(payload["out_request_no"], self._clock())
        await self._rental_actor()(payload["rental_id"], command)
        return Delivery(True)

    def _money_work_failed(self, what: str, payload: dict[str, Any], exc: ChannelError) -> Delivery:
        """The channel refused a freeze's conversion or unfreeze for good: a person must see it."""
        failure = f"{exc.code}: {exc.message}"
        log.error(f"{what}.failed", extra={"rental": payload["rental_id"], "failure": failure})
        return Delivery(False, failure, permanent=True)

    async def _open_compensation(self, payload: dict[str, Any]) -> Delivery:
        """Open the order that collects what a rental's charges came to beyond its deposit."""
        at = datetime.fromisoformat(payload["at"])
        command = CreatePaymentOrder(
            payload["order_id"],
            payload["device_id"],
            f"compensation:{payload['rental_id']}",
            Purpose.COMPENSATION,
            payload["rental_id"],
            payload["amount_fen"],
            at,
            at + COMPENSATION_TTL,
        )
        try:
            await self._ask_order(payload["order_id"], command)
        except ScenicError as exc:
            if exc.code != "order_exists":
                raise
        return Delivery(True)

    async def _refund_failed(self, payload: dict[str, Any], failure: str) -> Delivery:
        out_refund_no = payload["out_refund_no"]
        await self._answer(
            payload, order_cmd.FailRefund, rental_cmd.FailRefund, out_refund_no, failure
        )
        if self._on_refund_failed is not None:
            self._on_refund_failed(payload["channel"])
        log.error(
            "refund.failed",
            extra={
                "out_refund_no": out_refund_no,
                "order": payload.get("order_id") or payload.get("rental_id"),
                "channel": payload["channel"],
                "refund_fen": payload["refund_fen"],
                "failure": failure,
            },
        )
        return Delivery(False, failure, permanent=True)


def _ref(payload: dict[str, Any]) -> dict[str, Any]:
    """The numbers that name a piece of money work, for a log line."""
    keys = ("rental_id", "order_id", "out_trade_no", "out_refund_no", "out_order_no")
    return {key: payload[key] for key in keys if key in payload}
