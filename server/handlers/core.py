"""Core ops every device has: ``ping``; and ``server.stats`` for admins."""

from __future__ import annotations

from typing import Any

import attrs

from server.ops import ALL_ROLES, OpContext, OpGroup

OPS = OpGroup()


@OPS.op("ping", roles=ALL_ROLES)
async def ping(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Answer at once with an empty map: a liveness and round-trip check."""
    return {}


@OPS.op("server.stats", roles={"admin"})
async def server_stats(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Counts of connections, actors, mailboxes and group commits, for monitoring."""
    services = ctx.services
    return {
        "connections": len(services.sessions),
        "actors": attrs.asdict(services.registry.stats()),
        "commits": attrs.asdict(services.committer.stats()),
    }
