"""Ops for gates: scans streamed by gate agents, passages, modes, occupancy, offline journals.

``ticket.scan`` is the hot path: the code's tag is checked (one HMAC), the
scan goes to the ticket's actor (a forged code's to the gate's own actor),
which decides it with the pure rules, records it through group commit and
leaves the gate waiting for the passage of a grant; the reply goes out after
the commit. Gates pipeline their scans; each reply carries the scan id.
The handlers only translate: every rule is in actors/.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.gates.domain import Passage, ScanForgedCode, SetMode
from actors.tickets.actor import ScanOutcome
from actors.tickets.codes import ForgedCode
from actors.tickets.domain import JournalEntry, OfflineDecision, ScanTicket
from actors.tickets.rules import MODES, REASONS, Verdict
from server.errors import BadRequest
from server.ops import DEVICE_ID_PATTERN, OpContext, OpGroup
from server.schema import Arg
from server.storage import tickets as ticket_queries

if TYPE_CHECKING:
    from server.wiring import Services

log = logging.getLogger("scenic.gates")
security_log = logging.getLogger("scenic.security")

SCAN_ID = Arg("scan_id", "text", max_len=40)
CODE = Arg("code", "text", max_len=512)
#: a scan's time may be this far from the server's clock (gate clocks drift)
MAX_CLOCK_SKEW = timedelta(minutes=10)
JOURNAL_FIELDS = (
    SCAN_ID,
    CODE,
    Arg("at", "number", low=0),
    Arg("direction", "text", pattern=r"entry|exit"),
    Arg("granted", "bool"),
    Arg("reason", "text", pattern="|".join(REASONS)),
    Arg("passed", "bool", required=False),
)


def verdict_reply(scan_id: str, verdict: Verdict, ticket_id: str | None, timeout_s: float) -> dict:
    """The reply to a scan (docs/gates.md)."""
    return {
        "scan_id": scan_id,
        "granted": verdict.granted,
        "reason": verdict.reason,
        "text_zh": verdict.text_zh,
        "text_en": verdict.text_en,
        "entries_left": verdict.entries_left,
        "ticket": ticket_id,
        "passage_timeout_s": timeout_s if verdict.granted else None,
    }


async def scan_ticket(
    services: Services,
    gate_id: str,
    scan_id: str,
    code: str,
    at: datetime,
    direction: str,
    offline: OfflineDecision | None = None,
) -> ScanOutcome:
    """Decide and record one scan (online, or an entry of an offline gate's journal).

    The scan goes to the actor of the ticket its code names, or, for a code
    this site did not make, to the gate's own actor. An online scan is
    judged with the gate's mode now; a journal entry as a gate in normal
    mode would judge it (:func:`actors.tickets.domain.in_normal_mode`). A
    granted online scan leaves the gate waiting for its passage.
    """
    outcome = await _decide_scan(services, gate_id, scan_id, code, at, direction, offline)
    services.metrics.scanned(outcome.verdict.reason)
    return outcome


async def _decide_scan(
    services: Services,
    gate_id: str,
    scan_id: str,
    code: str,
    at: datetime,
    direction: str,
    offline: OfflineDecision | None,
) -> ScanOutcome:
    desk = services.gates
    now = services.clock()
    scan = ScanTicket(desk.view(gate_id), scan_id, direction, at, now, desk.moment(at), code[:64])
    command = scan if offline is None else JournalEntry(scan, offline)
    try:
        ticket_id = services.ticket_id_of_code(code)
    except ForgedCode as exc:
        security_log.warning(
            "scan.forged",
            extra={
                "gate": gate_id,
                "scan_id": scan_id,
                "detail": exc.message,
                "offline": offline is not None,
                "offline_granted": offline is not None and offline.granted,
            },
        )
        return await services.registry.ask(
            ("gate", gate_id), ScanForgedCode(command, exc.message), services.config.ask_timeout_s
        )
    return await services.registry.ask(
        ("ticket", ticket_id), command, services.config.ask_timeout_s
    )


OPS = OpGroup()


@OPS.op(
    "ticket.scan",
    roles={"gate"},
    args=(
        SCAN_ID,
        CODE,
        Arg("at", "number", low=0),
        Arg("direction", "text", required=False, pattern=r"entry|exit", default="entry"),
    ),
)
async def ticket_scan(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A gate scanned a code: granted or denied, why, and the entries left."""
    services = ctx.services
    at = _scan_time(services, args["at"])
    outcome = await scan_ticket(
        services, ctx.device_id, args["scan_id"], args["code"], at, args["direction"]
    )
    timeout_s = services.gates.passage_timeout_s
    return verdict_reply(args["scan_id"], outcome.verdict, outcome.ticket_id, timeout_s)


@OPS.op("gate.passage", roles={"gate"}, args=(SCAN_ID, Arg("passed", "bool")))
async def gate_passage(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """The turnstile reports whether the visitor of a granted scan walked through."""
    services = ctx.services
    settlement = await services.registry.ask(
        ("gate", ctx.device_id),
        Passage(args["scan_id"], args["passed"], services.clock()),
        services.config.ask_timeout_s,
    )
    return await services.gates.settle(settlement)


@OPS.op("gate.config", roles={"gate", "admin"})
async def gate_config(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """What a gate agent needs to work, online and offline."""
    services = ctx.services
    catalog = services.current_catalog()
    gate = services.gates.view(ctx.device_id)
    now = services.clock()
    return {
        "gate": gate.gate_id,
        "zone": gate.zone,
        "mode": gate.mode,
        "products_allowed": None if gate.products is None else sorted(gate.products),
        "passage_timeout_s": services.gates.passage_timeout_s,
        "timezone": catalog.timezone,
        "today": services.gates.moment(now).today.isoformat(),
        "server_time": now.timestamp(),
        "slots": [
            {
                "slot": s.slot_id,
                "starts": s.starts.isoformat("minutes"),
                "ends": s.ends.isoformat("minutes"),
            }
            for s in catalog.slots
        ],
        "products": [
            {
                "product": p.product_id,
                "entries": p.entries_allowed,
                "zones": list(p.zones),
                "anti_passback": p.anti_passback,
            }
            for p in catalog.products
        ],
        "keys": [
            {"key_id": key_id, "public_key": public}
            for key_id, public in services.keyring.public_keys().items()
        ],
    }


@OPS.op(
    "gate.fault",
    roles={"gate"},
    args=(
        Arg("device", "text", pattern=r"scanner|turnstile|display|agent"),
        Arg("fault", "text", max_len=40),
        Arg("detail", "text", required=False, max_len=200, default=""),
    ),
)
async def gate_fault(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """A gate agent reports a device fault; admins are told at once."""
    services = ctx.services
    log.warning(
        "gate.fault",
        extra={
            "gate": ctx.device_id,
            "device_kind": args["device"],
            "fault": args["fault"],
            "detail": args["detail"],
        },
    )
    data = {"gate": ctx.device_id, **args, "at": services.clock().timestamp()}
    services.push_to_role("admin", "gate.fault", data)
    return {}


@OPS.op(
    "gate.journal",
    roles={"gate"},
    args=(Arg("entries", "list", max_len=500, fields=JOURNAL_FIELDS),),
)
async def gate_journal(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Merge what a gate decided while offline; conflicts are flagged, never lost."""
    services = ctx.services
    merged = repeated = 0
    conflicts = []
    for entry in args["entries"]:
        at = datetime.fromtimestamp(entry["at"], UTC)
        decision = OfflineDecision(entry["granted"], entry["reason"], entry["passed"])
        outcome = await scan_ticket(
            services,
            ctx.device_id,
            entry["scan_id"],
            entry["code"],
            at,
            entry["direction"],
            decision,
        )
        if outcome.repeated:
            repeated += 1
            continue
        merged += 1
        if outcome.conflict is not None:
            conflicts.append(
                {
                    "scan_id": entry["scan_id"],
                    "ticket": outcome.ticket_id,
                    "kind": outcome.conflict,
                }
            )
    return {"merged": merged, "repeated": repeated, "conflicts": conflicts}


@OPS.op(
    "gate.set_mode",
    roles={"admin"},
    args=(
        Arg("gate", "text", max_len=64, pattern=DEVICE_ID_PATTERN),
        Arg("mode", "text", pattern="|".join(MODES)),
    ),
)
async def gate_set_mode(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Set a gate's mode (normal, locked, free passage); the gate is told at once."""
    services = ctx.services
    return await services.registry.ask(
        ("gate", args["gate"]),
        SetMode(args["mode"], ctx.device_id, services.clock()),
        services.config.ask_timeout_s,
    )


@OPS.op("site.occupancy", roles={"admin"})
async def site_occupancy(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Visitors inside each zone now: entries and exits that passed today."""
    return ctx.services.gates.occupancy_view()


@OPS.op(
    "gate.conflicts",
    roles={"admin"},
    args=(Arg("hours", "number", required=False, low=0, high=24 * 366, default=24),),
)
async def gate_conflicts(ctx: OpContext, args: dict[str, Any]) -> dict[str, Any]:
    """Offline admissions the server would have refused, found in the last hours."""
    services = ctx.services
    since = services.clock() - timedelta(hours=args["hours"])
    rows = await services.db.run(ticket_queries.conflicts, since)
    return {
        "conflicts": [
            {**row, "at": row["at"].timestamp(), "found_at": row["found_at"].timestamp()}
            for row in rows
        ]
    }


def _scan_time(services: Services, at: float) -> datetime:
    moment = datetime.fromtimestamp(at, UTC)
    if abs(moment - services.clock()) > MAX_CLOCK_SKEW:
        raise BadRequest(
            f"scan time {moment.isoformat()} is more than {MAX_CLOCK_SKEW} from the server's clock;"
            " check the gate's clock (offline scans go in gate.journal)"
        )
    return moment
