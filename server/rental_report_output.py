"""The rental report for people: a terminal table, a CSV file, a PNG chart.

Each takes the report's map (:func:`server.rental_report.rental_report`) and
nothing else, so the command line and a program reading ``rental.report``
see the same figures. The table fits in 100 columns. The CSV is long form,
one figure a row under the header ``date,section,key,measure,value``. The
chart (matplotlib, Agg backend, no display) shows pickups and returns per
hour and the utilization per item type; its labels are English unless a
font with Chinese glyphs is installed (:func:`cjk_font`), so it never shows
empty boxes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WIDTH = 100
#: "rent" and "return", and a Latin letter: a Chinese font draws three different glyphs
_PROBES = "租还A"


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals: ``12345`` -> ``123.45``."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal, or ``-`` when there is none."""
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def hours(seconds: int) -> str:
    """Seconds as hours with two decimals."""
    return f"{seconds / 3600:.2f}"


def _row(cells: list[str], widths: list[int]) -> str:
    first = f"{cells[0]:<{widths[0]}}"
    rest = [f"{cell:>{width}}" for cell, width in zip(cells[1:], widths[1:], strict=True)]
    return " ".join([first, *rest]).rstrip()


def text_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table's lines: the first column left-aligned, the others right, "(none)" if empty.

    Each column is as wide as its widest cell (the daily report uses it too).
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["", title, _row(header, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(row, widths) for row in rows] if rows else ["(none)"]
    return lines


def report_table(report: dict[str, Any]) -> str:
    """The report as text for a terminal.

    Each column is as wide as its widest cell, so with the ids the server
    makes every line fits in :data:`WIDTH` columns; nothing is ever cut
    off (a figure cut short would be a wrong figure).
    """
    rentals = report["rentals"]
    by_status = ", ".join(f"{k} {v}" for k, v in rentals["by_status"].items() if v)
    lines = [
        f"Rentals of {report['date']} ({report['timezone']}): {rentals['made']} made, "
        f"{rentals['held']} with a deposit held" + (f" ({by_status})" if by_status else ""),
    ]
    lines += text_table(
        "Rentals by item type",
        ["item", "rentals", "units booked", "units out"],
        [
            [i["item"], str(i["rentals"]), str(i["units_booked"]), str(i["units_out"])]
            for i in report["items"]
        ],
    )
    lines += text_table(
        "Charges of the rentals settled this day (yuan)",
        ["item", "units", "usage", "covered", "late", "damage", "lost", "total"],
        [
            [
                c["item"],
                str(c["units"]),
                *(yuan(c[k]) for k in ("usage_fen", "covered_usage_fen", "late_fen")),
                *(yuan(c[k]) for k in ("damage_fen", "lost_fen", "total_fen")),
            ]
            for c in report["charges"]
        ],
    )
    money = report["money"]
    lines += text_table(
        "Money by channel (yuan)",
        ["channel", "collected", "refunded", "net"],
        [
            [c["channel"], yuan(c["collected_fen"]), yuan(c["refunded_fen"]), yuan(c["net_fen"])]
            for c in money["channels"]
        ],
    )
    lines += [
        f"revenue {yuan(money['revenue_fen'])}; deposits in {yuan(money['deposits_in_fen'])}, "
        f"out {yuan(money['deposits_out_fen'])}; prepaid in {yuan(money['prepaid_in_fen'])}, "
        f"out {yuan(money['prepaid_out_fen'])}",
        f"refunds owed {yuan(money['refunds_owed_fen'])}, paid {yuan(money['refunds_paid_fen'])}",
    ]
    lines += text_table(
        "Refunds and unfreezes asked this day (yuan)",
        ["reference", "kind", "rental", "channel", "amount", "reason", "state"],
        [
            [
                g["reference"],
                g["kind"],
                g["rental"],
                g["channel"],
                yuan(g["amount_fen"]),
                g["reason"],
                g["state"],
            ]
            for g in report["give_backs"]
        ],
    )
    lines += deposit_lines(report["deposits"])
    busy = [h for h in report["hours"] if h["pickups"] or h["returns"]]
    lines += text_table(
        "Units picked up and returned by local hour",
        ["hour", "pickups", "returns"],
        [[f"{h['hour']:02d}:00", str(h["pickups"]), str(h["returns"])] for h in busy],
    )
    opening = report["opening"]
    title = "Utilization (unit-hours out over unit-hours open)"
    if opening is None:
        lines += ["", title, "(no opening hours: the catalog has no [rentals] terms)"]
    else:
        lines += text_table(
            f"{title}, open {hours(opening['seconds'])} h",
            ["item", "units", "hours out", "hours open", "utilization"],
            [
                [
                    u["item"],
                    str(u["units"]),
                    hours(u["unit_seconds_out"]),
                    hours(u["unit_seconds_open"]),
                    percent(u["utilization"]),
                ]
                for u in report["utilization"]
            ],
        )
    lines += text_table(
        "Who rents (rentals with a deposit held, by the ticket named)",
        ["ticket", "rentals"],
        [[w["ticket"] or w["name_en"], str(w["rentals"])] for w in report["who_rents"]],
    )
    return "\n".join(lines) + "\n"


def deposit_lines(deposits: dict[str, Any]) -> list[str]:
    """The lines of a report's ``deposits`` map (the rental and the daily report show them)."""
    lines = [
        "",
        "Deposits (yuan)",
        f"held this day: {deposits['held']['count']} holds, {yuan(deposits['held']['amount_fen'])}",
        f"released {yuan(deposits['released_fen'])}, kept at settlement "
        f"{yuan(deposits['kept_fen'])}, forfeited {yuan(deposits['forfeited_fen'])}",
        f"still held at the day's end: {deposits['outstanding']['count']} holds, "
        f"{yuan(deposits['outstanding']['amount_fen'])}",
        f"penalties receivable: {yuan(deposits['receivable_posted_fen'])} posted this day, "
        f"{yuan(deposits['receivable_balance_fen'])} owed at the day's end",
    ]
    for r in deposits["resolved"]:
        lines.append(
            f"  resolved {r['resolution']}: {r['count']}, posted {yuan(r['posted_fen'])}, "
            f"voided {yuan(r['voided_fen'])}"
        )
    return lines


def report_csv_rows(report: dict[str, Any]) -> Iterator[list[Any]]:
    """The report's figures as ``[date, section, key, measure, value]`` rows, header first."""
    day = report["date"]
    yield ["date", "section", "key", "measure", "value"]
    for measure, value in report["rentals"]["by_status"].items():
        yield [day, "rentals", "status", measure, value]
    for section, key in (("items", "item"), ("charges", "item"), ("utilization", "item")):
        for entry in report[section]:
            for measure, value in entry.items():
                if measure not in (key, "name_en", "name_zh"):
                    yield [day, section, entry[key], measure, "" if value is None else value]
    for entry in report["money"]["channels"]:
        for measure in ("collected_fen", "refunded_fen", "net_fen"):
            yield [day, "money", entry["channel"], measure, entry[measure]]
    for measure, value in report["money"].items():
        if measure != "channels":
            yield [day, "money", "all", measure, value]
    for entry in report["give_backs"]:
        for measure in ("kind", "rental", "channel", "amount_fen", "reason", "state"):
            yield [day, "give_backs", entry["reference"], measure, entry[measure]]
    yield from deposit_csv_rows(day, report["deposits"])
    for entry in report["hours"]:
        for measure in ("pickups", "returns"):
            yield [day, "hours", f"{entry['hour']:02d}", measure, entry[measure]]
    for entry in report["who_rents"]:
        yield [day, "who_rents", entry["ticket"] or entry["name_en"], "rentals", entry["rentals"]]


def deposit_csv_rows(day: str, deposits: dict[str, Any]) -> Iterator[list[Any]]:
    """The CSV rows (section ``deposits``) of a report's ``deposits`` map."""
    for part in ("held", "outstanding"):
        for measure, value in deposits[part].items():
            yield [day, "deposits", part, measure, value]
    for entry in deposits["resolved"]:
        for measure in ("count", "posted_fen", "voided_fen"):
            yield [day, "deposits", entry["resolution"], measure, entry[measure]]
    for measure in ("released_fen", "kept_fen", "forfeited_fen"):
        yield [day, "deposits", "all", measure, deposits[measure]]
    for measure in ("receivable_posted_fen", "receivable_balance_fen"):
        yield [day, "deposits", "receivable", measure, deposits[measure]]


def report_csv(report: dict[str, Any]) -> str:
    """The CSV text of :func:`report_csv_rows` (``\\r\\n`` line ends, as RFC 4180 has them)."""
    out = io.StringIO()
    csv.writer(out).writerows(report_csv_rows(report))
    return out.getvalue()


def has_chinese_glyphs(font_file: str | Path) -> bool:
    """True when the font in ``font_file`` draws Chinese characters, each its own glyph.

    matplotlib ships *Last Resort*, which maps every character to a box: it
    "has" every glyph, all alike. So a font counts only when two different
    Chinese characters get two different glyphs, unlike a Latin letter's.
    """
    from matplotlib.ft2font import FT2Font

    try:
        font = FT2Font(str(font_file))
    except (OSError, RuntimeError):
        return False
    glyphs = [font.get_char_index(ord(char)) for char in _PROBES]
    return all(glyphs) and len(set(glyphs)) == len(glyphs)


def cjk_font() -> str | None:
    """An installed font that draws Chinese (:func:`has_chinese_glyphs`) by name, or ``None``."""
    from matplotlib import font_manager

    for entry in font_manager.fontManager.ttflist:
        if has_chinese_glyphs(entry.fname):
            return entry.name
    return None


def report_png(report: dict[str, Any], path: Path) -> None:
    """Draw the hourly pickups and returns and the utilization per item type into ``path``.

    Raises ``OSError`` when ``path`` cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: must come before pyplot
    import matplotlib.pyplot as plt

    font = cjk_font()
    chinese = font is not None
    style = {"font.family": [font, "sans-serif"]} if chinese else {}
    with plt.rc_context(style):
        fig, (by_hour, use) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
        try:
            _draw(report, by_hour, use, chinese=chinese)
            fig.tight_layout()
            fig.savefig(path, format="png")
        finally:
            plt.close(fig)


def _draw(report: dict[str, Any], by_hour: Any, use: Any, *, chinese: bool) -> None:
    hours_ = [h["hour"] for h in report["hours"]]
    width = 0.4
    by_hour.bar(
        [h - width / 2 for h in hours_],
        [h["pickups"] for h in report["hours"]],
        width,
        label="取 pickups" if chinese else "pickups",
    )
    by_hour.bar(
        [h + width / 2 for h in hours_],
        [h["returns"] for h in report["hours"]],
        width,
        label="还 returns" if chinese else "returns",
    )
    by_hour.set_xticks(range(0, 24, 2))
    by_hour.set_xlabel(f"local hour ({report['timezone']})")
    by_hour.set_ylabel("units")
    by_hour.yaxis.get_major_locator().set_params(integer=True)
    by_hour.set_title(f"Pickups and returns by hour, {report['date']}")
    by_hour.legend(fontsize="small")
    items = report["utilization"]
    labels = [u["name_zh"] if chinese else u["name_en"] for u in items]
    values = [(u["utilization"] or 0.0) * 100 for u in items]
    bars = use.barh(range(len(items)), values)
    use.bar_label(bars, labels=[percent(u["utilization"]) for u in items], padding=3)
    use.set_yticks(range(len(items)), labels)
    use.invert_yaxis()
    use.set_xlim(0, 100)
    use.set_xlabel("utilization, % of unit-hours open")
    use.set_title("Utilization by item type" if report["opening"] else "No opening hours")
