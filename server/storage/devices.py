"""The devices table: who may connect, in which role, with which token hash."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import attrs

from server.errors import BadRequest, ScenicError
from server.storage.database import Database

#: NOTIFY channel carrying the id of each device just revoked
REVOKED_CHANNEL = "scenic_device_revoked"


@attrs.frozen
class DeviceRecord:
    """One registered device."""

    device_id: str
    role: str
    token_hash: bytes
    created_at: datetime
    revoked_at: datetime | None


async def add_device(db: Database, device_id: str, role: str, token_hash: bytes) -> DeviceRecord:
    """Register a device. Raises ``device_exists`` or ``bad_request`` (bad id or role)."""
    try:
        row = await db.fetchrow(
            """INSERT INTO devices (device_id, role, token_hash) VALUES ($1, $2, $3)
               RETURNING *""",
            device_id,
            role,
            token_hash,
        )
    except asyncpg.UniqueViolationError:
        raise ScenicError(f"device {device_id} already exists", code="device_exists") from None
    except asyncpg.CheckViolationError as exc:
        raise BadRequest(f"device {device_id!r} refused: {exc.constraint_name}") from None
    return _record(row)


async def get_device(db: Database, device_id: str) -> DeviceRecord | None:
    """The device ``device_id``, revoked or not, or ``None``."""
    row = await db.fetchrow("SELECT * FROM devices WHERE device_id = $1", device_id)
    return None if row is None else _record(row)


async def list_devices(db: Database) -> list[DeviceRecord]:
    """Every registered device, by id."""
    return [_record(row) for row in await db.fetch("SELECT * FROM devices ORDER BY device_id")]


async def revoke_device(db: Database, device_id: str) -> bool:
    """Revoke an active device and tell running servers; False if none was active."""
    return await db.run_in_transaction(_revoke, device_id)


async def _revoke(conn: asyncpg.Connection, device_id: str) -> bool:
    status = await conn.execute(
        "UPDATE devices SET revoked_at = now() WHERE device_id = $1 AND revoked_at IS NULL",
        device_id,
    )
    if status != "UPDATE 1":
        return False
    # Delivered at commit, so a server closes the connection only once it is true.
    await conn.execute("SELECT pg_notify($1, $2)", REVOKED_CHANNEL, device_id)
    return True


def _record(row: asyncpg.Record) -> DeviceRecord:
    return DeviceRecord(
        row["device_id"],
        row["role"],
        bytes(row["token_hash"]),
        row["created_at"],
        row["revoked_at"],
    )


async def issue_device(db: Database, device_id: str, role: str, token_hash: bytes) -> None:
    """Register ``device_id`` with a new token, or give an existing one a new token.

    For tools that run their own simulated devices (``scenic gate-sim``): a
    device of another role is refused with ``device_exists``.
    """
    row = await db.fetchrow(
        """INSERT INTO devices (device_id, role, token_hash) VALUES ($1, $2, $3)
           ON CONFLICT (device_id) DO UPDATE SET token_hash = $3, revoked_at = NULL
            WHERE devices.role = $2
           RETURNING device_id""",
        device_id,
        role,
        token_hash,
    )
    if row is None:
        raise ScenicError(f"device {device_id} exists with another role", code="device_exists")
