"""The ticket book: the warm state of tickets, in memory, so a scan does not wait on a read.

Ticket actors keep no state of their own between commands (they run inline,
in the scan's task): a ticket's state is here, loaded at start for today's
tickets and after that from storage on first use, and replaced after each
commit by the state the commit stored. Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.tickets.rules import TicketState


class TicketBook:
    """Tickets' warm states by ticket id."""

    def __init__(self) -> None:
        self._tickets: dict[str, TicketState] = {}

    def get(self, ticket_id: str) -> TicketState | None:
        """The warm state of a ticket, or ``None`` if it is not in memory."""
        return self._tickets.get(ticket_id)

    def put(self, state: TicketState) -> None:
        """Keep ``state`` as the ticket's warm state."""
        self._tickets[state.ticket_id] = state

    def forget(self, ticket_ids: Iterable[str]) -> None:
        """Drop tickets (refunded elsewhere): their next scan reads them fresh."""
        for ticket_id in ticket_ids:
            self._tickets.pop(ticket_id, None)

    def __len__(self) -> int:
        return len(self._tickets)
