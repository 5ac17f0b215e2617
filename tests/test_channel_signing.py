"""Notification signatures and the merchant keys file."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from server.channels import signing
from server.channels.adapter import BadSignature
from server.channels.keys import load_or_create_channel_keys
from server.errors import ScenicError

SECRET = bytes(range(32))
NOW = 1_795_000_000.0


def notification(**overrides):
    fields = {
        "channel": "wechat",
        "out_trade_no": "T20261124000001",
        "channel_txn_id": "4200001234202611245678901234",
        "amount_fen": 12800,
        "paid_at": NOW - 3.25,
    }
    return {**fields, **overrides}


def test_a_signed_notification_verifies():
    signing.verify(signing.signed(notification(), SECRET, NOW), SECRET, NOW + 10)


def test_each_signing_has_a_fresh_nonce_and_signature():
    first = signing.signed(notification(), SECRET, NOW)
    second = signing.signed(notification(), SECRET, NOW)
    assert first["nonce"] != second["nonce"]
    assert first["signature"] != second["signature"]


def test_a_signature_by_another_key_is_refused():
    forged = signing.signed(notification(), b"not the merchant key", NOW)
    with pytest.raises(BadSignature):
        signing.verify(forged, SECRET, NOW)


def test_a_made_up_signature_is_refused():
    fields = {**signing.signed(notification(), SECRET, NOW), "signature": "A" * 64}
    with pytest.raises(BadSignature, match="does not match"):
        signing.verify(fields, SECRET, NOW)


def test_a_tampered_amount_is_refused():
    fields = signing.signed(notification(), SECRET, NOW)
    fields["amount_fen"] = 1
    with pytest.raises(BadSignature):
        signing.verify(fields, SECRET, NOW)


def test_a_tampered_order_is_refused():
    fields = signing.signed(notification(), SECRET, NOW)
    fields["out_trade_no"] = "T20261124000002"
    with pytest.raises(BadSignature):
        signing.verify(fields, SECRET, NOW)


@pytest.mark.parametrize("offset", [signing.MAX_SKEW_S + 1, -(signing.MAX_SKEW_S + 1), 86400 * 3])
def test_a_stale_or_future_sign_ts_is_refused(offset):
    fields = signing.signed(notification(), SECRET, NOW - offset)
    with pytest.raises(BadSignature, match="stale or replayed"):
        signing.verify(fields, SECRET, NOW)


def test_a_sign_ts_just_inside_the_window_is_accepted():
    fields = signing.signed(notification(), SECRET, NOW - signing.MAX_SKEW_S + 1)
    signing.verify(fields, SECRET, NOW)


@pytest.mark.parametrize("missing", [*signing.NOTIFICATION_FIELDS, "signature"])
def test_a_notification_missing_a_field_is_refused(missing):
    fields = signing.signed(notification(), SECRET, NOW)
    del fields[missing]
    with pytest.raises(BadSignature, match=missing):
        signing.verify(fields, SECRET, NOW)


def test_a_null_field_counts_as_missing():
    fields = {**signing.signed(notification(), SECRET, NOW), "channel_txn_id": None}
    with pytest.raises(BadSignature, match="channel_txn_id"):
        signing.verify(fields, SECRET, NOW)


def test_a_signed_but_non_numeric_sign_ts_is_a_bad_signature_not_a_crash():
    body = {**notification(), "nonce": "n" * 32, "sign_ts": "soon"}
    fields = {**body, "signature": signing.sign(body, SECRET)}
    with pytest.raises(BadSignature, match="not a number"):
        signing.verify(fields, SECRET, NOW)


def test_a_non_text_signature_is_refused():
    fields = {**signing.signed(notification(), SECRET, NOW), "signature": 12345}
    with pytest.raises(BadSignature):
        signing.verify(fields, SECRET, NOW)


def test_the_keys_file_is_created_private_and_read_back(tmp_path):
    path = tmp_path / "data" / "channel_keys.json"
    keys = load_or_create_channel_keys(path)
    assert set(keys) == {"wechat", "alipay"}
    assert all(len(key) == 32 for key in keys.values())
    assert keys["wechat"] != keys["alipay"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_channel_keys(path) == keys
    assert [p.name for p in path.parent.iterdir()] == ["channel_keys.json"]


def test_an_existing_keys_file_is_never_replaced(tmp_path):
    path = tmp_path / "channel_keys.json"
    path.write_text(json.dumps({"wechat": "ab" * 32, "alipay": "cd" * 32}))
    assert load_or_create_channel_keys(path) == {
        "wechat": bytes.fromhex("ab" * 32),
        "alipay": bytes.fromhex("cd" * 32),
    }


def test_racing_creators_all_get_the_same_keys(tmp_path):
    path = tmp_path / "channel_keys.json"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load_or_create_channel_keys(path)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result == results[0] for result in results)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        json.dumps({"wechat": "ab" * 32}),
        json.dumps({"wechat": "ab" * 32, "alipay": "zz" * 32}),
        json.dumps({"wechat": "ab" * 31, "alipay": "cd" * 32}),
        json.dumps({"wechat": 5, "alipay": "cd" * 32}),
    ],
)
def test_a_malformed_keys_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "channel_keys.json"
    path.write_text(content)
    with pytest.raises(ScenicError) as raised:
        load_or_create_channel_keys(path)
    assert raised.value.code == "bad_channel_keys"
    assert str(path) in raised.value.message


def test_the_worked_example_in_docs_channels_md_recomputes():
    from pathlib import Path

    from server.channels.keys import fingerprint
    from server.channels.signing import canonical, sign

    doc = (Path(__file__).parent.parent / "docs" / "channels.md").read_text(encoding="utf-8")
    key = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    fields = {
        "channel": "wechat",
        "out_trade_no": "P20261201K3M9Q2XT7VWA",
        "channel_txn_id": "4200002402202612014422242085",
        "amount_fen": 24000,
        "paid_at": 1796090400.25,
        "nonce": "5f0c2a8e9b1d4e7f8a6b3c2d1e0f9a8b",
        "sign_ts": 1796090401.0,
    }
    as_integers = {**fields, "paid_at": 1796090400, "sign_ts": 1796090401}
    for shown in (canonical(fields).decode(), sign(fields, key), sign(as_integers, key)):
        assert shown in doc
    assert canonical(as_integers).decode().endswith("&paid_at=1796090400&sign_ts=1796090401")
    assert fingerprint(key) in doc
