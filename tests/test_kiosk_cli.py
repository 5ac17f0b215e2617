"""``scenic kiosk`` from the command line: in a real pseudo-terminal, and its usage errors."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from loadtest.local_server import scenic_command
from tests.kiosk_support import DemoServer


def read_until(fd: int, wanted: bytes, within: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + within
    while wanted not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{wanted!r} not shown within {within} s; got {seen[-400:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.slow
def test_the_kiosk_opens_in_a_terminal_greets_in_chinese_and_quits_on_ctrl_q(dsn, tmp_path):
    server = DemoServer(dsn, tmp_path, {"kiosk-1": "kiosk"})
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    try:
        process = subprocess.Popen(
            scenic_command(
                "kiosk",
                "--url",
                server.url,
                "--device",
                "kiosk-1",
                "--token",
                server.tokens["kiosk-1"],
            ),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
            close_fds=True,
        )
        os.close(slave)
        try:
            shown = read_until(master, "欢迎".encode(), within=60)
            shown += read_until(master, "已连接".encode(), within=30)
            os.write(master, b"\x11")  # Ctrl+Q
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        assert b"Traceback" not in shown
    finally:
        os.close(master)
        server.stop()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--token", "t"], "the following arguments are required: --device"),
        (["--device", "k", "--token", "t", "--idle-seconds", "1"], "outside 5..3600 seconds"),
        (["--device", "k", "--token", "t", "--url", "http://x"], "is not a ws:// URL"),
    ],
)
def test_a_wrong_command_line_is_one_line_and_status_2(args, said):
    done = subprocess.run(
        scenic_command("kiosk", *args), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
