"""The server's side of an order's effects: what it does once an order's events committed.

:class:`OrderEffectRunner` implements
:class:`actors.orders.interfaces.OrderEffects`. The pure core decided the
effects (:func:`actors.orders.effects.react`); this carries them out, in
order: pushes to a device or a role (other server processes hear of them by
NOTIFY, :mod:`server.fanout`), the gates' warm ticket book, and a wake-up of
the outbox worker for the durable effects already written beside the events.
None of it waits on the network or fails the command: a push to a device
that is gone is lost, as ``order.get`` always tells the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from actors.orders.effects import (
    ClosePayment,
    Effect,
    PushToDevice,
    PushToRole,
    RequestRefund,
    TicketsValidAtGates,
    TicketsVoidAtGates,
)
from server.storage.tickets import TicketRecord


@attrs.frozen
class OrderEffectRunner:
    """Carries out order effects through the server's pushes, ticket book and outbox."""

    #: ``Services.push_to_device``: (device, event, data, notice=...)
    push_to_device: Callable[..., None]
    #: ``Services.push_to_role``: (role, event, data, local=...)
    push_to_role: Callable[..., None]
    #: keeps a ticket warm in the gates' ticket book
    warm_ticket: Callable[[TicketRecord], None]
    #: drops tickets from the gates' ticket book
    forget_tickets: Callable[[list[str]], None]
    #: tells the outbox worker new rows are due
    wake_outbox: Callable[[], Any]

    async def carry_out(self, effects: Sequence[Effect]) -> None:
        """Carry out a commit's ``effects`` in order; wake the outbox once if any is durable."""
        outbox_written = False
        for effect in effects:
            if isinstance(effect, RequestRefund | ClosePayment):
                outbox_written = True
            elif isinstance(effect, PushToDevice):
                self.push_to_device(
                    effect.device_id, effect.event, effect.data, notice=effect.notice
                )
            elif isinstance(effect, PushToRole):
                self.push_to_role(effect.role, effect.event, effect.data, local=False)
            elif isinstance(effect, TicketsValidAtGates):
                for ticket in effect.tickets:
                    self.warm_ticket(
                        TicketRecord(
                            ticket.ticket_id,
                            effect.order_id,
                            ticket.product_id,
                            ticket.visit_date,
                            ticket.slot,
                            ticket.entries_allowed,
                            0,
                            False,
                            False,
                            0,
                        )
                    )
            elif isinstance(effect, TicketsVoidAtGates):
                # Refused at once: the next scan reads the ticket fresh (and refunded).
                self.forget_tickets(list(effect.ticket_ids))
            else:
                raise TypeError(f"not an order effect: {effect!r}")
        if outbox_written:
            self.wake_outbox()
