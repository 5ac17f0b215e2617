"""The server's side of a rental's effects: what it does once a rental's events committed.

:class:`RentalEffectRunner` implements
:class:`actors.rentals.interfaces.DepositEffects`. The pure core decided the
effects (:func:`actors.rentals.effects.react`); this carries out the ones
that come after a commit: pushes to a device or a role (other server
processes hear of them by NOTIFY), and a wake-up of the outbox worker for
the durable effects already written beside the events (refunds, freeze
conversions and unfreezes, closes, the compensation order). The requests
a visitor waits for (a payment's QR, a freeze's QR) are made by the op
that asked for them, which reads them from the command's outcome. Nothing
here waits on the network or fails the command.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from actors.orders.effects import PushToDevice, PushToRole
from actors.rentals.effects import DurableEffect, Effect, durable


@attrs.frozen
class RentalEffectRunner:
    """Carries out rental effects through the server's pushes and its outbox."""

    #: ``Pushes.to_device``: (device, event, data, notice=...)
    push_to_device: Callable[..., None]
    #: ``Pushes.to_role``: (role, event, data, local=...)
    push_to_role: Callable[..., None]
    #: tells the outbox worker new rows are due
    wake_outbox: Callable[[], Any]

    async def carry_out(self, effects: Sequence[Effect]) -> None:
        """Push what is pushed; wake the outbox once if a durable effect was written."""
        for effect in effects:
            if isinstance(effect, PushToDevice):
                self.push_to_device(
                    effect.device_id, effect.event, effect.data, notice=effect.notice
                )
            elif isinstance(effect, PushToRole):
                self.push_to_role(effect.role, effect.event, effect.data, local=False)
        if _any_durable(effects):
            self.wake_outbox()


def _any_durable(effects: Sequence[Effect]) -> bool:
    written: list[DurableEffect] = durable(effects)
    return bool(written)
