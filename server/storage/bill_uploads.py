"""SQL of bill uploads: a bill file stored in parts, read back whole, dropped when used.

A real day's bill is larger than one websocket frame, so ``scenic reconcile
--statement FILE`` sends it in parts (``recon.upload``) and then names the
upload in ``recon.run``. Asyncio coroutine functions taking an asyncpg
connection, run through :meth:`Database.run`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

#: the most bytes one upload may hold in all
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
#: uploads older than this are dropped unused
UPLOAD_TTL = timedelta(days=1)


class UploadProblem(Exception):
    """An upload that cannot be stored or read as asked; the message says why."""


async def store_part(
    conn: asyncpg.Connection,
    upload_id: str,
    part: int,
    data: bytes,
    last: bool,
    device_id: str,
    now: datetime,
) -> int:
    """Store part ``part`` of ``upload_id``; returns the upload's bytes so far.

    Storing the same part again with the same bytes changes nothing (a
    retried request); other bytes for a stored part, a part after the last
    one, or an upload over :data:`MAX_UPLOAD_BYTES` raise :class:`UploadProblem`.
    """
    async with conn.transaction():
        await conn.execute("delete from bill_uploads where created_at < $1", now - UPLOAD_TTL)
        await conn.execute("select pg_advisory_xact_lock(hashtext($1))", upload_id)
        known = await conn.fetchrow(
            "select data, last from bill_uploads where upload_id = $1 and part = $2",
            upload_id,
            part,
        )
        if known is not None:
            if bytes(known["data"]) != data or known["last"] != last:
                raise UploadProblem(f"part {part} of upload {upload_id} was sent with other bytes")
        else:
            ended = await conn.fetchval(
                "select min(part) from bill_uploads where upload_id = $1 and last", upload_id
            )
            if ended is not None and part > ended:
                raise UploadProblem(f"upload {upload_id} ended at part {ended}")
            await conn.execute(
                """insert into bill_uploads (upload_id, part, data, last, device_id, created_at)
                   values ($1, $2, $3, $4, $5, $6)""",
                upload_id,
                part,
                data,
                last,
                device_id,
                now,
            )
        size = await conn.fetchval(
            "select coalesce(sum(length(data)), 0) from bill_uploads where upload_id = $1",
            upload_id,
        )
        if size > MAX_UPLOAD_BYTES:
            raise UploadProblem(f"upload {upload_id} is over {MAX_UPLOAD_BYTES} bytes")
        return size


async def read_upload(conn: asyncpg.Connection, upload_id: str) -> bytes:
    """The whole file of ``upload_id``; raises :class:`UploadProblem` when parts are missing."""
    rows = await conn.fetch(
        "select part, data, last from bill_uploads where upload_id = $1 order by part", upload_id
    )
    if not rows:
        raise UploadProblem(f"no upload {upload_id}: send its parts with recon.upload first")
    if [row["part"] for row in rows] != list(range(len(rows))) or not rows[-1]["last"]:
        have = [row["part"] for row in rows]
        raise UploadProblem(f"upload {upload_id} is not complete: it has parts {have}")
    return b"".join(bytes(row["data"]) for row in rows)


async def drop_upload(conn: asyncpg.Connection, upload_id: str) -> None:
    """Forget ``upload_id``'s parts."""
    await conn.execute("delete from bill_uploads where upload_id = $1", upload_id)
