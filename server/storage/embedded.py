"""The embedded PostgreSQL cluster the server starts when it is given no DSN.

:class:`EmbeddedPostgres` keeps a cluster in ``data_dir / "postgres"`` using the
PostgreSQL 16 binaries that ship with the ``pgserver`` package. The server is
reachable only through a unix socket (no TCP port), and its data survives
restarts. Its calls block; the server runs them with ``trio.to_thread.run_sync``.

What ``start`` does, by the state it finds:

- no cluster yet: ``initdb`` (a few seconds), then start it;
- a cluster stopped cleanly, or left behind by a crash (a stale
  ``postmaster.pid``): start it; the stale lock file is removed first, so a
  recycled pid can never pass for a running server;
- a cluster already running for this directory: use it (*shared* when other
  live processes use it, *adopted* when nobody does, e.g. its users crashed).

Every process that started or joined the cluster is recorded as one of its
*users* in ``data_dir / "postgres.users"`` (pid and start time, so a recycled
pid never passes for a user). ``stop`` removes us from that list and stops the
cluster only when no live user is left: the last one out stops it, whichever
process started it. So a short command (``scenic device add``) that started
the cluster never stops it under a server that joined meanwhile, and a server
never loses its database to another process's start or stop. A user that
died without ``stop`` (SIGKILL) is pruned by the next start or stop.

Starting, stopping and every change to the users file are serialised between
processes by a lock file, ``data_dir / "postgres.lock"``.

About pgserver: it keeps a process-wide cache of servers, an ``atexit`` hook
and a list of "handle" pids in the data directory, all meant for its own
reference-counted stop. We create its handle with ``cleanup_mode=None`` and
detach all three at once, so the cluster's life is decided here alone. Its
inter-process lock lives in the user runtime directory (``$XDG_RUNTIME_DIR``,
or ``/tmp/runtime-<uid>`` when that is unset); it only serialises pgserver
start-ups and is harmless. Running as root, pgserver runs PostgreSQL as the
system user ``pgserver`` (creating it if needed), chowns the data directory to
it and makes every parent of the data directory world-traversable.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil

from server.startup import StartupError, check_data_dir

log = logging.getLogger("scenic.storage.embedded")

#: how long ``start`` waits for another process's start or stop of the same cluster
LOCK_TIMEOUT_S = 120.0
#: how long a fast shutdown may take before the postmaster is told to quit at once
STOP_TIMEOUT_S = 60.0
#: how long a cluster found starting up or shutting down may take to settle
SETTLE_TIMEOUT_S = 30.0


class EmbeddedPostgresError(StartupError):
    """The embedded cluster could not be started or stopped; the message says why."""

    code = "embedded_postgres"


class EmbeddedPostgres:
    """A PostgreSQL cluster living in ``data_dir / "postgres"``, reachable by unix socket.

    ``start`` returns an asyncpg DSN and records this object as a user of the
    cluster; ``stop`` removes it and stops the cluster when no other live user
    is left. Both are blocking and safe to call from any one thread at a time;
    ``stop`` without ``start`` does nothing, and ``start`` after ``stop`` starts
    it again.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self._mutex = threading.Lock()
        self._dsn: str | None = None
        self._system_user: str | None = None
        # One process may hold several handles on one directory: each is its own user.
        self._handle = secrets.token_hex(8)

    @property
    def log_file(self) -> Path:
        """PostgreSQL's own log file."""
        return self.pgdata / "log"

    def start(self) -> str:
        """Make sure the cluster runs and return an asyncpg DSN for its ``postgres`` database.

        Idempotent: a second call returns the same DSN. Raises
        :class:`~server.startup.StartupError` when the data directory cannot be
        made or written, :class:`EmbeddedPostgresError` when the cluster cannot
        be initialised or started (the message points to PostgreSQL's log) or
        when another process holds the start lock for longer than
        ``LOCK_TIMEOUT_S``.
        """
        with self._mutex:
            if self._dsn is not None:
                return self._dsn
            began = time.monotonic()
            check_data_dir(self.data_dir)
            with self._file_lock():
                cold = not (self.pgdata / "PG_VERSION").exists()
                running = _settled_postmaster(self.pgdata)
                others = _live_users(self._users_file)
                self._dsn, pid, self._system_user = _pgserver_start(self.pgdata)
                _write_users(self._users_file, [*others, _user_record(self._handle)])
                atexit.register(self._stop_at_exit)
            how = "started" if running is None else "shared" if others else "adopted"
            log.info(
                "embedded.%s",
                how,
                extra={
                    "data_dir": str(self.pgdata),
                    "dsn": self._dsn,
                    "postmaster_pid": pid,
                    "postgres_log": str(self.log_file),
                    "initdb": cold,
                    "other_users": [user["pid"] for user in others],
                    "seconds": round(time.monotonic() - began, 3),
                },
            )
            return self._dsn

    def stop(self) -> None:
        """Stop using the cluster; stop it too when no other live process uses it.

        The last user's stop is a fast shutdown (``pg_ctl stop -m fast``: open
        sessions are disconnected, their transactions rolled back, everything
        committed is kept) that waits until the postmaster has exited; if that
        does not finish within ``STOP_TIMEOUT_S`` the postmaster gets an
        immediate shutdown and then SIGKILL, so no process is left running.
        With other users left the cluster keeps running
        (``embedded.left_running``). Never raises for a cluster that is
        already gone.
        """
        with self._mutex:
            if self._dsn is None:
                return
            self._dsn = None
            atexit.unregister(self._stop_at_exit)
            began = time.monotonic()
            with self._file_lock():
                others = [
                    user for user in _live_users(self._users_file) if user["handle"] != self._handle
                ]
                if others:
                    _write_users(self._users_file, others)
                    log.info(
                        "embedded.left_running",
                        extra={
                            "data_dir": str(self.pgdata),
                            "other_users": [user["pid"] for user in others],
                        },
                    )
                    return
                found = _live_postmaster(self.pgdata)
                if found is not None:
                    _stop_postmaster(self.pgdata, found[0], self._system_user)
                self._users_file.unlink(missing_ok=True)
            log.info(
                "embedded.stopped",
                extra={"data_dir": str(self.pgdata), "seconds": round(time.monotonic() - began, 3)},
            )

    def crash_restart(self, down_s: float = 0.0) -> float:
        """Stop the cluster as a crash would, then start it again; the seconds it took.

        For fault tests (``scenic loadtest --chaos``): ``pg_ctl stop -m
        immediate`` (every backend quits at once, nothing is flushed, the
        next start runs crash recovery), ``down_s`` seconds with no server,
        then ``pg_ctl start`` on the same socket directory, waiting until
        recovery is over and connections are accepted, so the DSN that
        ``start`` returned works again. Runs PostgreSQL as the same system
        user as ``start`` (never root). Raises
        :class:`EmbeddedPostgresError` if this handle has not started the
        cluster or it does not come back.
        """
        from pgserver import pg_ctl

        with self._mutex:
            lines = _postmaster_file(self.pgdata)
            if self._dsn is None or lines is None or len(lines) < 5:
                raise EmbeddedPostgresError(f"the PostgreSQL in {self.pgdata} is not running")
            socket_dir = lines[4].strip()
            began = time.monotonic()
            pg_ctl(
                ["-w", "-m", "immediate", "stop"],
                pgdata=self.pgdata,
                user=self._system_user,
                timeout=STOP_TIMEOUT_S,
            )
            time.sleep(down_s)
            try:
                pg_ctl(
                    [
                        *("-w", "-t", str(int(LOCK_TIMEOUT_S)), "-o", '-h ""'),
                        *("-o", f"-k {socket_dir}", "-l", str(self.log_file), "start"),
                    ],
                    pgdata=self.pgdata,
                    user=self._system_user,
                    timeout=LOCK_TIMEOUT_S + 10,
                )
            except Exception as exc:
                raise EmbeddedPostgresError(
                    f"the PostgreSQL in {self.pgdata} did not come back after an immediate "
                    f"stop: {exc!r}; see {self.log_file}"
                ) from exc
            seconds = time.monotonic() - began
            log.warning(
                "embedded.crash_restarted",
                extra={"data_dir": str(self.pgdata), "seconds": round(seconds, 3)},
            )
            return seconds

    @property
    def _users_file(self) -> Path:
        return self.data_dir / "postgres.users"

    def _stop_at_exit(self) -> None:
        # A last resort when the process exits without calling stop().
        with contextlib.suppress(Exception):
            self.stop()

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Hold the inter-process lock on this data directory's start and stop."""
        with open(self.data_dir / "postgres.lock", "a") as lock_file:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(
                            f"another process holds {lock_file.name} (starting or stopping "
                            f"the cluster) for more than {LOCK_TIMEOUT_S:.0f}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def cluster_dsn(data_dir: Path) -> tuple[str, bool]:
    """The DSN of the embedded cluster in ``data_dir``, and whether it runs now.

    Starts nothing and changes nothing: a running cluster's DSN comes from its
    ``postmaster.pid`` (the socket directory it listens in); a stopped one's is
    the DSN it will have when started. pgserver puts the socket in the
    cluster's own directory unless that path is too long for a unix socket;
    then in a directory named after the cluster's inode, which exists only
    once the cluster does. Raises :class:`EmbeddedPostgresError` in that one
    case, when no cluster exists yet.
    """
    pgdata = Path(data_dir).expanduser().resolve() / "postgres"
    running = _running_socket_dir(pgdata)
    if running is not None:
        return _socket_dsn(running), True
    if len(os.fsencode(pgdata / ".s.PGSQL.5432")) < _SUN_PATH_MAX:
        return _socket_dsn(pgdata), False
    if not pgdata.is_dir():
        raise EmbeddedPostgresError(
            f"{pgdata} is too long a path for a unix socket, so its cluster's socket is "
            "placed when the cluster is created; start it once (scenic serve) and ask again"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer
    identifier = f"{pgdata}-{pgdata.stat().st_ino}"  # as pgserver names it
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:10]
    return _socket_dsn(PostgresServer.runtime_path / digest), False


#: the longest unix socket path the kernel takes, plus its terminating NUL
_SUN_PATH_MAX = 108 if sys.platform.startswith("linux") else 104


def _socket_dsn(socket_dir: Path) -> str:
    """pgserver's DSN for a cluster listening in ``socket_dir`` (trust authentication)."""
    return f"postgresql://postgres:@/postgres?host={socket_dir}"


def _running_socket_dir(pgdata: Path) -> Path | None:
    """The socket directory of the postmaster running for ``pgdata``, read-only; or ``None``."""
    lines = _postmaster_file(pgdata)
    if lines is None or len(lines) < 5 or not lines[4].strip():
        return None
    try:
        process = psutil.Process(int(lines[0]))
        if process.name() != "postgres" or str(pgdata) not in process.cmdline():
            return None
    except (ValueError, psutil.Error):
        return None
    return Path(lines[4].strip())


def _pgserver_start(pgdata: Path) -> tuple[str, int, str | None]:
    """Initialise and start (or find running) the cluster with pgserver.

    Returns the DSN, the postmaster pid and the system user PostgreSQL runs as.
    pgserver's own bookkeeping is detached at once (see the module docstring).
    """
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer

    try:
        server = pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:
        # pgserver caches its handle before starting; a failed one must not be reused.
        failed = PostgresServer._instances.pop(pgdata, None)
        if failed is not None:
            atexit.unregister(failed._cleanup)
        raise EmbeddedPostgresError(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc!r}; see {pgdata / 'log'}"
        ) from exc
    atexit.unregister(server._cleanup)
    PostgresServer._instances.pop(server.pgdata, None)
    with contextlib.suppress(OSError):
        server.global_process_id_list.get_and_remove(os.getpid())
    return server.get_uri(), server.get_pid(), server.system_user


def _postmaster_file(pgdata: Path) -> list[str] | None:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None


def _live_postmaster(pgdata: Path) -> tuple[psutil.Process, str] | None:
    """The running postmaster of ``pgdata`` and its status, or ``None``.

    A ``postmaster.pid`` whose pid is dead, or now belongs to some other
    program, is stale: it is removed, so neither pgserver nor PostgreSQL
    mistakes a recycled pid for a running server.
    """
    lines = _postmaster_file(pgdata)
    if lines is None:
        return None
    try:
        process = psutil.Process(int(lines[0]))
        is_ours = process.name() == "postgres" and str(pgdata) in process.cmdline()
    except (IndexError, ValueError, psutil.Error):  # a zombie raises ZombieProcess here
        is_ours = False
    if is_ours:
        return process, lines[7].strip() if len(lines) > 7 else "starting"
    log.warning(
        "embedded.stale_pid_file",
        extra={"data_dir": str(pgdata), "pid_line": lines[0] if lines else ""},
    )
    _remove_stale_socket_lock(lines)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    return None


def _remove_stale_socket_lock(lines: list[str]) -> None:
    """Remove the unix socket's lock file left by the dead postmaster of ``lines``.

    PostgreSQL refuses to start while that file names a pid that still exists,
    and the dead postmaster's pid can linger as a zombie until init reaps it.
    """
    if len(lines) < 5 or not lines[3].strip() or not lines[4].strip():
        return
    lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
    try:
        if lock.read_text().split("\n", 1)[0].strip() == lines[0].strip():
            lock.unlink()
    except OSError:
        pass


def _settled_postmaster(pgdata: Path) -> psutil.Process | None:
    """The ready postmaster of ``pgdata``, or ``None`` once none runs.

    A postmaster found starting up or shutting down (by a process outside the
    lock, or a crash recovery) is given ``SETTLE_TIMEOUT_S`` to become ready or
    to exit.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        found = _live_postmaster(pgdata)
        if found is None:
            return None
        process, status = found
        if status == "ready":
            return process
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(
                f"the PostgreSQL in {pgdata} (pid {process.pid}) stayed {status!r} "
                f"for {SETTLE_TIMEOUT_S:.0f}s"
            )
        time.sleep(0.1)


def _user_record(handle: str) -> dict:
    """This process's entry in the users file, for the handle ``handle``."""
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time(), "handle": handle}


def _live_users(users_file: Path) -> list[dict]:
    """The users recorded in ``users_file`` whose process still runs (same pid, same start)."""
    try:
        users = json.loads(users_file.read_text())
    except (OSError, ValueError):
        return []
    return [user for user in users if isinstance(user, dict) and _user_alive(user)]


def _user_alive(user: dict) -> bool:
    try:
        process = psutil.Process(user["pid"])
        return (
            abs(process.create_time() - user["create_time"]) < 1.0
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False


def _write_users(users_file: Path, users: list[dict]) -> None:
    """Replace ``users_file`` with ``users`` at once (a crash leaves the old list or the new)."""
    partial = users_file.with_name(users_file.name + ".tmp")
    partial.write_text(json.dumps(users))
    os.replace(partial, users_file)


def _stop_postmaster(pgdata: Path, postmaster: psutil.Process, system_user: str | None) -> None:
    """Fast-stop ``postmaster`` and wait for it to exit, escalating if it will not."""
    from pgserver import pg_ctl

    if not postmaster.is_running():
        return
    try:
        pg_ctl(
            ["-w", "-m", "fast", "-t", str(int(STOP_TIMEOUT_S)), "stop"],
            pgdata=pgdata,
            user=system_user,
            timeout=STOP_TIMEOUT_S + 10,
        )
    except Exception as exc:  # pg_ctl failed or hung: fall through to signals
        log.warning("embedded.pg_ctl_stop_failed", extra={"error": repr(exc)})
    escalation = ((None, 10.0), (signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
    for sig, grace_s in escalation:
        try:
            if sig is not None:
                log.warning("embedded.signal", extra={"signal": sig.name, "pid": postmaster.pid})
                postmaster.send_signal(sig)
        except psutil.NoSuchProcess:
            return
        if _exited(postmaster, grace_s):
            return
    raise EmbeddedPostgresError(
        f"the PostgreSQL in {pgdata} (pid {postmaster.pid}) survived SIGKILL"
    )


def _exited(process: psutil.Process, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``process`` to exit; a zombie counts as exited.

    The postmaster is not our child, so its exit status is reaped by init,
    which in some containers happens only every few seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
