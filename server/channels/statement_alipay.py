"""Alipay's trade bill (业务明细), written and read exactly.

The file Alipay serves is a zip holding ``<account>_<yyyymmdd>_业务明细.csv``,
GBK-encoded, lines ending ``\\r\\n``: ``#`` preamble lines (title, account,
start and end dates), the 业务明细列表 start marker, the header, one line per
payment (业务类型 ``交易``) and per refund (``退款``, amounts negative) with
every cell ending in a tab, the end marker, the 交易合计 and 退款合计 footer
lines and the export time. docs/channels.md (*Statements*) gives an example.

The reader takes the zip (its entry's name in GBK or UTF-8; other entries,
such as the 汇总 summary, are ignored) or the CSV itself, cells with or
without their tab, any 商品名称, 对方账户, store and operator columns, and
footer lines with more clauses after the amount (商家优惠共...). It refuses
anything else with ``bad_statement`` naming the line.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import date, datetime, time, timedelta

from server.channels.statement_common import (
    CHANNEL_TZ,
    BadStatement,
    StatementRow,
    check_row,
    column_names,
    local_date,
    local_time,
    parse_local_time,
    parse_yuan,
    refuse,
    yuan,
)

HEADER = column_names(
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,"
    "终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
TITLE = "#支付宝业务明细查询"
LIST_START = (
    "#-----------------------------------------业务明细列表----------------------------------------"
)
LIST_END = (
    "#-----------------------------------------业务明细列表结束------------------------------------"
)
#: the simulated merchant's account, as it appears on the bills
ACCOUNT = "20880012345678900156"

_EOL = "\r\n"
_START_DATE = re.compile(r"#起始日期：\[(\d{4})年(\d{2})月(\d{2})日 00:00:00\].*")
_TRADES = re.compile(r"#交易合计：(\d+)笔，商家实收共(-?\d+\.\d{2})元(，.*)?")
_REFUNDS = re.compile(r"#退款合计：(\d+)笔，商家实收退款共(-?\d+\.\d{2})元(，.*)?")


def entry_name(bill_date: date) -> str:
    """The name of the bill's CSV inside the zip."""
    return f"{ACCOUNT}_{bill_date:%Y%m%d}_业务明细.csv"


def write(rows: list[StatementRow], bill_date: date) -> bytes:
    """The bill of ``bill_date`` holding ``rows`` in their order: the zip's bytes.

    Raises ``ValueError`` for a row :func:`check_row` refuses or one with a
    ``refund_id`` or ``rate_bp`` (the Alipay bill has no column for either).
    """
    for row in rows:
        check_row(row, bill_date)
        if row.refund_id is not None or row.rate_bp is not None:
            raise ValueError("Alipay bills have no column for a refund id or a rate")
    exported = datetime.combine(bill_date + timedelta(days=1), time(9), CHANNEL_TZ)
    lines = [*_preamble(bill_date), ",".join(HEADER)]
    lines += [",".join(value + "\t" for value in _values(row)) for row in rows]
    payments = [row for row in rows if row.kind == "payment"]
    refunds = [row for row in rows if row.kind == "refund"]
    lines += [
        LIST_END,
        f"#交易合计：{len(payments)}笔，商家实收共{yuan(sum(r.amount_fen for r in payments))}元，"
        "商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(-sum(r.amount_fen for r in refunds))}"
        "元，商家优惠退款共0.00元",
        f"#导出时间：[{_chinese_time(exported)}]",
    ]
    csv_bytes = (_EOL.join(lines) + _EOL).encode("gbk")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(entry_name(bill_date), exported.timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, csv_bytes)
    return buffer.getvalue()


def _chinese_time(moment: datetime) -> str:
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def _preamble(bill_date: date) -> list[str]:
    start = datetime.combine(bill_date, time(), CHANNEL_TZ)
    return [
        TITLE,
        f"#账号：[{ACCOUNT}]",
        f"#起始日期：[{_chinese_time(start)}]   "
        f"终止日期：[{_chinese_time(start + timedelta(days=1))}]",
        LIST_START,
    ]


def _values(row: StatementRow) -> list[str]:
    refund = row.kind == "refund"
    amount = yuan(-row.amount_fen if refund else row.amount_fen)
    when = local_time(row.at)
    values = [row.channel_txn_id, row.out_trade_no, "退款" if refund else "交易", ""]
    values += [when, when, "", "", "", "", "", amount, amount]
    values += ["0.00"] * 5 + [""] + ["0.00"] * 2
    values += [row.out_refund_no if refund else ""]
    values += [yuan(row.fee_fen if refund else -row.fee_fen), "0.00", ""]
    return values


def parse(data: bytes) -> list[StatementRow]:
    """The rows of an Alipay 业务明细 bill (the zip, or its CSV); else :class:`BadStatement`."""
    name, csv_bytes = _unzip(data) if data[:2] == b"PK" else ("the bill", data)
    try:
        text = csv_bytes.decode("gbk")
    except UnicodeDecodeError as exc:
        line = csv_bytes[: exc.start].count(b"\n") + 1
        raise refuse(f"{name} line {line}", "not GBK text, as an Alipay bill is") from None
    lines = text.removeprefix("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return _parse_lines(name, lines)


def _unzip(data: bytes) -> tuple[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise BadStatement(f"the bill is not a readable zip: {exc}") from None
    with archive:
        for info in archive.infolist():
            name = info.filename
            if not info.flag_bits & 0x800:  # no UTF-8 flag: the name's bytes are GBK
                try:
                    name = name.encode("cp437").decode("gbk")
                except UnicodeError:
                    pass
            if name.endswith("业务明细.csv") and "汇总" not in name:
                try:
                    return name, archive.read(info)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise BadStatement(f"{name} cannot be read from the zip: {exc}") from None
    raise BadStatement("the zip holds no 业务明细.csv (the bill's detail list)")


def _parse_lines(name: str, lines: list[str]) -> list[StatementRow]:
    def at(number: int) -> str:
        return f"{name} line {number}"

    if not lines or lines[0].strip() != TITLE:
        raise refuse(at(1), f"not the title of Alipay's bill ({TITLE})")
    starts = [i for i, line in enumerate(lines) if line.strip() == LIST_START]
    ends = [i for i, line in enumerate(lines) if line.strip() == LIST_END]
    if not starts:
        raise refuse(at(len(lines)), "the 业务明细列表 start marker is missing")
    start = starts[0]
    if not ends or ends[0] < start + 2:
        later = [i for i in range(start + 2, len(lines)) if lines[i].startswith("#")]
        where = at(later[0] + 1 if later else len(lines))
        raise refuse(where, "the 业务明细列表结束 end marker was expected here")
    end = ends[0]
    bill_date = _bill_date(lines[:start], at)
    header = [cell.strip() for cell in lines[start + 1].split(",")]
    if header != HEADER:
        raise refuse(at(start + 2), "not the 业务明细 header (支付宝交易号,...,备注)")
    rows = []
    for index in range(start + 2, end):
        number = index + 1
        try:
            [cells] = list(csv.reader([lines[index]], strict=True))
        except (csv.Error, ValueError) as exc:
            raise refuse(at(number), f"not a CSV line: {exc}") from None
        cells = [cell.rstrip("\t ") for cell in cells]
        if len(cells) != len(HEADER):
            raise refuse(at(number), f"{len(cells)} cells; the layout has {len(HEADER)}")
        row = _row(dict(zip(HEADER, cells, strict=True)), at(number))
        if local_date(row.at) != bill_date:
            raise refuse(at(number), f"完成时间 is not on the bill's date {bill_date}")
        rows.append(row)
    _check_footer(lines, end, rows, at)
    return rows


def _bill_date(preamble: list[str], at) -> date:
    for number, line in enumerate(preamble, start=1):
        match = _START_DATE.fullmatch(line.strip())
        if match:
            try:
                return date(*(int(part) for part in match.groups()))
            except ValueError:
                raise refuse(at(number), "the 起始日期 is not a date") from None
    raise refuse(at(len(preamble)), "no #起始日期：[YYYY年MM月DD日 00:00:00] line before the list")


def _row(values: dict[str, str], where: str) -> StatementRow:
    kind = values["业务类型"]
    if kind not in ("交易", "退款"):
        raise refuse(where, f"业务类型 {kind!r} is neither 交易 nor 退款")
    refund = kind == "退款"
    try:
        amount = parse_yuan(values["商家实收（元）"])
        fee = parse_yuan(values["服务费（元）"] or "0.00")
        moment = parse_local_time(values["完成时间"])
    except ValueError as exc:
        raise refuse(where, str(exc)) from None
    amount, fee = (-amount, fee) if refund else (amount, -fee)
    if amount < 0 or fee < 0:
        raise refuse(where, "商家实收 or 服务费 has the wrong sign for its 业务类型")
    ids = [values["商户订单号"], values["支付宝交易号"]]
    if refund:
        ids.append(values["退款批次号/请求号"])
    if not all(ids):
        raise refuse(where, "an id cell (支付宝交易号, 商户订单号, 退款批次号/请求号) is empty")
    return StatementRow(
        kind="refund" if refund else "payment",
        out_trade_no=values["商户订单号"],
        channel_txn_id=values["支付宝交易号"],
        out_refund_no=values["退款批次号/请求号"] if refund else None,
        amount_fen=amount,
        at=moment,
        fee_fen=fee,
    )


def _check_footer(lines: list[str], end: int, rows: list[StatementRow], at) -> None:
    payments = [row for row in rows if row.kind == "payment"]
    refunds = [row for row in rows if row.kind == "refund"]
    expected = (
        (_TRADES, "交易合计", len(payments), sum(r.amount_fen for r in payments)),
        (_REFUNDS, "退款合计", len(refunds), -sum(r.amount_fen for r in refunds)),
    )
    for pattern, label, count, total in expected:
        found = [
            (number, pattern.fullmatch(line.strip()))
            for number, line in enumerate(lines[end + 1 :], start=end + 2)
            if line.strip().startswith(f"#{label}")
        ]
        if not found or found[0][1] is None:
            where = at(found[0][0] if found else len(lines))
            raise refuse(where, f"no #{label}：N笔，商家实收...共X元 line after the list")
        number, match = found[0]
        if int(match.group(1)) != count or parse_yuan(match.group(2)) != total:
            raise refuse(
                at(number),
                f"{label} says {match.group(1)} rows, {match.group(2)} yuan; "
                f"the list has {count} rows, {yuan(total)} yuan",
            )
