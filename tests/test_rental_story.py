"""The README's rental story runs against a real server, and its numbers are the contract's."""

from __future__ import annotations

import subprocess
import sys

import trio

from clients.rental_story import tell_story
from tests.helpers import running_server
from tests.test_orders import assert_audit_clean

DEVICES = {"kiosk-1": "kiosk", "desk-1": "rental"}


async def test_the_readme_rental_story_runs(dsn, db, capsys):
    async with running_server(dsn, db, DEVICES) as server:
        tokens = server.tokens
        await tell_story(server.url, "kiosk-1", tokens["kiosk-1"], "desk-1", tokens["desk-1"])
    told = capsys.readouterr().out
    assert "deposit 1000.00 + prepaid 160.00 = 1160.00 yuan due now" in told
    assert "charges 260.00 yuan (skis: usage 120.00; boots: usage 40.00, damage 100.00)" in told
    assert "settlement: paid 1160.00, kept 260.00, released 900.00, compensation 0.00" in told
    assert "deposit.refunded: 900.00 yuan by refund" in told and ", confirmed" in told
    assert "Alipay pre-authorisation of 130.00 yuan (deposit 100.00 + prepaid 30.00)" in told
    assert "settlement: paid 130.00, kept 30.00, released 100.00, compensation 0.00" in told
    assert "30.00 yuan converted into a payment, 100.00 yuan unfrozen" in told
    await assert_audit_clean(db)


def rental_story(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clients.rental_story", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_readme_rental_story_command_runs_against_a_server(dsn, db):
    async with running_server(dsn, db, {"kiosk-02": "kiosk", "desk-01": "rental"}) as server:
        tokens = server.tokens
        args = ["--server", server.url, "--device", "kiosk-02", "--token", tokens["kiosk-02"]]
        args += ["--desk", "desk-01", "--desk-token", tokens["desk-01"]]
        done = await trio.to_thread.run_sync(lambda: rental_story(*args))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(", confirmed\n") == 2
    assert done.stdout.splitlines()[-1].endswith(
        "is settled: 30.00 yuan converted into a payment, 100.00 yuan unfrozen"
    )


async def test_the_rental_story_with_a_wrong_desk_token_is_one_line(dsn, db):
    async with running_server(dsn, db, {"kiosk-02": "kiosk", "desk-01": "rental"}) as server:
        args = ["--server", server.url, "--device", "kiosk-02", "--token"]
        args += [server.tokens["kiosk-02"], "--desk", "desk-01", "--desk-token", "x" * 43]
        done = await trio.to_thread.run_sync(lambda: rental_story(*args))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "rental story: the server refused device 'desk-01' with this token; register it with "
        "scenic device add desk-01 --role rental and pass the token it prints\n"
    )
