"""The merchant keys the server and the channel simulator share, one per QR channel.

A real merchant downloads its API key from each channel's merchant platform
and configures it on both ends; here one JSON file in the data directory
holds them, ``{"wechat": "<64 hex>", "alipay": "<64 hex>"}``, readable by its
owner only. Whichever of the server and the simulator starts first creates
it; the other reads the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from actors.channels import QR_CHANNELS
from server.errors import ScenicError

#: bytes of each merchant key (written as 64 hex digits)
KEY_BYTES = 32


class BadChannelKeys(ScenicError):
    """The keys file cannot be read or does not hold a key for every QR channel."""

    code = "bad_channel_keys"


def load_or_create_channel_keys(path: Path) -> dict[str, bytes]:
    """The merchant key of each QR channel, from ``path``, creating the file if missing.

    A missing file is created with fresh random keys and mode 0o600, atomically:
    the keys are written to a temporary file beside it and hard-linked into
    place, which never replaces an existing file, so when two processes race
    both end up with the keys of whichever linked first. Raises
    :class:`BadChannelKeys` (``bad_channel_keys``) when the file exists but is
    unreadable, not JSON, or lacks a 64-hex-digit key for a channel.
    """
    path = Path(path)
    if not path.exists():
        _create(path)
    return _read(path)


def read_channel_keys(path: Path) -> dict[str, bytes]:
    """The merchant keys in ``path``; raises :class:`BadChannelKeys` if it is missing or bad."""
    path = Path(path)
    if not path.exists():
        raise BadChannelKeys(
            f"there is no channel keys file at {path}: give its place with --keys or "
            "SCENIC_CHANNEL_KEYS (scenic serve creates one when it first starts)"
        )
    return _read(path)


def fingerprint(key: bytes) -> str:
    """A merchant key's fingerprint: the SHA-256 of its bytes, 64 lower-case hex digits.

    Safe to store and show: it names the key without revealing it.
    """
    return hashlib.sha256(key).hexdigest()


def fingerprints(keys: Mapping[str, bytes]) -> dict[str, str]:
    """The fingerprint of each channel's key."""
    return {name: fingerprint(key) for name, key in keys.items()}


def check_fingerprints(path: Path, ours: Mapping[str, str], differing: Mapping[str, str]) -> None:
    """Raise :class:`BadChannelKeys` naming each channel whose key is not the recorded one.

    ``differing`` maps each such channel to the fingerprint the database holds.
    """
    if not differing:
        return
    detail = "; ".join(
        f"{name}: {ours[name][:12]}... here, {recorded[:12]}... recorded"
        for name, recorded in sorted(differing.items())
    )
    raise BadChannelKeys(
        f"the merchant keys in {path} are not the ones the other servers on this database use "
        f"({detail}): give every server the same keys file (SCENIC_CHANNEL_KEYS), or run "
        "`scenic channel-keys adopt` if the keys were changed on purpose"
    )


def _create(path: Path) -> None:
    keys = {name: secrets.token_bytes(KEY_BYTES).hex() for name in QR_CHANNELS}
    data = (json.dumps(keys, indent=2) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                pass  # another process created it first: its keys are the ones
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        raise BadChannelKeys(f"cannot create the channel keys file {path}: {exc}") from None


def _read(path: Path) -> dict[str, bytes]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadChannelKeys(f"cannot read the channel keys file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise BadChannelKeys(f"the channel keys file {path} must hold a JSON object")
    keys = {}
    for name in QR_CHANNELS:
        value = raw.get(name)
        if not isinstance(value, str) or len(value) != 2 * KEY_BYTES:
            raise BadChannelKeys(f"the channel keys file {path} lacks a 64-hex-digit {name} key")
        try:
            keys[name] = bytes.fromhex(value)
        except ValueError:
            raise BadChannelKeys(f"the {name} key in {path} is not hex") from None
    return keys
