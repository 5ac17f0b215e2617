"""The ``scenic`` command: serve, devices, the catalog, the audit, the channel simulator.

``scenic serve`` runs the server (embedded PostgreSQL unless ``--dsn``);
``scenic device add|list|revoke`` manage the devices allowed to connect,
``scenic catalog load|show`` the catalog on sale and ``scenic audit`` checks
the money invariants, all against the same data directory or DSN;
``scenic report rentals`` prints a business date's rental report (and writes
it as CSV and a PNG chart), ``scenic report daily`` its morning report (CSV
and two PNG charts too); ``scenic db dsn`` prints the DSN of that
database; ``scenic channel-sim``
runs the payment channel simulator as its own process. Every flag has a
``SCENIC_*`` environment variable and a default (see :mod:`server.config`).

A mistake a person can fix is one line on stderr, never a traceback: what is
wrong and what to do, exit status 2 for a usage error (a flag, a
``SCENIC_*`` value), 1 for a failure (the database cannot be reached, the
port is taken, the data directory cannot be written). ``--log-level DEBUG``
(or ``SCENIC_LOG_LEVEL=DEBUG``) prints the traceback too.
"""

from __future__ import annotations

import argparse
import inspect
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from actors.catalog import parse_catalog
from server.audit import run_audit
from server.auth import hash_token, new_token
from server.channels.keys import fingerprints, read_channel_keys
from server.config import LOG_LEVELS, ServerConfig
from server.errors import ScenicError
from server.flags import (
    daily_time,
    log_level,
    port_number,
    report_date,
    seconds,
    websocket_url,
    worker_count,
)
from server.keyring import TicketKeyring
from server.logs import configure_logging
from server.ops import ROLES
from server.site import business_date
from server.startup import StartupError, UsageError, check_data_dir, check_database
from server.storage import channel_keys, devices, site
from server.storage.command import command_database
from server.storage.database import Database
from server.storage.embedded import cluster_dsn

DESCRIPTION = (
    "scenic-gate: the gate and payment server for scenic areas, and the tools that go "
    "with it. Every flag also has a SCENIC_* environment variable (flags win); "
    "'scenic COMMAND --help' says more about each command."
)


class CommandLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line naming the command, then exit with status 2."""
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


#: the entry-point group of the subcommands declared by devices/, clients/ and loadtest/
COMMANDS_GROUP = "scenic.commands"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``scenic`` subcommand."""
    parser = CommandLineParser(prog="scenic", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "Run the server until SIGINT or SIGTERM.",
        "With no --dsn it starts the embedded PostgreSQL in the data directory (and stops it "
        "when the last process using it stops). The server.listening log line says where it "
        "listens.",
    )
    _add_database_flags(serve)
    serve.add_argument("--host", help="Listen on this address (default 127.0.0.1; SCENIC_HOST).")
    serve.add_argument(
        "--port",
        type=port_number,
        metavar="PORT",
        help="Listen on this port, 0 for any free one (default 8765; SCENIC_PORT).",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="Sell the demo park's catalog when no catalog has been loaded (SCENIC_DEMO).",
    )
    serve.add_argument(
        "--workers",
        type=worker_count,
        metavar="N",
        help="Run this many server processes on one port and one database "
        "(default 1; SCENIC_WORKERS).",
    )
    serve.add_argument(
        "--channel-sim-url",
        type=websocket_url,
        metavar="URL",
        help="Use the scenic channel-sim process at this ws:// URL as WeChat Pay and Alipay "
        "(default: simulated in the server; SCENIC_CHANNEL_SIM_URL).",
    )
    serve.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: off; "
        "SCENIC_METRICS_PORT). With --workers N, worker k serves on PORT + k.",
    )
    serve.add_argument(
        "--metrics-host",
        help="The address the metrics endpoint listens on (default 127.0.0.1; "
        "SCENIC_METRICS_HOST).",
    )
    serve.add_argument(
        "--recon-at",
        type=daily_time,
        metavar="HH:MM",
        help="Reconcile yesterday with the channels' bills daily at this site time, or off "
        "(default 10:30; SCENIC_RECON_AT).",
    )
    serve.set_defaults(run=_serve)

    catalog = _command(commands, "catalog", "Check and load the catalog on sale, or print it.")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, metavar="COMMAND"
    )
    load = _command(
        catalog_commands,
        "load",
        "Check a catalog TOML file and put it on sale; running servers reload it.",
    )
    load.add_argument("file", type=Path, metavar="FILE", help="The catalog file (TOML).")
    _add_database_flags(load)
    load.set_defaults(run=_catalog_load)
    show = _command(catalog_commands, "show", "Print the catalog on sale (its TOML text).")
    _add_database_flags(show)
    show.set_defaults(run=_catalog_show)

    audit = _command(
        commands,
        "audit",
        "Check the money invariants; exit 1 naming the offending rows when one fails.",
    )
    _add_database_flags(audit)
    audit.add_argument(
        "--refund-bound-s",
        type=seconds,
        metavar="SECONDS",
        help="Name every refund its channel has not confirmed this long after it was asked "
        "(default 600; SCENIC_REFUND_BOUND_S).",
    )
    audit.set_defaults(run=_audit)

    report = _command(
        commands,
        "report",
        "Print a report of one business date: rentals, or the daily (morning) report.",
        "docs/reports.md defines every figure.",
    )
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    rentals = _command(
        report_commands,
        "rentals",
        "The rentals of a business date: counts per item type, money, deposits, pickups and "
        "returns by hour, utilization, who rents.",
    )
    rentals.add_argument(
        "--date",
        type=report_date,
        metavar="YYYY-MM-DD",
        help="The site's business date to report (default: today's, in the catalog's time zone).",
    )
    rentals.add_argument(
        "--csv", type=Path, metavar="FILE", help="Also write the figures to FILE as CSV."
    )
    rentals.add_argument(
        "--png",
        type=Path,
        metavar="FILE",
        help="Also draw pickups and returns by hour and the utilization into FILE (PNG).",
    )
    _add_database_flags(rentals)
    rentals.set_defaults(run=_report_rentals)
    daily = _command(
        report_commands,
        "daily",
        "The morning report of a business date: sales by product, channel and device; refunds "
        "by reason; gate entries and exits by hour and gate; peak occupancy per zone; "
        "deposits; the reconciliation result.",
    )
    daily.add_argument(
        "--date",
        type=report_date,
        metavar="YYYY-MM-DD",
        help="The site's business date to report (default: today's, in the catalog's time zone).",
    )
    daily.add_argument(
        "--csv", type=Path, metavar="FILE", help="Also write the figures to FILE as CSV."
    )
    daily.add_argument(
        "--png",
        type=Path,
        metavar="DIR|PREFIX",
        help="Also draw entries per hour and sales by channel as two PNG files: "
        "DIR/daily-DATE-entries.png and DIR/daily-DATE-sales.png for a directory, "
        "else PREFIX-entries.png and PREFIX-sales.png.",
    )
    _add_database_flags(daily)
    daily.set_defaults(run=_report_daily)

    channel_keys = _command(
        commands,
        "channel-keys",
        "Show the merchant keys' fingerprints, or make this file's keys the database's.",
        "Every server on one database must use the same merchant keys; the first to start "
        "records their SHA-256 fingerprints and a server with other keys refuses to start.",
    )
    channel_keys_commands = channel_keys.add_subparsers(
        dest="channel_keys_command", required=True, metavar="COMMAND"
    )
    for name, summary, run in (
        (
            "show",
            "Print each channel's key fingerprint in the keys file and in the database.",
            _channel_keys_show,
        ),
        (
            "adopt",
            "Record the keys file's fingerprints as the database's (after changing the keys "
            "on purpose).",
            _channel_keys_adopt,
        ),
    ):
        command = _command(channel_keys_commands, name, summary)
        command.add_argument(
            "--keys",
            dest="channel_keys",
            type=Path,
            metavar="FILE",
            help="The merchant keys file (default: channel_keys.json in the data directory; "
            "SCENIC_CHANNEL_KEYS).",
        )
        _add_database_flags(command)
        command.set_defaults(run=run)

    keys = _command(
        commands, "keys", "List, rotate or retire the site keys that make ticket codes."
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    listing = _command(keys_commands, "list", "List the site keys and which one makes new codes.")
    _add_database_flags(listing)
    listing.set_defaults(run=_keys_list)
    rotate = _command(
        keys_commands, "rotate", "Make a new key for new codes; codes made before stay valid."
    )
    _add_database_flags(rotate)
    rotate.set_defaults(run=_keys_rotate)
    retire = _command(keys_commands, "retire", "Stop accepting the codes made with a key.")
    retire.add_argument("key_id", metavar="KEY", help="The key's id, as keys list shows it.")
    _add_database_flags(retire)
    retire.set_defaults(run=_keys_retire)

    _add_declared_commands(commands)

    device = _command(commands, "device", "Register, list or revoke the devices that may connect.")
    device_commands = device.add_subparsers(dest="device_command", required=True, metavar="COMMAND")
    add = _command(
        device_commands,
        "add",
        "Register a device with a role and print its token (only the token, on stdout).",
        "The token is shown once; only its SHA-256 is stored.",
    )
    add.add_argument("device_id", metavar="ID", help="The device's id, e.g. kiosk-01.")
    add.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help=f"What the device may do: one of {', '.join(ROLES)}.",
    )
    _add_database_flags(add)
    add.set_defaults(run=_device_add)
    listing = _command(device_commands, "list", "List the devices, their roles and status.")
    _add_database_flags(listing)
    listing.set_defaults(run=_device_list)
    revoke = _command(
        device_commands,
        "revoke",
        "Revoke a device: its open connections close and its token is refused from now on.",
    )
    revoke.add_argument("device_id", metavar="ID", help="The device's id.")
    _add_database_flags(revoke)
    revoke.set_defaults(run=_device_revoke)

    db = _command(commands, "db", "Tell other programs where the database is.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    dsn = _command(
        db_commands,
        "dsn",
        "Print the DSN of the database scenic serve uses with these settings.",
        "Without SCENIC_DSN that is the embedded cluster of the data directory; its DSN is "
        "printed whether the cluster runs or not (stderr says when it does not).",
    )
    dsn.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="The data directory whose embedded cluster to name (default: the user data "
        "directory; SCENIC_DATA_DIR).",
    )
    _add_log_level_flag(dsn)
    dsn.set_defaults(run=_db_dsn)
    return parser


def _add_declared_commands(commands: Any) -> None:
    """Add the subcommands other packages declare under :data:`COMMANDS_GROUP`.

    The gate agent and simulator (devices/), the channel simulator's process
    (clients/) and the load test (loadtest/) sit above the server: they import
    it, it does not import them. Each declares its ``scenic`` subcommands as a
    package entry point (pyproject.toml), a function given the subcommands to
    add to.
    """
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda entry: entry.name):
        entry.load()(commands)


def _command(
    subparsers: Any, name: str, summary: str, details: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand whose listing shows ``summary`` and whose --help shows it with ``details``."""
    description = summary if details is None else f"{summary} {details}"
    return subparsers.add_parser(name, help=summary, description=description)


def _add_database_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        metavar="URL",
        help="Use the PostgreSQL at this postgresql:// URL (SCENIC_DSN; default: the "
        "embedded cluster in the data directory).",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="Keep the embedded cluster (and the channel keys) here (default: the user data "
        "directory; SCENIC_DATA_DIR).",
    )
    _add_log_level_flag(parser)


def _add_log_level_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=log_level,
        metavar="LEVEL",
        help=f"Log at this level: {', '.join(LOG_LEVELS)} (default INFO; SCENIC_LOG_LEVEL); "
        "DEBUG also prints the traceback of an error.",
    )


def config_from(args: argparse.Namespace) -> ServerConfig:
    """The environment's config with the flags given on the command line on top.

    Raises ``ValueError`` naming the ``SCENIC_*`` variable whose value is unusable.
    """
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
            "refund_bound_s",
            "channel_keys",
            "metrics_port",
            "metrics_host",
            "recon_at",
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
        if not inspect.iscoroutinefunction(args.run):
            return args.run(config, args)  # a command with its own event loop (textual screens)
        return trio.run(args.run, config, args)
    except BaseException as exc:  # sorted below; anything else is re-raised as it was
        failures = _leaves(exc)
        if any(isinstance(failure, KeyboardInterrupt) for failure in failures):
            return 130
        if not all(isinstance(failure, ScenicError) for failure in failures):
            raise
        if config.log_level.upper() == "DEBUG":
            traceback.print_exception(exc)
        for line in dict.fromkeys(_one_line(failure) for failure in failures):
            print(f"scenic: {line}", file=sys.stderr)
        return 2 if any(isinstance(failure, UsageError) for failure in failures) else 1


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, however deep the exception groups nest them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _one_line(failure: ScenicError) -> str:
    if isinstance(failure, StartupError | UsageError):
        return failure.message
    return f"{failure.message} ({failure.code})"


async def _serve(config: ServerConfig, args: argparse.Namespace) -> int:
    from server.app import run_server

    if config.dsn is None or config.channel_keys is None:  # the cluster, the channel keys
        await trio.to_thread.run_sync(check_data_dir, config.data_dir)
    if config.dsn is not None:
        await check_database(config.dsn)
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


def _with_database(
    work: Callable[[Database, argparse.Namespace], Awaitable[int]],
) -> Callable[[ServerConfig, argparse.Namespace], Awaitable[int]]:
    async def run(config: ServerConfig, args: argparse.Namespace) -> int:
        async with command_database(config) as db:
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


async def _audit(config: ServerConfig, args: argparse.Namespace) -> int:
    async with command_database(config) as db:
        results = await db.run(run_audit, timedelta(seconds=config.refund_bound_s))
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
async def _report_daily(db: Database, args: argparse.Namespace) -> int:
    from server.daily_report_output import report_csv, report_pngs, report_table
    from server.handlers.daily_reports import build_daily_report

    return await _print_report(
        db, args, "no day", build_daily_report, report_table, report_csv, report_pngs
    )


@_with_database
async def _report_rentals(db: Database, args: argparse.Namespace) -> int:
    from server.handlers.rental_reports import build_rental_report
    from server.rental_report_output import report_csv, report_png, report_table

    return await _print_report(
        db, args, "no rentals", build_rental_report, report_table, report_csv, report_png
    )


async def _print_report(
    db: Database,
    args: argparse.Namespace,
    nothing: str,
    build: Callable[..., Awaitable[dict]],
    table: Callable[[dict], str],
    csv_text: Callable[[dict], str],
    png: Callable[[dict, Path], object],
) -> int:
    """Build one business date's report; write its CSV and charts if asked; print its table."""
    source = await db.run(site.load_catalog_source)
    if source is None:
        print(
            f"scenic: no catalog loaded, so {nothing} to report; scenic catalog load FILE",
            file=sys.stderr,
        )
        return 1
    catalog = parse_catalog(source)
    now = datetime.now(UTC)
    day = args.date or business_date(catalog, now)
    report = await build(db, catalog, day, now)
    for path, write in (
        (args.csv, lambda p: p.write_text(csv_text(report), encoding="utf-8", newline="")),
        (args.png, lambda p: png(report, p)),
    ):
        if path is None:
            continue
        try:
            await trio.to_thread.run_sync(write, path)
        except OSError as exc:
            print(
                f"scenic: cannot write {exc.filename or path}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
    print(table(report), end="")
    return 0


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


async def _channel_keys_show(config: ServerConfig, args: argparse.Namespace) -> int:
    path = config.channel_keys_path
    ours = fingerprints(read_channel_keys(path))
    async with command_database(config) as db:
        known = await db.run(channel_keys.recorded)
    print(f"{'CHANNEL':<8} {'IN ' + str(path)}")
    differ = 0
    for name, fingerprint in ours.items():
        recorded = known.get(name)
        state = "recorded" if recorded == fingerprint else "not recorded yet"
        if recorded not in (None, fingerprint):
            state, differ = f"DIFFERS: the database has {recorded}", differ + 1
        print(f"{name:<8} {fingerprint}  {state}")
    return 1 if differ else 0


async def _channel_keys_adopt(config: ServerConfig, args: argparse.Namespace) -> int:
    path = config.channel_keys_path
    ours = fingerprints(read_channel_keys(path))
    async with command_database(config) as db:
        await db.run(channel_keys.replace, ours)
    print(f"the keys in {path} are now the database's; servers with other keys refuse to start")
    return 0


async def _db_dsn(config: ServerConfig, args: argparse.Namespace) -> int:
    if config.dsn is not None:
        print(config.dsn)
        return 0
    dsn, running = await trio.to_thread.run_sync(cluster_dsn, config.data_dir)
    print(dsn)
    if not running:
        print(
            f"scenic: the embedded cluster in {config.data_dir} is not running; this DSN "
            "works while scenic serve (or another scenic command) runs it",
            file=sys.stderr,
        )
    return 0


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
