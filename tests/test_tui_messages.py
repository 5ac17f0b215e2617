"""Every error code docs/protocol.md names has a Chinese and an English message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clients.tui.messages import ERRORS, REFUND_REASONS, SCAN_REASONS, describe_error, text

DOCS = Path(__file__).resolve().parent.parent / "docs"


def documented_error_codes() -> set[str]:
    """The codes of every ``| code | ...`` table and every op's *Errors:* in protocol.md."""
    lines = (DOCS / "protocol.md").read_text().splitlines()
    codes: set[str] = set()
    in_table = False
    for line in lines:
        if line.startswith("| code |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if in_table and (found := re.match(r"^\| `([a-z_]+)` \|", line)):
            codes.add(found.group(1))
    prose = "\n".join(lines)
    # an op's Errors clause also names its arguments, fields and channels: not codes
    names = set(re.findall(r"^\| `([a-z_]+)` \|", prose, re.M)) - codes
    names |= {"wechat", "alipay", "preauth", "pay", "authorize_freeze", "hold_until", "due_at"}
    for clause in re.findall(r"Errors?:(.*?)(?:\n\n|$)", prose, re.S):
        codes |= set(re.findall(r"`([a-z][a-z_]+)`", clause)) - names
    # the refusals of the rules that the rental section names in prose, after its table
    section = prose.split("### Rental refusal codes", 1)[1].split("### `rental.report`", 1)[0]
    after_table = section.rsplit("\n|", 1)[1].split("\n", 1)[1]
    codes |= set(re.findall(r"`([a-z][a-z_]+)`", after_table))
    return codes


def test_the_docs_are_parsed_into_the_codes_we_expect():
    codes = documented_error_codes()
    # a few from each table and from prose, so a parser that reads nothing fails
    assert {"bad_frame", "bad_credentials", "sold_out", "order_not_pending", "wrong_count"} <= codes
    assert {"no_simulator", "already_paid", "closed", "freeze_lapsed", "voucher_foreign"} <= codes
    assert len(codes) > 50


def test_every_documented_error_code_has_a_message():
    missing = sorted(documented_error_codes() - set(ERRORS))
    assert missing == []


def test_every_gate_scan_reason_has_a_message():
    gates = (DOCS / "gates.md").read_text()
    paragraph = gates.split("Reasons: ", 1)[1].split("\n\n", 1)[0]
    reasons = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert "gate_closed" in reasons
    assert reasons - set(SCAN_REASONS) == set()


def test_every_refund_reason_has_a_message():
    protocol = (DOCS / "protocol.md").read_text()
    row = next(line for line in protocol.splitlines() if line.startswith("| `payment.refunded`"))
    reasons = set(re.findall(r"`([a-z_]+)`", row.split("`reason`", 1)[1]))
    assert reasons == set(REFUND_REASONS)


@pytest.mark.parametrize("table", [ERRORS, SCAN_REASONS, REFUND_REASONS])
def test_each_message_is_in_chinese_and_in_english(table):
    for code, message in table.items():
        assert re.search(r"[\u4e00-\u9fff]", message.zh), code
        assert message.en.isascii() and re.search(r"[A-Za-z]", message.en), code
        if "_" in code:  # a machine code is not words for people
            assert code not in message.en and code not in message.zh, code


def test_an_unknown_code_names_itself_and_sends_the_visitor_to_staff():
    assert describe_error("flux_capacitor", "en") == (
        "Something went wrong (flux_capacitor). Please ask a member of staff."
    )
    assert "flux_capacitor" in describe_error("flux_capacitor", "zh")
    assert text(ERRORS, "sold_out", "zh") == ERRORS["sold_out"].zh
