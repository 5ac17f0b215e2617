"""The audit: SQL checks that prove the money promises hold in the database.

``scenic audit`` runs every check and exits non-zero when one fails, naming
the offending rows. The checks read only; they are safe against a live
server (each runs in one repeatable-read snapshot so they see one moment).
Money still owed fails the audit too: every refund the channel refused for
good, and every refund unconfirmed for longer than a bound (10 minutes
unless told otherwise), until a person settles it. Rentals' deposits are
checked as well: the deposit pool holds exactly the unresolved paid
deposits, each resolved hold kept its posted part and asked the rest back,
frozen money is released, duplicates are given back, each unit out is out
on one rental, and the reservations match.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import attrs

#: how long a refund may stay unconfirmed before the audit names it
REFUND_BOUND = timedelta(minutes=10)


@attrs.frozen
class AuditCheck:
    """One invariant: its name, what it means, and the SQL that lists violations."""

    name: str
    promise: str
    sql: str
    #: the SQL takes ``$1``, the refund bound (an interval)
    takes_bound: bool = False


@attrs.frozen
class AuditResult:
    """A check and the rows that break it (none when it holds)."""

    check: AuditCheck
    offenders: tuple[dict, ...]

    @property
    def ok(self) -> bool:
        """True when no row breaks the invariant."""
        return not self.offenders


CHECKS = (
    AuditCheck(
        "ledger_transactions_balance",
        "each ledger transaction's entries sum to zero",
        """select txn_id, sum(amount_fen)::bigint as imbalance_fen from ledger_entries
           group by txn_id having sum(amount_fen) <> 0 order by txn_id limit 100""",
    ),
    AuditCheck(
        "ledger_balances",
        "all ledger entries together sum to zero",
        """select sum(amount_fen)::bigint as imbalance_fen from ledger_entries
           having coalesce(sum(amount_fen), 0) <> 0""",
    ),
    AuditCheck(
        "collected_once",
        "no order has more than one captured payment",
        """select order_id, count(*) as captures from payment_confirmations where captured
           group by order_id having count(*) > 1 order by order_id limit 100""",
    ),
    AuditCheck(
        "net_collected",
        "each order keeps its total less staff refunds if paid, and nothing otherwise",
        """with money as (
             select o.order_id, o.status, o.total_fen,
                    coalesce((select sum(amount_fen)::bigint from payment_confirmations c
                               where c.order_id = o.order_id), 0) as received_fen,
                    coalesce((select sum(amount_fen)::bigint from refunds r
                               where r.order_id = o.order_id), 0) as refunded_fen,
                    coalesce((select sum(amount_fen)::bigint from refunds r
                               where r.order_id = o.order_id and r.staff), 0) as staff_fen
               from orders o)
           select order_id, status, total_fen, received_fen, refunded_fen from money
            where received_fen - refunded_fen
                  <> case when status = 'paid' then total_fen - staff_fen else 0 end
            order by order_id limit 100""",
    ),
    AuditCheck(
        "duplicates_refunded",
        "every payment that did not capture its order has a refund",
        """select c.channel, c.channel_txn_id, c.order_id, c.amount_fen
             from payment_confirmations c
            where not c.captured and not exists (
                  select 1 from refunds r where r.channel = c.channel
                     and r.channel_txn_id = c.channel_txn_id and not r.staff
                     and r.amount_fen = c.amount_fen)
            order by c.order_id limit 100""",
    ),
    AuditCheck(
        "refunds_within_payment",
        "no payment is refunded more than it paid",
        """select c.channel, c.channel_txn_id, c.amount_fen,
                  sum(r.amount_fen)::bigint as refunded_fen
             from payment_confirmations c
             join refunds r on r.channel = c.channel and r.channel_txn_id = c.channel_txn_id
            group by c.channel, c.channel_txn_id, c.amount_fen
           having sum(r.amount_fen) > c.amount_fen limit 100""",
    ),
    AuditCheck(
        "pending_refunds_in_outbox",
        "every unconfirmed refund has an outbox entry that will deliver it",
        """select r.out_refund_no, r.order_id, r.amount_fen from refunds r
            where r.confirmed_at is null and r.failed_at is null and not exists (
                  select 1 from outbox b where b.dedupe_key = 'refund:' || r.out_refund_no
                     and b.failed_at is null)
            limit 100""",
    ),
    AuditCheck(
        "no_failed_refunds",
        "no refund was refused for good by its channel (the money is still owed)",
        """select r.out_refund_no, r.order_id, r.channel, r.out_trade_no, r.amount_fen,
                  r.failed_at, r.failure
             from refunds r where r.failed_at is not null and r.confirmed_at is null
            order by r.failed_at limit 100""",
    ),
    AuditCheck(
        "refunds_confirmed_in_time",
        "every refund is confirmed by its channel within the bound of being asked",
        """select r.out_refund_no, r.order_id, r.channel, r.amount_fen, r.requested_at,
                  b.attempts, b.last_error
             from refunds r left join outbox b on b.dedupe_key = 'refund:' || r.out_refund_no
            where r.confirmed_at is null and r.failed_at is null
              and r.requested_at < now() - $1::interval
            order by r.requested_at limit 100""",
        takes_bound=True,
    ),
    AuditCheck(
        "paid_orders_have_tickets",
        "a paid order has one ticket per admission, and an unpaid one none",
        """select o.order_id, o.status,
                  (select coalesce(sum((l->>'quantity')::int), 0)
                     from jsonb_array_elements(o.lines) l) as entitled,
                  (select count(*) from tickets t where t.order_id = o.order_id) as issued
             from orders o
            where (select count(*) from tickets t where t.order_id = o.order_id)
                  <> case when o.status = 'paid'
                          then (select coalesce(sum((l->>'quantity')::int), 0)
                                  from jsonb_array_elements(o.lines) l)
                          else 0 end
            order by o.order_id limit 100""",
    ),
    AuditCheck(
        "tickets_within_entitlement",
        "no ticket was admitted more often than it entitles",
        """select t.ticket_id, t.entries_allowed, count(*) as admitted
             from tickets t join scans s on s.ticket_id = t.ticket_id
            where s.consumed and s.passed is distinct from false
              and t.entries_allowed is not null
            group by t.ticket_id, t.entries_allowed
           having count(*) > t.entries_allowed
            order by t.ticket_id limit 100""",
    ),
    AuditCheck(
        "ticket_use_matches_scans",
        "each ticket's entries used equal its admissions recorded by the gates",
        """select t.ticket_id, t.entries_used,
                  (select count(*) from scans s where s.ticket_id = t.ticket_id and s.consumed
                      and s.passed is distinct from false) as admitted
             from tickets t
            where t.entries_used <> (select count(*) from scans s
                                      where s.ticket_id = t.ticket_id and s.consumed
                                        and s.passed is distinct from false)
            order by t.ticket_id limit 100""",
    ),
    AuditCheck(
        "capacity_matches_orders",
        "capacity reserved equals the tickets of pending and paid orders",
        """with held as (
             select (l->>'visit_date')::date as visit_date, coalesce(l->>'slot', '') as slot,
                    sum((l->>'quantity')::int) as quantity
               from orders o, jsonb_array_elements(o.lines) l
              where o.status in ('pending', 'paid')
              group by 1, 2)
           select c.visit_date, c.slot, c.reserved, coalesce(h.quantity, 0) as held
             from capacity c left join held h using (visit_date, slot)
            where c.reserved <> coalesce(h.quantity, 0)
           union all
           select h.visit_date, h.slot, null, h.quantity from held h
            where not exists (select 1 from capacity c where c.visit_date = h.visit_date
                                and c.slot = h.slot)
           limit 100""",
    ),
    *(
        # The rentals' deposits (migration 0007): the pool, each hold's resolution, the
        # frozen money, the units, the reservations.
        AuditCheck(
            "deposit_pool_matches_holds",
            "the deposit pool (deposits:held and rentals:prepaid) holds exactly each paid,"
            " unresolved deposit",
            """with pool as (
                 select t.rental_id, -sum(e.amount_fen)::bigint as pooled_fen
                   from ledger_entries e join ledger_transactions t using (txn_id)
                  where t.rental_id is not null
                    and e.account in ('deposits:held', 'rentals:prepaid')
                  group by t.rental_id),
               due as (
                 select r.rental_id, r.status,
                        case when h.resolution is null
                              and (h.route = 'pay' or exists (
                                   select 1 from rental_confirmations c
                                    where c.rental_id = r.rental_id and c.kind = 'conversion'))
                             then h.amount_fen else 0 end as held_fen
                   from rentals r left join rental_holds h using (rental_id))
               select d.rental_id, d.status, coalesce(d.held_fen, 0) as held_fen,
                      coalesce(p.pooled_fen, 0) as pooled_fen
                 from due d left join pool p using (rental_id)
                where coalesce(d.held_fen, 0) <> coalesce(p.pooled_fen, 0)
                order by d.rental_id limit 100""",
        ),
        AuditCheck(
            "deposits_resolved_exactly",
            "each resolved deposit keeps its posted part at the channel and asks the rest back",
            """with kept as (
                 select h.rental_id, h.resolution, h.route, h.posted_fen, h.voided_fen,
                        coalesce((select sum(p.amount_fen) from rental_payments p
                                   where p.rental_id = h.rental_id
                                     and (p.out_trade_no = h.reference or p.kind = 'conversion')),
                                 0)::bigint
                        - coalesce((select sum(f.amount_fen) from rental_refunds f
                                     join rental_payments p using (out_trade_no)
                                    where p.rental_id = h.rental_id
                                      and (p.out_trade_no = h.reference
                                           or p.kind = 'conversion')), 0)::bigint as kept_fen
                   from rental_holds h
                  where h.resolution is not null and h.resolution <> 'lapsed')
               select * from kept where kept_fen <> posted_fen
                order by rental_id limit 100""",
        ),
        AuditCheck(
            "frozen_money_released",
            "every amount frozen for a rental closed longer than the bound was converted or"
            " unfrozen",
            """select r.rental_id, r.status, r.closed_at, sum(m.amount_fen)::bigint as frozen_fen
                 from rentals r join rental_memos m using (rental_id)
                where r.closed_at < now() - $1::interval
                group by r.rental_id, r.status, r.closed_at
               having sum(m.amount_fen) <> 0
                order by r.rental_id limit 100""",
            takes_bound=True,
        ),
        AuditCheck(
            "rental_duplicates_released",
            "every payment or freeze that does not hold a rental's deposit is given back whole",
            """select c.channel, c.channel_txn_id, c.kind, c.rental_id, c.amount_fen
                 from rental_confirmations c
                where not c.holds and (
                      (c.kind = 'payment' and not exists (
                           select 1 from rental_refunds f
                            where f.out_trade_no = c.reference and f.amount_fen = c.amount_fen))
                   or (c.kind = 'freeze' and not exists (
                           select 1 from rental_unfreezes u
                            where u.out_order_no = c.reference and u.amount_fen = c.amount_fen)))
                order by c.rental_id limit 100""",
        ),
        AuditCheck(
            "rental_refunds_settled_in_time",
            "every refund or unfreeze of a rental is confirmed by its channel within the bound,"
            " and none was refused for good",
            """select 'refund' as what, out_refund_no as reference, rental_id, amount_fen,
                      requested_at, failure
                 from rental_refunds
                where confirmed_at is null
                  and (failure is not null or requested_at < now() - $1::interval)
               union all
               select 'unfreeze', out_request_no, rental_id, amount_fen, requested_at, null
                 from rental_unfreezes
                where confirmed_at is null and requested_at < now() - $1::interval
                order by requested_at limit 100""",
            takes_bound=True,
        ),
        AuditCheck(
            "units_out_on_one_rental",
            "each unit out is out on exactly one rental, and that rental has it out",
            """with claimed as (
                 select r.rental_id, u->>'unit_id' as unit_id
                   from rentals r, jsonb_array_elements(r.state->'units'->'$tuple') u
                  where r.closed_at is null and u->'back_at' = 'null'::jsonb)
               select unit_id, null as rental_id, count(*) as rentals from claimed
                group by unit_id having count(*) > 1
               union all
               select c.unit_id, c.rental_id, 1 from claimed c
                where not exists (select 1 from rental_units u where u.unit_id = c.unit_id
                                     and u.state = 'out' and u.rental_id = c.rental_id)
               union all
               select u.unit_id, u.rental_id, 0 from rental_units u
                where u.state = 'out' and not exists (
                      select 1 from claimed c where c.unit_id = u.unit_id
                         and c.rental_id = u.rental_id)
               limit 100""",
        ),
        AuditCheck(
            "rental_stock_matches_reservations",
            "units reserved per item type equal those of rentals not yet picked up",
            """with held as (
                 select l->'item'->>'item_id' as item_id, sum((l->>'quantity')::int) as quantity
                   from rentals r, jsonb_array_elements(r.state->'lines'->'$tuple') l
                  where r.status in ('pending', 'held')
                  group by 1)
               select s.item_id, s.reserved, coalesce(h.quantity, 0) as held
                 from rental_stock s full join held h using (item_id)
                where coalesce(s.reserved, 0) <> coalesce(h.quantity, 0)
                limit 100""",
        ),
    ),
)


async def run_audit(
    conn: asyncpg.Connection, refund_bound: timedelta = REFUND_BOUND
) -> list[AuditResult]:
    """Run every check in one read-only snapshot; returns each check's offenders.

    ``refund_bound``: how long a refund may wait for its channel's
    confirmation before ``refunds_confirmed_in_time`` names it.
    """
    results = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for check in CHECKS:
            args = (refund_bound,) if check.takes_bound else ()
            rows = await conn.fetch(check.sql, *args)
            results.append(AuditResult(check, tuple(_plain(dict(row)) for row in rows)))
    return results


def _plain(row: dict) -> dict:
    return {
        key: (value if isinstance(value, int | str | None) else str(value))
        for key, value in row.items()
    }
