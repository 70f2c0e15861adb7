"""The user key hierarchy.

passphrase --Argon2id(salt, costs)--> KEK --AES-256-GCM unwrap, AAD = user id--> master key
master key --HKDF--> identity seed (Ed25519), name key, name MAC key, file-key wrapping key

Only the wrapped master key depends on the passphrase, so rotating the passphrase re-wraps one
32-byte key and re-encrypts no data. The user id is a digest of the identity public key, so
anyone can check that a document naming a user id was signed by that user's key. Layouts:
docs/keys-and-encryption.md. Pure computation: nothing here writes anything.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mydrive.crypto import primitives as crypto
from mydrive.crypto.primitives import IdentityKey, KdfParams, RandomBytes
from mydrive.errors import BadRequest, DecryptionFailed, WrongPassphrase

USER_DOC_TYPE = "user"
USER_DOC_VERSION = 2  # signed by the user's identity key; version 1 was unsigned
LEGACY_USER_DOC_VERSION = 1
USER_ID_BYTES = 16
USER_ID_CONTEXT = b"mydrive-user-id-v1"
MAX_UPDATED_MS = 2**53 - 1
MAX_USERNAME_CHARS = 64
# version (1) + nonce (12) + 32-byte key + tag (16)
WRAPPED_KEY_BYTES = 1 + crypto.NONCE_BYTES + crypto.KEY_BYTES + crypto.TAG_BYTES
FILE_KEY_AAD_PREFIX = b"mydrive-file-key-v1"

PURPOSE_IDENTITY = "identity-ed25519-seed"
PURPOSE_NAME_ENCRYPTION = "name-encryption"
PURPOSE_NAME_MAC = "name-mac"
PURPOSE_FILE_KEY_WRAP = "file-key-wrap"

# ASCII only: names become document ids ("user:<name>") and must look the same everywhere.
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_USER_ID_RE = re.compile(r"[0-9a-f]{32}")
_USERNAME_RULE = (
    f"1-{MAX_USERNAME_CHARS} characters from A-Z, a-z, 0-9, '.', '_' and '-', "
    "starting with a letter or digit"
)


def validate_username(name: str) -> str:
    """Return ``name`` if it is a valid user name, else BadRequest saying what is allowed."""
    if not isinstance(name, str):
        raise BadRequest(f"user name must be a string of {_USERNAME_RULE}")
    if _USERNAME_RE.fullmatch(name) is None:
        # Truncated repr: the name may be huge or hold control characters.
        raise BadRequest(f"invalid user name {name!r:.80}: use {_USERNAME_RULE}")
    return name


def user_id_for(identity_public_key: bytes) -> str:
    """The user id of the owner of an identity key: hex(SHA-256(context || key)[:16]).

    Derived, not chosen, so a document signed by key K can name only K's user as owner.
    """
    assert len(identity_public_key) == crypto.KEY_BYTES
    return hashlib.sha256(USER_ID_CONTEXT + identity_public_key).digest()[:USER_ID_BYTES].hex()


@dataclass(frozen=True)
class UserRecord:
    """What a peer stores (and replicates) about a user: nothing here reveals a key.

    ``updated_ms`` grows with every rotation and decides between two signed revisions.
    ``version`` 1 records (unsigned, random user id) are only read, to be migrated at login.
    """

    name: str
    user_id: str
    kdf: KdfParams
    wrapped_master_key: bytes
    identity_public_key: bytes
    updated_ms: int = 0
    version: int = USER_DOC_VERSION

    def to_doc(self) -> dict[str, object]:
        """The unsigned body (mydrive.metadata.signed adds the user's signature)."""
        return {
            "type": USER_DOC_TYPE,
            "version": self.version,
            "name": self.name,
            "user_id": self.user_id,
            "kdf": self.kdf.to_json(),
            "wrapped_master_key": self.wrapped_master_key.hex(),
            "identity_public_key": self.identity_public_key.hex(),
            "updated_ms": self.updated_ms,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> UserRecord:
        """Parse (not verify) a user document; unknown keys (a store's ``_id``, ``_rev``,
        the signature) are ignored. Version 2 must name the user id of its identity key."""
        if not isinstance(doc, Mapping):
            raise BadRequest("user document must be a JSON object")
        if doc.get("type") != USER_DOC_TYPE:
            raise BadRequest(f"document type is {doc.get('type')!r:.40}, expected 'user'")
        version = doc.get("version")
        if version not in (USER_DOC_VERSION, LEGACY_USER_DOC_VERSION) or isinstance(
                version, bool):
            raise BadRequest(f"unsupported user document version {version!r:.40}")
        assert isinstance(version, int)
        name = validate_username(_get_str(doc, "name"))
        user_id = _get_str(doc, "user_id")
        if _USER_ID_RE.fullmatch(user_id) is None:
            raise BadRequest("user_id must be 32 lowercase hex characters")
        kdf_doc = doc.get("kdf")
        if not isinstance(kdf_doc, Mapping):
            raise BadRequest("user document lacks a 'kdf' object")
        updated_ms = doc.get("updated_ms", 0)
        if (isinstance(updated_ms, bool) or not isinstance(updated_ms, int)
                or not 0 <= updated_ms <= MAX_UPDATED_MS):
            if version == USER_DOC_VERSION:
                raise BadRequest("user document field 'updated_ms' must be an integer "
                                 f"0..{MAX_UPDATED_MS}")
            updated_ms = 0  # version 1 wrote it outside the record; migration resets it
        identity_public_key = _get_hex(doc, "identity_public_key", crypto.KEY_BYTES)
        if version == USER_DOC_VERSION and user_id != user_id_for(identity_public_key):
            raise BadRequest("user document's user_id is not the one of its identity key")
        return cls(
            name=name,
            user_id=user_id,
            kdf=KdfParams.from_json(kdf_doc),
            wrapped_master_key=_get_hex(doc, "wrapped_master_key", WRAPPED_KEY_BYTES),
            identity_public_key=identity_public_key,
            updated_ms=updated_ms,
            version=version,
        )


def _get_str(doc: Mapping[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"user document field {key!r} must be a string")
    return value


def _get_hex(doc: Mapping[str, object], key: str, length: int) -> bytes:
    try:
        value = bytes.fromhex(_get_str(doc, key))
    except ValueError:
        raise BadRequest(f"user document field {key!r} is not valid hex") from None
    if len(value) != length:
        raise BadRequest(f"user document field {key!r} must be {length} bytes")
    return value


@dataclass(frozen=True)
class UserKeys:
    """A logged-in user's keys. Lives in memory only; repr shows the user id alone."""

    user_id: str
    master_key: bytes = field(repr=False)
    identity: IdentityKey = field(repr=False)
    name_key: bytes = field(repr=False)
    name_mac_key: bytes = field(repr=False)
    file_wrap_key: bytes = field(repr=False)


def derive_user_keys(user_id: str, master_key: bytes) -> UserKeys:
    assert len(master_key) == crypto.KEY_BYTES
    seed = crypto.hkdf_subkey(master_key, PURPOSE_IDENTITY)
    return UserKeys(
        user_id=user_id,
        master_key=master_key,
        identity=IdentityKey.from_seed(seed),
        name_key=crypto.hkdf_subkey(master_key, PURPOSE_NAME_ENCRYPTION),
        name_mac_key=crypto.hkdf_subkey(master_key, PURPOSE_NAME_MAC),
        file_wrap_key=crypto.hkdf_subkey(master_key, PURPOSE_FILE_KEY_WRAP),
    )


def _master_key_aad(user_id: str) -> bytes:
    # Binding the user id stops a wrapped key being pasted into another user's record.
    return user_id.encode("ascii")


def _wrap_master_key(
    user_id: str,
    master_key: bytes,
    passphrase: str,
    kdf_params: KdfParams,
    random_bytes: RandomBytes,
) -> bytes:
    kek = crypto.derive_passphrase_key(passphrase, kdf_params)
    return crypto.wrap_key(kek, master_key, _master_key_aad(user_id), random_bytes)


def create_user(
    name: str,
    passphrase: str,
    *,
    kdf_params: KdfParams | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> tuple[UserRecord, UserKeys]:
    """New user with a random master key, wrapped under ``passphrase``; the user id is the
    one of the identity key derived from it. ``updated_ms`` is 0: the caller stamps it."""
    validate_username(name)
    params = kdf_params if kdf_params is not None else crypto.new_kdf_params(random_bytes)
    master_key = random_bytes(crypto.KEY_BYTES)
    assert len(master_key) == crypto.KEY_BYTES
    identity = IdentityKey.from_seed(crypto.hkdf_subkey(master_key, PURPOSE_IDENTITY))
    user_id = user_id_for(identity.public_bytes())
    keys = derive_user_keys(user_id, master_key)
    record = UserRecord(
        name=name,
        user_id=user_id,
        kdf=params,
        wrapped_master_key=_wrap_master_key(user_id, master_key, passphrase, params, random_bytes),
        identity_public_key=keys.identity.public_bytes(),
    )
    return record, keys


def migrate_legacy_user(record: UserRecord, passphrase: str, *,
                        random_bytes: RandomBytes = os.urandom) -> tuple[UserRecord, UserKeys]:
    """A version 1 (unsigned, random user id) record as version 2, and the user's keys.

    Safe without a signature because the passphrase proves the record: the master key
    unwraps (AES-GCM with the old user id as AAD) and gives the recorded identity key, and
    nothing else in it matters. The master key, identity key, passphrase and KDF parameters
    stay; the user id becomes the identity key's, so the master key is wrapped again (new
    AAD). The caller stamps ``updated_ms`` and signs.
    """
    assert record.version == LEGACY_USER_DOC_VERSION
    old_keys = unlock(record, passphrase)
    user_id = user_id_for(old_keys.identity.public_bytes())
    keys = derive_user_keys(user_id, old_keys.master_key)
    wrapped = _wrap_master_key(user_id, keys.master_key, passphrase, record.kdf, random_bytes)
    return UserRecord(name=record.name, user_id=user_id, kdf=record.kdf,
                      wrapped_master_key=wrapped,
                      identity_public_key=record.identity_public_key), keys


def unlock(record: UserRecord, passphrase: str) -> UserKeys:
    """Unwrap the master key with ``passphrase`` and derive the user's keys."""
    kek = crypto.derive_passphrase_key(passphrase, record.kdf)
    try:
        master_key = crypto.unwrap_key(
            kek, record.wrapped_master_key, _master_key_aad(record.user_id)
        )
    except DecryptionFailed:
        # AEAD cannot tell a wrong passphrase from a tampered record; the passphrase is likelier.
        raise WrongPassphrase(f"wrong passphrase for user '{record.name}'") from None
    if len(master_key) != crypto.KEY_BYTES:
        raise DecryptionFailed(f"master key of user '{record.name}' has the wrong length")
    keys = derive_user_keys(record.user_id, master_key)
    if not crypto.constant_time_equal(keys.identity.public_bytes(), record.identity_public_key):
        raise DecryptionFailed(
            f"identity key of user '{record.name}' does not match the stored public key"
        )
    return keys


def rotate_passphrase(
    record: UserRecord,
    current: str,
    new: str,
    *,
    kdf_params: KdfParams | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> UserRecord:
    """Re-wrap the same master key under ``new`` with a fresh salt; identity is unchanged."""
    return rewrap_master_key(record, unlock(record, current), new, kdf_params=kdf_params,
                             random_bytes=random_bytes)


def rewrap_master_key(
    record: UserRecord,
    keys: UserKeys,
    new: str,
    *,
    kdf_params: KdfParams | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> UserRecord:
    """``record`` with ``keys``' master key wrapped under passphrase ``new`` and a fresh salt."""
    assert keys.user_id == record.user_id
    params = kdf_params if kdf_params is not None else crypto.new_kdf_params(random_bytes)
    if crypto.constant_time_equal(params.salt, record.kdf.salt):
        raise BadRequest("passphrase rotation needs a fresh KDF salt")
    wrapped = _wrap_master_key(record.user_id, keys.master_key, new, params, random_bytes)
    return UserRecord(
        name=record.name,
        user_id=record.user_id,
        kdf=params,
        wrapped_master_key=wrapped,
        identity_public_key=record.identity_public_key,
        updated_ms=record.updated_ms,
        version=record.version,
    )


def _file_key_aad(file_id: bytes) -> bytes:
    assert 1 <= len(file_id) <= crypto.MAX_FILE_ID_BYTES
    return FILE_KEY_AAD_PREFIX + file_id


def wrap_file_key(
    keys: UserKeys,
    file_id: bytes,
    file_key: bytes,
    *,
    random_bytes: RandomBytes = os.urandom,
) -> bytes:
    """Wrap a file's key for its owner; bound to ``file_id`` so it can't serve another file."""
    assert len(file_key) == crypto.KEY_BYTES
    return crypto.wrap_key(keys.file_wrap_key, file_key, _file_key_aad(file_id), random_bytes)


def unwrap_file_key(keys: UserKeys, file_id: bytes, wrapped: bytes) -> bytes:
    if not 1 <= len(file_id) <= crypto.MAX_FILE_ID_BYTES:
        raise BadRequest(f"file id must be 1..{crypto.MAX_FILE_ID_BYTES} bytes")
    file_key = crypto.unwrap_key(keys.file_wrap_key, wrapped, _file_key_aad(file_id))
    if len(file_key) != crypto.KEY_BYTES:
        raise DecryptionFailed("unwrapped file key has the wrong length")
    return file_key
