"""``scenic loadtest --chaos``: faults injected into the load test's own processes while it runs.

The run owns everything it breaks, and breaks only what it started, by pid:

* the embedded PostgreSQL (started here, :class:`~server.storage.embedded.EmbeddedPostgres`),
  restarted as a crash (``pg_ctl stop -m immediate``, then a start: crash recovery);
* ``server_workers`` ``scenic serve --dsn`` processes sharing one port
  (``SO_REUSEPORT``), one of them ``kill -9``-ed every ``kill_every_s``
  seconds in turn and started again on the same database: with two workers
  the other one serves meanwhile. A worker that exits by itself (a server
  exits when PostgreSQL goes away under its LISTEN connections) is started
  again at once, as a supervisor would, and logged as ``server_exit``;
* the ``scenic channel-sim`` process, which drops its connection to the
  server now and then (``--drop-every-s``), delays and duplicates its
  notifications, and is restarted (SIGTERM, then a start on the same port and
  books: ``--state``).

:func:`fault_schedule` is the plan (pure); :class:`ChaosCluster` the
processes; :class:`FaultLog` what happened, with the time from each fault to
the first successful request after it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import attrs

from loadtest.local_server import register_devices, scenic_command, stop_process
from server.storage.embedded import EmbeddedPostgres
from server.workers import free_port

#: the faults injected, and (last) a worker that exited by itself, restarted like a supervisor
KINDS = ("server_kill", "postgres_restart", "channel_sim_restart", "server_exit")


@attrs.frozen
class ChaosPlan:
    """What to break and how often (``scenic loadtest --chaos`` flags)."""

    kill_every_s: float = attrs.field(default=15.0, validator=attrs.validators.gt(0.0))
    server_workers: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    pg_restarts: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    sim_restarts: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    #: the channel simulator drops its link to the server about this often (0: never)
    sim_drop_every_s: float = attrs.field(default=20.0, validator=attrs.validators.ge(0.0))
    #: how long PostgreSQL stays down between its immediate stop and its start
    pg_down_s: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))


@attrs.frozen
class Fault:
    """One planned fault: ``at_s`` seconds into the run, its kind, and what it hits."""

    at_s: float
    kind: str
    target: str


def fault_schedule(plan: ChaosPlan, duration_s: float) -> list[Fault]:
    """The faults of a run of ``duration_s`` seconds, in time order.

    Server kills at ``kill_every_s``, ``2 x kill_every_s``, ... while before
    the run's end, worker ``k mod server_workers`` for the ``k``-th (0-based).
    The others fall between two kills: with ``e = kill_every_s``, the
    ``i``-th of ``n`` PostgreSQL restarts at ``(round(f x D / e) + 1/3) x e``
    with ``f = (i + 1) / (n + 1)`` and ``D = duration_s``, and the ``j``-th of
    ``m`` channel-sim restarts at ``(round(f x D / e) + 2/3) x e`` with
    ``f = (j + 0.6) / m``; one that falls at or past the end is left out.
    With 300 s and 15 s: kills at 15, 30, ... 285 (19), PostgreSQL at
    ``(10 + 1/3) x 15 = 155``, the channel-sim at ``(12 + 2/3) x 15 = 190``.
    """
    every = plan.kill_every_s
    faults = []
    k = 1
    while k * every < duration_s:
        faults.append(Fault(k * every, "server_kill", f"worker-{(k - 1) % plan.server_workers}"))
        k += 1

    def between(fraction: float, third: int) -> float:
        return (round(fraction * duration_s / every) + third / 3) * every

    for i in range(plan.pg_restarts):
        at = between((i + 1) / (plan.pg_restarts + 1), 1)
        if at < duration_s:
            faults.append(Fault(at, "postgres_restart", "postgres"))
    for j in range(plan.sim_restarts):
        at = between((j + 0.6) / plan.sim_restarts, 2)
        if at < duration_s:
            faults.append(Fault(at, "channel_sim_restart", "channel-sim"))
    return sorted(faults, key=lambda fault: fault.at_s)


@attrs.define
class FaultLog:
    """The faults done (``at_s`` from the run's start) and the first success after each."""

    began: float = 0.0  # trio time of the run's start
    done: list[dict] = attrs.field(factory=list)
    _waiting: list[dict] = attrs.field(factory=list)

    def fault(self, kind: str, target: str, now: float) -> dict:
        """Note a fault starting at trio time ``now``; the returned row is filled in later."""
        row = {"kind": kind, "target": target, "at_s": round(now - self.began, 3)}
        row["_at"] = now
        self.done.append(row)
        self._waiting.append(row)
        return row

    def success(self, now: float) -> None:
        """A request succeeded at trio time ``now``: the first after each waiting fault."""
        if not self._waiting:
            return
        still = []
        for row in self._waiting:
            if now > row["_at"]:
                row["first_success_s"] = round(now - row["_at"], 3)
            else:
                still.append(row)
        self._waiting = still

    def rows(self) -> list[dict]:
        """The faults, JSON-safe."""
        return [{k: v for k, v in row.items() if not k.startswith("_")} for row in self.done]


def fault_summary(rows: list[dict]) -> dict:
    """Per kind: count, and the p50 and max of the time to the first success after it."""
    out = {}
    for kind in KINDS:
        mine = [row for row in rows if row["kind"] == kind]
        waits = sorted(row["first_success_s"] for row in mine if "first_success_s" in row)
        out[kind] = {
            "count": len(mine),
            "first_success_p50_s": _quantile(waits, 0.5),
            "first_success_max_s": waits[-1] if waits else None,
            "without_success": len(mine) - len(waits),
        }
    return out


def _quantile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``values`` (nearest rank), None when empty."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


class ChaosCluster:
    """The load test's own PostgreSQL, server workers and channel-sim, to break on purpose.

    Blocking methods: call them from a thread. Every process is started here
    and stopped by its pid (:meth:`close`).
    """

    def __init__(self, workdir: Path, plan: ChaosPlan, *, env: dict[str, str], seed: int) -> None:
        self.workdir = workdir
        self.plan = plan
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, **env}
        self.seed = seed
        self.embedded = EmbeddedPostgres(self.data_dir)
        self.dsn = ""
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.sim_port = free_port()
        self.sim_url = f"ws://127.0.0.1:{self.sim_port}"
        self.keys_path = self.data_dir / "channel_keys.json"
        self.workers: list[subprocess.Popen | None] = [None] * plan.server_workers
        self.sim: subprocess.Popen | None = None
        self._starts = 0
        self._sim_args: list[str] = []

    def start(self, catalog: Path, devices: dict[str, str], sim_args: list[str]) -> dict:
        """PostgreSQL, the catalog, every worker, the devices, the channel-sim; the tokens."""
        self.dsn = self.embedded.start()
        subprocess.run(
            scenic_command("catalog", "load", str(catalog), "--dsn", self.dsn),
            check=True,
            capture_output=True,
            timeout=120,
            env=self.env,
        )
        for index in range(len(self.workers)):
            self.start_worker(index)
        tokens = register_devices(self.dsn, devices)
        self._sim_args = [
            *sim_args,
            "--server",
            self.url,
            "--device",
            "lt-channel",
            "--token",
            tokens["lt-channel"],
            "--listen-port",
            str(self.sim_port),
            "--keys",
            str(self.keys_path),
            "--state",
            str(self.workdir / "channel-sim.state"),
        ]
        if self.plan.sim_drop_every_s:
            self._sim_args += ["--drop-every-s", str(self.plan.sim_drop_every_s)]
        self.start_sim()
        return tokens

    def start_worker(self, index: int, timeout_s: float = 120.0) -> float:
        """Start worker ``index`` on the shared port; seconds until it listens.

        A start that exits before it listens (PostgreSQL still in crash
        recovery, say) is tried again after half a second, up to ``timeout_s``.
        """
        began = time.perf_counter()
        while True:
            try:
                self._start_worker_once(index, began + timeout_s)
                return time.perf_counter() - began
            except RuntimeError:
                if time.perf_counter() > began + timeout_s:
                    raise
                time.sleep(0.5)

    def _start_worker_once(self, index: int, deadline: float) -> None:
        self._starts += 1
        log_path = self.workdir / f"server-{index}.{self._starts:03d}.log"
        with open(log_path, "w") as log_file:
            process = subprocess.Popen(
                scenic_command(
                    "serve",
                    "--dsn",
                    self.dsn,
                    "--data-dir",
                    str(self.data_dir),
                    "--port",
                    str(self.port),
                    "--channel-sim-url",
                    self.sim_url,
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**self.env, "SCENIC_REUSE_PORT": "1"},
            )
        self.workers[index] = process
        _wait_for_line(log_path, process, deadline, '"server.listening"')

    def kill_worker(self, index: int) -> float:
        """``kill -9`` worker ``index`` (a process started here), start it again; its downtime."""
        process = self.workers[index]
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        return self.start_worker(index)

    def exited_workers(self) -> list[int]:
        """The workers whose process has exited by itself (a kill here restarts its own)."""
        return [i for i, p in enumerate(self.workers) if p is not None and p.poll() is not None]

    def restart_postgres(self) -> float:
        """Crash PostgreSQL (immediate stop) and start it again; seconds until it accepts."""
        return self.embedded.crash_restart(self.plan.pg_down_s)

    def start_sim(self, timeout_s: float = 60.0) -> float:
        """Start the channel-sim on its port; seconds until it listens."""
        self._starts += 1
        log_path = self.workdir / f"channel-sim.{self._starts:03d}.log"
        began = time.perf_counter()
        with open(log_path, "w") as log_file:
            self.sim = subprocess.Popen(
                scenic_command("channel-sim", *self._sim_args),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        _wait_for_line(log_path, self.sim, began + timeout_s, '"channel_sim.listening"')
        return time.perf_counter() - began

    def restart_sim(self) -> float:
        """Stop the channel-sim (SIGTERM: it saves its books) and start it again; downtime."""
        began = time.perf_counter()
        if self.sim is not None:
            stop_process(self.sim)
        self.start_sim()
        return time.perf_counter() - began

    def logs_tail(self, lines: int = 20) -> str:
        """The last lines of every log here, for a failure message."""
        out = []
        for path in sorted(self.workdir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"== {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def close(self) -> None:
        """Stop the channel-sim and the workers (by pid), then PostgreSQL."""
        for process in [self.sim, *self.workers]:
            if process is not None:
                stop_process(process)
        self.embedded.stop()


def _wait_for_line(log_path: Path, process: subprocess.Popen, deadline: float, marker: str):
    """Wait until ``log_path`` has a line with ``marker``; RuntimeError with its tail if not."""
    while time.perf_counter() < deadline:
        text = log_path.read_text(errors="replace")
        for line in text.splitlines():
            if marker in line:
                return json.loads(line)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"no {marker} line in {log_path.name}:\n{tail}")
