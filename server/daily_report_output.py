"""The daily report for people: a terminal table, a CSV file, two PNG charts.

Each takes the report's map (:func:`server.daily_report.daily_report`) and
nothing else, so the command line and a program reading ``report.daily``
see the same figures. The table fits in 100 columns and shows money as
yuan with two decimals; the CSV is long form under the rental report's
header ``date,section,key,measure,value`` (fen, counts). The charts
(matplotlib, Agg backend, no display) are entries and exits per hour, and
sales by channel; their labels are Chinese and English when a font with
Chinese glyphs is installed (:func:`server.rental_report_output.cjk_font`),
English alone otherwise, so they never show empty boxes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from server.rental_report_output import (
    cjk_font,
    deposit_csv_rows,
    deposit_lines,
    text_table,
    yuan,
)

#: channel names on the sales chart: (English, Chinese)
CHANNEL_NAMES = {
    "wechat": ("WeChat Pay", "微信支付"),
    "alipay": ("Alipay", "支付宝"),
    "cash": ("Cash", "现金"),
    "card": ("Bank card", "银行卡"),
}
#: the two charts: what each file name ends with
CHARTS = ("entries", "sales")


def _local(epoch: float | None, timezone: str) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, ZoneInfo(timezone)).strftime("%H:%M")


def report_table(report: dict[str, Any]) -> str:
    """The daily report as text for a terminal, every line within 100 columns for the server's ids.

    Nothing is cut off (a figure cut short would be a wrong figure).
    """
    zone = report["timezone"]
    as_of = datetime.fromtimestamp(report["as_of"], ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    sales = report["sales"]
    lines = [
        f"Daily report of {report['date']} ({zone}), as of {as_of}",
        f"Sales: {sales['orders']} orders, {sales['tickets']} tickets, "
        f"{yuan(sales['amount_fen'])} yuan",
    ]
    lines += text_table(
        "Sales by product (yuan)",
        ["product", "tickets", "amount"],
        [[p["product"], str(p["tickets"]), yuan(p["amount_fen"])] for p in sales["by_product"]],
    )
    for part, key, title in (
        ("by_channel", "channel", "Sales by channel (yuan)"),
        ("by_device", "device", "Sales by device (yuan)"),
    ):
        lines += text_table(
            title,
            [key, "orders", "amount"],
            [[s[key], str(s["orders"]), yuan(s["amount_fen"])] for s in sales[part]],
        )
    refunds = report["refunds"]
    lines += text_table(
        f"Refunds asked this day: {refunds['count']}, {yuan(refunds['amount_fen'])} (yuan)",
        ["reason", "count", "amount", "confirmed", "failed"],
        [
            [
                r["reason"].replace("_", " "),
                str(r["count"]),
                yuan(r["amount_fen"]),
                yuan(r["confirmed_fen"]),
                yuan(r["failed_fen"]),
            ]
            for r in refunds["by_reason"]
        ],
    )
    gates = report["gates"]
    busy = [h for h in gates["by_hour"] if h["entries"] or h["exits"]]
    lines += text_table(
        f"Gate passages: {gates['entries']} entries, {gates['exits']} exits; by local hour",
        ["hour", "entries", "exits"],
        [[f"{h['hour']:02d}:00", str(h["entries"]), str(h["exits"])] for h in busy],
    )
    lines += text_table(
        "By gate",
        ["gate", "zone", "entries", "exits", "scans", "refused", "not passed"],
        [
            [g["gate"], g["zone"]]
            + [str(g[k]) for k in ("entries", "exits", "scans", "refused", "not_passed")]
            for g in gates["by_gate"]
        ],
    )
    lines += text_table(
        "Occupancy by zone (from the passages in time order)",
        ["zone", "entries", "exits", "peak", "peak at", "inside at end"],
        [
            [
                o["zone"],
                str(o["entries"]),
                str(o["exits"]),
                str(o["peak"]),
                _local(o["peak_at"], zone),
                str(o["final"]),
            ]
            for o in report["occupancy"]
        ],
    )
    lines += deposit_lines(report["deposits"])
    lines += ["", f"Reconciliation: {_reconciliation_text(report['reconciliation'])}"]
    return "\n".join(lines) + "\n"


def _reconciliation_text(recon: dict[str, Any]) -> str:
    if not recon["run"]:
        return recon["status"]
    return ", ".join(f"{key} {value}" for key, value in recon.items() if key != "run")


def report_csv_rows(report: dict[str, Any]) -> Iterator[list[Any]]:
    """The report's figures as ``[date, section, key, measure, value]`` rows, header first."""
    day = report["date"]
    yield ["date", "section", "key", "measure", "value"]
    sales = report["sales"]
    for measure in ("orders", "tickets", "amount_fen"):
        yield [day, "sales", "all", measure, sales[measure]]
    for part, key, counted in (
        ("by_product", "product", "tickets"),
        ("by_channel", "channel", "orders"),
        ("by_device", "device", "orders"),
    ):
        for entry in sales[part]:
            for measure in (counted, "amount_fen"):
                yield [
                    day,
                    f"sales_{part.removeprefix('by_')}",
                    entry[key],
                    measure,
                    entry[measure],
                ]
    refunds = report["refunds"]
    for measure in ("count", "amount_fen"):
        yield [day, "refunds", "all", measure, refunds[measure]]
    for entry in refunds["by_reason"]:
        for measure in ("count", "amount_fen", "confirmed_fen", "failed_fen"):
            yield [day, "refunds", entry["reason"], measure, entry[measure]]
    gates = report["gates"]
    for measure in ("entries", "exits"):
        yield [day, "gates", "all", measure, gates[measure]]
    for entry in gates["by_hour"]:
        for measure in ("entries", "exits"):
            yield [day, "gate_hours", f"{entry['hour']:02d}", measure, entry[measure]]
    for entry in gates["by_gate"]:
        for measure in ("zone", "entries", "exits", "scans", "refused", "not_passed"):
            yield [day, "gate_gates", entry["gate"], measure, entry[measure]]
    for entry in report["occupancy"]:
        for measure in ("entries", "exits", "peak", "peak_at", "final"):
            value = entry[measure]
            yield [day, "occupancy", entry["zone"], measure, "" if value is None else value]
    yield from deposit_csv_rows(day, report["deposits"])
    for measure, value in report["reconciliation"].items():
        yield [day, "reconciliation", "run", measure, value]


def report_csv(report: dict[str, Any]) -> str:
    """The CSV text of :func:`report_csv_rows` (``\\r\\n`` line ends, as RFC 4180 has them)."""
    out = io.StringIO()
    csv.writer(out).writerows(report_csv_rows(report))
    return out.getvalue()


def chart_paths(target: Path, business_date: str) -> dict[str, Path]:
    """Where the charts go: in directory ``target``, or next to a file prefix.

    An existing directory gets ``daily-<date>-entries.png`` and
    ``daily-<date>-sales.png``; any other path is a prefix:
    ``<target>-entries.png`` and ``<target>-sales.png``.
    """
    if target.is_dir():
        return {chart: target / f"daily-{business_date}-{chart}.png" for chart in CHARTS}
    return {chart: target.with_name(f"{target.name}-{chart}.png") for chart in CHARTS}


def report_pngs(report: dict[str, Any], target: Path) -> list[Path]:
    """Draw the entries per hour and the sales by channel; return the two files written.

    Raises ``OSError`` when a file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: must come before pyplot
    import matplotlib.pyplot as plt

    font = cjk_font()
    chinese = font is not None
    style = {"font.family": [font, "sans-serif"]} if chinese else {}
    paths = chart_paths(target, report["date"])
    with plt.rc_context(style):
        for chart, draw in (("entries", _draw_entries), ("sales", _draw_sales)):
            fig, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
            try:
                draw(report, axes, chinese=chinese)
                fig.tight_layout()
                fig.savefig(paths[chart], format="png")
            finally:
                plt.close(fig)
    return [paths[chart] for chart in CHARTS]


def _draw_entries(report: dict[str, Any], axes: Any, *, chinese: bool) -> None:
    by_hour = report["gates"]["by_hour"]
    hours = [h["hour"] for h in by_hour]
    width = 0.4
    axes.bar(
        [h - width / 2 for h in hours],
        [h["entries"] for h in by_hour],
        width,
        label="入园 entries" if chinese else "entries",
    )
    axes.bar(
        [h + width / 2 for h in hours],
        [h["exits"] for h in by_hour],
        width,
        label="出园 exits" if chinese else "exits",
    )
    axes.set_xticks(range(0, 24, 2))
    axes.set_xlim(-0.5, 23.5)
    axes.set_xlabel(f"local hour ({report['timezone']})")
    axes.set_ylabel("passages")
    axes.yaxis.get_major_locator().set_params(integer=True)
    title = f"Entries and exits per hour, {report['date']}"
    axes.set_title(f"每小时入园人次 {title}" if chinese else title)
    axes.legend(fontsize="small")


def _draw_sales(report: dict[str, Any], axes: Any, *, chinese: bool) -> None:
    channels = report["sales"]["by_channel"]
    labels = []
    for entry in channels:
        name_en, name_zh = CHANNEL_NAMES.get(entry["channel"], (entry["channel"],) * 2)
        labels.append(f"{name_zh}\n{name_en}" if chinese else name_en)
    amounts = [entry["amount_fen"] / 100 for entry in channels]
    bars = axes.bar(range(len(channels)), amounts)
    axes.bar_label(bars, labels=[yuan(entry["amount_fen"]) for entry in channels], padding=3)
    axes.set_xticks(range(len(channels)), labels)
    axes.set_ylabel("yuan")
    axes.set_ylim(0, max(amounts, default=0) * 1.15 or 1)  # room for the labels above the bars
    if not channels:
        axes.text(0.5, 0.5, "no sales", ha="center", va="center", transform=axes.transAxes)
    title = f"Sales by channel, {report['date']}"
    axes.set_title(f"各渠道销售额 {title}" if chinese else title)
