"""The websocket echo ceiling, measured in the same run as a benchmark it is shown beside.

A bare trio-websocket + cbor2 echo server answers small requests as fast as
this machine can (docs/DESIGN.md, *Hot paths*): a server doing real work
is best judged as a fraction of it. The script lives outside the package,
in the shared bench folder (``../shared/bench/ws_echo_ceiling.py`` next to
the checkout, or ``SCENIC_ECHO_CEILING``); :func:`measure_echo_ceiling`
runs its server and client (8 connections, 64 in flight each) and returns
the requests a second, or ``None`` and why when it cannot.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from loadtest.local_server import stop_process
from server.workers import free_port

#: where the script is looked for when ``SCENIC_ECHO_CEILING`` is not set
DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "ws_echo_ceiling.py"


def echo_script() -> Path:
    """The echo ceiling script to run (it may not exist)."""
    return Path(os.environ.get("SCENIC_ECHO_CEILING", DEFAULT_SCRIPT))


def measure_echo_ceiling(seconds: float = 10.0) -> tuple[float | None, str]:
    """(requests a second, how it was measured), or (``None``, why not)."""
    script = echo_script()
    if not script.is_file():
        return None, f"not measured: no {script} (set SCENIC_ECHO_CEILING to the script)"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(script), "serve", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        done = subprocess.run(
            [sys.executable, str(script), "client", str(port), "pipe", "8", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        stop_process(server)
    found = re.search(r"([\d,]+) msgs/s", done.stdout)
    if done.returncode != 0 or found is None:
        return None, f"not measured: the echo client failed ({done.stderr.strip()[-200:]})"
    return float(found.group(1).replace(",", "")), f"{script.name} pipe 8 x 64, {seconds:.0f} s"
