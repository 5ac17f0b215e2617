"""The in-process channel simulator's visitor side: ``sim.pay`` and ``sim.authorize``.

When WeChat Pay and Alipay are simulated inside the server (the demo, the
tests), nobody can scan the kiosk's QR with a real phone, so ``sim.pay`` does
what the visitor's phone would: it pays the payment at the simulated channel,
which then sends its signed notification to this server, with retries, like
the real channel; ``sim.authorize`` does the same for a freeze of a rental's
deposit at the simulated Alipay (a pre-authorisation the visitor approves).
With real channels, or a ``scenic channel-sim`` process (which offers its own
``pay`` and ``authorize_freeze``), the ops answer ``no_simulator``.
"""

from __future__ import annotations

from typing import Any

from actors.channels import QR_CHANNELS, pattern_of
from server.errors import ScenicError
from server.handlers.orders import MAX_FEN
from server.ops import OpContext, OpGroup
from server.schema import Arg

OPS = OpGroup()


@OPS.op(
    "sim.pay",
    roles={"kiosk", "counter", "admin"},
    args=(
        Arg("channel", "text", pattern=pattern_of(QR_CHANNELS)),
        Arg("out_trade_no", "text", max_len=32),
        Arg("amount_fen", "int", required=False, low=1, high=MAX_FEN),
    ),
)
async def sim_pay(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Pay a payment at the in-process simulated channel, as a visitor's phone would."""
    channels = ctx.services.channels
    simulator = channels.simulators.get(args["channel"])
    notifier = channels.notifiers.get(args["channel"])
    if simulator is None or notifier is None:
        raise ScenicError(f"{args['channel']} is not simulated in this server", code="no_simulator")
    fields = simulator.pay(args["out_trade_no"], amount_fen=args["amount_fen"])
    notifier.submit(fields)
    return {
        "channel": fields["channel"],
        "out_trade_no": fields["out_trade_no"],
        "channel_txn_id": fields["channel_txn_id"],
        "amount_fen": fields["amount_fen"],
        "paid_at": fields["paid_at"],
    }


@OPS.op(
    "sim.authorize",
    roles={"kiosk", "counter", "rental", "admin"},
    args=(
        Arg("channel", "text", pattern="alipay"),
        Arg("out_order_no", "text", max_len=64),
        Arg("out_request_no", "text", max_len=64),
    ),
)
async def sim_authorize(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Authorise a freeze at the in-process simulated Alipay, as a visitor's app would."""
    channels = ctx.services.channels
    simulator = channels.simulators.get(args["channel"])
    notifier = channels.notifiers.get(args["channel"])
    if simulator is None or notifier is None:
        raise ScenicError(f"{args['channel']} is not simulated in this server", code="no_simulator")
    fields = simulator.authorize_freeze(args["out_order_no"], args["out_request_no"])
    notifier.submit(fields)
    return {key: fields[key] for key in ("channel", "out_order_no", "auth_no", "amount_fen")}
