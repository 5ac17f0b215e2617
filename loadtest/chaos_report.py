"""The chaos run's part of the report: its faults, its requests, what was lost, and a chart.

``summary["chaos"]`` (made by :func:`loadtest.run.drive`) holds the plan,
every fault done (kind, target, ``at_s`` from the run's start,
``back_after_s`` until the process was back, ``first_success_s`` from the
fault to the first request answered ``ok`` after it), per kind the count and
the p50 and max of that time, the requests sent (every attempt, retries
included) and answered, the acknowledged writes the database lacks, and how
long refunds waited for their channel.
"""

from __future__ import annotations

from pathlib import Path

from loadtest.report import _cell, _series, _timeline, figure, table

#: how each kind of fault is drawn on the chart
STYLE = {
    "server_kill": ("red", "server kill -9"),
    "postgres_restart": ("purple", "PostgreSQL immediate restart"),
    "channel_sim_restart": ("orange", "channel-sim restart"),
    "server_exit": ("grey", "server exited by itself (restarted)"),
}


def chaos_markdown(chaos: dict) -> str:
    """The report's *Chaos* section."""
    plan = chaos["plan"]
    lost = chaos["acknowledged_writes_lost"]
    waits = chaos["refund_waits"]
    head = (
        f"## Chaos\n\nPlan: kill -9 a server process every {plan['kill_every_s']:g} s "
        f"({plan['server_workers']} worker(s)), {plan['pg_restarts']} PostgreSQL restart(s), "
        f"{plan['sim_restarts']} channel-sim restart(s), the channel-sim's link dropped about "
        f"every {plan['sim_drop_every_s']:g} s.\n\n"
    )
    figures = table(
        ["", ""],
        [
            ["requests sent (every attempt)", f"{chaos['requests_sent']:,}"],
            ["requests answered", f"{chaos['requests_answered']:,}"],
            ["attempts retried (same key / scan id)", f"{chaos['retried']:,}"],
            ["requests given up", f"{chaos['given_up']:,}"],
            ["acknowledged writes lost (must be 0)", f"**{lost}**"],
            [
                "refunds: confirmed, waited p50 / p99 / max",
                f"{waits['confirmed']}, {_cell(waits['p50_s'])} / {_cell(waits['p99_s'])} / "
                f"{_cell(waits['max_s'])} s",
            ],
            ["refunds still unconfirmed", f"{waits['pending']}"],
        ],
    )
    kinds = table(
        ["fault", "count", "to first success p50 (s)", "max (s)", "never followed by one"],
        [
            [
                kind,
                str(row["count"]),
                _cell(row["first_success_p50_s"]),
                _cell(row["first_success_max_s"]),
                str(row["without_success"]),
            ]
            for kind, row in chaos["by_kind"].items()
        ],
    )
    faults = table(
        ["at (s)", "fault", "target", "back after (s)", "first success after (s)"],
        [
            [
                f"{row['at_s']:.1f}",
                row["kind"],
                row["target"],
                _cell(row.get("back_after_s")),
                _cell(row.get("first_success_s")),
            ]
            for row in chaos["faults"]
        ],
    )
    return head + figures + "\n\n" + kinds + "\n\n### Faults\n\n" + faults


def plot_chaos_timeline(summary: dict, path: Path) -> None:
    """Requests completed per second (all kinds) with each fault marked, into PNG ``path``."""
    rows = _timeline(summary)
    times = [row["t_s"] for row in rows]
    kinds = [k for k, v in summary.get("kinds", {}).items() if v.get("count")]
    totals = [0.0] * len(rows)
    for kind in kinds:
        for i, value in enumerate(_series(rows, kind, "rate_per_s")):
            if value == value:  # not NaN
                totals[i] += value
    with figure(path) as ax:
        ax.plot(times, totals, color="C0", linewidth=1.2, label="completions per second")
        seen = set()
        for fault in summary["chaos"]["faults"]:
            color, label = STYLE.get(fault["kind"], ("grey", fault["kind"]))
            ax.axvline(
                fault["at_s"],
                color=color,
                linestyle="--",
                linewidth=1,
                label=None if fault["kind"] in seen else label,
            )
            seen.add(fault["kind"])
        ax.set_title("Throughput under faults")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("completions per second")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small", loc="best")
        ax.grid(True, alpha=0.3)
