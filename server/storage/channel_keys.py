"""SQL of the merchant key fingerprints every server process on one database must share.

The first server to start records the SHA-256 fingerprint of each QR
channel's merchant key (``channel_key_fingerprints``); every later one
compares its own. Keys that differ would make a server refuse genuine
notifications as forged (or accept ones signed with the wrong key), so a
server with other keys refuses to start instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg


async def record_or_compare(
    conn: asyncpg.Connection, fingerprints: Mapping[str, str]
) -> dict[str, str]:
    """Record the fingerprints not known yet; return ``{channel: recorded}`` where ours differ."""
    rows = await conn.fetch(
        """insert into channel_key_fingerprints (channel, fingerprint)
           select * from unnest($1::text[], $2::text[])
           on conflict (channel) do update set channel = excluded.channel
           returning channel, fingerprint""",
        list(fingerprints),
        list(fingerprints.values()),
    )
    return {
        row["channel"]: row["fingerprint"]
        for row in rows
        if row["fingerprint"] != fingerprints[row["channel"]]
    }


async def replace(conn: asyncpg.Connection, fingerprints: Mapping[str, str]) -> None:
    """Make ``fingerprints`` the recorded ones (the keys were changed on purpose)."""
    await conn.execute(
        """insert into channel_key_fingerprints (channel, fingerprint, recorded_at)
           select c, f, now() from unnest($1::text[], $2::text[]) as x(c, f)
           on conflict (channel) do update
              set fingerprint = excluded.fingerprint, recorded_at = now()""",
        list(fingerprints),
        list(fingerprints.values()),
    )


async def recorded(conn: asyncpg.Connection) -> dict[str, str]:
    """The recorded fingerprint of each channel."""
    rows = await conn.fetch("select channel, fingerprint from channel_key_fingerprints")
    return {row["channel"]: row["fingerprint"] for row in rows}
