"""A mistake a person can fix is one line on stderr: what is wrong and what to do.

Exit status 2 for a usage error (a flag, a ``SCENIC_*`` value), 1 for a
failure (the database, the port, the data directory). Each case runs the real
``scenic`` entry point; the JSON log lines a command writes before it fails
are not the message and are left out of the count.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from loadtest.local_server import scenic_command
from server.site import demo_catalog_source
from tests.conftest import _with_database
from tests.helpers import running_server

REFUSED = "postgresql://postgres@127.0.0.1:1/scenic"
NO_SOCKET = "postgresql://postgres@/scenic?host=/nonexistent-scenic-socket-dir"
WRONG_SCHEME = "mysql://scenic:secret@127.0.0.1/scenic"

#: every command that takes --dsn (gate-sim's belong to the devices)
DSN_COMMANDS = [
    ["serve", "--port", "0"],
    ["device", "add", "kiosk-09", "--role", "kiosk"],
    ["device", "list"],
    ["device", "revoke", "kiosk-09"],
    ["audit"],
    ["catalog", "load", "PARK"],  # PARK: a catalog file of the test's own
    ["catalog", "show"],
    ["keys", "list"],
    ["keys", "rotate"],
    ["keys", "retire", "K1"],
    ["report", "rentals"],
]


def scenic(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        scenic_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def the_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failed command said, after checking it is the only one."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", DSN_COMMANDS, ids=" ".join)
def test_an_unreachable_dsn_is_one_line_in_every_command_that_takes_one(command, tmp_path):
    park = tmp_path / "park.toml"
    park.write_text(demo_catalog_source())
    command = [str(park) if word == "PARK" else word for word in command]
    done = scenic(*command, "--dsn", REFUSED, "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert the_line(done) == (
        "scenic: cannot reach PostgreSQL at 127.0.0.1:1: connection refused; start "
        "PostgreSQL, or point --dsn or SCENIC_DSN at one that runs"
    )


def test_loadtest_against_an_unreachable_dsn_is_one_line():
    done = scenic("loadtest", "--server", "ws://127.0.0.1:1", "--dsn", REFUSED)
    assert done.returncode == 1
    assert the_line(done).startswith("scenic: cannot reach PostgreSQL at 127.0.0.1:1")


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["device", "list"], ["audit"]])
@pytest.mark.parametrize(
    ("kind", "status", "line"),
    [
        ("no_socket", 1, "scenic: cannot reach PostgreSQL at /nonexistent-scenic-socket-dir: "),
        ("missing_database", 1, "scenic: PostgreSQL at "),
        ("wrong_scheme", 2, "scenic: the DSN 'mysql://scenic:***@127.0.0.1/scenic' is not a "),
    ],
)
def test_each_kind_of_bad_dsn_says_what_is_wrong(
    command, kind, status, line, pg_server_dsn, tmp_path
):
    bad = {
        "no_socket": NO_SOCKET,
        "missing_database": _with_database(pg_server_dsn, "no_such_scenic_db"),
        "wrong_scheme": WRONG_SCHEME,
    }[kind]
    done = scenic(*command, "--dsn", bad, "--data-dir", str(tmp_path))
    assert done.returncode == status
    said = the_line(done)
    assert said.startswith(line)
    if kind == "missing_database":
        assert "has no database 'no_such_scenic_db'; create it" in said
    assert "secret" not in said


def test_a_bad_dsn_in_the_environment_is_refused_like_the_flag(tmp_path):
    done = scenic("device", "list", env={"SCENIC_DSN": WRONG_SCHEME})
    assert done.returncode == 2
    assert "is not a PostgreSQL URL" in the_line(done)


def test_log_level_debug_still_shows_the_traceback():
    done = scenic("audit", "--dsn", REFUSED, "--log-level", "DEBUG")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConnectionRefusedError" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("scenic: cannot reach PostgreSQL")


async def test_a_port_in_use_is_one_line(dsn, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await trio.to_thread.run_sync(
            lambda: scenic("serve", "--dsn", dsn, "--port", str(port), "--data-dir", str(tmp_path))
        )
    assert done.returncode == 1
    assert the_line(done) == (
        f"scenic: cannot listen on 127.0.0.1:{port}: the port is in use by another process; "
        "stop it, or choose a free port with --port (SCENIC_PORT)"
    )


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--port", "99999"],
            {},
            "scenic serve: argument --port: 99999 cannot be used: a port number is 0-65535 "
            "(0 picks a free port); see scenic serve --help",
        ),
        (
            ["--port", "http"],
            {},
            "scenic serve: argument --port: 'http' is not a whole number; see scenic serve --help",
        ),
        (
            [],
            {"SCENIC_PORT": "99999"},
            "scenic: SCENIC_PORT='99999' cannot be used: a port number is 0-65535 "
            "(0 picks a free port); fix it or unset it",
        ),
        (
            [],
            {"SCENIC_PORT": "eighty"},
            "scenic: SCENIC_PORT='eighty' is not a whole number (a port number is 0-65535, "
            "0 picks a free port); fix it or unset it",
        ),
        (
            [],
            {"SCENIC_LOG_LEVEL": "LOUD"},
            "scenic: SCENIC_LOG_LEVEL='LOUD' cannot be used: the log level is one of DEBUG, "
            "INFO, WARNING, ERROR; fix it or unset it",
        ),
        (
            ["--log-level", "loud"],
            {},
            "scenic serve: argument --log-level: 'loud' cannot be used: the log level is one of "
            "DEBUG, INFO, WARNING, ERROR; see scenic serve --help",
        ),
        (
            ["--workers", "0"],
            {},
            "scenic serve: argument --workers: 0 cannot be used: the least is 1; "
            "see scenic serve --help",
        ),
    ],
)
def test_a_bad_setting_is_a_usage_error_naming_it(args, env, line, tmp_path):
    done = scenic("serve", "--data-dir", str(tmp_path), *args, env=env)
    assert done.returncode == 2
    assert the_line(done) == line


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    for command in (["serve", "--port", "0"], ["device", "list"]):
        done = scenic(*command, "--data-dir", str(tmp_path / "data"))
        assert done.returncode == 1
        assert the_line(done) == (
            f"scenic: the data directory {tmp_path / 'data'} is a file, not a directory; "
            "remove it or choose another with --data-dir or SCENIC_DATA_DIR"
        )


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    for command in (["serve", "--port", "0"], ["device", "list"]):
        done = scenic(*command, "--data-dir", str(tmp_path / "file" / "data"))
        assert done.returncode == 1
        assert the_line(done) == (
            f"scenic: cannot make the data directory {tmp_path / 'file' / 'data'}: a part of "
            "that path is a file; choose another with --data-dir or SCENIC_DATA_DIR"
        )


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are closed to others)."""
    path = Path(tempfile.mkdtemp(prefix="scenic-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    (path / "locked").chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def test_a_data_dir_that_is_not_writable_is_one_line(open_dir):
    locked = open_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    as_nobody = []
    if os.geteuid() == 0:  # root writes anywhere: run the command as nobody
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot make a directory unwritable")
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for command in (["serve", "--port", "0"], ["device", "list"]):
        done = subprocess.run(
            [*as_nobody, *scenic_command(*command, "--data-dir", str(locked))],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        assert done.returncode == 1
        assert the_line(done) == (
            f"scenic: the data directory {locked} is not writable by this user; fix its "
            "permissions or choose another with --data-dir or SCENIC_DATA_DIR"
        )


def story(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.story", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_story_with_no_server_running_is_one_line():
    done = story("--server", "ws://127.0.0.1:1", "--device", "kiosk-01", "--token", "x" * 43)
    assert done.returncode == 1
    assert the_line(done) == (
        "story: cannot reach the server at ws://127.0.0.1:1: connection refused; start it "
        "(scenic serve --demo) or give --server its ws:// URL"
    )


async def test_the_story_with_a_wrong_token_is_one_line(dsn, db):
    async with running_server(dsn, db, {"kiosk-01": "kiosk"}) as server:
        done = await trio.to_thread.run_sync(
            lambda: story("--server", server.url, "--device", "kiosk-01", "--token", "x" * 43)
        )
    assert done.returncode == 1
    assert the_line(done) == (
        "story: the server refused device 'kiosk-01' with this token; register it with "
        "scenic device add kiosk-01 --role kiosk and pass the token it prints"
    )
