"""Registering, listing and removing a user's SSH keys on a peer (what the CLI calls).

Adding or removing a key takes the user's passphrase: it proves the account is theirs and,
for adding, unlocks the master key so a copy can be wrapped for the key's unlock secret.
"""

from __future__ import annotations

from pathlib import Path

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import validate_username
from mydrive.errors import UnknownFile
from mydrive.sftp.hostkey import sftp_dir
from mydrive.sftp.keyring import KEYRING_NAME, KeyRing, SshKeyEntry, make_entry


def keyring_of(peer_root: Path) -> KeyRing:
    return KeyRing(sftp_dir(peer_root) / KEYRING_NAME)


def add_ssh_key(client: PeerClient, peer_root: Path, user: str, passphrase: str,
                public_key_text: str) -> tuple[SshKeyEntry, str]:
    """Register the key for ``user``; returns the entry and its unlock secret (shown once)."""
    record = client.user_record(user)
    keys = client.login(user, passphrase)
    params = crypto.new_kdf_params(client.random_bytes, **client.kdf_costs)
    entry, secret = make_entry(record, keys, public_key_text, now_ms=client.clock.now_ms(),
                               kdf_params=params, random_bytes=client.random_bytes)
    keyring_of(peer_root).add(entry)
    return entry, secret


def list_ssh_keys(peer_root: Path, user: str) -> list[SshKeyEntry]:
    return keyring_of(peer_root).of_user(validate_username(user))


def remove_ssh_key(client: PeerClient, peer_root: Path, user: str, passphrase: str,
                   fingerprint: str) -> None:
    client.login(user, passphrase)
    if not keyring_of(peer_root).remove(user, fingerprint):
        raise UnknownFile(f"no SSH key {fingerprint} registered to {user} on this peer")
