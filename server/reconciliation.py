"""Reconciling a business date with a channel: gather the facts, classify, fix, store.

:func:`reconcile` is the one entry point (the ``recon.run`` op, the daily run
of :mod:`server.recon_daily`). The channel's lines come from a bill file
given by a person, from the channel's ``statement`` call, or, where the
channel has no bill to give, from its query API. The classification is
:func:`actors.reconciliation.rules.classify`; the safe fixes go through the
owners' actors exactly as live traffic does (a collection the bill shows is
confirmed as a verified ``payment.notify`` would confirm it; a refund the
channel did is confirmed as the outbox would confirm it), so the usual rules,
ledger postings and outbox rows apply. Each run is stored with its
differences; ``scenic_recon_differences_unresolved`` follows the open ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from actors.reconciliation.model import (
    AttachCollection,
    Books,
    Day,
    Difference,
    Fix,
    Line,
    RefundAtChannel,
)
from actors.reconciliation.rules import classify
from server.channels.adapter import ChannelError
from server.channels.statement import (
    BILL_CHANNELS,
    CHANNEL_TZ,
    FEE_RATE_BP,
    StatementRow,
    parse_statement,
)
from server.errors import BadRequest, ScenicError
from server.storage import reconciliation as queries

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.reconciliation")


def day_bounds(bill_date: date) -> tuple[datetime, datetime]:
    """The business date's local midnight and the next (Asia/Shanghai), as UTC."""
    start = datetime.combine(bill_date, time(), CHANNEL_TZ).astimezone(UTC)
    return start, start + timedelta(days=1)


def bill_ready_at(bill_date: date, ready: str) -> datetime:
    """When the bill of ``bill_date`` is ready: at ``ready`` (``HH:MM``, Beijing) the day after."""
    hours, minutes = (int(part) for part in ready.split(":"))
    moment = datetime.combine(bill_date + timedelta(days=1), time(hours, minutes), CHANNEL_TZ)
    return moment.astimezone(UTC)


def line_of(row: StatementRow) -> Line:
    """A bill's row as reconciliation's line."""
    return Line(
        row.kind,
        row.out_trade_no,
        row.channel_txn_id,
        row.out_refund_no,
        row.amount_fen,
        row.at,
        row.fee_fen,
        row.rate_bp,
    )


def channels_to_reconcile(services: Services) -> list[str]:
    """The configured channels that publish bills, in a fixed order."""
    return [name for name in BILL_CHANNELS if services.channels.get(name) is not None]


#: carries a fix out through its owner's actor: (channel, fix)
CarryOut = Callable[[str, Fix], Awaitable[None]]


async def reconcile(
    services: Services,
    carry_out: CarryOut,
    bill_date: date,
    channel_name: str,
    statement: bytes | None = None,
) -> dict[str, Any]:
    """Reconcile ``bill_date`` with ``channel_name``; store and return the run.

    ``carry_out`` applies a safe fix through the owner's actor
    (:func:`server.handlers.reconciliation.carry_out_fix`).

    ``statement`` is a bill file a person gives (its bytes); without it the
    channel's own bill is fetched, and where the channel gives none
    (a permanent refusal) its query API answers for each record. Raises
    ``bad_statement`` naming the line of a bill not in the layout,
    ``bad_request`` for a channel with no bill layout or not configured,
    and the channel's transient error when it cannot be reached now.
    """
    if channel_name not in BILL_CHANNELS:
        raise BadRequest(f"{channel_name} publishes no bill; reconcile one of {BILL_CHANNELS}")
    channel = services.channels.get(channel_name)
    if channel is None and statement is None:
        raise BadRequest(f"channel {channel_name} is not configured; give its bill as a file")
    async with services.db.session() as session:
        await session.run(queries.lock_run, bill_date, channel_name)
        return await _reconcile(services, carry_out, bill_date, channel_name, channel, statement)


async def _reconcile(
    services: Services,
    carry_out: CarryOut,
    bill_date: date,
    channel_name: str,
    channel: Any,
    statement: bytes | None,
) -> dict[str, Any]:
    config = services.config
    started_at = services.clock()
    start, end = day_bounds(bill_date)
    scratch = timedelta(seconds=config.recon_scratch_s)
    day = Day(start, end, scratch, FEE_RATE_BP)
    source, lines = await _lines(channel, channel_name, bill_date, statement)
    next_lines = None
    if channel is not None and started_at >= bill_ready_at(
        bill_date + timedelta(1), config.recon_bill_ready
    ):
        next_lines = await _next_bill(channel, channel_name, bill_date + timedelta(days=1))
    books = await _books(services, channel_name, day, lines)
    if source == "query":
        lines = await _query_lines(channel, day, books)
        books = await _books(services, channel_name, day, lines)
    if channel is not None:
        books = await _refund_states(channel, day, books, lines)
    differences = classify(day, lines, next_lines, books)
    stored = [await _settle(carry_out, channel_name, d) for d in differences]
    finished_at = services.clock()
    run_id = await services.db.run(
        queries.record_run,
        bill_date,
        channel_name,
        source,
        started_at,
        finished_at,
        len(lines),
        stored,
    )
    await refresh_gauge(services)
    counts = {s: sum(d["status"] == s for d in stored) for s in ("fixed", "open", "waiting")}
    log.info(
        "recon.run",
        extra={"bill_date": bill_date.isoformat(), "channel": channel_name, **counts},
    )
    return {
        "run": run_id,
        "date": bill_date.isoformat(),
        "channel": channel_name,
        "source": source,
        "lines": len(lines),
        **counts,
        "differences": stored,
    }


async def refresh_gauge(services: Services) -> None:
    """Set ``scenic_recon_differences_unresolved`` from the stored open differences."""
    services.metrics.recon_unresolved(await services.db.run(queries.unresolved))


async def _lines(
    channel: Any, name: str, bill_date: date, statement: bytes | None
) -> tuple[str, list[Line]]:
    if statement is not None:
        return "file", [line_of(row) for row in parse_statement(name, statement)]
    try:
        data = await channel.statement(bill_date)
    except ChannelError as exc:
        if exc.transient:
            raise
        log.warning("recon.no_bill", extra={"channel": name, "code": exc.code})
        return "query", []
    return "bill", [line_of(row) for row in parse_statement(name, data)]


async def _next_bill(channel: Any, name: str, bill_date: date) -> list[Line] | None:
    """The next day's lines, or ``None`` while they cannot be had (records near midnight wait)."""
    try:
        return [line_of(row) for row in parse_statement(name, await channel.statement(bill_date))]
    except ScenicError as exc:
        log.warning("recon.no_next_bill", extra={"channel": name, "code": exc.code})
        return None


async def _books(services: Services, channel: str, day: Day, lines: list[Line]) -> Books:
    low, high = day.start - day.scratch, day.end + day.scratch
    run = services.db.run
    collections = await run(queries.collections, channel, low, high)
    billed = sorted({line.out_trade_no for line in lines if line.kind == "payment"})
    refund_nos = sorted({line.out_refund_no for line in lines if line.out_refund_no})
    return Books(
        tuple(collections),
        await run(queries.started, billed),
        tuple(await run(queries.refunds, channel, low, high, refund_nos)),
    )


async def _query_lines(channel: Any, day: Day, books: Books) -> list[Line]:
    """The channel's query API's word on each record of the day, as lines (no fees)."""
    lines = []
    for collection in books.collections:
        if not day.start <= collection.at < day.end:
            continue
        status = await channel.query_payment(collection.out_trade_no)
        if status.state in ("SUCCESS", "REFUND") and status.paid_fen is not None:
            lines.append(
                Line(
                    "payment",
                    collection.out_trade_no,
                    status.channel_txn_id,
                    None,
                    status.paid_fen,
                    status.paid_at,
                )
            )
    for refund in books.refunds:
        if refund.confirmed_at is None or not day.start <= refund.confirmed_at < day.end:
            continue
        status = await channel.query_refund(refund.out_refund_no)
        if status.state == "SUCCESS":
            lines.append(
                Line(
                    "refund",
                    refund.out_trade_no,
                    "",
                    refund.out_refund_no,
                    status.refund_fen,
                    status.succeeded_at,
                )
            )
    return lines


async def _refund_states(channel: Any, day: Day, books: Books, lines: list[Line]) -> Books:
    """Ask the channel about the day's refunds still pending here and not on the bill."""
    billed = {line.out_refund_no for line in lines}
    states = {}
    for refund in books.refunds:
        if not refund.pending or refund.out_refund_no in billed:
            continue
        if not day.start - day.scratch <= refund.requested_at < day.end:
            continue
        try:
            status = await channel.query_refund(refund.out_refund_no)
        except ChannelError as exc:
            if exc.code == "not_found":
                states[refund.out_refund_no] = RefundAtChannel("NOT_FOUND")
            continue  # unreachable now: the next run asks again
        states[refund.out_refund_no] = RefundAtChannel(status.state, status.succeeded_at)
    return Books(books.collections, books.started, books.refunds, states)


async def _settle(carry_out: CarryOut, channel: str, difference: Difference) -> dict[str, Any]:
    """Carry out ``difference``'s fix if it has one; the difference as stored."""
    status = "waiting" if difference.waiting else "open"
    detail = difference.detail
    fix_text = None
    if difference.fix is not None and not difference.waiting:
        fix_text = _describe(difference.fix)
        try:
            await carry_out(channel, difference.fix)
            status = "fixed"
        except ScenicError as exc:
            log.error("recon.fix_failed", extra={"key": difference.key, "code": exc.code})
            detail = f"{detail}; the fix failed: {exc.code}: {exc.message}"
    owner = difference.owner
    return {
        "key": difference.key,
        "kind": difference.kind.value,
        "status": status,
        "detail": detail,
        "out_trade_no": difference.out_trade_no,
        "channel_txn_id": difference.channel_txn_id,
        "out_refund_no": difference.out_refund_no,
        "local_fen": difference.local_fen,
        "channel_fen": difference.channel_fen,
        "owner_kind": owner.kind if owner else None,
        "owner_id": owner.id if owner else None,
        "fix": fix_text,
    }


def _describe(fix: Any) -> str:
    if isinstance(fix, AttachCollection):
        return (
            f"confirmed {fix.channel_txn_id} ({fix.amount_fen} fen) through "
            f"{fix.owner.kind} {fix.owner.id}'s actor"
        )
    return f"confirmed refund {fix.out_refund_no} through {fix.owner.kind} {fix.owner.id}'s actor"
