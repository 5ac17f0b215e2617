"""``scenic gate-sim`` and ``scenic gate-agent`` as a person runs them: separate processes.

What the screen shows (verdicts, a summary, nothing else), Ctrl-C, and the
one line a person gets for a mistake they can fix, with its exit status.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import trio

from devices.simulators import DisplaySimulator, ScannerSimulator, TurnstileSimulator
from loadtest.local_server import scenic_command
from server.cli import build_parser
from server.workers import free_port
from tests.conftest import _admin, _with_database
from tests.helpers import running_server

README = Path(__file__).parent.parent / "README.md"


def _default_sigint() -> None:
    # A process started in the background of a shell inherits SIGINT ignored; Ctrl-C is ours.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def scenic(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    with trio.fail_after(timeout_s):
        return await trio.run_process(
            scenic_command(*args), capture_stdout=True, capture_stderr=True, check=False
        )


def text_lines(stderr: bytes) -> list[str]:
    """The lines of ``stderr`` that are not JSON log lines."""
    return [line for line in stderr.decode().splitlines() if not line.startswith("{")]


def subcommand(name: str):
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return commands.choices[name]


def test_gate_sim_and_gate_agent_help_describe_every_option():
    for name in ("gate-sim", "gate-agent"):
        parser = subcommand(name)
        undescribed = [a.dest for a in parser._actions if not a.help]
        assert undescribed == [], name
        assert parser.description


def test_the_readme_says_how_long_gate_sim_runs_by_default():
    seconds = subcommand("gate-sim").get_default("seconds")
    gates = README.read_text().split("## Gates", 1)[1].split("\n## ", 1)[0]
    assert f"for {seconds:g} seconds" in gates and "Ctrl-C" in gates


async def test_gate_sim_shows_verdicts_only_and_ctrl_c_prints_the_summary_and_exits_130(dsn, db):
    async with running_server(dsn, db, {}) as server:
        command = scenic_command(
            "gate-sim", "--gates", "2", "--seconds", "60", "--server", server.url, "--dsn", dsn
        )
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint
        )
        out = b""
        with trio.fail_after(60):
            while out.count("✓ ok".encode()) < 3:
                out += await process.stdout.receive_some()
            process.send_signal(signal.SIGINT)
            while chunk := await process.stdout.receive_some():
                out += chunk
            err = b""
            while chunk := await process.stderr.receive_some():
                err += chunk
            status = await process.wait()
    lines = out.decode().splitlines()
    assert status == 130
    assert err == b""  # no log lines, no traceback
    assert lines[0] == "gate-sim: 120 tickets bought; 2 gates scanning"
    assert all(re.match(r"G-SIM-0[12] +[✓✗] ", line) for line in lines[1:-1]), lines
    assert re.fullmatch(r"gate-sim: \d+ scans: ok \d+.* \(interrupted\)", lines[-1]), lines[-1]


async def test_gate_sim_writes_log_lines_when_asked(dsn, db):
    async with running_server(dsn, db, {}) as server:
        run = ("gate-sim", "--gates", "1", "--seconds", "1", "--server", server.url, "--dsn", dsn)
        quiet = await scenic(*run)
        logged = await scenic(*run, "--log-level", "info")
    assert (quiet.returncode, quiet.stderr) == (0, b"")
    assert quiet.stdout.decode().splitlines()[-1].startswith("gate-sim: ")
    assert logged.returncode == 0
    assert b'"simulator.plugged"' in logged.stderr and b'"port.opened"' in logged.stderr


async def test_gate_sim_with_no_server_says_so_in_one_line_and_exits_1(dsn):
    url = f"ws://127.0.0.1:{free_port()}"
    plain = await scenic("gate-sim", "--server", url, "--dsn", dsn)
    debug = await scenic("gate-sim", "--server", url, "--dsn", dsn, "--log-level", "DEBUG")
    assert plain.returncode == 1 and plain.stdout == b""
    assert text_lines(plain.stderr) == [
        f"scenic gate-sim: no server at {url}: start one with 'scenic serve --demo',"
        " or give --server"
    ]
    assert b"Traceback" not in plain.stderr and plain.stderr.count(b"\n") == 1
    assert debug.returncode == 1 and b"Traceback" in debug.stderr


async def test_gate_sim_against_another_database_says_which_flags_to_give(
    dsn, db, pg_server_dsn, template_database
):
    other = f"{template_database}_other"
    _admin(pg_server_dsn, f"CREATE DATABASE {other} TEMPLATE {template_database}")
    try:
        async with running_server(dsn, db, {}) as server:
            done = await scenic(
                "gate-sim", "--server", server.url, "--dsn", _with_database(pg_server_dsn, other)
            )
    finally:
        _admin(pg_server_dsn, f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")
    assert done.returncode == 1
    [line] = text_lines(done.stderr)
    assert "does not know the simulated devices" in line and "--dsn" in line
    assert b"Traceback" not in done.stderr


async def test_gate_sim_refuses_bad_numbers_with_usage_status_2():
    done = await scenic("gate-sim", "--gates", "0")
    assert done.returncode == 2
    assert text_lines(done.stderr) == ["scenic gate-sim: --gates must be between 1 and 200"]


async def test_gate_agent_with_a_wrong_token_or_no_server_says_so_and_exits_1(dsn, db, tmp_path):
    async with (
        running_server(dsn, db, {"G-MAIN-1": "gate"}) as server,
        ScannerSimulator() as scanner,
        TurnstileSimulator() as turnstile,
        DisplaySimulator() as display,
    ):
        common = [
            "gate-agent", "--gate", "G-MAIN-1", "--state-dir", str(tmp_path),
            "--scanner", scanner.port, "--turnstile", turnstile.port, "--display", display.port,
        ]  # fmt: skip
        wrong_token = await scenic(*common, "--token", "not-the-token", "--server", server.url)
        nobody = f"ws://127.0.0.1:{free_port()}"
        no_server = await scenic(*common, "--token", server.tokens["G-MAIN-1"], "--server", nobody)
        debug = await scenic(
            *common, "--token", "x", "--server", server.url, "--log-level", "DEBUG"
        )
    assert wrong_token.returncode == 1
    [line] = text_lines(wrong_token.stderr)
    assert "refused gate G-MAIN-1" in line and "--token" in line
    assert no_server.returncode == 1
    [line] = text_lines(no_server.stderr)
    assert f"cannot reach the server at {nobody}" in line and "--server" in line
    for done in (wrong_token, no_server):
        assert b"Traceback" not in done.stderr
    assert debug.returncode == 1 and b"Traceback" in debug.stderr
