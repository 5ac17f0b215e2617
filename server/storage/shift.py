"""SQL of a counter's shift report: the collections and refunds that are one counter's.

Which rows are a counter's (docs/protocol.md, ``counter.shift``):

- a cash or card collection whose channel transaction ``payment.record``
  drew from this counter (``CHANNEL:DEVICE:KEY``: device ids hold no ``:``);
- a WeChat Pay or Alipay collection of an order this counter created;
- a refund this counter asked (``order.refund``: ``requested_by`` is
  ``DEVICE:KEY``), or one the server made by itself of a collection of this
  counter's (a duplicate, late or wrong payment).

Collections count by when the server received them, refunds by when they
were asked, both within ``[start, end)``.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from server.shift_report import CollectionRow, ShiftRefundRow

#: the SQL condition "this collection (alias c, its order o) is device $1's"
_COLLECTION_IS_THE_COUNTERS = """(
    (c.channel in ('cash', 'card') and split_part(c.channel_txn_id, ':', 2) = $1)
    or (c.channel in ('wechat', 'alipay') and o.device_id = $1))"""


async def shift_collections(
    conn: asyncpg.Connection, device_id: str, start: datetime, end: datetime
) -> list[CollectionRow]:
    """The collections of ``device_id`` received within ``[start, end)``, in time order."""
    rows = await conn.fetch(
        f"""select c.order_id, c.channel, c.channel_txn_id, c.amount_fen, c.captured,
                   (select count(*) from tickets t where t.order_id = c.order_id
                     and c.captured) as tickets,
                   c.received_at
              from payment_confirmations c join orders o on o.order_id = c.order_id
             where c.received_at >= $2 and c.received_at < $3
               and {_COLLECTION_IS_THE_COUNTERS}
             order by c.received_at, c.channel, c.channel_txn_id""",
        device_id,
        start,
        end,
    )
    return [CollectionRow(**dict(row)) for row in rows]


async def shift_refunds(
    conn: asyncpg.Connection, device_id: str, start: datetime, end: datetime
) -> list[ShiftRefundRow]:
    """The refunds of ``device_id`` asked within ``[start, end)``, in time order."""
    rows = await conn.fetch(
        f"""select r.out_refund_no, r.order_id, r.channel, r.amount_fen, r.reason, r.staff,
                   r.requested_at, r.confirmed_at, r.failed_at
              from refunds r
              join orders o on o.order_id = r.order_id
              left join payment_confirmations c
                on c.channel = r.channel and c.channel_txn_id = r.channel_txn_id
             where r.requested_at >= $2 and r.requested_at < $3
               and ((r.staff and split_part(r.requested_by, ':', 1) = $1)
                    or (not r.staff and c.channel_txn_id is not null
                        and {_COLLECTION_IS_THE_COUNTERS}))
             order by r.requested_at, r.out_refund_no""",
        device_id,
        start,
        end,
    )
    return [ShiftRefundRow(**dict(row)) for row in rows]


async def shift_rows(
    conn: asyncpg.Connection, device_id: str, start: datetime, end: datetime
) -> tuple[list[CollectionRow], list[ShiftRefundRow]]:
    """Both of the above, read in one repeatable-read, read-only transaction so they agree."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return (
            await shift_collections(conn, device_id, start, end),
            await shift_refunds(conn, device_id, start, end),
        )
