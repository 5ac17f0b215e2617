"""What can stop a ``scenic`` command before it does its work, said in one line.

A person who gives a wrong DSN, a data directory they cannot write or a port
that is taken should read what is wrong and what to do, not a traceback.
:class:`StartupError` (exit status 1: the environment failed us) and
:class:`UsageError` (exit status 2: the command line or a ``SCENIC_*``
variable is wrong) carry that line; the ``scenic`` command prints it.

:func:`check_database` connects once to a DSN and names the reason when it
cannot; :func:`check_data_dir` makes sure the data directory exists and is
writable. :func:`dsn_problem` and :func:`redact_dsn` are pure.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import trio

from server.errors import ScenicError

#: how long :func:`check_database` waits for PostgreSQL to answer
DATABASE_CHECK_TIMEOUT_S = 10.0

_DSN_HINT = "--dsn or SCENIC_DSN"
_DATA_DIR_HINT = "choose another with --data-dir or SCENIC_DATA_DIR"


class StartupError(ScenicError):
    """Something outside the command line prevents the command from running (exit status 1)."""

    code = "cannot_start"


class UsageError(ScenicError):
    """A flag or a ``SCENIC_*`` environment variable has a value the command cannot use
    (exit status 2)."""

    code = "usage"


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password, if it has one, replaced by ``***`` (fit for a log line).

    An empty password (``postgres:@``, as the embedded cluster's DSN has) is no
    secret and is kept, so the line shows a DSN another process can use.
    """
    if "@" not in dsn or "://" not in dsn:
        return dsn
    scheme, rest = dsn.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user, _, password = credentials.partition(":")
    return f"{scheme}://{user}:***@{host}" if password else dsn


def dsn_problem(dsn: str) -> str | None:
    """What makes ``dsn`` unusable as written, or ``None`` (its server is not asked).

    Only ``postgresql://`` and ``postgres://`` URLs are understood (asyncpg
    takes no ``key=value`` strings).
    """
    scheme = dsn.split("://", 1)[0] if "://" in dsn else ""
    if scheme not in ("postgresql", "postgres"):
        return (
            f"the DSN {redact_dsn(dsn)!r} is not a PostgreSQL URL; write it as "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            f"(or postgresql://USER@/DATABASE?host=/SOCKET/DIR) in {_DSN_HINT}"
        )
    try:
        parts = urlsplit(dsn)
        _ = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        return f"the DSN {redact_dsn(dsn)!r} cannot be read ({exc}); fix it in {_DSN_HINT}"
    return None


async def check_database(dsn: str, timeout_s: float = DATABASE_CHECK_TIMEOUT_S) -> None:
    """Connect once to ``dsn`` and disconnect; raise one line saying why it failed.

    Raises :class:`UsageError` for a DSN that cannot be read and
    :class:`StartupError` when PostgreSQL cannot be reached (refused, no
    socket, unknown host, no answer within ``timeout_s``) or refuses us (no
    such database or role, wrong password).
    """
    problem = dsn_problem(dsn)
    if problem is not None:
        raise UsageError(problem)
    await trio.to_thread.run_sync(_connect_once, dsn, timeout_s)


def _connect_once(dsn: str, timeout_s: float) -> None:
    import asyncpg

    async def connect() -> None:
        connection = await asyncpg.connect(dsn, timeout=timeout_s)
        await connection.close(timeout=timeout_s)

    where = _where(dsn)
    try:
        asyncio.run(connect())
    except (asyncpg.ClientConfigurationError, ValueError) as exc:
        raise UsageError(
            f"the DSN {redact_dsn(dsn)!r} cannot be used ({exc}); fix it in {_DSN_HINT}"
        ) from exc
    except TimeoutError as exc:
        raise StartupError(
            f"no answer from PostgreSQL at {where} within {timeout_s:g}s; "
            f"check that it runs and that {_DSN_HINT} points at it"
        ) from exc
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {where}: no such host; fix the host in {_DSN_HINT}"
        ) from exc
    except FileNotFoundError as exc:
        raise StartupError(
            f"cannot reach PostgreSQL at {where}: no socket there; start PostgreSQL, "
            f"or point {_DSN_HINT} at the directory holding its socket"
        ) from exc
    except OSError as exc:
        reason = "connection refused" if exc.errno == errno.ECONNREFUSED else exc.strerror
        raise StartupError(
            f"cannot reach PostgreSQL at {where}: {reason or exc}; start PostgreSQL, "
            f"or point {_DSN_HINT} at one that runs"
        ) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        database = _database_name(dsn)
        raise StartupError(
            f"PostgreSQL at {where} has no database {database!r}; create it "
            f"(createdb {database}) or name another in {_DSN_HINT}"
        ) from exc
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise StartupError(
            f"PostgreSQL at {where} refused the login: {exc}; fix the user or password "
            f"in {_DSN_HINT}"
        ) from exc
    except asyncpg.CannotConnectNowError as exc:
        raise StartupError(
            f"PostgreSQL at {where} is starting up or shutting down; try again in a moment"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise StartupError(f"PostgreSQL at {where} refused the connection: {exc}") from exc


def _where(dsn: str) -> str:
    """A person's name for the server ``dsn`` points at: host:port, or the socket directory."""
    try:
        parts = urlsplit(dsn)
        socket_dir = parse_qs(parts.query).get("host", [None])[0]
        if socket_dir:
            return socket_dir
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return redact_dsn(dsn)


def _database_name(dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "?"
    return parts.path.lstrip("/") or parts.username or os.environ.get("USER", "postgres")


def check_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` if it is missing; raise :class:`StartupError` when it cannot be used.

    It cannot when it is a file, when it (or a parent) cannot be made, or
    when this user cannot write to it.
    """
    data_dir = Path(data_dir).expanduser()
    try:
        is_file = data_dir.exists() and not data_dir.is_dir()
    except OSError as exc:  # a parent this user may not enter
        raise StartupError(
            f"cannot use the data directory {data_dir}: {exc.strerror or exc}; {_DATA_DIR_HINT}"
        ) from exc
    if is_file:
        raise StartupError(
            f"the data directory {data_dir} is a file, not a directory; remove it or "
            f"{_DATA_DIR_HINT}"
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise StartupError(
            f"cannot make the data directory {data_dir}: a part of that path is a file; "
            f"{_DATA_DIR_HINT}"
        ) from exc
    except OSError as exc:
        raise StartupError(
            f"cannot make the data directory {data_dir}: {exc.strerror or exc}; {_DATA_DIR_HINT}"
        ) from exc
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StartupError(
            f"the data directory {data_dir} is not writable by this user; fix its "
            f"permissions or {_DATA_DIR_HINT}"
        )
