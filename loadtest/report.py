"""The load test's report: JSON for machines, Markdown and two charts for people.

:func:`write_report` takes what the run produced (the recorder's
:meth:`~loadtest.metrics.Recorder.summary`, the audit of the server's promises
and free-form metadata) and writes into one directory:

* ``report.json``: all of it, to compare runs or feed other tools;
* ``report.md``: the run at a glance: metadata, a table of request kinds,
  the rentals (made, held, picked up, settled, refused by code, refunds
  confirmed, and the rental ops' p50/p99), counters, every audit check
  (``ok`` or ``FAIL`` with its first offenders), and the charts;
* ``throughput.png``: completions per second over time, one line per kind;
* ``latency.png``: p50 (dashed) and p99 (solid) per kind over time, log scale.

The audit is ``{"ok": bool, "checks": [{"name", "promise", "ok", "offenders":
[dict, ...]}]}``. matplotlib is imported only when the charts are drawn, so
importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

MAX_OFFENDERS_SHOWN = 20

_KIND_COLUMNS = (
    ("count", "count"),
    ("rate/s", "rate_per_s"),
    ("p50 ms", "p50_ms"),
    ("p90 ms", "p90_ms"),
    ("p99 ms", "p99_ms"),
    ("max ms", "max_ms"),
    ("errors", "errors"),
)


def write_report(
    out_dir: Path,
    *,
    title: str,
    summary: dict,
    audit: dict,
    meta: dict,
    sections: Iterable[str] = (),
    charts: Mapping[str, tuple[str, Callable[[dict, Path], None]]] | None = None,
) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created if missing); return them by name.

    The names are the file names: ``"report.json"``, ``"report.md"``,
    ``"throughput.png"`` and ``"latency.png"``, and those of ``charts``
    (file name: (caption, draw(summary, path))). ``sections`` (Markdown) go
    after the run's section. Existing files of the same
    names are replaced. Values in
    ``meta`` that JSON cannot hold (paths, datetimes) are written as text.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        name: out_dir / name
        for name in ("report.json", "report.md", "throughput.png", "latency.png")
    }
    document = {"title": title, "meta": meta, "summary": summary, "audit": audit}
    paths["report.json"].write_text(json.dumps(document, indent=2, default=str) + "\n")
    paths["report.md"].write_text(
        render_markdown(
            title=title,
            summary=summary,
            audit=audit,
            meta=meta,
            charts={"Throughput": "throughput.png", "Latency": "latency.png"}
            | {caption: name for name, (caption, _) in (charts or {}).items()},
            sections=sections,
        )
    )
    plot_throughput(summary, paths["throughput.png"])
    plot_latency(summary, paths["latency.png"])
    for name, (_, draw) in (charts or {}).items():
        paths[name] = out_dir / name
        draw(summary, paths[name])
    return paths


# --- Markdown ---------------------------------------------------------------


def render_markdown(
    *,
    title: str,
    summary: dict,
    audit: dict,
    meta: dict,
    charts: dict[str, str],
    sections: Iterable[str] = (),
) -> str:
    """The Markdown report; ``charts`` maps a caption to an image path relative to it.

    ``sections`` (Markdown) come after the run's own section.
    """
    extra = list(sections)
    sections = [
        f"# {title}",
        _meta_section(meta, summary),
        *extra,
        _kinds_section(summary.get("kinds", {})),
        _rentals_section(summary),
        _counters_section(summary.get("counters", {})),
        _audit_section(audit),
        "## Charts\n\n" + "\n\n".join(f"![{caption}]({path})" for caption, path in charts.items()),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _meta_section(meta: dict, summary: dict) -> str:
    rows = [[key, _cell(value)] for key, value in meta.items()]
    if "elapsed_s" in summary:
        rows.append(["measured", f"{summary['elapsed_s']:.1f} s"])
    return "## Run\n\n" + _table(["", ""], rows) if rows else ""


def _kinds_section(kinds: dict) -> str:
    if not kinds:
        return "## Requests\n\nNo requests were recorded."
    header = ["kind", *(label for label, _ in _KIND_COLUMNS)]
    rows = [
        [f"`{kind}`", *(_cell(s.get(key)) for _, key in _KIND_COLUMNS)] for kind, s in kinds.items()
    ]
    text = "## Requests\n\n" + _table(header, rows)
    failed = [
        f"- `{kind}`: " + ", ".join(f"{code} × {n}" for code, n in s["errors_by_code"].items())
        for kind, s in kinds.items()
        if s.get("errors_by_code")
    ]
    if failed:
        text += "\n\nErrors by code:\n\n" + "\n".join(failed)
    return text


def rentals_figures(summary: dict) -> dict[str, int]:
    """The rentals of a run at a glance, from its counters: made, held, ..., refused by code.

    Keys: ``made``, ``held``, ``picked up``, ``settled``, ``cancelled``,
    ``refunds confirmed``, ``compensation owed``, then ``refused: <code>``
    for each refusal code seen. Empty when the run rented nothing.
    """
    counters = summary.get("counters", {})
    if not any(name.startswith("rental.") for name in counters):
        return {}

    def total(prefix: str) -> int:
        return sum(n for name, n in counters.items() if name.startswith(prefix))

    figures = {
        "made": counters.get("rental.created", 0),
        "held": total("rental.held."),
        "picked up": counters.get("rental.picked_up", 0),
        "settled": counters.get("rental.settled", 0),
        "cancelled": counters.get("rental.cancelled", 0),
        "refunds confirmed": total("rental.refund_confirmed."),
        "compensation owed": counters.get("rental.compensation", 0),
    }
    for name, n in counters.items():
        if name.startswith("rental.refused."):
            figures[f"refused: {name.removeprefix('rental.refused.')}"] = n
    return figures


def _rentals_section(summary: dict) -> str:
    figures = rentals_figures(summary)
    if not figures:
        return ""
    text = "## Rentals\n\n" + _table(
        ["rentals", "count"], [[name, _cell(n)] for name, n in figures.items()]
    )
    kinds = {k: s for k, s in summary.get("kinds", {}).items() if k.startswith("rental.")}
    if kinds:
        text += "\n\n" + _table(
            ["rental op", "count", "p50 ms", "p99 ms", "errors"],
            [
                [
                    f"`{k}`",
                    _cell(s.get("count")),
                    _cell(s.get("p50_ms")),
                    _cell(s.get("p99_ms")),
                    _cell(s.get("errors")),
                ]
                for k, s in kinds.items()
            ],
        )
    return text


def _counters_section(counters: dict) -> str:
    if not counters:
        return ""
    return "## Counters\n\n" + _table(
        ["counter", "value"], [[f"`{name}`", _cell(n)] for name, n in counters.items()]
    )


def _audit_section(audit: dict) -> str:
    checks = audit.get("checks", [])
    verdict = "ok" if audit.get("ok") else "FAIL"
    lines = [f"## Audit: {verdict}"]
    if not checks:
        lines.append("No checks were run.")
    for check in checks:
        lines.append(_check_text(check))
    return "\n\n".join(lines)


def _check_text(check: dict) -> str:
    mark = "ok" if check.get("ok") else "**FAIL**"
    text = f"- {mark} `{check.get('name', '?')}`: {check.get('promise', '')}"
    offenders = check.get("offenders") or []
    if not offenders:
        return text
    shown = offenders[:MAX_OFFENDERS_SHOWN]
    columns = _columns(shown)
    table = _table(columns, [[_cell(row.get(c)) for c in columns] for row in shown])
    text += f"\n\n  {len(offenders)} offending rows"
    if len(offenders) > len(shown):
        text += f", the first {len(shown)}"
    text += ":\n\n" + _indent(table, "  ")
    return text


def _columns(rows: Iterable[dict]) -> list[str]:
    """Every key of ``rows`` in order of first appearance."""
    return list(dict.fromkeys(key for row in rows for key in row))


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (for the other report sections' modules)."""
    return _table(header, rows)


def figure(path: Path):
    """One pyplot axes saved to ``path`` as PNG (for the other report sections' modules)."""
    return _figure(path)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(_escape(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# --- charts -----------------------------------------------------------------


def _timeline(summary: dict) -> list[dict]:
    """The timeline's rows, less a final sliver of an interval (its rate means nothing)."""
    rows = summary.get("timeline", [])
    interval = summary.get("interval_s")
    if rows and interval and rows[-1].get("duration_s", interval) < interval / 2:
        rows = rows[:-1]
    return rows


def _series(rows: list[dict], kind: str, key: str) -> list[float]:
    """``key`` of ``kind`` in each row; NaN where missing, so the line has a gap."""
    values = []
    for row in rows:
        value = row.get("kinds", {}).get(kind, {}).get(key)
        values.append(math.nan if value is None else float(value))
    return values


def _kinds(summary: dict) -> list[tuple[str, str]]:
    """(kind, colour) of each kind that completed something; a kind keeps its colour."""
    kinds = summary.get("kinds", {})
    return [(kind, f"C{n % 10}") for n, kind in enumerate(kinds) if kinds[kind].get("count")]


def plot_throughput(summary: dict, path: Path) -> None:
    """Draw completions per second over time, one line per kind, into PNG ``path``."""
    rows = _timeline(summary)
    times = [row["t_s"] for row in rows]
    with _figure(path) as ax:
        for kind, color in _kinds(summary):
            rates = _series(rows, kind, "rate_per_s")
            ax.plot(times, rates, color=color, label=kind, linewidth=1.2)
        ax.set_title("Throughput")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("completions per second")
        ax.set_ylim(bottom=0)
        _finish(ax, has_data=bool(rows and _kinds(summary)))


def plot_latency(summary: dict, path: Path) -> None:
    """Draw p50 (dashed) and p99 (solid) latency per kind over time, log scale, into ``path``."""
    rows = _timeline(summary)
    times = [row["t_s"] for row in rows]
    with _figure(path) as ax:
        positive = False
        for kind, color in _kinds(summary):
            p50, p99 = _series(rows, kind, "p50_ms"), _series(rows, kind, "p99_ms")
            ax.plot(times, p99, color=color, label=f"{kind} p99", linewidth=1.2)
            ax.plot(times, p50, color=color, label=f"{kind} p50", linewidth=1, linestyle="--")
            positive = positive or any(v > 0 for v in p50 + p99)
        if positive:
            ax.set_yscale("log")
        ax.set_title("Latency")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("ms")
        _finish(ax, has_data=positive)


def _finish(ax: Any, *, has_data: bool) -> None:
    if has_data:
        ax.legend(fontsize="small", loc="best")
        ax.grid(True, which="both", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


@contextlib.contextmanager
def _figure(path: Path) -> Iterator[Any]:
    """One pyplot axes to draw on; saved to ``path`` as PNG, its figure always closed."""
    import matplotlib

    matplotlib.use("Agg")  # no display: must come before pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    try:
        yield ax
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
