"""WeChat Pay's trade bill of type ``ALL`` (``downloadbill``), written and read exactly.

The layout (docs/channels.md, *Statements*, states it with an example): UTF-8
text, lines ending ``\\r\\n``; a header of 27 column names; one line per
payment (交易状态 ``SUCCESS``) and per refund (``REFUND``) with every value
prefixed by a backtick; the summary header; one backticked summary line whose
totals are the sums of their columns. Amounts are yuan with two decimals, fees
(手续费) yuan with five; a refund's fee is negative (given back).

The reader takes the real bills: any 用户标识, 商品名称, 商户数据包, trade
type, bank, device, coupon amounts and rate; a ``\\n`` or ``\\r\\n`` ending; a
byte-order mark. It refuses anything else with ``bad_statement`` naming the
line.
"""

from __future__ import annotations

from datetime import date

from server.channels.statement_common import (
    StatementRow,
    check_row,
    column_names,
    fee_yuan,
    local_date,
    local_time,
    parse_fee_yuan,
    parse_local_time,
    parse_rate,
    parse_yuan,
    rate_text,
    refuse,
    yuan,
)

HEADER = column_names(
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
    "费率备注"
)
SUMMARY_HEADER = column_names(
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
#: which detail column each summary total sums
SUMMED = ("应结订单金额", "退款金额", "充值券退款金额", "手续费", "订单金额", "申请退款金额")

#: the simulated merchant's accounts, as they appear on the bills
APPID = "wx2421b1c4370ec43b"
MCH_ID = "1900000109"

_EOL = "\r\n"


def write(rows: list[StatementRow], bill_date: date) -> bytes:
    """The bill of ``bill_date`` holding ``rows`` in their order, as the file's bytes.

    Raises ``ValueError`` for a row :func:`check_row` refuses, a row without
    ``rate_bp``, or refund id ``0`` (the bill's word for none).
    """
    lines = [",".join(HEADER)]
    for row in rows:
        check_row(row, bill_date)
        if row.rate_bp is None:
            raise ValueError(f"a WeChat row states its rate: {row.out_trade_no} has none")
        if row.refund_id == "0":
            raise ValueError("refund id 0 means 'none' on a WeChat bill")
        lines.append(_backticked(_values(row)))
    lines.append(",".join(SUMMARY_HEADER))
    lines.append(_backticked(_summary([_values(row) for row in rows])))
    return (_EOL.join(lines) + _EOL).encode("utf-8")


def _values(row: StatementRow) -> list[str]:
    refund = row.kind == "refund"
    amount = yuan(row.amount_fen)
    return [
        local_time(row.at),
        APPID,
        MCH_ID,
        "0",
        "",
        row.channel_txn_id,
        row.out_trade_no,
        "",
        "NATIVE",
        "REFUND" if refund else "SUCCESS",
        "OTHERS",
        "CNY",
        "0.00" if refund else amount,
        "0.00",
        (row.refund_id or "0") if refund else "0",
        row.out_refund_no if refund else "0",
        amount if refund else "0.00",
        "0.00",
        "ORIGINAL" if refund else "",
        "SUCCESS" if refund else "",
        "",
        "",
        fee_yuan(-row.fee_fen if refund else row.fee_fen),
        rate_text(row.rate_bp or 0),
        "0.00" if refund else amount,
        amount if refund else "0.00",
        "",
    ]


def _summary(table: list[list[str]]) -> list[str]:
    totals = []
    for name in SUMMED:
        column = HEADER.index(name)
        if name == "手续费":
            totals.append(fee_yuan(sum(parse_fee_yuan(values[column]) for values in table)))
        else:
            totals.append(yuan(sum(parse_yuan(values[column]) for values in table)))
    return [str(len(table)), *totals]


def _backticked(values: list[str]) -> str:
    return ",".join("`" + value for value in values)


def parse(data: bytes) -> list[StatementRow]:
    """The rows of a WeChat ``ALL`` bill; :class:`BadStatement` naming the line otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise refuse(f"line {line}", "not UTF-8 text, as a WeChat bill is") from None
    lines = text.removeprefix("\ufeff").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or lines[0].split(",") != HEADER:
        raise refuse("line 1", "not the header of WeChat Pay's ALL bill (交易时间,...,费率备注)")
    if lines[-1].split(",") == SUMMARY_HEADER:
        raise refuse(f"line {len(lines)}", "the summary line after the summary header is missing")
    if len(lines) < 3 or lines[-2].split(",") != SUMMARY_HEADER:
        where = f"line {max(len(lines) - 1, 2)}"
        raise refuse(where, "not the summary header (总交易单数,...,申请退款总金额)")
    table: list[list[str]] = []
    rows = []
    for number, line in enumerate(lines[1:-2], start=2):
        values = _split(line, len(HEADER), number)
        rows.append(_row(dict(zip(HEADER, values, strict=True)), number))
        table.append(values)
    _check_summary(lines[-1], table, len(lines))
    return rows


def _split(line: str, width: int, number: int) -> list[str]:
    if not line.startswith("`"):
        raise refuse(f"line {number}", "a value lacks its backtick prefix")
    values = line[1:].split(",`")
    if len(values) != width:
        raise refuse(f"line {number}", f"{len(values)} values; the layout has {width}")
    return values


def _row(values: dict[str, str], number: int) -> StatementRow:
    where = f"line {number}"
    state = values["交易状态"]
    if state not in ("SUCCESS", "REFUND"):
        raise refuse(where, f"交易状态 {state!r} is neither SUCCESS nor REFUND")
    refund = state == "REFUND"
    if refund and values["退款状态"] != "SUCCESS":
        state = values["退款状态"]
        raise refuse(where, f"退款状态 {state!r}: only refunds that succeeded are read")
    try:
        at = parse_local_time(values["交易时间"])
        amount = parse_yuan(values["退款金额"] if refund else values["应结订单金额"])
        for name in SUMMED:
            (parse_fee_yuan if name == "手续费" else parse_yuan)(values[name])
        fee = parse_fee_yuan(values["手续费"])
        rate = parse_rate(values["费率"])
    except ValueError as exc:
        raise refuse(where, str(exc)) from None
    fee = -fee if refund else fee
    if amount < 0 or fee < 0:
        raise refuse(where, "an amount or fee has the wrong sign")
    ids = [values["商户订单号"], values["微信订单号"]]
    if refund:
        ids.append(values["商户退款单号"])
    if not all(ids):
        raise refuse(where, "an id column (商户订单号, 微信订单号, 商户退款单号) is empty")
    refund_id = values["微信退款单号"] if refund else None
    return StatementRow(
        kind="refund" if refund else "payment",
        out_trade_no=values["商户订单号"],
        channel_txn_id=values["微信订单号"],
        out_refund_no=values["商户退款单号"] if refund else None,
        amount_fen=amount,
        at=at,
        fee_fen=fee,
        refund_id=None if refund_id in (None, "", "0") else refund_id,
        rate_bp=rate,
    )


def _check_summary(line: str, table: list[list[str]], number: int) -> None:
    values = _split(line, len(SUMMARY_HEADER), number)
    expected = _summary(table)
    for name, given, want in zip(SUMMARY_HEADER, values, expected, strict=True):
        try:
            same = given == want or (
                name != "总交易单数"
                and (parse_fee_yuan(given) if name == "手续费总金额" else parse_yuan(given))
                == (parse_fee_yuan(want) if name == "手续费总金额" else parse_yuan(want))
            )
        except ValueError:
            same = False
        if not same:
            raise refuse(f"line {number}", f"{name} is {given}; the rows add up to {want}")


def bill_date_of(rows: list[StatementRow]) -> date | None:
    """The one business date of ``rows``, ``None`` for no rows (a WeChat bill names no date)."""
    dates = {local_date(row.at) for row in rows}
    return dates.pop() if len(dates) == 1 else None
