"""The ``scenic`` command as an operator runs it: separate processes, embedded PostgreSQL."""

from __future__ import annotations

import subprocess
import time

import pytest
import trio

from clients.client import ConnectionLost, RemoteError, connect
from loadtest.local_server import add_device, scenic_command, stop_process, wait_for_listening


def scenic(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        scenic_command(*args), capture_output=True, text=True, timeout=120, check=check
    )


def start_server(data_dir, log_path, *more: str) -> tuple[subprocess.Popen, str]:
    with open(log_path, "a") as log_file:
        process = subprocess.Popen(
            scenic_command("serve", "--data-dir", str(data_dir), "--port", "0", *more),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return process, wait_for_listening(log_path, process, time.perf_counter() + 120)


async def test_serve_on_the_embedded_default_survives_a_restart(tmp_path):
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    process, url = start_server(data_dir, log_path)
    try:
        token = add_device(data_dir, "kiosk-01", "kiosk")  # shares the running cluster
        async with connect(url, "kiosk-01", token) as client:
            assert await client.request("ping") == {}
        assert "kiosk-01" in scenic("device", "list", "--data-dir", str(data_dir)).stdout
    finally:
        assert stop_process(process) == 0
    log = log_path.read_text()
    assert '"server.listening"' in log and '"embedded.stopped"' in log
    assert not (data_dir / "postgres" / "postmaster.pid").exists()

    process, url = start_server(
        data_dir, tmp_path / "again.log"
    )  # same data: the device is still there
    try:
        async with connect(url, "kiosk-01", token) as client:
            assert await client.request("ping") == {}
    finally:
        assert stop_process(process) == 0


async def test_device_commands_against_a_dsn(dsn):
    added = scenic("device", "add", "gate-07", "--role", "gate", "--dsn", dsn)
    token = added.stdout.strip().splitlines()[-1]
    assert len(token) >= 32
    listing = scenic("device", "list", "--dsn", dsn).stdout
    assert "gate-07" in listing and "active" in listing
    again = scenic("device", "add", "gate-07", "--role", "gate", "--dsn", dsn, check=False)
    assert again.returncode == 1 and "device_exists" in again.stderr
    assert scenic("device", "revoke", "gate-07", "--dsn", dsn).returncode == 0
    assert "revoked" in scenic("device", "list", "--dsn", dsn).stdout
    assert scenic("device", "revoke", "gate-07", "--dsn", dsn, check=False).returncode == 1
    bad_role = scenic("device", "add", "x", "--role", "wizard", "--dsn", dsn, check=False)
    assert bad_role.returncode == 2


async def test_revoking_from_the_command_line_closes_the_open_connection(tmp_path):
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    process, url = start_server(data_dir, log_path)
    try:
        token = add_device(data_dir, "kiosk-02", "kiosk")
        async with connect(url, "kiosk-02", token) as client:
            await trio.to_thread.run_sync(
                scenic, "device", "revoke", "kiosk-02", "--data-dir", str(data_dir)
            )
            with trio.fail_after(10), pytest.raises(ConnectionLost):
                while True:
                    await client.request("ping")
                    await trio.sleep(0.05)
        with pytest.raises(RemoteError) as refused:
            async with connect(url, "kiosk-02", token):
                pass
        assert refused.value.code == "bad_credentials"
    finally:
        assert stop_process(process) == 0


async def test_catalog_load_checks_the_file_and_puts_it_on_sale(dsn, tmp_path):
    from server.site import demo_catalog_source

    good = tmp_path / "park.toml"
    good.write_text(demo_catalog_source().replace("Yunqi Mountain", "Test Valley"))
    loaded = scenic("catalog", "load", str(good), "--dsn", dsn)
    assert "Test Valley Scenic Area on sale" in loaded.stdout
    assert "Test Valley" in scenic("catalog", "show", "--dsn", dsn).stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(demo_catalog_source().replace("price_fen = 12000", "price_fen = -5"))
    refused = scenic("catalog", "load", str(bad), "--dsn", dsn, check=False)
    assert refused.returncode == 1 and "price_fen" in refused.stderr
    assert "Test Valley" in scenic("catalog", "show", "--dsn", dsn).stdout
    missing = scenic("catalog", "load", str(tmp_path / "nope.toml"), "--dsn", dsn, check=False)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


async def test_serve_with_two_workers_shares_one_port_and_stops_cleanly(tmp_path):
    data_dir, log_path = tmp_path / "data", tmp_path / "workers.log"
    process, url = start_server(data_dir, log_path, "--workers", "2")
    try:
        with trio.fail_after(60):
            while log_path.read_text().count('"server.listening"') < 2:
                await trio.sleep(0.1)
        token = add_device(data_dir, "kiosk-01", "kiosk")
        for _ in range(6):  # the kernel spreads connections over both workers
            async with connect(url, "kiosk-01", token) as client:
                assert await client.request("ping") == {}
    finally:
        assert stop_process(process) == 0
    log = log_path.read_text()
    assert '"workers.stopped"' in log and '"embedded.stopped"' in log
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


async def test_serve_with_a_channel_sim_url_stops_cleanly_on_sigterm(dsn, tmp_path):
    # The remote channels' nurseries used to close after the workers' nursery that
    # held them: SIGTERM ended in "Nursery misnesting detected!" and exit status 1.
    log_path = tmp_path / "server.log"
    process, _ = start_server(
        tmp_path / "data", log_path, "--dsn", dsn, "--channel-sim-url", "ws://127.0.0.1:9"
    )
    assert stop_process(process) == 0
    log = log_path.read_text()
    assert '"server.stopped"' in log and "Traceback" not in log
