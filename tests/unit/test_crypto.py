"""Unit tests for mydrive.crypto.primitives and mydrive.formats.digest.

Layouts, known answers, failure modes.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
import re
import unicodedata

import pytest

from mydrive.crypto import primitives as crypto
from mydrive.errors import BadRequest, DecryptionFailed
from mydrive.formats import digest

FAST_KDF = {"time_cost": 1, "memory_kib": 8 * 1024, "parallelism": 1}
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
FILE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


def zeros(n: int) -> bytes:
    return bytes(n)


def fast_params(salt: bytes = bytes(range(16))) -> crypto.KdfParams:
    return crypto.KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1, salt=salt)


# --- digest -----------------------------------------------------------------------------


def test_digest_matches_blake3_known_answer() -> None:
    """digest(b"") is the published BLAKE3 hash of the empty input."""
    expected = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    assert digest.digest(b"").hex() == expected
    assert len(digest.digest(b"x")) == digest.DIGEST_BYTES


def test_digest_unknown_alg_is_bad_request() -> None:
    """An unknown algorithm name is refused with BadRequest, by digest() and Hasher()."""
    with pytest.raises(BadRequest, match="unknown digest algorithm"):
        digest.digest(b"x", alg="md5")
    with pytest.raises(BadRequest):
        digest.Hasher("sha1")


def test_hasher_incremental_equals_one_shot() -> None:
    """Feeding data in pieces (bytes or memoryview) gives the one-shot digest."""
    data = bytes(range(256)) * 1000
    h = digest.Hasher()
    for i in range(0, len(data), 7777):
        h.update(memoryview(data)[i : i + 7777])
    assert h.digest() == digest.digest(data)
    assert h.digest() == digest.digest(memoryview(data))  # digest() does not finalize


def test_digests_equal_compares_values() -> None:
    """digests_equal is true exactly for equal byte strings."""
    a = digest.digest(b"a")
    assert digest.digests_equal(a, bytes(a))
    assert not digest.digests_equal(a, digest.digest(b"b"))
    assert not digest.digests_equal(a, a[:-1])


# --- KDF --------------------------------------------------------------------------------


def test_kdfparams_json_round_trip() -> None:
    """to_json/from_json round-trip and the salt is hex."""
    p = crypto.new_kdf_params(zeros, **FAST_KDF)
    doc = p.to_json()
    assert doc["salt"] == "00" * 16
    assert doc["algorithm"] == "argon2id"
    assert crypto.KdfParams.from_json(doc) == p


def _kdf_doc(**changes: object) -> dict[str, object]:
    doc = fast_params().to_json()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        _kdf_doc(algorithm="argon2i"),
        _kdf_doc(algorithm=1),
        _kdf_doc(memory_kib=8 * 1024 - 1),
        _kdf_doc(memory_kib=4 * 1024 * 1024 + 1),
        _kdf_doc(time_cost=0),
        _kdf_doc(time_cost=21),
        _kdf_doc(time_cost=True),
        _kdf_doc(time_cost="3"),
        _kdf_doc(time_cost=3.0),
        _kdf_doc(parallelism=0),
        _kdf_doc(parallelism=17),
        _kdf_doc(salt="00" * 15),
        _kdf_doc(salt="00" * 65),
        _kdf_doc(salt="zz" * 16),
        _kdf_doc(salt=b"\x00" * 16),
        _kdf_doc(extra=1),
        {k: v for k, v in _kdf_doc().items() if k != "salt"},
        [],
    ],
)
def test_kdfparams_from_json_rejects_bad_values(doc: object) -> None:
    """Out-of-range, mistyped, missing or unknown KDF fields are BadRequest."""
    with pytest.raises(BadRequest):
        crypto.KdfParams.from_json(doc)  # type: ignore[arg-type]


def test_new_kdf_params_defaults_and_salt() -> None:
    """Defaults are RFC 9106's second recommended option, with a 16-byte injected salt."""
    p = crypto.new_kdf_params(lambda n: b"\x07" * n)
    assert (p.time_cost, p.memory_kib, p.parallelism) == (3, 64 * 1024, 4)
    assert p.salt == b"\x07" * 16
    assert p.algorithm == "argon2id"


def test_derive_passphrase_key_pinned_vector() -> None:
    """Argon2id output for fixed inputs never changes (stored records depend on it)."""
    key = crypto.derive_passphrase_key("correct horse battery staple", fast_params())
    assert key.hex() == "9aeef75313e585f492c33c5e12d82e9ad253b7dd78632d537e899cd4eddd789c"


def test_derive_passphrase_key_depends_on_passphrase_and_salt() -> None:
    """A different passphrase or salt gives a different 32-byte key."""
    base = crypto.derive_passphrase_key("pw", fast_params())
    assert len(base) == crypto.KEY_BYTES
    assert crypto.derive_passphrase_key("pw2", fast_params()) != base
    assert crypto.derive_passphrase_key("pw", fast_params(bytes(16))) != base


def test_derive_passphrase_key_normalizes_unicode() -> None:
    """Composed and decomposed spellings of one passphrase derive the same key."""
    composed = "caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    p = fast_params()
    assert crypto.derive_passphrase_key(composed, p) == crypto.derive_passphrase_key(decomposed, p)


@pytest.mark.parametrize("passphrase", ["", "x" * (crypto.MAX_PASSPHRASE_CHARS + 1)])
def test_derive_passphrase_key_rejects_empty_or_huge(passphrase: str) -> None:
    """An empty or over-long passphrase is BadRequest."""
    with pytest.raises(BadRequest):
        crypto.derive_passphrase_key(passphrase, fast_params())


# --- key wrapping -----------------------------------------------------------------------


def test_wrap_key_layout() -> None:
    """Wrapped key = 0x01 || 12-byte nonce from random_bytes || ciphertext || 16-byte tag."""
    wrapped = crypto.wrap_key(KEY, b"\x42" * 32, b"aad", lambda n: b"\x09" * n)
    assert wrapped[0] == 0x01
    assert wrapped[1:13] == b"\x09" * 12
    assert len(wrapped) == 1 + 12 + 32 + 16


def test_wrap_key_round_trip_and_fresh_nonce() -> None:
    """unwrap(wrap(k)) == k, and two wraps of one key differ (random nonce)."""
    a = crypto.wrap_key(KEY, b"\x42" * 32, b"aad")
    b = crypto.wrap_key(KEY, b"\x42" * 32, b"aad")
    assert a != b
    assert crypto.unwrap_key(KEY, a, b"aad") == crypto.unwrap_key(KEY, b, b"aad") == b"\x42" * 32


@pytest.mark.parametrize(
    ("kek", "mutate", "aad"),
    [
        (OTHER_KEY, lambda w: w, b"aad"),
        (KEY, lambda w: w, b"other aad"),
        (KEY, lambda w: w[:-1], b"aad"),
        (KEY, lambda w: w[:29], b"aad"),
        (KEY, lambda w: b"", b"aad"),
        (KEY, lambda w: b"\x02" + w[1:], b"aad"),
        (KEY, lambda w: w + b"\x00", b"aad"),
    ],
    ids=["wrong-kek", "wrong-aad", "truncated", "too-short", "empty", "bad-version", "extended"],
)
def test_unwrap_key_failure_is_decryption_failed(kek: bytes, mutate: object, aad: bytes) -> None:
    """Wrong key, wrong AAD, truncation, extension or unknown version: DecryptionFailed."""
    wrapped = crypto.wrap_key(KEY, b"\x42" * 32, b"aad")
    with pytest.raises(DecryptionFailed):
        crypto.unwrap_key(kek, mutate(wrapped), aad)  # type: ignore[operator]


# --- HKDF -------------------------------------------------------------------------------


def _rfc5869_no_salt(ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def test_hkdf_subkey_matches_rfc5869() -> None:
    """hkdf_subkey is HKDF-SHA256 (no salt) with info b"mydrive/v1/" + purpose."""
    for length in (16, 32, 64):
        expected = _rfc5869_no_salt(KEY, b"mydrive/v1/name-encryption", length)
        assert crypto.hkdf_subkey(KEY, "name-encryption", length) == expected


def test_hkdf_subkey_purposes_are_independent() -> None:
    """Different purposes or master keys give different subkeys."""
    a = crypto.hkdf_subkey(KEY, "name-mac")
    assert a != crypto.hkdf_subkey(KEY, "name-encryption")
    assert a != crypto.hkdf_subkey(OTHER_KEY, "name-mac")


# --- identity ---------------------------------------------------------------------------

RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIG = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
    "1cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_identity_key_matches_rfc8032_vector() -> None:
    """from_seed/public_bytes/sign reproduce RFC 8032 test 1 and the signature verifies."""
    key = crypto.IdentityKey.from_seed(RFC8032_SEED)
    assert key.public_bytes().hex() == RFC8032_PUBLIC
    assert key.sign(b"").hex() == RFC8032_SIG
    assert crypto.verify_signature(key.public_bytes(), b"", key.sign(b""))


def test_identity_key_repr_hides_private_key() -> None:
    """repr shows the public key only, never the seed."""
    text = repr(crypto.IdentityKey.from_seed(RFC8032_SEED))
    assert RFC8032_PUBLIC in text
    assert RFC8032_SEED.hex() not in text


def test_identity_key_from_seed_rejects_wrong_length() -> None:
    """A seed that is not 32 bytes is BadRequest."""
    with pytest.raises(BadRequest):
        crypto.IdentityKey.from_seed(b"\x00" * 31)


def test_verify_signature_false_for_tampering_and_malformed_input() -> None:
    """Tampered message, tampered signature, wrong key or malformed input: False, no raise."""
    key = crypto.IdentityKey.from_seed(KEY)
    other = crypto.IdentityKey.from_seed(OTHER_KEY)
    msg = b"fetch chunk 1234"
    sig = key.sign(msg)
    pub = key.public_bytes()
    assert crypto.verify_signature(pub, msg, sig)
    assert not crypto.verify_signature(pub, msg + b"!", sig)
    assert not crypto.verify_signature(pub, msg, bytes([sig[0] ^ 1]) + sig[1:])
    assert not crypto.verify_signature(other.public_bytes(), msg, sig)
    assert not crypto.verify_signature(pub[:31], msg, sig)
    assert not crypto.verify_signature(pub, msg, sig[:63])
    assert not crypto.verify_signature(b"", b"", b"")
    assert not crypto.verify_signature(b"\xff" * 32, msg, sig)  # not a curve point
    assert not crypto.verify_signature("pub", msg, sig)  # type: ignore[arg-type]


# --- chunks -----------------------------------------------------------------------------


def test_chunk_nonce_layout() -> None:
    """The nonce is 4 zero bytes then the index as 8-byte big-endian."""
    assert crypto.chunk_nonce(0) == bytes(12)
    assert crypto.chunk_nonce(0x01020304) == bytes(8) + b"\x01\x02\x03\x04"
    with pytest.raises(AssertionError):
        crypto.chunk_nonce(2**32)
    with pytest.raises(AssertionError):
        crypto.chunk_nonce(-1)


def test_chunk_aad_layout() -> None:
    """AAD = b"mydrive-chunk-v1" || file id || index u32 BE || count u32 BE."""
    aad = crypto.chunk_aad(FILE_ID, 1, 3)
    assert aad == b"mydrive-chunk-v1" + FILE_ID + b"\x00\x00\x00\x01\x00\x00\x00\x03"


@pytest.mark.parametrize(
    ("file_id", "index", "count"),
    [(FILE_ID, 3, 3), (FILE_ID, -1, 3), (FILE_ID, 0, 0), (FILE_ID, 0, 2**32), (b"", 0, 1)],
)
def test_chunk_aad_rejects_impossible_positions(file_id: bytes, index: int, count: int) -> None:
    """Index outside 0..count-1, count outside 1..2**32-1 or an empty file id is BadRequest."""
    with pytest.raises(BadRequest):
        crypto.chunk_aad(file_id, index, count)


def test_encrypt_chunk_round_trip_and_length() -> None:
    """decrypt(encrypt(p)) == p; ciphertext is exactly 16 bytes longer; memoryview accepted."""
    plaintext = bytes(range(256)) * 40
    ct = crypto.encrypt_chunk(KEY, FILE_ID, 2, 5, memoryview(plaintext))
    assert len(ct) == len(plaintext) + 16
    assert crypto.decrypt_chunk(KEY, FILE_ID, 2, 5, ct) == plaintext
    assert crypto.decrypt_chunk(KEY, FILE_ID, 2, 5, memoryview(ct)) == plaintext
    assert crypto.encrypt_chunk(KEY, FILE_ID, 0, 1, b"") != b""


def test_encrypt_chunk_pinned_vector() -> None:
    """Chunk encryption for fixed inputs never changes (stored chunks depend on it)."""
    ct = crypto.encrypt_chunk(bytes(32), bytes(16), 1, 3, b"hello")
    assert ct.hex() == "41a4484e9babe58abdcad063152392a63fff1f385d"


@pytest.mark.parametrize(
    ("key", "file_id", "index", "count"),
    [
        (KEY, FILE_ID, 1, 5),  # moved to another index
        (KEY, bytes(16), 2, 5),  # moved to another file
        (KEY, FILE_ID, 2, 4),  # file truncated: different count
        (KEY, FILE_ID, 2, 6),  # file extended: different count
        (OTHER_KEY, FILE_ID, 2, 5),  # another file key
    ],
)
def test_decrypt_chunk_rejects_misplaced_chunk(
    key: bytes, file_id: bytes, index: int, count: int
) -> None:
    """A chunk presented as another index, file, count or under another key fails."""
    ct = crypto.encrypt_chunk(KEY, FILE_ID, 2, 5, b"chunk two of five")
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_chunk(key, file_id, index, count, ct)


def test_decrypt_chunk_rejects_short_ciphertext() -> None:
    """Ciphertext shorter than a tag is DecryptionFailed, not a crash."""
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_chunk(KEY, FILE_ID, 0, 1, b"\x00" * 15)


# --- names ------------------------------------------------------------------------------


def test_encrypt_name_layout_and_round_trip() -> None:
    """Blob = 0x01 || nonce || ciphertext+tag of the UTF-8 name; decrypts back exactly."""
    name = "Fotos/Ürlaub 2024/北京.jpg"
    blob = crypto.encrypt_name(KEY, name, lambda n: b"\x05" * n)
    assert blob[0] == 0x01 and blob[1:13] == b"\x05" * 12
    assert len(blob) == 1 + 12 + len(name.encode()) + 16
    assert crypto.decrypt_name(KEY, blob) == name
    assert crypto.encrypt_name(KEY, name) != crypto.encrypt_name(KEY, name)


def test_decrypt_name_wrong_key_or_garbage() -> None:
    """Wrong key, truncation or an unknown version is DecryptionFailed."""
    blob = crypto.encrypt_name(KEY, "a.txt")
    for key, bad in [(OTHER_KEY, blob), (KEY, blob[:-1]), (KEY, b"\x02" + blob[1:]), (KEY, b"")]:
        with pytest.raises(DecryptionFailed):
            crypto.decrypt_name(key, bad)


def test_decrypt_name_rejects_wrapped_key_blob() -> None:
    """A name blob is not interchangeable with a wrapped key (different AAD)."""
    wrapped = crypto.wrap_key(KEY, b"a.txt", b"")
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_name(KEY, wrapped)


def test_encrypt_name_rejects_oversize() -> None:
    """A name over MAX_NAME_BYTES of UTF-8 is BadRequest."""
    with pytest.raises(BadRequest):
        crypto.encrypt_name(KEY, "é" * (crypto.MAX_NAME_BYTES // 2 + 1))


def test_name_tag_is_deterministic_keyed_hmac() -> None:
    """name_tag is hex HMAC-SHA256: same key and name agree, another key disagrees."""
    tag = crypto.name_tag(KEY, "docs/a.txt")
    assert tag == hmac.new(KEY, b"docs/a.txt", hashlib.sha256).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", tag)
    assert crypto.name_tag(KEY, "docs/a.txt") == tag
    assert crypto.name_tag(OTHER_KEY, "docs/a.txt") != tag
    assert crypto.name_tag(KEY, "docs/b.txt") != tag


def test_constant_time_equal_compares_values() -> None:
    """constant_time_equal is byte equality."""
    assert crypto.constant_time_equal(b"abc", b"abc")
    assert not crypto.constant_time_equal(b"abc", b"abd")
    assert not crypto.constant_time_equal(b"abc", b"ab")


def test_crypto_module_is_the_only_importer_of_cryptography() -> None:
    """No product module but mydrive/crypto/primitives.py imports the cryptography package."""
    owner = pathlib.Path(crypto.__file__)
    root = owner.parents[1]
    pattern = re.compile(r"^\s*(from|import)\s+cryptography\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if path != owner
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
