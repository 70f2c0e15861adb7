"""SSH public keys registered to mydrive accounts on this peer, each with its own key wrap.

Public-key authentication proves that the client holds a private key, but it gives the server
no secret: the signature covers a per-connection session id, so nothing stable can be derived
from it, and the server only ever sees the public key. A key-only login that unlocked the
user's master key from what the peer stores would let a stolen peer disk unlock it too. So
registering a key (``mydrive user add-ssh-key``) also makes a random 256-bit *unlock secret*
that is printed once and stored nowhere on the peer; the client sends it after
authenticating, as the environment variable ``MYDRIVE_UNLOCK`` (OpenSSH: ``SetEnv``), and
only ``Argon2id(secret)`` unwraps the copy of the master key stored for that key.

One entry per (user, key) in ``PEER_DIR/sftp/ssh_keys.json`` (0600):
  user, user_id, fingerprint, public_key (OpenSSH line), kdf (Argon2id costs and salt),
  wrapped_master_key = AES-256-GCM(Argon2id(secret), master key,
                                   AAD = "mydrive-sftp-key-v1" | user_id | fingerprint),
  added_ms.
The file holds no secret and no key that unlocks anything without the client's secret.
Writes replace the whole file atomically: a crash leaves the old list or the new one.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, UserRecord, derive_user_keys, validate_username
from mydrive.crypto.primitives import KdfParams
from mydrive.errors import BadRequest, DecryptionFailed, PermissionDenied, TooLarge
from mydrive.runtime.disk import fsync_dir

KEYRING_NAME = "ssh_keys.json"
KEYRING_VERSION = 1
UNLOCK_ENV = "MYDRIVE_UNLOCK"
SECRET_PREFIX = "mdk1_"  # noqa: S105 - a format tag, not a secret
SECRET_BYTES = 32
MAX_KEYS_PER_USER = 16
MAX_KEYS = 4096
MAX_KEYRING_BYTES = 8 * 1024 * 1024
MAX_PUBLIC_KEY_CHARS = 16 * 1024
MAX_SECRET_CHARS = 128
WRAP_AAD_PREFIX = b"mydrive-sftp-key-v1"
# DSA is broken; everything else asyncssh can verify is accepted.
REFUSED_ALGORITHMS = frozenset({"ssh-dss"})


@dataclass(frozen=True)
class SshKeyEntry:
    """One registered key: public data and a wrap that needs the client's unlock secret."""

    user: str
    user_id: str
    fingerprint: str
    public_key: str
    kdf: KdfParams
    wrapped_master_key: bytes
    added_ms: int

    @property
    def key_blob(self) -> bytes:
        """The key in SSH wire form, as public-key authentication presents it (the base64
        field of the OpenSSH line, which ``from_json`` checked is this key)."""
        return base64.b64decode(self.public_key.split()[1])

    def to_json(self) -> dict[str, Any]:
        return {"user": self.user, "user_id": self.user_id, "fingerprint": self.fingerprint,
                "public_key": self.public_key, "kdf": self.kdf.to_json(),
                "wrapped_master_key": self.wrapped_master_key.hex(), "added_ms": self.added_ms}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SshKeyEntry:
        """Parse and validate one entry; BadRequest names what is wrong."""
        try:
            key = parse_public_key(str(d["public_key"]))
            entry = cls(user=validate_username(str(d["user"])), user_id=str(d["user_id"]),
                        fingerprint=str(d["fingerprint"]),
                        public_key=key.export_public_key().decode("ascii").strip(),
                        kdf=KdfParams.from_json(d["kdf"]),
                        wrapped_master_key=bytes.fromhex(str(d["wrapped_master_key"])),
                        added_ms=int(d["added_ms"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed SSH key entry: {exc}") from None
        if entry.fingerprint != key.get_fingerprint("sha256"):
            raise BadRequest(f"SSH key entry of {entry.user}: fingerprint does not match its key")
        return entry


def parse_public_key(text: str) -> asyncssh.SSHKey:
    """An OpenSSH public key line (``ssh-ed25519 AAAA... comment``), validated."""
    text = text.strip()
    if not text or len(text) > MAX_PUBLIC_KEY_CHARS or "\n" in text:
        raise BadRequest(f"expected one OpenSSH public key line of at most "
                         f"{MAX_PUBLIC_KEY_CHARS} characters (the contents of id_*.pub)")
    if "PRIVATE KEY" in text:
        raise BadRequest("that is a private key; give the public key (the .pub file)")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise BadRequest(f"not an OpenSSH public key: {exc}") from None
    if key.get_algorithm() in REFUSED_ALGORITHMS:
        raise BadRequest(f"{key.get_algorithm()} keys are refused; use ssh-ed25519")
    return key


def _wrap_aad(user_id: str, fingerprint: str) -> bytes:
    # Bound to the user and the key: a wrap copied into another entry does not open.
    return b"|".join((WRAP_AAD_PREFIX, user_id.encode("ascii"), fingerprint.encode("ascii")))


def new_secret(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    raw = random_bytes(SECRET_BYTES)
    assert len(raw) == SECRET_BYTES
    return SECRET_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def make_entry(record: UserRecord, keys: UserKeys, public_key_text: str, *, now_ms: int,
               kdf_params: KdfParams, random_bytes: Callable[[int], bytes] = os.urandom,
               ) -> tuple[SshKeyEntry, str]:
    """A new entry for ``keys`` (already unlocked by the passphrase) and its unlock secret."""
    assert record.user_id == keys.user_id
    key = parse_public_key(public_key_text)
    fingerprint = key.get_fingerprint("sha256")
    secret = new_secret(random_bytes)
    kek = crypto.derive_passphrase_key(secret, kdf_params)
    wrapped = crypto.wrap_key(kek, keys.master_key, _wrap_aad(record.user_id, fingerprint),
                              random_bytes)
    entry = SshKeyEntry(user=record.name, user_id=record.user_id, fingerprint=fingerprint,
                        public_key=key.export_public_key().decode("ascii").strip(),
                        kdf=kdf_params, wrapped_master_key=wrapped, added_ms=now_ms)
    return entry, secret


def unlock_with_secret(entry: SshKeyEntry, record: UserRecord, secret: str) -> UserKeys:
    """The user's keys from the entry's wrap and the client's secret, else PermissionDenied.

    ``record`` is the user's current document: an entry made for an earlier account of the
    same name (another user id) opens nothing.
    """
    if record.user_id != entry.user_id or record.name != entry.user:
        raise PermissionDenied(f"SSH key {entry.fingerprint} was registered to another account "
                               f"named {entry.user!r}; register it again")
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) \
            or len(secret) > MAX_SECRET_CHARS:
        raise PermissionDenied(f"SSH key login needs the key's unlock secret in {UNLOCK_ENV} "
                               f"(printed by `mydrive user add-ssh-key`)")
    kek = crypto.derive_passphrase_key(secret, entry.kdf)
    try:
        master_key = crypto.unwrap_key(kek, entry.wrapped_master_key,
                                       _wrap_aad(entry.user_id, entry.fingerprint))
    except DecryptionFailed:
        raise PermissionDenied(f"wrong unlock secret for SSH key {entry.fingerprint}") from None
    if len(master_key) != crypto.KEY_BYTES:
        raise PermissionDenied(f"the wrap of SSH key {entry.fingerprint} is damaged")
    keys = derive_user_keys(record.user_id, master_key)
    if not crypto.constant_time_equal(keys.identity.public_bytes(), record.identity_public_key):
        raise PermissionDenied(f"SSH key {entry.fingerprint} unwraps a key that is not "
                               f"{entry.user}'s (stale entry?)")
    return keys


class KeyRing:
    """The registered keys of one peer (``PEER_DIR/sftp/ssh_keys.json``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # (mtime_ns, size, inode) -> entries: a client offering key after key costs no reads.
        self._cached: tuple[tuple[int, int, int], list[SshKeyEntry]] | None = None

    def entries(self) -> list[SshKeyEntry]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cached
        if cached is not None and cached[0] == stamp:
            return list(cached[1])
        entries = self._read()
        self._cached = (stamp, entries)
        return list(entries)

    def _read(self) -> list[SshKeyEntry]:
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_KEYRING_BYTES + 1)
        except FileNotFoundError:
            return []
        if len(raw) > MAX_KEYRING_BYTES:
            raise TooLarge(f"{self.path} is larger than {MAX_KEYRING_BYTES} bytes")
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"{self.path} is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != KEYRING_VERSION \
                or not isinstance(doc.get("keys"), list):
            raise BadRequest(f"{self.path}: expected {{\"version\": {KEYRING_VERSION}, "
                             f"\"keys\": [...]}}")
        return [SshKeyEntry.from_json(e) for e in doc["keys"][:MAX_KEYS]]

    def find(self, user: str, key_blob: bytes) -> SshKeyEntry | None:
        for entry in self.entries():
            if entry.user == user and crypto.constant_time_equal(entry.key_blob, key_blob):
                return entry
        return None

    def of_user(self, user: str) -> list[SshKeyEntry]:
        return [e for e in self.entries() if e.user == user]

    def add(self, entry: SshKeyEntry) -> None:
        entries = self.entries()
        if any(e.user == entry.user and e.fingerprint == entry.fingerprint for e in entries):
            raise BadRequest(f"SSH key {entry.fingerprint} is already registered to "
                             f"{entry.user}; remove it first to make a new unlock secret")
        if sum(e.user == entry.user for e in entries) >= MAX_KEYS_PER_USER:
            raise TooLarge(f"{entry.user} has {MAX_KEYS_PER_USER} SSH keys already; "
                           f"remove one first")
        if len(entries) >= MAX_KEYS:
            raise TooLarge(f"this peer holds {MAX_KEYS} SSH keys already")
        self._write([*entries, entry])

    def remove(self, user: str, fingerprint: str) -> bool:
        entries = self.entries()
        kept = [e for e in entries if not (e.user == user and e.fingerprint == fingerprint)]
        if len(kept) == len(entries):
            return False
        self._write(kept)
        return True

    def _write(self, entries: list[SshKeyEntry]) -> None:
        body = json.dumps({"version": KEYRING_VERSION, "keys": [e.to_json() for e in entries]},
                          indent=2).encode()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.path.parent)
