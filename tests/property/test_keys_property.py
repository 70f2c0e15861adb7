"""Properties of the user key hierarchy (mydrive.crypto.keys) and of authenticated encryption.

Argon2 runs with tiny costs here (8 MiB, t=1, p=1) so the suite stays fast; the costs do not
change any property tested.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mydrive.crypto import keys
from mydrive.crypto import primitives as crypto
from mydrive.errors import BadRequest, DecryptionFailed, WrongPassphrase
from mydrive.metadata.signed import sign_document, verify_user

PASSPHRASE = "correct horse battery staple"
KEY = bytes(range(32))
FILE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


def fast_params(salt_byte: int = 0) -> crypto.KdfParams:
    return crypto.KdfParams(
        time_cost=1, memory_kib=8 * 1024, parallelism=1, salt=bytes([salt_byte]) * 16
    )


def counter_random() -> crypto.RandomBytes:
    """Deterministic stand-in for os.urandom: successive calls give different bytes."""
    counter = itertools.count(1)

    def random_bytes(n: int) -> bytes:
        i = next(counter)
        return bytes((i * 31 + j) % 256 for j in range(n))

    return random_bytes


@functools.cache
def alice() -> tuple[keys.UserRecord, keys.UserKeys]:
    # Cached: one Argon2 run shared by every example instead of one per example.
    return keys.create_user("alice", PASSPHRASE, kdf_params=fast_params())


def flip_bit(blob: bytes, bit: int) -> bytes:
    out = bytearray(blob)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- any single bit flip is detected -------------------------------------------------


@given(data=st.data(), key=st.binary(min_size=32, max_size=32), aad=st.binary(max_size=64))
def test_unwrap_key_detects_any_bit_flip(data: st.DataObject, key: bytes, aad: bytes) -> None:
    """Flipping any one bit of a wrapped key (version, nonce, body or tag) fails to unwrap."""
    wrapped = crypto.wrap_key(KEY, key, aad)
    bit = data.draw(st.integers(0, len(wrapped) * 8 - 1), label="bit")
    with pytest.raises(DecryptionFailed):
        crypto.unwrap_key(KEY, flip_bit(wrapped, bit), aad)


@given(data=st.data(), file_key=st.binary(min_size=32, max_size=32))
def test_unwrap_file_key_detects_any_bit_flip(data: st.DataObject, file_key: bytes) -> None:
    """Flipping any one bit of a wrapped file key fails to unwrap."""
    _, user = alice()
    wrapped = keys.wrap_file_key(user, FILE_ID, file_key)
    bit = data.draw(st.integers(0, len(wrapped) * 8 - 1), label="bit")
    with pytest.raises(DecryptionFailed):
        keys.unwrap_file_key(user, FILE_ID, flip_bit(wrapped, bit))


@given(
    data=st.data(),
    plaintext=st.binary(max_size=2048),
    count=st.integers(1, 2**32 - 1),
)
def test_decrypt_chunk_detects_any_bit_flip(
    data: st.DataObject, plaintext: bytes, count: int
) -> None:
    """Flipping any one bit of a chunk's ciphertext or tag fails to decrypt."""
    index = data.draw(st.integers(0, count - 1), label="index")
    ct = crypto.encrypt_chunk(KEY, FILE_ID, index, count, plaintext)
    bit = data.draw(st.integers(0, len(ct) * 8 - 1), label="bit")
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_chunk(KEY, FILE_ID, index, count, flip_bit(ct, bit))


@given(data=st.data(), name=st.text(max_size=200))
def test_decrypt_name_detects_any_bit_flip(data: st.DataObject, name: str) -> None:
    """Flipping any one bit of an encrypted name fails to decrypt."""
    blob = crypto.encrypt_name(KEY, name)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_name(KEY, flip_bit(blob, bit))


@settings(max_examples=25, deadline=None)
@given(bit=st.integers(0, keys.WRAPPED_KEY_BYTES * 8 - 1))
def test_unlock_detects_bit_flip_in_wrapped_master_key(bit: int) -> None:
    """A record whose wrapped master key has one flipped bit never unlocks."""
    record, _ = alice()
    bad = keys.UserRecord(
        name=record.name,
        user_id=record.user_id,
        kdf=record.kdf,
        wrapped_master_key=flip_bit(record.wrapped_master_key, bit),
        identity_public_key=record.identity_public_key,
    )
    with pytest.raises(WrongPassphrase):
        keys.unlock(bad, PASSPHRASE)


# --- round trips -----------------------------------------------------------------------


@given(key=st.binary(min_size=1, max_size=64), aad=st.binary(max_size=64))
def test_wrap_key_round_trip(key: bytes, aad: bytes) -> None:
    """unwrap_key(wrap_key(k, aad), aad) == k for any key bytes and AAD."""
    assert crypto.unwrap_key(KEY, crypto.wrap_key(KEY, key, aad), aad) == key


@given(name=st.text(max_size=300))
def test_encrypt_name_round_trip(name: str) -> None:
    """decrypt_name(encrypt_name(n)) == n for any Unicode name."""
    assert crypto.decrypt_name(KEY, crypto.encrypt_name(KEY, name)) == name


@given(
    plaintext=st.binary(max_size=4096),
    file_id=st.binary(min_size=1, max_size=64),
    count=st.integers(1, 2**32 - 1),
    data=st.data(),
)
def test_encrypt_chunk_round_trip(
    plaintext: bytes, file_id: bytes, count: int, data: st.DataObject
) -> None:
    """decrypt_chunk(encrypt_chunk(p)) == p at any valid position; length grows by 16."""
    index = data.draw(st.integers(0, count - 1), label="index")
    ct = crypto.encrypt_chunk(KEY, file_id, index, count, plaintext)
    assert len(ct) == len(plaintext) + 16
    assert crypto.decrypt_chunk(KEY, file_id, index, count, ct) == plaintext


_positions = st.tuples(
    st.binary(min_size=1, max_size=24), st.integers(0, 2**32 - 2), st.integers(1, 2**32 - 1)
).filter(lambda p: p[1] < p[2])


@given(a=_positions, b=_positions)
def test_decrypt_chunk_binds_file_index_and_count(
    a: tuple[bytes, int, int], b: tuple[bytes, int, int]
) -> None:
    """A chunk decrypts only at the (file id, index, count) it was encrypted for."""
    ct = crypto.encrypt_chunk(KEY, *a, b"payload")
    if a == b:
        assert crypto.decrypt_chunk(KEY, *b, ct) == b"payload"
    else:
        with pytest.raises(DecryptionFailed):
            crypto.decrypt_chunk(KEY, *b, ct)


# --- user lifecycle --------------------------------------------------------------------


def test_create_user_unlock_round_trip() -> None:
    """unlock with the right passphrase returns exactly the keys create_user returned."""
    record, created = alice()
    unlocked = keys.unlock(record, PASSPHRASE)
    assert unlocked == created
    assert record.identity_public_key == created.identity.public_bytes()
    assert re.fullmatch(r"[0-9a-f]{32}", record.user_id)
    assert len(created.master_key) == 32


def test_unlock_wrong_passphrase_raises_wrong_passphrase() -> None:
    """A wrong passphrase raises WrongPassphrase naming the user."""
    record, _ = alice()
    with pytest.raises(WrongPassphrase, match=r"^wrong passphrase for user 'alice'$"):
        keys.unlock(record, PASSPHRASE + "!")


def test_unlock_rejects_wrapped_key_moved_to_another_user() -> None:
    """A wrapped master key pasted into another user's record does not unlock (AAD = user id)."""
    record, _ = alice()
    bob, _ = keys.create_user("bob", PASSPHRASE, kdf_params=record.kdf)
    forged = keys.UserRecord(
        name=bob.name,
        user_id=bob.user_id,
        kdf=record.kdf,
        wrapped_master_key=record.wrapped_master_key,
        identity_public_key=record.identity_public_key,
    )
    with pytest.raises(WrongPassphrase):
        keys.unlock(forged, PASSPHRASE)


def test_unlock_identity_mismatch_raises_decryption_failed() -> None:
    """A record whose identity public key is not the derived one is DecryptionFailed."""
    record, _ = alice()
    forged = keys.UserRecord(
        name=record.name,
        user_id=record.user_id,
        kdf=record.kdf,
        wrapped_master_key=record.wrapped_master_key,
        identity_public_key=crypto.IdentityKey.from_seed(bytes(32)).public_bytes(),
    )
    with pytest.raises(DecryptionFailed, match="identity"):
        keys.unlock(forged, PASSPHRASE)


def test_create_user_is_deterministic_given_randomness() -> None:
    """All randomness comes from random_bytes: same source, same record and keys."""
    a = keys.create_user("carol", "pw", random_bytes=counter_random(), kdf_params=fast_params())
    b = keys.create_user("carol", "pw", random_bytes=counter_random(), kdf_params=fast_params())
    assert a == b


def test_create_user_default_kdf_uses_injected_salt() -> None:
    """Without kdf_params, create_user picks fresh default-cost params with an injected salt."""
    record, _ = keys.create_user("dave", "pw", random_bytes=counter_random())
    assert record.kdf.salt == counter_random()(16)
    assert (record.kdf.time_cost, record.kdf.memory_kib) == (
        crypto.DEFAULT_TIME_COST,
        crypto.DEFAULT_MEMORY_KIB,
    )


def test_create_user_rejects_bad_name_and_empty_passphrase() -> None:
    """create_user validates the name and refuses an empty passphrase (BadRequest)."""
    with pytest.raises(BadRequest):
        keys.create_user("-bad", PASSPHRASE, kdf_params=fast_params())
    with pytest.raises(BadRequest):
        keys.create_user("good", "", kdf_params=fast_params())


def test_rotate_passphrase_old_fails_new_works_same_keys() -> None:
    """After rotation the old passphrase fails, the new one unlocks the same master key and
    identity, and the salt changed."""
    record, created = alice()
    rotated = keys.rotate_passphrase(record, PASSPHRASE, "new pass", kdf_params=fast_params(1))
    assert rotated.kdf.salt != record.kdf.salt
    assert rotated.wrapped_master_key != record.wrapped_master_key
    assert (rotated.name, rotated.user_id) == (record.name, record.user_id)
    assert rotated.identity_public_key == record.identity_public_key
    with pytest.raises(WrongPassphrase):
        keys.unlock(rotated, PASSPHRASE)
    after = keys.unlock(rotated, "new pass")
    assert after.master_key == created.master_key
    assert after.identity.public_bytes() == created.identity.public_bytes()
    assert after == created


def test_rotate_passphrase_wrong_current_raises() -> None:
    """Rotation with a wrong current passphrase raises WrongPassphrase."""
    record, _ = alice()
    with pytest.raises(WrongPassphrase):
        keys.rotate_passphrase(record, "nope", "new pass", kdf_params=fast_params(1))


def test_rotate_passphrase_rejects_reused_salt() -> None:
    """Rotation refuses KDF params whose salt equals the current one."""
    record, _ = alice()
    with pytest.raises(BadRequest, match="fresh"):
        keys.rotate_passphrase(record, PASSPHRASE, "new pass", kdf_params=record.kdf)


# --- derived keys and file keys --------------------------------------------------------


def test_derive_user_keys_subkeys_are_distinct() -> None:
    """The master key and its HKDF subkeys are pairwise different."""
    _, user = alice()
    subkeys = [user.master_key, user.name_key, user.name_mac_key, user.file_wrap_key]
    assert len(set(subkeys)) == 4
    assert all(len(k) == 32 for k in subkeys)


def test_user_keys_repr_hides_key_bytes() -> None:
    """repr(UserKeys) shows the user id and no key material."""
    _, user = alice()
    text = repr(user)
    assert user.user_id in text
    for secret in (user.master_key, user.name_key, user.name_mac_key, user.file_wrap_key):
        assert secret.hex() not in text and repr(secret) not in text


@given(file_key=st.binary(min_size=32, max_size=32), file_id=st.binary(min_size=1, max_size=64))
def test_wrap_file_key_round_trip(file_key: bytes, file_id: bytes) -> None:
    """unwrap_file_key(wrap_file_key(k)) == k for any file id."""
    _, user = alice()
    assert keys.unwrap_file_key(user, file_id, keys.wrap_file_key(user, file_id, file_key)) == (
        file_key
    )


def test_unwrap_file_key_bound_to_file_and_user() -> None:
    """A wrapped file key does not unwrap for another file id or another user."""
    _, user = alice()
    other = keys.derive_user_keys("0" * 32, bytes(32))
    wrapped = keys.wrap_file_key(user, FILE_ID, KEY)
    with pytest.raises(DecryptionFailed):
        keys.unwrap_file_key(user, bytes(16), wrapped)
    with pytest.raises(DecryptionFailed):
        keys.unwrap_file_key(other, FILE_ID, wrapped)


# --- user documents --------------------------------------------------------------------


def test_user_record_doc_round_trip_through_json() -> None:
    """to_doc is JSON-safe and from_doc(json round trip) gives the same record."""
    record, _ = alice()
    doc = json.loads(json.dumps(record.to_doc()))
    assert doc["type"] == "user" and doc["version"] == 2
    assert keys.UserRecord.from_doc(doc) == record


def test_user_record_from_doc_ignores_store_fields() -> None:
    """Store bookkeeping fields such as _id and _rev do not break parsing."""
    record, _ = alice()
    doc = record.to_doc() | {"_id": "user:alice", "_rev": "1-abc"}
    assert keys.UserRecord.from_doc(doc) == record


def _doc(**changes: object) -> dict[str, object]:
    doc = alice()[0].to_doc()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "changes",
    [
        {"type": "file"},
        {"version": 3},
        {"updated_ms": -1},
        {"updated_ms": "1"},
        {"user_id": "0" * 32},
        {"version": True},
        {"name": "-x"},
        {"name": 7},
        {"user_id": "ABCDEF" + "0" * 26},
        {"user_id": "0" * 31},
        {"kdf": "argon2id"},
        {"kdf": {"algorithm": "argon2id"}},
        {"wrapped_master_key": "00" * 60},
        {"wrapped_master_key": "xyz"},
        {"identity_public_key": "00" * 31},
        {"identity_public_key": None},
    ],
)
def test_user_record_from_doc_rejects_malformed(changes: dict[str, object]) -> None:
    """Wrong type/version, bad name, id, KDF, key lengths or hex are BadRequest."""
    with pytest.raises(BadRequest):
        keys.UserRecord.from_doc(_doc(**changes))


def test_user_record_from_doc_rejects_missing_field_and_non_object() -> None:
    """A document lacking a field, or not an object at all, is BadRequest."""
    doc = _doc()
    del doc["wrapped_master_key"]
    with pytest.raises(BadRequest):
        keys.UserRecord.from_doc(doc)
    with pytest.raises(BadRequest):
        keys.UserRecord.from_doc([])  # type: ignore[arg-type]


# --- user names ------------------------------------------------------------------------

_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@given(name=st.from_regex(_VALID_NAME, fullmatch=True))
def test_validate_username_accepts_allowed_names(name: str) -> None:
    """Every 1-64 char name of ASCII letters, digits, '.', '_', '-' starting alnum is valid."""
    assert keys.validate_username(name) == name


@given(name=st.text(max_size=80).filter(lambda s: _VALID_NAME.fullmatch(s) is None))
def test_validate_username_rejects_everything_else(name: str) -> None:
    """Any other string is BadRequest, and the message says what is allowed."""
    with pytest.raises(BadRequest, match="letter or digit"):
        keys.validate_username(name)


@pytest.mark.parametrize(
    "name", ["", "-a", ".a", "_a", "a" * 65, "a b", "ä", "a\n", "../x", "a/b", "a:b", "Ａ"]
)
def test_validate_username_rejects_examples(name: str) -> None:
    """Empty, too long, bad first character, spaces, non-ASCII, separators: BadRequest."""
    with pytest.raises(BadRequest) as excinfo:
        keys.validate_username(name)
    assert "1-64 characters from A-Z, a-z, 0-9, '.', '_' and '-'" in str(excinfo.value)


def test_create_user_matches_documented_example() -> None:
    """The worked example in docs/keys-and-encryption.md reproduces byte for byte."""
    calls = itertools.count(1)

    def fake_random(n: int) -> bytes:
        return bytes([next(calls)]) * n

    params = crypto.KdfParams(
        time_cost=1, memory_kib=8 * 1024, parallelism=1, salt=bytes(range(16))
    )
    record, user = keys.create_user(
        "alice", PASSPHRASE, kdf_params=params, random_bytes=fake_random
    )
    record = dataclasses.replace(record, updated_ms=1_700_000_000_000)
    doc = sign_document("user:alice", record.to_doc(), user.identity)
    assert doc["user_id"] == "b85da271adfc72bee3397966a432ce60"
    assert doc["wrapped_master_key"] == (
        "01020202020202020202020202033833a9fe3a8ea26de1e68b96c73941a623b9da79c7ab0b610b1d09b56a"
        "c8a2d06e77e113186538faa92286ca518011"
    )
    assert doc["identity_public_key"] == (
        "0646127332c5b6880ae247b6a615809345eb8b4642f8b0e405f838f92bb11d63"
    )
    assert doc["signature"]["value"] == (
        "560d16d037ccd0dee0e20d106f2a183911a42c4097ddfea72522a96e0a3167e665d449100e61a5c39994167"
        "5009a273141f6c139221ca2b6c6148577558fb406"
    )
    assert verify_user("user:alice", doc) == record
    assert repr(user) == "UserKeys(user_id='b85da271adfc72bee3397966a432ce60')"
    file_id, file_key = b"\xaa" * 16, b"\xbb" * 32
    chunk = crypto.encrypt_chunk(file_key, file_id, 0, 2, b"hello, ")
    assert chunk.hex() == "0b29539a44e9dc8d44449cf522f5a882baea96f9bff7cd"
