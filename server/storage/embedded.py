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
- a cluster already running for this directory: use it. If the scenic process
  that started it is still alive it is *shared*: our ``stop`` leaves it
  running, and its owner stops it when that process stops (a process sharing a
  cluster loses its database then). If its owner died, we *adopt* it and stop
  it on our ``stop``.

Starting and stopping are serialised between processes by a lock file in
``data_dir``; the owner is recorded in ``data_dir / "postgres.owner"``.

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
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psutil

log = logging.getLogger("scenic.storage.embedded")

#: how long ``start`` waits for another process's start or stop of the same cluster
LOCK_TIMEOUT_S = 120.0
#: how long a fast shutdown may take before the postmaster is told to quit at once
STOP_TIMEOUT_S = 60.0
#: how long a cluster found starting up or shutting down may take to settle
SETTLE_TIMEOUT_S = 30.0


class EmbeddedPostgresError(RuntimeError):
    """The embedded cluster could not be started or stopped; the message says why."""


class EmbeddedPostgres:
    """A PostgreSQL cluster living in ``data_dir / "postgres"``, reachable by unix socket.

    ``start`` returns an asyncpg DSN; ``stop`` stops the cluster if this object
    started (or adopted) it and leaves a shared one running. Both are blocking
    and safe to call from any one thread at a time; ``stop`` without ``start``
    does nothing, and ``start`` after ``stop`` starts it again.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self._mutex = threading.Lock()
        self._dsn: str | None = None
        self._postmaster: psutil.Process | None = None  # set when we must stop it
        self._system_user: str | None = None

    @property
    def dsn(self) -> str | None:
        """The DSN ``start`` returned, or ``None`` when not started."""
        return self._dsn

    @property
    def owns_cluster(self) -> bool:
        """True when ``stop`` will stop the cluster (we started or adopted it)."""
        return self._postmaster is not None

    @property
    def log_file(self) -> Path:
        """PostgreSQL's own log file."""
        return self.pgdata / "log"

    def start(self) -> str:
        """Make sure the cluster runs and return an asyncpg DSN for its ``postgres`` database.

        Idempotent: a second call returns the same DSN. Raises
        :class:`EmbeddedPostgresError` when the cluster cannot be initialised or
        started (the message points to PostgreSQL's log) or when another
        process holds the start lock for longer than ``LOCK_TIMEOUT_S``.
        """
        with self._mutex:
            if self._dsn is not None:
                return self._dsn
            began = time.monotonic()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with self._file_lock():
                cold = not (self.pgdata / "PG_VERSION").exists()
                running = _settled_postmaster(self.pgdata)
                owned = running is None or not _owner_alive(self._owner_file)
                self._dsn, pid, self._system_user = _pgserver_start(self.pgdata)
                if owned:
                    self._postmaster = psutil.Process(pid)
                    _write_owner(self._owner_file)
                    atexit.register(self._stop_at_exit)
            how = "shared" if not owned else "adopted" if running is not None else "started"
            log.info(
                "embedded.%s",
                how,
                extra={
                    "data_dir": str(self.pgdata),
                    "dsn": self._dsn,
                    "postmaster_pid": pid,
                    "postgres_log": str(self.log_file),
                    "initdb": cold,
                    "seconds": round(time.monotonic() - began, 3),
                },
            )
            return self._dsn

    def stop(self) -> None:
        """Stop the cluster if we started or adopted it, and wait until it has exited.

        Uses a fast shutdown (``pg_ctl stop -m fast``: open sessions are
        disconnected, their transactions rolled back, everything committed is
        kept); if that does not finish within ``STOP_TIMEOUT_S`` the postmaster
        gets an immediate shutdown and then SIGKILL, so no process is left
        running. A shared cluster is left running. Never raises for a cluster
        that is already gone.
        """
        with self._mutex:
            if self._dsn is None:
                return
            postmaster, self._postmaster, self._dsn = self._postmaster, None, None
            if postmaster is None:
                log.info("embedded.left_running", extra={"data_dir": str(self.pgdata)})
                return
            atexit.unregister(self._stop_at_exit)
            began = time.monotonic()
            with self._file_lock():
                _stop_postmaster(self.pgdata, postmaster, self._system_user)
                self._owner_file.unlink(missing_ok=True)
            log.info(
                "embedded.stopped",
                extra={"data_dir": str(self.pgdata), "seconds": round(time.monotonic() - began, 3)},
            )

    @property
    def _owner_file(self) -> Path:
        return self.data_dir / "postgres.owner"

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


def _owner_alive(owner_file: Path) -> bool:
    """True when the scenic process recorded in ``owner_file`` is still running."""
    try:
        owner = json.loads(owner_file.read_text())
        process = psutil.Process(owner["pid"])
        return abs(process.create_time() - owner["create_time"]) < 1.0
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def _write_owner(owner_file: Path) -> None:
    me = psutil.Process()
    owner_file.write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))


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
