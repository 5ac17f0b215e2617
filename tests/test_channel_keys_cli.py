"""``scenic channel-keys``, and a server refusing keys its database does not know, as seen."""

from __future__ import annotations

import os
import subprocess
import time

from loadtest.local_server import scenic_command, stop_process, wait_for_listening
from server.channels.keys import fingerprint, load_or_create_channel_keys


def scenic(*args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        scenic_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_a_second_server_with_other_keys_refuses_to_start_in_one_line_until_adopted(dsn, tmp_path):
    first, other = tmp_path / "first.json", tmp_path / "other.json"
    first_keys = load_or_create_channel_keys(first)
    other_keys = load_or_create_channel_keys(other)
    shown = scenic("channel-keys", "show", "--dsn", dsn, "--keys", str(first))
    assert shown.returncode == 0, shown.stderr
    assert f"wechat   {fingerprint(first_keys['wechat'])}  not recorded yet" in shown.stdout

    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log_file:  # the first server records its keys
        server = subprocess.Popen(
            scenic_command("serve", "--dsn", dsn, "--port", "0"),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SCENIC_CHANNEL_KEYS": str(first)},
        )
    try:
        wait_for_listening(log_path, server, time.perf_counter() + 60)
    finally:
        assert stop_process(server) == 0
    shown = scenic("channel-keys", "show", "--dsn", dsn, "--keys", str(first))
    assert f"alipay   {fingerprint(first_keys['alipay'])}  recorded" in shown.stdout

    refused = scenic(
        "serve", "--dsn", dsn, "--port", "0", env={"SCENIC_CHANNEL_KEYS": str(other)}, timeout=60
    )
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("scenic:")]
    assert f"the merchant keys in {other} are not the ones" in line
    assert "SCENIC_CHANNEL_KEYS" in line and "scenic channel-keys adopt" in line
    differs = scenic("channel-keys", "show", "--dsn", dsn, "--keys", str(other))
    assert differs.returncode == 1
    assert f"DIFFERS: the database has {fingerprint(first_keys['wechat'])}" in differs.stdout

    assert scenic("channel-keys", "adopt", "--dsn", dsn, "--keys", str(other)).returncode == 0
    shown = scenic("channel-keys", "show", "--dsn", dsn, "--keys", str(other))
    assert shown.returncode == 0
    assert f"wechat   {fingerprint(other_keys['wechat'])}  recorded" in shown.stdout


def test_channel_keys_show_without_a_keys_file_says_where_to_point_it(dsn, tmp_path):
    missing = tmp_path / "nowhere.json"
    shown = scenic("channel-keys", "show", "--dsn", dsn, "--keys", str(missing))
    assert shown.returncode == 1
    assert shown.stderr.strip().startswith(f"scenic: there is no channel keys file at {missing}")
    assert not missing.exists()
