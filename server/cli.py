"""The ``scenic`` command: serve, devices, the catalog, the audit, the channel simulator.

``scenic serve`` runs the server (embedded PostgreSQL unless ``--dsn``);
``scenic device add|list|revoke`` manage the devices allowed to connect,
``scenic catalog load|show`` the catalog on sale and ``scenic audit`` checks
the money invariants, all against the same data directory or DSN;
``scenic channel-sim`` runs the payment channel simulator as its own process.
Every flag has a ``SCENIC_*`` environment variable and a default (see
:mod:`server.config`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from devices.cli import add_gate_parsers
from loadtest.cli import add_loadtest_parser
from server.audit import run_audit
from server.auth import hash_token, new_token
from server.catalog.model import parse_catalog
from server.channels.cli import add_channel_sim_parser
from server.config import ServerConfig
from server.errors import ScenicError
from server.logs import configure_logging
from server.ops import ROLES
from server.selling import TicketKeyring, business_date
from server.storage import devices, site
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
    serve.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="sell the demo park's catalog when no catalog has been loaded",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port and the database (default 1)",
    )
    serve.add_argument(
        "--channel-sim-url",
        help="API of a scenic channel-sim process to use for WeChat Pay and Alipay",
    )
    serve.set_defaults(run=_serve)

    catalog = commands.add_parser("catalog", help="the catalog on sale").add_subparsers(
        dest="catalog_command", required=True
    )
    load = catalog.add_parser("load", help="check a catalog TOML file and put it on sale")
    load.add_argument("file", type=Path, metavar="FILE")
    _add_database_flags(load)
    load.set_defaults(run=_catalog_load)
    show = catalog.add_parser("show", help="print the catalog on sale")
    _add_database_flags(show)
    show.set_defaults(run=_catalog_show)

    audit = commands.add_parser(
        "audit", help="check the money invariants; exit 1 naming the rows when one fails"
    )
    _add_database_flags(audit)
    audit.set_defaults(run=_audit)

    keys = commands.add_parser("keys", help="the site keys that make ticket codes").add_subparsers(
        dest="keys_command", required=True
    )
    listing = keys.add_parser("list", help="list the site keys")
    _add_database_flags(listing)
    listing.set_defaults(run=_keys_list)
    rotate = keys.add_parser("rotate", help="make a new key; new codes use it, old ones stay valid")
    _add_database_flags(rotate)
    rotate.set_defaults(run=_keys_rotate)
    retire = keys.add_parser("retire", help="stop accepting codes made with a key")
    retire.add_argument("key_id", metavar="KEY")
    _add_database_flags(retire)
    retire.set_defaults(run=_keys_retire)

    add_channel_sim_parser(commands)
    add_gate_parsers(commands)
    add_loadtest_parser(commands)

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
        for name in (
            "host",
            "port",
            "dsn",
            "data_dir",
            "log_level",
            "demo",
            "channel_sim_url",
            "workers",
        )
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

    if config.workers > 1:
        from server.workers import serve_workers

        return await serve_workers(config)
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
    print(
        f"device {args.device_id} added with role {args.role}; keep its token "
        "(on stdout): it is shown only once",
        file=sys.stderr,
    )
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


@_with_database
async def _catalog_load(db: Database, args: argparse.Namespace) -> int:
    try:
        source = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        print(f"scenic: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    catalog = parse_catalog(source)  # raises bad_catalog naming the entry
    today = business_date(catalog, datetime.now(UTC))
    overbooked = await db.run(site.store_catalog, source, catalog, today)
    print(
        f"catalog of {catalog.name_en} on sale: {len(catalog.products)} products, "
        f"{len(catalog.slots)} slots, {len(catalog.date_capacity)} dates with their own capacity"
    )
    for visit_date, slot, capacity, reserved in overbooked:
        print(
            f"warning: {visit_date} {slot or 'whole day'} already holds {reserved} visitors, "
            f"more than the new capacity {capacity}; kept at {reserved}",
            file=sys.stderr,
        )
    return 0


@_with_database
async def _catalog_show(db: Database, args: argparse.Namespace) -> int:
    source = await db.run(site.load_catalog_source)
    if source is None:
        print("scenic: no catalog loaded; scenic catalog load FILE", file=sys.stderr)
        return 1
    print(source, end="" if source.endswith("\n") else "\n")
    return 0


@_with_database
async def _audit(db: Database, args: argparse.Namespace) -> int:
    results = await db.run(run_audit)
    failed = 0
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        print(f"{mark} {result.check.name}: {result.check.promise}")
        for row in result.offenders:
            print(f"       {row}")
        failed += not result.ok
    print(f"{len(results) - failed} of {len(results)} checks hold")
    return 1 if failed else 0


@_with_database
async def _keys_list(db: Database, args: argparse.Namespace) -> int:
    rows = await db.run(site.ticket_keys)
    current = TicketKeyring(tuple(rows)).current.key_id
    print(f"{'KEY':<8} {'CREATED (UTC)':<20} STATUS")
    for row in rows:
        status = "retired " + _when(row.retired_at) if row.retired_at else "accepted"
        if row.key_id == current:
            status = "accepted, makes new codes"
        print(f"{row.key_id:<8} {_when(row.created_at):<20} {status}")
    return 0


@_with_database
async def _keys_rotate(db: Database, args: argparse.Namespace) -> int:
    await db.run(site.ticket_keys)  # the first key, if there is none yet
    key_id = await db.run(site.add_key)
    print(f"key {key_id} makes new ticket codes from now on; older keys are still accepted")
    return 0


@_with_database
async def _keys_retire(db: Database, args: argparse.Namespace) -> int:
    if not await db.run(site.retire_key, args.key_id):
        print(f"scenic: no accepted key {args.key_id}", file=sys.stderr)
        return 1
    print(f"key {args.key_id} retired: codes made with it are refused from now on")
    return 0


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
