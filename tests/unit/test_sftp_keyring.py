"""Registered SSH keys: what the peer stores for a key unlocks nothing without the client's
unlock secret, and an entry is bound to its user, account and key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import asyncssh
import pytest

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import create_user
from mydrive.errors import BadRequest, PermissionDenied, TooLarge
from mydrive.sftp.keyring import (
    MAX_KEYS_PER_USER,
    KeyRing,
    SshKeyEntry,
    make_entry,
    parse_public_key,
    unlock_with_secret,
)
from tests.strategies import FAST_KDF


def _user(name: str = "alice"):
    return create_user(name, f"{name} passphrase", kdf_params=crypto.new_kdf_params(**FAST_KDF))


def _pub() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()


def _entry(record, keys, pub: str | None = None):
    return make_entry(record, keys, pub or _pub(), now_ms=1,
                      kdf_params=crypto.new_kdf_params(**FAST_KDF))


def test_sftp_keyring_secret_unlocks_the_users_keys() -> None:
    """The unlock secret printed at registration gives back exactly the user's keys."""
    record, keys = _user()
    entry, secret = _entry(record, keys)
    unlocked = unlock_with_secret(entry, record, secret)
    assert unlocked.master_key == keys.master_key and unlocked.user_id == keys.user_id


def test_sftp_keyring_stolen_disk_holds_no_key(tmp_path: Path) -> None:
    """The keyring file holds no key or secret and opens with nothing but the unlock secret."""
    record, keys = _user()
    entry, secret = _entry(record, keys)
    ring = KeyRing(tmp_path / "ssh_keys.json")
    ring.add(entry)
    raw = (tmp_path / "ssh_keys.json").read_bytes()
    assert keys.master_key.hex().encode() not in raw and secret.encode() not in raw
    assert (tmp_path / "ssh_keys.json").stat().st_mode & 0o077 == 0
    stored = ring.entries()[0]
    for guess in ("alice passphrase", secret[:-1] + ("A" if secret[-1] != "A" else "B"), ""):
        with pytest.raises(PermissionDenied):
            unlock_with_secret(stored, record, guess)


def test_sftp_keyring_wrap_is_bound_to_account_and_key() -> None:
    """A wrap moved to another key, or from an earlier same-name account, opens nothing."""
    record, keys = _user()
    entry, secret = _entry(record, keys)
    other_key = parse_public_key(_pub())
    moved = dataclasses.replace(entry, public_key=other_key.export_public_key().decode().strip(),
                                fingerprint=other_key.get_fingerprint("sha256"))
    with pytest.raises(PermissionDenied):
        unlock_with_secret(moved, record, secret)
    new_record, _ = _user()  # "alice" deleted and created again: a new user id
    with pytest.raises(PermissionDenied, match="another account"):
        unlock_with_secret(entry, new_record, secret)


def test_sftp_keyring_refuses_bad_keys_and_duplicates(tmp_path: Path) -> None:
    """Private, garbage and DSA keys, duplicates and over MAX_KEYS_PER_USER are refused."""
    private = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    for text in (private, "ssh-ed25519 AAAAnot-base64", "", "x" * 20000):
        with pytest.raises(BadRequest):
            parse_public_key(text)
    record, keys = _user()
    ring = KeyRing(tmp_path / "ssh_keys.json")
    pub = _pub()
    ring.add(_entry(record, keys, pub)[0])
    with pytest.raises(BadRequest, match="already registered"):
        ring.add(_entry(record, keys, pub)[0])
    for _ in range(MAX_KEYS_PER_USER - 1):
        ring.add(_entry(record, keys)[0])
    with pytest.raises(TooLarge):
        ring.add(_entry(record, keys)[0])
    assert len(ring.of_user("alice")) == MAX_KEYS_PER_USER


def test_sftp_keyring_file_tampering_is_refused(tmp_path: Path) -> None:
    """A keyring entry with a forged fingerprint, or a malformed file, is BadRequest."""
    record, keys = _user()
    entry, _ = _entry(record, keys)
    doc = {"version": 1, "keys": [{**entry.to_json(), "fingerprint": "SHA256:forged"}]}
    (tmp_path / "ssh_keys.json").write_text(json.dumps(doc))
    with pytest.raises(BadRequest, match="fingerprint"):
        KeyRing(tmp_path / "ssh_keys.json").entries()
    (tmp_path / "ssh_keys.json").write_text("{not json")
    with pytest.raises(BadRequest):
        KeyRing(tmp_path / "ssh_keys.json").entries()
    assert SshKeyEntry.from_json(entry.to_json()) == entry
