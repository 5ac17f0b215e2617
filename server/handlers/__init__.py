"""Op handlers, one module per area, each a group of module-level functions.

:func:`build_op_table` puts every area's :class:`~server.ops.OpGroup` in one table.
"""

from __future__ import annotations

from server.handlers import (
    core,
    daily_reports,
    desk,
    gates,
    orders,
    reconciliation,
    rental_reports,
    rentals,
    shift,
    simulator,
)
from server.ops import OpTable


def build_op_table() -> OpTable:
    """Every op the server offers."""
    return OpTable(
        core.OPS,
        orders.OPS,
        desk.OPS,
        gates.OPS,
        rentals.OPS,
        rental_reports.OPS,
        daily_reports.OPS,
        shift.OPS,
        simulator.OPS,
        reconciliation.OPS,
    )
