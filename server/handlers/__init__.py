"""Op handlers, one module per area; :func:`build_op_table` collects them all."""

from __future__ import annotations

from server.ops import OpTable


def build_op_table() -> OpTable:
    """Every op the server offers, declared by the handler modules."""
    from server.handlers import core, gates, orders, simulator

    table = OpTable()
    core.register(table)
    orders.register(table)
    gates.register(table)
    simulator.register(table)
    return table
