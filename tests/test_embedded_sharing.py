"""Several processes on one embedded cluster: the last one out stops it, nobody else.

A short command (``scenic device add``) may start the cluster just before a
server joins it; when the command exits it must leave the cluster running for
the server, and the server stops it when it stops.
"""

from __future__ import annotations

import subprocess
import sys
import time

import trio

from clients.client import connect
from loadtest.local_server import scenic_command, stop_process, wait_for_listening
from server.storage.embedded import EmbeddedPostgres

#: the README's story, run from a fresh data directory this many times
README_ROUNDS = 3


def _serve(data_dir, log_path, *more: str) -> subprocess.Popen:
    with open(log_path, "a") as log_file:
        return subprocess.Popen(
            scenic_command("serve", "--data-dir", str(data_dir), "--port", "0", *more),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def _scenic(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(scenic_command(*args), capture_output=True, text=True, timeout=60)


def _device_add(data_dir, device_id: str) -> str:
    """``scenic device add DEVICE --role kiosk`` on ``data_dir``; its stdout, the token."""
    return subprocess.run(
        scenic_command("device", "add", device_id, "--role", "kiosk", "--data-dir", str(data_dir)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()


def _postmaster_running(data_dir) -> bool:
    return (data_dir / "postgres" / "postmaster.pid").exists()


async def test_a_command_that_started_the_cluster_leaves_it_to_the_server_that_joined(tmp_path):
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    command = EmbeddedPostgres(data_dir)  # what `scenic device add` holds while it runs
    await trio.to_thread.run_sync(command.start)
    process = _serve(data_dir, log_path)
    try:
        url = wait_for_listening(log_path, process, time.perf_counter() + 60)
        assert '"embedded.shared"' in log_path.read_text()
        await trio.to_thread.run_sync(command.stop)  # the command exits
        assert _postmaster_running(data_dir)
        token = await trio.to_thread.run_sync(_device_add, data_dir, "kiosk-01")
        async with connect(url, "kiosk-01", token) as client:
            assert await client.request("ping") == {}
        # Another program finds the running cluster by `scenic db dsn`.
        asked = await trio.to_thread.run_sync(_scenic, "db", "dsn", "--data-dir", str(data_dir))
        assert asked.returncode == 0 and asked.stderr == ""
        listing = await trio.to_thread.run_sync(
            _scenic, "device", "list", "--dsn", asked.stdout.strip()
        )
        assert listing.returncode == 0 and "kiosk-01" in listing.stdout
        assert process.poll() is None
    finally:
        assert stop_process(process) == 0
    log = log_path.read_text()
    assert '"embedded.stopped"' in log and "Traceback" not in log
    assert not _postmaster_running(data_dir)


def test_the_readme_story_block_pasted_as_is_never_kills_the_server(tmp_path):
    # `scenic serve --demo &` and `scenic device add` race for the cluster: whichever
    # starts it, the server must survive the command's exit and tell the story.
    for round_ in range(README_ROUNDS):
        data_dir, log_path = tmp_path / f"data{round_}", tmp_path / f"server{round_}.log"
        process = _serve(data_dir, log_path, "--demo")
        try:
            token = _device_add(data_dir, "kiosk-01")
            url = wait_for_listening(log_path, process, time.perf_counter() + 60)
            story_command = [sys.executable, "-m", "clients.story", "--server", url]
            story = subprocess.run(
                [*story_command, "--device", "kiosk-01", "--token", token],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert story.returncode == 0, story.stderr
            assert "is paid; refunds: 1" in story.stdout
            assert process.poll() is None, log_path.read_text()
        finally:
            status = stop_process(process)
        log = log_path.read_text()
        assert status == 0, log
        assert '"server.stopped"' in log and "Traceback" not in log
        assert not _postmaster_running(data_dir)
