"""The ``counter.shift`` op: a counter's shift report, for the counter itself or an admin.

What the counter sold and refunded between two times, by channel, and the
cash that should be in its drawer. :mod:`server.storage.shift` reads the
counter's rows in one snapshot; :func:`server.shift_report.shift_report`
makes the figures. docs/protocol.md (``counter.shift``) defines them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from server.errors import BadRequest, Forbidden
from server.handlers.orders import MAX_FEN
from server.ops import DEVICE_ID_PATTERN, OpContext, OpGroup
from server.schema import Arg
from server.shift_report import shift_report
from server.storage.shift import shift_rows

OPS = OpGroup()

#: the longest shift one report covers
MAX_SHIFT = timedelta(days=31)


@OPS.op(
    "counter.shift",
    roles={"counter", "admin"},
    args=(
        Arg("from", "number", low=0),
        Arg("to", "number", required=False, low=0),
        Arg("float_fen", "int", required=False, low=0, high=MAX_FEN),
        Arg("device", "text", required=False, pattern=DEVICE_ID_PATTERN),
    ),
)
async def counter_shift(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A counter's shift report: sold and refunded by channel, and the cash in its drawer."""
    device_id = args["device"]
    if ctx.role == "counter":
        if device_id is not None and device_id != ctx.device_id:
            raise Forbidden("a counter sees its own shift only")
        device_id = ctx.device_id
    elif device_id is None:
        raise BadRequest("name the counter: argument 'device'")
    start = datetime.fromtimestamp(args["from"], UTC)
    end = ctx.services.clock() if args["to"] is None else datetime.fromtimestamp(args["to"], UTC)
    if end <= start:
        raise BadRequest("'to' must be later than 'from'")
    if end - start > MAX_SHIFT:
        raise BadRequest("a shift report covers at most 31 days")
    collections, refunds = await ctx.services.db.run(shift_rows, device_id, start, end)
    return shift_report(device_id, start, end, args["float_fen"] or 0, collections, refunds)
