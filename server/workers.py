"""``scenic serve --workers N``: N server processes on one port and one database.

One Python process serves on one core (the GIL). The launcher starts the
embedded PostgreSQL (unless given a DSN), picks the port, and runs N
``scenic serve`` processes that bind it with ``SO_REUSEPORT``, so the
kernel spreads connections across them. They share the database, whose
constraints and version checks keep them correct side by side, and pass
events for each other's connections through NOTIFY (:mod:`server.fanout`).
SIGINT/SIGTERM go to every worker (each shuts down gracefully); the
launcher then stops the embedded cluster.

With in-process channel simulators each worker simulates its own WeChat
Pay and Alipay; give the workers a ``scenic channel-sim`` process
(``--channel-sim-url``) so that a refund decided by one worker reaches the
simulator that took the payment.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

import attrs
import trio

from server.config import ServerConfig
from server.storage.embedded import EmbeddedPostgres

log = logging.getLogger("scenic.workers")

#: how long a worker may take to shut down after SIGTERM before it is killed
WORKER_STOP_S = 30.0


def worker_environment(config: ServerConfig) -> dict[str, str]:
    """The environment that makes a ``scenic serve`` child run as one worker of ``config``."""
    env = dict(os.environ)
    for field in attrs.fields(ServerConfig):
        value = getattr(config, field.name)
        if value is None:
            continue
        text = ("1" if value else "0") if isinstance(value, bool) else str(value)
        env[f"SCENIC_{field.name.upper()}"] = text
    env["SCENIC_WORKERS"] = "1"
    env["SCENIC_REUSE_PORT"] = "1"
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on at ``host`` right now (for processes that must share it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


async def serve_workers(config: ServerConfig) -> int:
    """Run ``config.workers`` server processes until SIGINT/SIGTERM; their exit status."""
    embedded = None
    dsn = config.dsn
    if dsn is None:
        embedded = EmbeddedPostgres(config.data_dir)
        dsn = await trio.to_thread.run_sync(embedded.start)
    port = config.port or free_port(config.host)
    env = worker_environment(attrs.evolve(config, dsn=dsn, port=port))
    log.info("workers.starting", extra={"workers": config.workers, "port": port})
    statuses: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            processes = []
            for index in range(config.workers):
                own = dict(env)
                if config.metrics_port:  # each worker its own metrics port: PORT + k
                    own["SCENIC_METRICS_PORT"] = str(config.metrics_port + index)
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "server.cli", "serve"], env=own
                )
                processes.append(process)
            nursery.start_soon(_forward_signals, processes)
            for process in processes:
                statuses.append(await process.wait())
            nursery.cancel_scope.cancel()
    finally:
        if embedded is not None:
            await trio.to_thread.run_sync(embedded.stop)
    log.info("workers.stopped", extra={"statuses": statuses})
    return max(statuses, default=0)


async def _forward_signals(processes: list[trio.Process]) -> None:
    """Pass SIGINT/SIGTERM on to the workers we started; kill them if they hang."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            with trio.move_on_after(WORKER_STOP_S):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()
            return
