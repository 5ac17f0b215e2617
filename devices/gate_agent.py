"""The gate agent: the edge process at a gate, between its devices and the server.

It reads codes from the scanner, streams them to the server as
``ticket.scan``, opens the turnstile on a grant, shows the verdict on the
display, and reports whether the visitor walked through (``gate.passage``).
Mode changes pushed by the server (``gate.mode``) go to the turnstile;
device faults go to the server (``gate.fault``).

When the server cannot be reached (no connection, or no reply within
``scan_timeout_s``), the agent keeps the gate working: it judges codes itself
(:mod:`devices.offline`: signatures checked with the site's public keys,
entitlements counted at this gate), writes every decision to its journal
before acting, and, once the connection is back, uploads the journal with
``gate.journal``; the server merges it and flags conflicts.

Run it with ``scenic gate-agent --gate ID --token T --server ws://...
--scanner PORT --turnstile PORT [--display PORT]``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import trio

from actors.tickets.rules import refused
from clients.client import Client, ConnectionLost, RemoteError, connect
from devices.display import Display, open_display
from devices.errors import DeviceError
from devices.journal import Journal
from devices.offline import GateSnapshot, LocalUse, decide_offline
from devices.scanner import open_scanner
from devices.turnstile import Fault, Passed, TimedOut, Turnstile, open_turnstile

log = logging.getLogger("scenic.gate_agent")

#: the most journal entries one ``gate.journal`` request carries
JOURNAL_BATCH = 500


@attrs.frozen
class AgentConfig:
    """Where the agent's server, devices and files are."""

    gate_id: str
    token: str
    server_url: str
    scanner_port: str | Callable[[], str]
    turnstile_port: str | Callable[[], str]
    display_port: str | Callable[[], str] | None
    state_dir: Path
    direction: str = "entry"
    scan_timeout_s: float = 2.0
    reconnect_max_s: float = 5.0


@attrs.frozen
class ScanResult:
    """What the agent did with one code (also handed to ``on_scan`` observers)."""

    scan_id: str
    code: str
    granted: bool
    reason: str
    text_zh: str
    text_en: str
    entries_left: int | None
    online: bool


class GateAgent:
    """One gate's agent. Run :meth:`run` in a nursery; it works until cancelled."""

    def __init__(
        self, config: AgentConfig, on_scan: Callable[[ScanResult], None] | None = None
    ) -> None:
        self.config = config
        self.on_scan = on_scan
        self.journal = Journal(config.state_dir / f"{config.gate_id}.journal")
        self.use: LocalUse = self.journal.local_use()
        self.snapshot: GateSnapshot | None = self._saved_snapshot()
        self.client: Client | None = None
        self.online = trio.Event()
        self.stats = {"scans": 0, "online": 0, "offline": 0, "uploaded": 0, "faults": 0}
        self._boot = secrets.token_hex(3)
        self._numbers = itertools.count(1)
        #: turnstile ref -> (scan_id, ticket_id, direction, online, consumed)
        self._opened: dict[int, tuple[str, str | None, str, bool, bool]] = {}
        self._turnstile: Turnstile | None = None
        self._display: Display | None = None
        self._fault_send, self._fault_receive = trio.open_memory_channel[tuple[str, str, str]](100)

    # -- state on disk ---------------------------------------------------------------

    @property
    def _snapshot_path(self) -> Path:
        return self.config.state_dir / f"{self.config.gate_id}.config.json"

    def _saved_snapshot(self) -> GateSnapshot | None:
        try:
            return GateSnapshot.from_config(json.loads(self._snapshot_path.read_text()))
        except (OSError, ValueError, KeyError):
            return None

    def _save_snapshot(self, snapshot: GateSnapshot) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self._snapshot_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(snapshot.to_json()))
        temporary.replace(self._snapshot_path)

    # -- running -----------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Drive the devices and keep the server link up, until cancelled."""
        config = self.config
        async with (
            open_scanner(config.scanner_port, on_fault=self._device_fault) as scanner,
            open_turnstile(config.turnstile_port, on_fault=self._device_fault) as turnstile,
            _maybe_display(config.display_port, self._device_fault) as display,
            trio.open_nursery() as nursery,
        ):
            self._turnstile, self._display = turnstile, display
            nursery.start_soon(self._keep_linked)
            nursery.start_soon(self._turnstile_events, turnstile)
            nursery.start_soon(self._report_faults)
            task_status.started()
            async for code in scanner.codes():
                await self._handle_code(code)

    async def _keep_linked(self) -> None:
        """Stay connected to the server; on each connection: config, journal, mode events."""
        delay = 0.2
        while True:
            try:
                async with connect(
                    self.config.server_url, self.config.gate_id, self.config.token, timeout=5
                ) as client:
                    await self._on_connected(client)
                    delay = 0.2
                    async for event, data in client.events():
                        if event == "gate.mode":
                            await self._apply_mode(data["mode"])
            except (OSError, ConnectionLost, RemoteError, trio.TooSlowError) as exc:
                log.warning(
                    "agent.offline", extra={"gate": self.config.gate_id, "error": repr(exc)[:200]}
                )
            except Exception as exc:  # a handshake refused, a server going away mid-way
                log.warning(
                    "agent.link_failed",
                    extra={"gate": self.config.gate_id, "error": repr(exc)[:200]},
                )
            self.client = None
            if self.online.is_set():
                self.online = trio.Event()
            await trio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_s)

    async def _on_connected(self, client: Client) -> None:
        config = await client.request("gate.config", timeout=10)
        self.snapshot = GateSnapshot.from_config(config)
        self._save_snapshot(self.snapshot)
        await self._apply_mode(self.snapshot.mode)
        await self._upload_journal(client)
        self.client = client
        self.online.set()
        log.info("agent.online", extra={"gate": self.config.gate_id})

    async def _upload_journal(self, client: Client) -> None:
        entries = self.journal.pending()
        if not entries:
            return
        conflicts = []
        for first in range(0, len(entries), JOURNAL_BATCH):
            reply = await client.request(
                "gate.journal", timeout=60, entries=entries[first : first + JOURNAL_BATCH]
            )
            conflicts += reply["conflicts"]
        self.journal.mark_uploaded()
        self.stats["uploaded"] += len(entries)
        log.info(
            "agent.journal_uploaded",
            extra={"gate": self.config.gate_id, "entries": len(entries), "conflicts": conflicts},
        )

    async def _apply_mode(self, mode: str) -> None:
        if self.snapshot is not None:
            self.snapshot = attrs.evolve(self.snapshot, mode=mode)
        if self._turnstile is None:
            return
        try:
            await {"locked": self._turnstile.lock, "free": self._turnstile.free}.get(
                mode, self._turnstile.normal
            )()
        except DeviceError as exc:
            self._device_fault("turnstile", f"mode {mode} not applied: {exc}")

    # -- one code ------------------------------------------------------------------------

    async def _handle_code(self, code: str) -> None:
        number = next(self._numbers)
        scan_id = f"{self.config.gate_id}-{self._boot}-{number}"
        at = datetime.now(UTC)
        direction = self.config.direction
        self.stats["scans"] += 1
        reply = await self._ask_server(scan_id, code, at, direction)
        if reply is not None:
            result = ScanResult(
                scan_id,
                code,
                reply["granted"],
                reply["reason"],
                reply["text_zh"],
                reply["text_en"],
                reply["entries_left"],
                True,
            )
            ticket_id = reply.get("ticket")
            consumed = reply["granted"] and direction == "entry" and ticket_id is not None
            self.stats["online"] += 1
        else:
            result, ticket_id, consumed = self._judge_offline(scan_id, code, at, direction)
            self.stats["offline"] += 1
        if result.granted and ticket_id is not None:
            self.use.admitted(ticket_id, direction)
        await self._show(result)
        if result.granted:
            await self._open(number % 65536, scan_id, ticket_id, direction, result.online, consumed)
        if self.on_scan is not None:
            self.on_scan(result)

    async def _ask_server(self, scan_id: str, code: str, at: datetime, direction: str):
        client = self.client
        if client is None:
            return None
        try:
            return await client.request(
                "ticket.scan",
                timeout=self.config.scan_timeout_s,
                scan_id=scan_id,
                code=code[:512],
                at=at.timestamp(),
                direction=direction,
            )
        except RemoteError as exc:
            if exc.code in ("overloaded", "timeout", "internal"):
                return None
            # A refusal of the request itself (bad clock, code too long): deny, journal nothing.
            denied = refused("forged")
            return {
                "granted": False,
                "reason": denied.reason,
                "text_zh": denied.text_zh,
                "text_en": denied.text_en,
                "entries_left": None,
            }
        except (ConnectionLost, trio.TooSlowError):
            return None  # judged offline; the journal carries the same scan id

    def _judge_offline(self, scan_id: str, code: str, at: datetime, direction: str):
        if self.snapshot is None:  # never talked to the server: nothing to judge with
            verdict, ticket_id = refused("unknown"), None
        else:
            verdict, ticket_id = decide_offline(code, self.snapshot, self.use, direction, at)
        self.journal.scan(scan_id, code, at, direction, verdict.granted, verdict.reason, ticket_id)
        result = ScanResult(
            scan_id,
            code,
            verdict.granted,
            verdict.reason,
            verdict.text_zh,
            verdict.text_en,
            verdict.entries_left,
            False,
        )
        return result, ticket_id, verdict.consumed

    async def _show(self, result: ScanResult) -> None:
        if self._display is None:
            return
        second = result.text_en
        if result.granted and result.entries_left is not None:
            second = f"{result.text_en} ({result.entries_left} left)"
        await self._display.show(result.text_zh, second)

    async def _open(
        self,
        ref: int,
        scan_id: str,
        ticket_id: str | None,
        direction: str,
        online: bool,
        consumed: bool,
    ) -> None:
        self._opened[ref] = (scan_id, ticket_id, direction, online, consumed)
        try:
            if direction == "entry":
                await self._turnstile.open_entry(ref)
            else:
                await self._turnstile.open_exit(ref)
        except DeviceError as exc:
            self._device_fault("turnstile", f"did not open: {exc}")
            await self._settle(ref, passed=False)

    # -- turnstile events -------------------------------------------------------------

    async def _turnstile_events(self, turnstile: Turnstile) -> None:
        async for event in turnstile.events():
            if isinstance(event, Passed):
                await self._settle(event.ref, passed=True)
            elif isinstance(event, TimedOut):
                await self._settle(event.ref, passed=False)
            elif isinstance(event, Fault):
                self._device_fault("turnstile", f"{event.code.name.lower()} {event.detail}")

    async def _settle(self, ref: int, passed: bool) -> None:
        opened = self._opened.pop(ref, None)
        if opened is None:
            return
        scan_id, ticket_id, direction, online, consumed = opened
        if not passed and ticket_id is not None:
            self.use.given_back(ticket_id, direction, consumed)
        if not online:
            self.journal.passage(scan_id, passed)
            return
        client = self.client
        if client is None:
            return  # the server gives the entry back itself when the passage times out
        try:
            await client.request("gate.passage", timeout=5, scan_id=scan_id, passed=passed)
        except (ConnectionLost, RemoteError, trio.TooSlowError) as exc:
            log.info("agent.passage_unreported", extra={"scan_id": scan_id, "error": repr(exc)})

    def _device_fault(self, device: str, fault: str) -> None:
        """A device driver reports trouble: log it and tell the server when it can hear."""
        self.stats["faults"] += 1
        log.warning(
            "agent.device_fault",
            extra={"gate": self.config.gate_id, "device_kind": device, "fault": fault},
        )
        try:
            self._fault_send.send_nowait((device, fault.split(" ")[0][:40], fault[:200]))
        except trio.WouldBlock:
            pass  # a storm of faults: the log has them all, the server the first hundred

    async def _report_faults(self) -> None:
        async for device, fault, detail in self._fault_receive:
            while True:
                await self.online.wait()
                client = self.client
                if client is None:
                    continue
                try:
                    await client.request(
                        "gate.fault", timeout=5, device=device, fault=fault, detail=detail
                    )
                    break
                except (ConnectionLost, RemoteError, trio.TooSlowError):
                    await trio.sleep(1)


def _maybe_display(port, on_fault):
    return contextlib.nullcontext() if port is None else open_display(port, on_fault=on_fault)
