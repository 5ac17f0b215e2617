"""The moments a rental waits for, and what happens at each: pure.

A rental's timers are part of its rules: an unpaid rental expires at the
end of its hold; a rental out becomes overdue at its due time; a deposit
frozen at a channel is converted whole at its convert-by time, before the
freeze could lapse; and at the freeze's own timeout, a freeze still not
converted has lapsed. :func:`deadlines_of` says which of them a rental is
waiting for now; the server's timer worker fires each as the command of
its :class:`Deadline`. A timer that fires late or for a rental that moved
on asks for nothing: each command's rule checks the state again.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from actors.rentals.state import Rental, RentalStatus


class Timer(enum.Enum):
    """What happens when a rental's deadline passes."""

    #: an unpaid rental's hold ran out (``ExpireRental``)
    HOLD = "hold"
    #: a rental out is due back (``MarkOverdue``)
    DUE = "due"
    #: a frozen deposit is converted whole before it lapses (``ConvertFreeze``)
    CONVERT = "convert"
    #: a frozen deposit's timeout at its channel (``ReportLapse``, if the channel says so)
    LAPSE = "lapse"


@attrs.frozen(order=True)
class Deadline:
    """At ``at``, ``timer`` fires for rental ``rental_id``."""

    at: datetime
    rental_id: str
    timer: Timer = attrs.field(order=lambda timer: timer.value)


def deadlines_of(rental: Rental) -> list[Deadline]:
    """The deadlines ``rental`` waits for now (none once it is closed)."""
    found = []
    if rental.status is RentalStatus.PENDING:
        found.append(Deadline(rental.hold_until, rental.rental_id, Timer.HOLD))
    if rental.status is RentalStatus.OUT and not rental.overdue and rental.due_at is not None:
        found.append(Deadline(rental.due_at, rental.rental_id, Timer.DUE))
    hold = rental.hold
    if hold is not None and hold.may_lapse and hold.expires_at is not None:
        if hold.frozen and hold.convert_by is not None:
            found.append(Deadline(hold.convert_by, rental.rental_id, Timer.CONVERT))
        found.append(Deadline(hold.expires_at, rental.rental_id, Timer.LAPSE))
    return found
