"""The audit's deposit checks pass real rentals and name each broken deposit promise.

Three rentals go through a real server (one settled and refunded, one held,
one out); the audit passes; then one row is broken by hand and exactly the
check meant for it names the rental.
"""

from __future__ import annotations

import pytest

from clients.client import connect
from server.audit import run_audit
from tests.helpers import running_server
from tests.test_orders import next_event, settle_outbox

DEVICES = {"kiosk-1": "kiosk", "desk-1": "rental"}
SKIS = ["880101001", "880101002"]


async def failing(db) -> dict[str, tuple]:
    return {r.check.name: r.offenders for r in await db.run(run_audit) if not r.ok}


async def three_rentals(dsn, db) -> dict[str, str]:
    """A settled, a held and an out rental of one pair of skis each; their ids by status."""
    ids = {}
    async with running_server(dsn, db, DEVICES) as server:
        async with (
            connect(server.url, "kiosk-1", server.tokens["kiosk-1"]) as kiosk,
            connect(server.url, "desk-1", server.tokens["desk-1"]) as desk,
        ):
            for key in ("settled", "held", "out"):
                rental = await kiosk.request(
                    "rental.create", client_key=key, items=[{"item": "skis", "quantity": 1}]
                )
                start = await kiosk.request("rental.pay", rental=rental["rental"], channel="wechat")
                await kiosk.request("sim.pay", channel="wechat", out_trade_no=start["out_trade_no"])
                voucher = (await next_event(kiosk, "rental.voucher"))["voucher"]
                ids[key] = rental["rental"]
                if key == "held":
                    continue
                label = SKIS[0] if key == "settled" else SKIS[1]
                await desk.request("rental.pickup", voucher=voucher, labels=[label])
                if key == "settled":
                    await desk.request(
                        "rental.return",
                        rental=rental["rental"],
                        returns=[{"label": label, "condition": "ok"}],
                    )
            await settle_outbox(db)
    return ids


BREAKS = {
    "deposit_pool_matches_holds": """
        with t as (insert into ledger_transactions (rental_id, memo, at)
                   values ($1, 'planted', now()) returning txn_id)
        insert into ledger_entries (txn_id, account, amount_fen)
        select txn_id, a, n from t, (values ('deposits:held', -100), ('clearing:wechat', 100))
             as v(a, n)""",
    "deposits_resolved_exactly": """
        update rental_refunds set amount_fen = amount_fen - 100 where rental_id = $1""",
    "frozen_money_released": """
        with m as (insert into rental_memos (rental_id, account, amount_fen, memo, at)
                   values ($1, 'preauth:alipay', 500, 'planted', now()))
        update rentals set closed_at = closed_at - interval '1 hour' where rental_id = $1""",
    "rental_duplicates_released": """
        insert into rental_confirmations (channel, channel_txn_id, kind, reference, rental_id,
                                          amount_fen, holds, at)
        select channel, 'planted-txn', 'payment', out_trade_no, rental_id, amount_fen, false, now()
          from rental_payments where rental_id = $1""",
    "rental_refunds_settled_in_time": """
        update rental_refunds set confirmed_at = null, requested_at = now() - interval '1 hour'
         where rental_id = $1""",
    "units_out_on_one_rental": """
        update rental_units set state = 'available', rental_id = null where rental_id = $1""",
    "rental_stock_matches_reservations": """
        update rental_stock set reserved = reserved + 1
         where item_id = 'skis' and $1::text is not null""",
}
#: which of the three rentals each break is made on
TARGET = {
    "deposit_pool_matches_holds": "held",
    "deposits_resolved_exactly": "settled",
    "frozen_money_released": "settled",
    "rental_duplicates_released": "held",
    "rental_refunds_settled_in_time": "settled",
    "units_out_on_one_rental": "out",
    "rental_stock_matches_reservations": "held",
}


@pytest.mark.parametrize("check", sorted(BREAKS))
async def test_each_broken_deposit_promise_is_named_by_its_check(dsn, db, check):
    ids = await three_rentals(dsn, db)
    assert await failing(db) == {}
    await db.execute(BREAKS[check], ids[TARGET[check]])
    failed = await failing(db)
    assert set(failed) == {check}
    if check != "rental_stock_matches_reservations":
        named = {row.get("rental_id") for row in failed[check]}
        assert ids[TARGET[check]] in named
