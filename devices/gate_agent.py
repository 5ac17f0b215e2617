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

One passage at a time: a code scanned while the previous visitor is still
in the arms waits until that passage ends. The welcome is shown only once
the turnstile has acknowledged the OPEN; when it refuses (busy, locked) or
is away, the display asks the visitor to wait or to see staff, the entry is
given back, and the fault is reported. When the outcome of a passage cannot
be learned (no reply to the OPEN, no PASSED or TIMEOUT in time), the visitor
is counted as walked through: an entry wrongly kept costs a visitor a word
with staff, an entry wrongly given back lets a second person in.

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
from devices.background import background_nursery
from devices.display import Display, open_display
from devices.errors import DeviceError, DeviceRefused, DeviceTimeout
from devices.journal import Journal
from devices.offline import GateSnapshot, LocalUse, decide_offline, grant_of
from devices.scanner import open_scanner
from devices.turnstile import Fault, Passed, TimedOut, Turnstile, open_turnstile

log = logging.getLogger("scenic.gate_agent")

#: the most journal entries one ``gate.journal`` request carries
JOURNAL_BATCH = 500
#: what the display shows when no verdict is on it
IDLE_TEXT = ("请扫码", "Please scan ticket")
#: a grant the turnstile refused as busy: the entry was given back, scan again
WAIT_TEXT = ("请稍候再扫码", "Please wait, rescan")
#: a grant the turnstile did not confirm (locked, away, no reply)
STAFF_TEXT = ("请找工作人员", "Please see staff")
#: remote errors worth trying a fault report again for
_TRANSIENT = frozenset(("overloaded", "timeout", "internal"))


class GateStartError(Exception):
    """The agent cannot start: its server refused it, or is out of reach with no saved config."""


def next_ref(ref: int) -> int:
    """The turnstile ref after ``ref``: 1..65535, after 65535 comes 1; 0 is never used."""
    return ref % 0xFFFF + 1


def display_lines(
    text_zh: str, text_en: str, entries_left: int | None, width: int
) -> tuple[str, str]:
    """A verdict as the display shows it: Chinese on top, English below.

    For a grant with a known count, `` (N left)`` follows the English text,
    which is cut so that the count still fits in ``width`` characters.
    """
    if entries_left is None:
        return text_zh, text_en
    left = f" ({entries_left} left)"
    return text_zh, text_en[: max(width - len(left), 0)].rstrip() + left


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
    #: how long after an OPEN the outcome may take before the visitor counts as through
    passage_wait_s: float = 12.0
    #: how long a verdict stays on the display before the idle text returns
    verdict_shown_s: float = 3.0


@attrs.frozen
class ScanResult:
    """What the agent did with one code (also handed to ``on_scan`` observers).

    ``turnstile`` is None for a refusal, ``"opened"`` when the turnstile
    acknowledged the OPEN, else why it did not: ``"busy"``, ``"locked"``,
    ``"bad_command"``, ``"unplugged"`` or ``"no_reply"``. ``shown`` is what
    the display was given.
    """

    scan_id: str
    code: str
    granted: bool
    reason: str
    text_zh: str
    text_en: str
    entries_left: int | None
    online: bool
    turnstile: str | None = None
    shown: tuple[str, str] = ("", "")


@attrs.frozen(eq=False)
class _Passage:
    """A grant the turnstile was told to open, waiting for its outcome."""

    ref: int
    scan_id: str
    ticket_id: str | None
    direction: str
    online: bool
    consumed: bool
    #: whether this gate took the ticket to be inside before the grant (a give-back restores it)
    was_inside: bool


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
        self._ref = secrets.randbelow(0xFFFF)  # refs start anywhere, so a restart reuses none
        #: turnstile ref -> the passage waiting for its outcome (one at a time)
        self._opened: dict[int, _Passage] = {}
        self._lane = trio.lowlevel.ParkingLot()  # woken when a passage ends
        self._turnstile: Turnstile | None = None
        self._display: Display | None = None
        self._idle_at: float | None = None
        self._shown = trio.lowlevel.ParkingLot()
        self._nursery: trio.Nursery | None = None
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
        """Drive the devices and keep the server link up, until cancelled.

        Raises :class:`GateStartError` when the first connection is refused
        (wrong token, unknown or revoked gate), or fails while there is no
        saved ``gate.config`` to work offline with. Once the agent has
        started, losing the server never ends it.
        """
        config = self.config
        async with (
            open_scanner(config.scanner_port, on_fault=self._device_fault) as scanner,
            open_turnstile(config.turnstile_port, on_fault=self._device_fault) as turnstile,
            _maybe_display(config.display_port, self._device_fault) as display,
            background_nursery() as nursery,
        ):
            self._turnstile, self._display, self._nursery = turnstile, display, nursery
            nursery.start_soon(self._keep_linked)
            nursery.start_soon(self._turnstile_events, turnstile)
            nursery.start_soon(self._report_faults)
            if display is not None:
                nursery.start_soon(self._keep_idle_text, display)
            task_status.started()
            async for code in scanner.codes():
                await self._handle_code(code)

    async def _keep_linked(self) -> None:
        """Stay connected to the server; on each connection: config, journal, mode events."""
        delay = 0.2
        first = True
        while True:
            try:
                async with connect(
                    self.config.server_url, self.config.gate_id, self.config.token, timeout=5
                ) as client:
                    await self._on_connected(client)
                    first, delay = False, 0.2
                    async for event, data in client.events():
                        if event == "gate.mode":
                            await self._apply_mode(data["mode"])
            except Exception as exc:  # refused, unreachable, or a server going away mid-way
                if first:
                    self._check_first_link(exc)
                log.warning(
                    "agent.offline", extra={"gate": self.config.gate_id, "error": repr(exc)[:200]}
                )
            self.client = None
            if self.online.is_set():
                self.online = trio.Event()
            await trio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_max_s)

    def _check_first_link(self, exc: Exception) -> None:
        """Raise GateStartError if the first connection's failure means the agent cannot work."""
        url, gate = self.config.server_url, self.config.gate_id
        if isinstance(exc, RemoteError) and exc.code == "bad_credentials":
            raise GateStartError(
                f"the server at {url} refused gate {gate} (wrong token, or the gate is not"
                f" registered or revoked): check --gate and --token, or register it with"
                f" 'scenic device add {gate} --role gate'"
            ) from exc
        if self.snapshot is None:
            cause = exc.__cause__ or exc
            why = str(cause) or type(cause).__name__
            raise GateStartError(
                f"cannot reach the server at {url} ({why}) and there is no saved gate config"
                f" to work offline with: start the server (scenic serve) or check --server"
            ) from exc
        log.warning("agent.starting_offline", extra={"gate": gate, "error": repr(exc)[:200]})

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
        while True:
            for first in range(0, len(entries), JOURNAL_BATCH):
                reply = await client.request(
                    "gate.journal", timeout=60, entries=entries[first : first + JOURNAL_BATCH]
                )
                conflicts += reply["conflicts"]
            # Scans judged while the upload was under way were journalled meanwhile: send
            # again (a merge repeats harmlessly) until none came, then move it aside, with no
            # await between the look and the move.
            now = self.journal.pending()
            if now == entries:
                break
            entries = now
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
            self._device_fault("turnstile", f"mode {mode} not applied", str(exc))

    # -- one code ------------------------------------------------------------------------

    async def _handle_code(self, code: str) -> None:
        await self._lane_free()
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
            grant = grant_of(direction)  # what the server's grant did, as far as the reply says
            self.stats["online"] += 1
        else:
            result, ticket_id, grant = self._judge_offline(scan_id, code, at, direction)
            self.stats["offline"] += 1
        turnstile = None
        shown = self._lines(result)
        if result.granted:
            was_inside = False
            if ticket_id is not None:
                was_inside = self.use.admitted(ticket_id, grant).inside
            self._ref = next_ref(self._ref)
            passage = _Passage(
                self._ref,
                scan_id,
                ticket_id,
                direction,
                result.online,
                grant.consumed and ticket_id is not None,
                was_inside,
            )
            turnstile = await self._open(passage)
            if turnstile != "opened":
                shown = WAIT_TEXT if turnstile == "busy" else STAFF_TEXT
        await self._show(shown)
        if self.on_scan is not None:
            self.on_scan(attrs.evolve(result, turnstile=turnstile, shown=shown))

    async def _lane_free(self) -> None:
        """Wait until no passage is open: one visitor in the arms at a time."""
        while self._opened:
            await self._lane.park()

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
        return result, ticket_id, verdict

    def _lines(self, result: ScanResult) -> tuple[str, str]:
        width = self._display.width if self._display is not None else 20
        left = result.entries_left if result.granted else None
        return display_lines(result.text_zh, result.text_en, left, width)

    async def _show(self, lines: tuple[str, str]) -> None:
        """Show a verdict; the idle text comes back ``verdict_shown_s`` later."""
        if self._display is None:
            return
        self._idle_at = trio.current_time() + self.config.verdict_shown_s
        self._shown.unpark_all()
        await self._display.show(*lines)

    async def _keep_idle_text(self, display: Display) -> None:
        await display.show(*IDLE_TEXT)
        while True:
            if self._idle_at is None:
                await self._shown.park()
                continue
            with trio.move_on_at(self._idle_at):
                await self._shown.park()
                continue
            self._idle_at = None
            await display.show(*IDLE_TEXT)

    async def _open(self, passage: _Passage) -> str:
        """Open the turnstile for ``passage``; "opened", or why it did not.

        A refusal (NAK) or a command that never reached the controller gives
        the entry back at once. When the controller may have opened (no
        reply, or unplugged after the command went out), the outcome is
        awaited as usual and counted as walked through if none comes.
        """
        assert self._turnstile is not None and self._nursery is not None
        self._opened[passage.ref] = passage
        self._nursery.start_soon(self._outcome_deadline, passage)
        try:
            if passage.direction == "entry":
                await self._turnstile.open_entry(passage.ref)
            else:
                await self._turnstile.open_exit(passage.ref)
        except DeviceRefused as exc:
            failure, given_back, error = exc.reason, True, exc
        except DeviceError as exc:
            failure = "no_reply" if isinstance(exc, DeviceTimeout) else "unplugged"
            given_back, error = not exc.may_have_acted, exc
        else:
            return "opened"
        fault = f"did not open: {failure}" if given_back else f"open not confirmed: {failure}"
        self._device_fault("turnstile", fault, f"{error}; scan {passage.scan_id}")
        if given_back:
            await self._settle(passage.ref, passed=False)
        return failure

    async def _outcome_deadline(self, passage: _Passage) -> None:
        await trio.sleep(self.config.passage_wait_s)
        if self._opened.get(passage.ref) is passage:
            log.warning(
                "agent.passage_unknown",
                extra={"gate": self.config.gate_id, "scan_id": passage.scan_id},
            )
            await self._settle(passage.ref, passed=True)  # unknown: counted as walked through

    # -- turnstile events -------------------------------------------------------------

    async def _turnstile_events(self, turnstile: Turnstile) -> None:
        async for event in turnstile.events():
            if isinstance(event, Passed):
                await self._settle(event.ref, passed=True)
            elif isinstance(event, TimedOut):
                await self._settle(event.ref, passed=False)
            elif isinstance(event, Fault):
                self._device_fault("turnstile", event.code.name.lower(), event.detail)

    async def _settle(self, ref: int, passed: bool) -> None:
        passage = self._opened.pop(ref, None)
        if passage is None:
            return  # an outcome already settled, or of a passage before this agent started
        self._lane.unpark_all()
        if not passed and passage.ticket_id is not None:
            self.use.given_back(passage.ticket_id, passage.consumed, passage.was_inside)
        if not passage.online:
            self.journal.passage(passage.scan_id, passed)
            return
        client = self.client
        if client is None:  # the server counts an unreported passage as walked through
            log.info("agent.passage_unreported", extra={"scan_id": passage.scan_id})
            return
        try:
            await client.request("gate.passage", timeout=5, scan_id=passage.scan_id, passed=passed)
        except (ConnectionLost, RemoteError, trio.TooSlowError) as exc:
            log.info(
                "agent.passage_unreported", extra={"scan_id": passage.scan_id, "error": repr(exc)}
            )

    def _device_fault(self, device: str, fault: str, detail: str = "") -> None:
        """A device reports trouble: log it and tell the server when it can hear.

        ``fault`` is a short text (at most 40 characters), ``detail`` the rest.
        """
        self.stats["faults"] += 1
        log.warning(
            "agent.device_fault",
            extra={
                "gate": self.config.gate_id,
                "device_kind": device,
                "fault": fault,
                "detail": detail,
            },
        )
        try:
            self._fault_send.send_nowait((device, fault[:40], detail[:200]))
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
                except RemoteError as exc:
                    if exc.code not in _TRANSIENT:  # the server will never take this one
                        log.error(
                            "agent.fault_unreported", extra={"fault": fault, "error": exc.code}
                        )
                        break
                    await trio.sleep(1)
                except (ConnectionLost, trio.TooSlowError):
                    await trio.sleep(1)


def _maybe_display(port, on_fault):
    return contextlib.nullcontext() if port is None else open_display(port, on_fault=on_fault)
