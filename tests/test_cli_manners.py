"""What a person sees of the ``scenic`` command when nothing goes wrong.

Every command and option says what it does; stdout holds only what a script
would capture (a token, a DSN, a verdict), the rest goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import trio

from clients.client import connect
from loadtest.local_server import scenic_command
from server.cli import build_parser
from server.startup import redact_dsn
from tests.helpers import running_server

#: subcommands whose texts are the devices' (devices/cli.py)
NOT_OURS = {"gate-agent", "gate-sim"}


def scenic(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        scenic_command(*args),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) below ``parser``, itself first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name not in NOT_OURS:
                    yield from _commands(sub, (*path, name))


def test_every_command_and_option_says_what_it_does_in_a_sentence():
    silent = []
    for path, parser in _commands(build_parser()):
        if not (parser.description or "").strip().endswith("."):
            silent.append(" ".join(("scenic", *path)) + " (description)")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                helps = [c.help for c in action._choices_actions if c.dest not in NOT_OURS]
                if not all((text or "").endswith(".") for text in helps):
                    silent.append(" ".join(("scenic", *path)) + " (its commands' list)")
                continue
            if not (action.help or "").endswith("."):
                name = action.option_strings[0] if action.option_strings else action.dest
                silent.append(" ".join(("scenic", *path, name)))
    assert silent == []


def test_the_top_level_help_shows_no_markup():
    done = scenic("--help")
    assert done.returncode == 0
    for markup in ("``", ":mod:", ":class:", ":func:", ":data:"):
        assert markup not in done.stdout
    assert "serve" in done.stdout and "Run the server" in done.stdout


async def test_device_add_prints_only_the_token_on_stdout(dsn, db):
    added = await trio.to_thread.run_sync(
        scenic, "device", "add", "kiosk-07", "--role", "kiosk", "--dsn", dsn
    )
    assert added.returncode == 0
    token = added.stdout.removesuffix("\n")
    assert added.stdout == token + "\n" and token and not any(c.isspace() for c in token)
    assert "shown only once" in added.stderr
    async with running_server(dsn, db, {}) as server:
        async with connect(server.url, "kiosk-07", token) as kiosk:
            assert await kiosk.request("ping") == {}


PROFILE = """
[run]
description = "Two seconds of everything, against a running server"
duration_s = 2
seed = 3

[server]
order_ttl_s = 900
duplicate_rate = 0.0
max_delay_s = 0.0

[devices]
kiosks = 1
counters = 1
gates = 1

[sales]
orders_per_s = 2
pay_late = 0.0

[scans]
presold = 10
per_gate_per_s = 2
"""


async def test_loadtest_prints_its_verdict_and_the_report_path_on_stdout(dsn, db, tmp_path):
    (tmp_path / "brief.toml").write_text(PROFILE)
    out = tmp_path / "report"
    async with running_server(dsn, db, {}) as server:
        done = await trio.to_thread.run_sync(
            lambda: scenic(
                "loadtest",
                "--profile",
                str(tmp_path / "brief.toml"),
                "--server",
                server.url,
                "--dsn",
                dsn,
                "--quiet",
                "--out",
                str(out),
            )
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"loadtest brief passed: every check holds\nreport: {out / 'report.md'}\n"
    )
    assert (out / "report.md").exists()


def test_db_dsn_names_the_embedded_cluster_while_it_is_stopped():
    # A short path: the socket lives in the cluster's directory (a long one moves it).
    parent = Path(tempfile.mkdtemp(prefix="sg-", dir="/tmp"))
    try:
        done = scenic("db", "dsn", "--data-dir", str(parent / "data"))
        assert done.returncode == 0
        assert done.stdout == f"postgresql://postgres:@/postgres?host={parent}/data/postgres\n"
        assert "is not running" in done.stderr
        assert not (parent / "data").exists()  # asking creates nothing
    finally:
        shutil.rmtree(parent)


def test_db_dsn_prints_the_dsn_from_the_environment_when_there_is_one():
    done = scenic("db", "dsn", env={"SCENIC_DSN": "postgresql://scenic@db.example/scenic"})
    assert done.returncode == 0
    assert done.stdout == "postgresql://scenic@db.example/scenic\n"


def test_a_logged_dsn_hides_a_password_but_not_an_empty_one():
    assert (
        redact_dsn("postgresql://scenic:hunter2@db/scenic") == "postgresql://scenic:***@db/scenic"
    )
    embedded = "postgresql://postgres:@/postgres?host=/var/lib/scenic/postgres"
    assert redact_dsn(embedded) == embedded
    assert redact_dsn("postgresql://scenic@db/scenic") == "postgresql://scenic@db/scenic"
