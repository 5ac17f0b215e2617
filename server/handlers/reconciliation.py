"""Ops for reconciliation (admin): run a business date against a channel, and show the result.

``recon.run`` reconciles one date with one channel (or every channel with a
bill) inside the server, where the channels and the actors are, so every fix
goes through the same actors and outbox as live traffic; ``recon.report``
shows the stored runs and differences. docs/reconciliation.md explains both.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import actors.orders.domain as order_cmd
import actors.rentals.commands as rental_cmd
from actors.reconciliation.model import AttachCollection, ConfirmRefund, Fix
from server.channels.statement import BILL_CHANNELS
from server.errors import BadRequest
from server.handlers.orders import confirm_collection
from server.handlers.rentals import confirm_rental_payment
from server.ops import OpContext, OpGroup
from server.reconciliation import channels_to_reconcile, reconcile
from server.schema import Arg
from server.storage import bill_uploads
from server.storage import reconciliation as queries

if TYPE_CHECKING:
    from server.wiring import Services

OPS = OpGroup()
ADMIN = {"admin"}
DATE = Arg("date", "text", pattern=r"\d{4}-\d{2}-\d{2}")
CHANNEL = Arg("channel", "text", required=False, pattern="|".join(BILL_CHANNELS))
#: the largest bill file a request may carry (the frame limit may be lower)
MAX_STATEMENT_BYTES = 16 * 1024 * 1024
#: an upload's id: letters, digits, ``_`` and ``-``
UPLOAD_ID = r"[A-Za-z0-9_-]{1,40}"
#: the most bytes one ``recon.upload`` part carries (it fits a 64 KiB frame)
MAX_PART_BYTES = 48 * 1024


@OPS.op(
    "recon.run",
    roles=ADMIN,
    args=(
        DATE,
        CHANNEL,
        Arg("statement", "bytes", required=False, max_len=MAX_STATEMENT_BYTES),
        Arg("upload", "text", required=False, pattern=UPLOAD_ID),
    ),
)
async def recon_run(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Reconcile ``date`` with ``channel`` (default: every channel with a bill); fix what is safe.

    ``statement`` is a bill file's bytes, or ``upload`` names one sent in
    parts by ``recon.upload`` (then ``channel`` is required).
    """
    services = ctx.services
    bill_date = _date(args["date"])
    statement = args.get("statement")
    upload = args.get("upload")
    if statement is not None and upload is not None:
        raise BadRequest("give the bill as 'statement' or as 'upload', not both")
    if (statement is not None or upload is not None) and args.get("channel") is None:
        raise BadRequest("a statement file is one channel's bill: name its channel")
    if upload is not None:
        try:
            statement = await services.db.run(bill_uploads.read_upload, upload)
        except bill_uploads.UploadProblem as exc:
            raise BadRequest(str(exc)) from None
    names = [args["channel"]] if args.get("channel") else channels_to_reconcile(services)
    runs = [await run_reconciliation(services, bill_date, name, statement) for name in names]
    if upload is not None:
        await services.db.run(bill_uploads.drop_upload, upload)
    return {"date": bill_date.isoformat(), "runs": [_wire(run) for run in runs]}


@OPS.op(
    "recon.upload",
    roles=ADMIN,
    args=(
        Arg("upload", "text", pattern=UPLOAD_ID),
        Arg("part", "int", low=0, high=100_000),
        Arg("data", "bytes", max_len=MAX_PART_BYTES),
        Arg("last", "bool"),
    ),
)
async def recon_upload(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Store one part of a bill file for ``recon.run``'s ``upload`` (a file over one frame).

    Parts are numbered from 0; the one with ``last`` true ends the file.
    Sending a part again with the same bytes changes nothing.
    """
    services = ctx.services
    try:
        size = await services.db.run(
            bill_uploads.store_part,
            args["upload"],
            args["part"],
            args["data"],
            args["last"],
            ctx.device_id,
            services.clock(),
        )
    except bill_uploads.UploadProblem as exc:
        raise BadRequest(str(exc)) from None
    return {"upload": args["upload"], "part": args["part"], "bytes": size}


@OPS.op(
    "recon.report",
    roles=ADMIN,
    args=(Arg("date", "text", required=False, pattern=DATE.pattern), CHANNEL),
)
async def recon_report(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The last run of each channel for ``date`` (default: the latest date run) and its
    differences, open and waiting first."""
    bill_date = _date(args["date"]) if args.get("date") else None
    report = await ctx.services.db.run(queries.report, bill_date, args.get("channel"))
    return _wire(report)


async def run_reconciliation(
    services: Services, bill_date: date, channel: str, statement: bytes | None = None
) -> dict[str, Any]:
    """:func:`server.reconciliation.reconcile` with fixes carried out by :func:`carry_out_fix`."""

    async def carry_out(channel_name: str, fix: Fix) -> None:
        await carry_out_fix(services, channel_name, fix)

    return await reconcile(services, carry_out, bill_date, channel, statement)


async def carry_out_fix(services: Services, channel: str, fix: Fix) -> None:
    """Carry ``fix`` out through its owner's actor, by the path live traffic takes.

    A collection is confirmed as a verified ``payment.notify`` confirms it (the
    order's or rental's usual rules capture it or refund it); a refund the
    channel did is confirmed as the outbox confirms it.
    """
    owner = fix.owner
    if isinstance(fix, AttachCollection):
        if owner.kind == "order":
            await confirm_collection(
                services,
                owner.id,
                fix.out_trade_no,
                channel,
                fix.channel_txn_id,
                fix.amount_fen,
                fix.paid_at,
            )
        else:
            fields = {
                "out_trade_no": fix.out_trade_no,
                "channel": channel,
                "channel_txn_id": fix.channel_txn_id,
                "paid_at": fix.paid_at.timestamp(),
            }
            await confirm_rental_payment(services, owner.id, fields, fix.amount_fen)
    elif isinstance(fix, ConfirmRefund):
        now = services.clock()
        if owner.kind == "order":
            await services.ask_order(owner.id, order_cmd.ConfirmRefund(fix.out_refund_no, now))
        else:
            await services.ask_rental(owner.id, rental_cmd.ConfirmRefund(fix.out_refund_no, now))
    else:
        raise TypeError(f"not a reconciliation fix: {fix!r}")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"date {text!r} is not a date (YYYY-MM-DD)") from None


def _wire(value: Any) -> Any:
    """``value`` with dates as ``YYYY-MM-DD`` and times as epoch seconds, for CBOR."""
    if isinstance(value, dict):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_wire(item) for item in value]
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, date):
        return value.isoformat()
    return value
