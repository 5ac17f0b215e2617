"""The load test's report files: JSON, Markdown and two charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.metrics import Recorder
from loadtest.report import write_report

KINDS = ("order.create", "payment.notify", "ticket.scan")
FILES = ("report.json", "report.md", "throughput.png", "latency.png")


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_summary() -> dict:
    """Twenty seconds of traffic: scans speed up, orders slow down, a few scans refused."""
    clock = FakeClock()
    recorder = Recorder(KINDS, clock=clock)
    for n in range(2000):
        clock.now = n * 0.01
        recorder.record("ticket.scan", 0.002 + n * 1e-6)
        if n % 3 == 0:
            recorder.record("order.create", 0.020 + n * 1e-5)
        if n % 100 == 0:
            recorder.record("ticket.scan", 0.001, error="ticket_used")
            recorder.count("scan.reason.passback")
    recorder.count("payment.duplicate_sent", 2)
    clock.now = 20.0
    return recorder.summary()


def failing_audit() -> dict:
    return {
        "ok": False,
        "checks": [
            {
                "name": "every_grant_durable",
                "promise": "every granted scan is in the scans table",
                "ok": True,
                "offenders": [],
            },
            {
                "name": "one_capture_per_order",
                "promise": "no order is captured twice",
                "ok": False,
                "offenders": [{"order": f"ORD-{n:03}", "captures": 2} for n in range(25)],
            },
        ],
    }


META = {
    "profile": "weekend-peak",
    "duration_s": 20,
    "server": "ws://127.0.0.1:8765",
    "git": "v0.3.0-12-gdeadbee",
}


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Path]:
    return write_report(
        tmp_path / "out",
        title="scenic loadtest: weekend-peak",
        summary=run_summary(),
        audit=failing_audit(),
        meta=META,
    )


def test_all_four_files_are_written_and_returned_by_name(written, tmp_path) -> None:
    assert set(written) == set(FILES)
    for name in FILES:
        assert written[name] == tmp_path / "out" / name
        assert written[name].is_file()


def test_the_json_holds_the_meta_the_summary_and_the_audit(written) -> None:
    document = json.loads(written["report.json"].read_text())

    assert document["meta"] == META
    assert document["audit"] == failing_audit()
    assert document["summary"] == json.loads(json.dumps(run_summary()))
    assert document["summary"]["kinds"]["ticket.scan"]["errors_by_code"] == {"ticket_used": 20}


def test_the_markdown_names_the_run_and_every_kind(written) -> None:
    text = written["report.md"].read_text()

    assert text.startswith("# scenic loadtest: weekend-peak")
    for value in ("weekend-peak", "ws://127.0.0.1:8765", "v0.3.0-12-gdeadbee"):
        assert value in text
    for kind in KINDS:
        assert f"`{kind}`" in text
    assert "`scan.reason.passback`" in text
    assert "ticket_used × 20" in text


def test_the_markdown_marks_a_failing_check_with_its_first_offenders(written) -> None:
    text = written["report.md"].read_text()

    assert "## Audit: FAIL" in text
    failing = next(line for line in text.splitlines() if "one_capture_per_order" in line)
    assert "FAIL" in failing
    passing = next(line for line in text.splitlines() if "every_grant_durable" in line)
    assert "FAIL" not in passing
    assert "ORD-019" in text
    assert "ORD-020" not in text  # only the first 20 are shown
    assert "25 offending rows" in text


def test_the_markdown_links_the_charts(written) -> None:
    text = written["report.md"].read_text()

    assert "(throughput.png)" in text
    assert "(latency.png)" in text


def test_a_passing_audit_is_not_marked_as_failing(tmp_path) -> None:
    audit = failing_audit()
    audit["checks"] = audit["checks"][:1]
    audit["ok"] = True

    paths = write_report(tmp_path, title="t", summary=run_summary(), audit=audit, meta={})

    text = paths["report.md"].read_text()
    assert "## Audit: ok" in text
    assert "FAIL" not in text


@pytest.mark.parametrize("chart", ["throughput.png", "latency.png"])
def test_the_charts_are_real_pngs(written, chart) -> None:
    data = written[chart].read_bytes()

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000  # axes, lines and legend, not a blank canvas


def test_a_run_without_traffic_still_gets_a_report(tmp_path) -> None:
    summary = Recorder(KINDS, clock=FakeClock()).summary()

    paths = write_report(
        tmp_path, title="idle", summary=summary, audit={"ok": True, "checks": []}, meta={}
    )

    for name in ("throughput.png", "latency.png"):
        assert paths[name].read_bytes().startswith(b"\x89PNG")
    assert "`payment.notify`" in paths["report.md"].read_text()
