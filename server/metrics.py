"""What a server counts for Prometheus: :class:`ServerMetrics`, one per server, never global.

The counters and histograms are bumped where things happen (a request
answered, a scan decided, a payment confirmed, a refund refused, a batch
committed); the gauges of live state (connections by role, actors and
their mailboxes, the outbox's backlog) are read when the endpoint is
scraped (:meth:`ServerMetrics.refresh`). Each server owns its own
``CollectorRegistry``, so two servers in one process (the tests) never mix
their figures. docs/metrics.md lists every metric with its labels.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.storage.reconciliation import unresolved as recon_unresolved

#: request latency buckets, seconds (a scan answers in milliseconds; a refund may take seconds)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: group-commit batch sizes, writes
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: group-commit commit times, seconds
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
#: the op label of a request whose op the server does not know (keeps label values bounded)
UNKNOWN_OP = "unknown"


class ServerMetrics:
    """Every metric of one server, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "scenic_requests",
            "Requests answered, by op and outcome (ok, or the error code)",
            ("op", "outcome"),
            registry=r,
        )
        self.request_seconds = Histogram(
            "scenic_request_seconds",
            "Time from a request's admission to its reply, by op",
            ("op",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connections = Gauge(
            "scenic_connections", "Authenticated connections, by role", ("role",), registry=r
        )
        self.actors = Gauge("scenic_actors_live", "Live actors, by kind", ("kind",), registry=r)
        self.mailbox = Gauge(
            "scenic_actor_mailbox_depth",
            "Commands waiting in live actors' mailboxes, by kind",
            ("kind",),
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "scenic_outbox_backlog",
            "Outbox items not delivered yet (failed ones apart)",
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "scenic_outbox_oldest_age_seconds",
            "Age of the oldest undelivered outbox item (0 when none)",
            registry=r,
        )
        self.outbox_failed = Gauge(
            "scenic_outbox_failed",
            "Outbox items refused for good, waiting for a person",
            registry=r,
        )
        self.batch_size = Histogram(
            "scenic_group_commit_batch_size",
            "Writes per group-commit batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "scenic_group_commit_seconds",
            "Time to write and commit one group-commit batch",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.scans = Counter(
            "scenic_scans", "Ticket scans decided, by verdict reason", ("verdict",), registry=r
        )
        self.payments = Counter(
            "scenic_payments",
            "Payment confirmations, by channel and outcome (captured, held, refunding, refused)",
            ("channel", "outcome"),
            registry=r,
        )
        self.refunds_failed = Counter(
            "scenic_refunds_failed",
            "Refunds a channel refused for good, by channel",
            ("channel",),
            registry=r,
        )

        self.recon_differences = Gauge(
            "scenic_recon_differences_unresolved",
            "Reconciliation differences open for a person, by channel",
            ("channel",),
            registry=r,
        )

    def request_done(self, op: str, outcome: str, seconds: float) -> None:
        """A request of ``op`` was answered with ``outcome`` (``ok`` or its error code)."""
        self.requests.labels(op, outcome).inc()
        self.request_seconds.labels(op).observe(seconds)

    def batch_committed(self, writes: int, seconds: float) -> None:
        """Group commit wrote a batch of ``writes`` in ``seconds``."""
        self.batch_size.observe(writes)
        self.commit_seconds.observe(seconds)

    def scanned(self, verdict: str) -> None:
        """A scan was decided: ``verdict`` is the verdict's reason (``ok``, ``used_up``...)."""
        self.scans.labels(verdict).inc()

    def payment(self, channel: str, outcome: str) -> None:
        """A payment confirmation of ``channel`` ended in ``outcome``."""
        self.payments.labels(channel, outcome).inc()

    def refund_failed(self, channel: str) -> None:
        """A refund by ``channel`` was refused for good."""
        self.refunds_failed.labels(channel).inc()

    async def refresh(
        self,
        roles: Callable[[], dict[str, int]],
        actors: Callable[[], tuple[dict[str, int], dict[str, int]]],
        run: Callable[..., Any],
        now: datetime,
    ) -> None:
        """Read the live gauges: connections by role, actors and mailboxes, the outbox, the
        reconciliation differences still open."""
        _set_all(self.connections, roles())
        live, depth = actors()
        _set_all(self.actors, live)
        _set_all(self.mailbox, depth)
        backlog, oldest, failed = await run(outbox_state)
        self.outbox_backlog.set(backlog)
        self.outbox_oldest.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
        self.outbox_failed.set(failed)
        self.recon_unresolved(await run(recon_unresolved))

    def recon_unresolved(self, by_channel: dict[str, int]) -> None:
        """Set the open reconciliation differences per channel (a channel not named reads 0)."""
        _set_all(self.recon_differences, by_channel)

    def text(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


def _set_all(gauge: Gauge, values: dict[str, int]) -> None:
    """Set one labelled gauge to ``values``; labels seen before and gone now read 0."""
    seen = {labels[0] for labels in _label_values(gauge)}
    for label in seen - set(values):
        gauge.labels(label).set(0)
    for label, value in values.items():
        gauge.labels(label).set(value)


def _label_values(gauge: Gauge) -> list[tuple[str, ...]]:
    return [
        tuple(sample.labels[name] for name in gauge._labelnames)
        for metric in gauge.collect()
        for sample in metric.samples
    ]


async def outbox_state(conn: asyncpg.Connection) -> tuple[int, datetime | None, int]:
    """The outbox now: items undelivered, the oldest one's creation, items failed for good."""
    row = await conn.fetchrow(
        """select count(*) filter (where done_at is null and failed_at is null) as backlog,
                  min(created_at) filter (where done_at is null and failed_at is null) as oldest,
                  count(*) filter (where failed_at is not null and done_at is null) as failed
             from outbox"""
    )
    return row["backlog"], row["oldest"], row["failed"]
