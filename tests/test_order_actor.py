"""The order shell against the real store: effects written with their events, backstops mapped.

The actor runs with :class:`server.storage.orders.OrderStorage` on a real
PostgreSQL and group commit; its effects sink records what it is handed
(the sink is the contract under test, not storage).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors.catalog import parse_catalog
from actors.orders.actor import OrderActor, OrderEnvironment
from actors.orders.domain import (
    CancelOrder,
    ConfirmPayment,
    CreateOrder,
    LineRequest,
    OrderRefused,
    RefundTickets,
    StartPayment,
    TicketFacts,
)
from actors.orders.effects import ClosePayment, TicketsValidAtGates
from server.site import demo_catalog_source
from server.storage.group_commit import open_group_committer
from server.storage.orders import OrderStorage

CATALOG = parse_catalog(demo_catalog_source())
NOW = datetime.now(UTC)
VISIT = (NOW + timedelta(days=1)).date()


class RecordedEffects:
    """An effects sink that keeps what it is handed, one list per commit."""

    def __init__(self) -> None:
        self.carried: list[list] = []

    async def carry_out(self, effects) -> None:
        self.carried.append(list(effects))


def environment(db, committer, sink):
    return OrderEnvironment(
        OrderStorage(db.run, committer.submit), sink, lambda ticket: f"code-{ticket.ticket_id}"
    )


def create(order_id: str, quantity: int = 2) -> CreateOrder:
    return CreateOrder(
        order_id,
        "kiosk-1",
        f"key-{order_id}",
        (LineRequest("adult", quantity, VISIT, None),),
        CATALOG,
        NOW.date(),
        NOW,
        NOW + timedelta(minutes=15),
    )


async def paid_order(actor: OrderActor) -> None:
    await actor.load()
    await actor.handle(create(actor.order_id))
    await actor.handle(StartPayment("P-1", "wechat", NOW))
    await actor.handle(ConfirmPayment("P-1", "wechat", "WX-1", 24000, NOW, NOW, (), "R-dup", None))


async def test_a_gate_admitting_a_ticket_after_the_refunds_facts_were_read_is_ticket_used(db):
    sink = RecordedEffects()
    async with open_group_committer(db, max_delay_s=0.002, max_batch=50) as committer:
        actor = OrderActor("O-race", environment(db, committer, sink))
        await paid_order(actor)
        ticket = actor.order.tickets[0].ticket_id
        # the facts say unused; a gate admits the ticket before the refund commits
        facts = (TicketFacts(ticket, 0, NOW),)
        await db.execute("UPDATE tickets SET entries_used = 1 WHERE ticket_id = $1", ticket)
        with pytest.raises(OrderRefused) as refused:
            await actor.handle(RefundTickets((ticket,), "rain", "counter-1:k", "R-1", NOW, facts))
    assert refused.value.code == "ticket_used"
    assert await db.fetchval("SELECT count(*) FROM refunds") == 0
    assert await db.fetchval("SELECT status FROM tickets WHERE ticket_id = $1", ticket) == "valid"
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0
    assert actor.order.void_ticket_ids == frozenset()


async def test_a_cancel_writes_the_close_of_each_open_qr_payment_with_its_events(db):
    sink = RecordedEffects()
    async with open_group_committer(db, max_delay_s=0.002, max_batch=50) as committer:
        actor = OrderActor("O-close", environment(db, committer, sink))
        await actor.load()
        await actor.handle(create("O-close"))
        for out_trade_no, channel in [("P-wx", "wechat"), ("P-ali", "alipay"), ("P-cash", "cash")]:
            await actor.handle(StartPayment(out_trade_no, channel, NOW))
        assert sink.carried == []  # creating and starting payments ask for nothing
        outcome = await actor.handle(CancelOrder(NOW))
    rows = await db.fetch("SELECT kind, dedupe_key, payload FROM outbox ORDER BY dedupe_key")
    assert [(r["kind"], r["dedupe_key"]) for r in rows] == [
        ("close_payment", "close:P-ali"),
        ("close_payment", "close:P-wx"),
    ]
    assert sink.carried == [list(outcome.effects)]
    assert outcome.effects == (
        ClosePayment("wechat", "P-wx", NOW),
        ClosePayment("alipay", "P-ali", NOW),
    )


async def test_a_capture_hands_its_tickets_and_order_paid_to_the_sink_after_the_commit(db):
    sink = RecordedEffects()
    async with open_group_committer(db, max_delay_s=0.002, max_batch=50) as committer:
        actor = OrderActor("O-paid", environment(db, committer, sink))
        await paid_order(actor)
    (valid, paid) = sink.carried[-1]
    stored = await db.fetch("SELECT ticket_id, code FROM tickets ORDER BY ticket_id")
    assert isinstance(valid, TicketsValidAtGates)
    assert sorted((t.ticket_id, t.code) for t in valid.tickets) == [tuple(r) for r in stored]
    assert paid.event == "order.paid" and len(paid.data["tickets"]) == 2
    assert await db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_second_process_changing_the_order_first_makes_the_actor_decide_again(db):
    async with open_group_committer(db, max_delay_s=0.002, max_batch=50) as committer:
        here = OrderActor("O-two", environment(db, committer, RecordedEffects()))
        there = OrderActor("O-two", environment(db, committer, RecordedEffects()))
        await here.load()
        await here.handle(create("O-two"))
        await there.load()
        await there.handle(StartPayment("P-there", "alipay", NOW))
        # ``here`` still holds version 0: its write is refused, it reloads and decides again
        outcome = await here.handle(StartPayment("P-here", "wechat", NOW))
    assert sorted(outcome.order.payments) == ["P-here", "P-there"]
    assert await db.fetchval("SELECT version FROM orders") == 2
