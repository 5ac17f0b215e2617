"""Which order a payment attempt belongs to, and the amount it asked for, remembered.

A channel's notification names only our ``out_trade_no``. The attempts this
process started are remembered (up to :data:`CAPACITY`, oldest forgotten
first), so the hot path of a notification needs no lookup; any other
attempt (started by another server process, or before a restart) is read
from the database.
"""

from __future__ import annotations

from server.storage import orders as order_queries
from server.storage.database import Database
from server.storage.orders import PaymentAttempt

#: payment attempts this process remembers without asking the database
CAPACITY = 200_000


class PaymentAttempts:
    """The order and amount asked of payment attempts, remembered or read."""

    def __init__(self, db: Database, capacity: int = CAPACITY) -> None:
        self._db = db
        self._capacity = capacity
        self._known: dict[str, PaymentAttempt] = {}

    def remember(self, out_trade_no: str, order_id: str, amount_fen: int) -> None:
        """Note an attempt started here: its order and the amount asked."""
        if len(self._known) >= self._capacity:
            self._known.pop(next(iter(self._known)))
        self._known[out_trade_no] = PaymentAttempt(order_id, amount_fen)

    async def find(self, out_trade_no: str) -> PaymentAttempt | None:
        """The order and amount asked of attempt ``out_trade_no``, or ``None`` if none."""
        attempt = self._known.get(out_trade_no)
        if attempt is None:
            attempt = await self._db.run(order_queries.payment_attempt, out_trade_no)
        return attempt
