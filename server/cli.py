"""The ``scenic`` command: serve, and manage devices.

``scenic serve`` runs the server (embedded PostgreSQL unless ``--dsn``);
``scenic device add|list|revoke`` manage the devices allowed to connect, against
the same data directory or DSN. Every flag has a ``SCENIC_*`` environment
variable and a default (see :mod:`server.config`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from server.auth import hash_token, new_token
from server.config import ServerConfig
from server.errors import ScenicError
from server.logs import configure_logging
from server.ops import ROLES
from server.storage import devices
from server.storage.database import Database, open_database
from server.storage.embedded import EmbeddedPostgres
from server.storage.migrations import apply_migrations


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``scenic`` subcommand."""
    parser = argparse.ArgumentParser(prog="scenic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    _add_database_flags(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8765)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    serve.set_defaults(run=_serve)

    device = commands.add_parser("device", help="manage devices").add_subparsers(
        dest="device_command", required=True
    )
    add = device.add_parser("add", help="register a device; prints its token last")
    add.add_argument("device_id", metavar="ID")
    add.add_argument("--role", required=True, choices=ROLES)
    _add_database_flags(add)
    add.set_defaults(run=_device_add)
    listing = device.add_parser("list", help="list devices")
    _add_database_flags(listing)
    listing.set_defaults(run=_device_list)
    revoke = device.add_parser("revoke", help="revoke a device; its connections close")
    revoke.add_argument("device_id", metavar="ID")
    _add_database_flags(revoke)
    revoke.set_defaults(run=_device_revoke)
    return parser


def _add_database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="PostgreSQL DSN; without it, the embedded cluster")
    parser.add_argument("--data-dir", type=Path, help="where the embedded cluster lives")


def config_from(args: argparse.Namespace) -> ServerConfig:
    """The environment's config with the flags given on the command line on top."""
    config = ServerConfig.from_env()
    flags = {
        name: getattr(args, name)
        for name in ("host", "port", "dsn", "data_dir", "log_level")
        if getattr(args, name, None) is not None
    }
    return attrs.evolve(config, **flags)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``scenic`` command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"scenic: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        return trio.run(args.run, config, args)
    except ScenicError as exc:
        print(f"scenic: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _serve(config: ServerConfig, args: argparse.Namespace) -> int:
    from server.app import run_server

    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_shutdown_on_signal, shutdown, nursery.cancel_scope)
        await run_server(config, shutdown=shutdown)
        nursery.cancel_scope.cancel()
    return 0


async def _shutdown_on_signal(shutdown: trio.Event, everything: trio.CancelScope) -> None:
    """First SIGINT/SIGTERM: graceful shutdown. A second one: stop at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if shutdown.is_set():
                everything.cancel()
                return
            shutdown.set()


@asynccontextmanager
async def _database(config: ServerConfig):
    """A migrated database: the DSN's, or the embedded cluster's (started for the call)."""
    embedded = None
    dsn = config.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir)
        dsn = await trio.to_thread.run_sync(embedded.start)
    try:
        async with open_database(dsn, min_size=1, max_size=2) as db:
            await apply_migrations(db)
            yield db
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)


def _with_database(
    work: Callable[[Database, argparse.Namespace], Awaitable[int]],
) -> Callable[[ServerConfig, argparse.Namespace], Awaitable[int]]:
    async def run(config: ServerConfig, args: argparse.Namespace) -> int:
        async with _database(config) as db:
            return await work(db, args)

    return run


@_with_database
async def _device_add(db: Database, args: argparse.Namespace) -> int:
    token = new_token()
    await devices.add_device(db, args.device_id, args.role, hash_token(token))
    print(f"device {args.device_id} added with role {args.role}; its token (shown once):")
    print(token)
    return 0


@_with_database
async def _device_list(db: Database, args: argparse.Namespace) -> int:
    rows: list[Any] = await devices.list_devices(db)
    print(f"{'DEVICE':<24} {'ROLE':<8} {'ADDED (UTC)':<20} STATUS")
    for row in rows:
        status = "revoked " + _when(row.revoked_at) if row.revoked_at else "active"
        print(f"{row.device_id:<24} {row.role:<8} {_when(row.created_at):<20} {status}")
    return 0


@_with_database
async def _device_revoke(db: Database, args: argparse.Namespace) -> int:
    if not await devices.revoke_device(db, args.device_id):
        print(f"scenic: no active device {args.device_id}", file=sys.stderr)
        return 1
    print(f"device {args.device_id} revoked")
    return 0


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
