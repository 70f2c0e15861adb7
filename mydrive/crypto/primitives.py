"""Every cryptographic primitive mydrive uses; the only module that imports ``cryptography``.

Byte layouts and versions are documented in docs/keys-and-encryption.md. Failures of
authenticated decryption all become ``DecryptionFailed`` without saying which check failed,
so a tampering peer learns nothing from the error.
"""

from __future__ import annotations

import datetime
import hmac
import ipaddress
import os
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mydrive.errors import BadRequest, DecryptionFailed, PermissionDenied

RandomBytes = Callable[[int], bytes]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

# Argon2id costs are RFC 9106 section 4's second recommended option (t=3, 64 MiB, p=4,
# 128-bit salt) for machines without 2 GiB to spare; that is above OWASP's minimum (19 MiB,
# t=2, p=1). Unlock runs once per login, so ~0.1 s is affordable. See docs/keys-and-encryption.md.
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_KIB = 64 * 1024
DEFAULT_PARALLELISM = 4
KDF_ALGORITHM = "argon2id"
SALT_BYTES = 16

MIN_MEMORY_KIB = 8 * 1024
MAX_MEMORY_KIB = 4 * 1024 * 1024
MIN_TIME_COST, MAX_TIME_COST = 1, 20
MIN_PARALLELISM, MAX_PARALLELISM = 1, 16
MIN_SALT_BYTES, MAX_SALT_BYTES = 16, 64
MAX_PASSPHRASE_CHARS = 1024

WRAP_VERSION = 0x01
NAME_VERSION = 0x01
NAME_AAD = b"mydrive-name-v1"
# Version 2 binds a file's name to its file id, so names can't be swapped between files.
BOUND_NAME_VERSION = 0x02
BOUND_NAME_AAD_PREFIX = b"mydrive-name-v2"
MAX_NAME_BYTES = 4096
CHUNK_AAD_PREFIX = b"mydrive-chunk-v1"
MAX_FILE_ID_BYTES = 64
MAX_CHUNK_COUNT = 2**32 - 1
HKDF_INFO_PREFIX = b"mydrive/v1/"

ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64

_KDF_FIELDS = frozenset({"algorithm", "time_cost", "memory_kib", "parallelism", "salt"})


def _check_int(field: str, value: object, low: int, high: int) -> int:
    # bool is an int subclass; "time_cost": true is malformed, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"KDF parameter {field} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise BadRequest(f"KDF parameter {field}={value} is out of range {low}..{high}")
    return value


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters and salt, stored next to the wrapped master key.

    Construction validates, so every ``KdfParams`` in the program has sane costs: a peer's
    replicated user document cannot make us spend 1 TiB of memory or skip the work.
    """

    time_cost: int
    memory_kib: int
    parallelism: int
    salt: bytes
    algorithm: str = KDF_ALGORITHM

    def __post_init__(self) -> None:
        if self.algorithm != KDF_ALGORITHM:
            raise BadRequest(
                f"unsupported KDF algorithm {self.algorithm!r:.40}; only {KDF_ALGORITHM!r}"
            )
        _check_int("time_cost", self.time_cost, MIN_TIME_COST, MAX_TIME_COST)
        _check_int("memory_kib", self.memory_kib, MIN_MEMORY_KIB, MAX_MEMORY_KIB)
        _check_int("parallelism", self.parallelism, MIN_PARALLELISM, MAX_PARALLELISM)
        if not isinstance(self.salt, bytes):
            raise BadRequest("KDF salt must be bytes")
        if not MIN_SALT_BYTES <= len(self.salt) <= MAX_SALT_BYTES:
            raise BadRequest(
                f"KDF salt is {len(self.salt)} bytes; it must be "
                f"{MIN_SALT_BYTES}..{MAX_SALT_BYTES} bytes"
            )

    def to_json(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm,
            "time_cost": self.time_cost,
            "memory_kib": self.memory_kib,
            "parallelism": self.parallelism,
            "salt": self.salt.hex(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> KdfParams:
        """Parse and validate; BadRequest names the first thing that is wrong."""
        if not isinstance(d, Mapping):
            raise BadRequest("KDF parameters must be a JSON object")
        missing = _KDF_FIELDS.difference(d.keys())
        extra = set(d.keys()).difference(_KDF_FIELDS)
        if missing:
            raise BadRequest(f"KDF parameters lack {', '.join(sorted(missing))}")
        if extra:
            # An unknown field may change the meaning of the rest; refuse rather than guess.
            raise BadRequest(f"unknown KDF parameter(s): {', '.join(sorted(map(str, extra)))}")
        algorithm, salt_hex = d["algorithm"], d["salt"]
        if not isinstance(algorithm, str):
            raise BadRequest("KDF algorithm must be a string")
        if not isinstance(salt_hex, str):
            raise BadRequest("KDF salt must be a hex string")
        try:
            salt = bytes.fromhex(salt_hex)
        except ValueError:
            raise BadRequest("KDF salt is not valid hex") from None
        return cls(
            time_cost=_check_int("time_cost", d["time_cost"], MIN_TIME_COST, MAX_TIME_COST),
            memory_kib=_check_int("memory_kib", d["memory_kib"], MIN_MEMORY_KIB, MAX_MEMORY_KIB),
            parallelism=_check_int(
                "parallelism", d["parallelism"], MIN_PARALLELISM, MAX_PARALLELISM
            ),
            salt=salt,
            algorithm=algorithm,
        )


def _random(random_bytes: RandomBytes, n: int) -> bytes:
    out = random_bytes(n)
    assert isinstance(out, bytes) and len(out) == n, "random_bytes returned the wrong length"
    return out


def new_kdf_params(
    random_bytes: RandomBytes = os.urandom,
    *,
    time_cost: int = DEFAULT_TIME_COST,
    memory_kib: int = DEFAULT_MEMORY_KIB,
    parallelism: int = DEFAULT_PARALLELISM,
) -> KdfParams:
    """Fresh parameters with a new random 16-byte salt."""
    return KdfParams(
        time_cost=time_cost,
        memory_kib=memory_kib,
        parallelism=parallelism,
        salt=_random(random_bytes, SALT_BYTES),
    )


def derive_passphrase_key(passphrase: str, params: KdfParams) -> bytes:
    """Argon2id(passphrase, params) -> 32-byte key-encryption key."""
    if not isinstance(passphrase, str) or not passphrase:
        raise BadRequest("passphrase must not be empty")
    if len(passphrase) > MAX_PASSPHRASE_CHARS:
        raise BadRequest(f"passphrase is longer than {MAX_PASSPHRASE_CHARS} characters")
    # NFC: the same passphrase typed on macOS (decomposed) and Windows (composed) must match.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    kdf = Argon2id(
        salt=params.salt,
        length=KEY_BYTES,
        iterations=params.time_cost,
        lanes=params.parallelism,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(secret)


def _aesgcm(key: bytes) -> AESGCM:
    assert len(key) == KEY_BYTES, "AES-256 keys are 32 bytes"
    return AESGCM(key)


def _seal(
    version: int, key: bytes, plaintext: bytes, aad: bytes, random_bytes: RandomBytes
) -> bytes:
    nonce = _random(random_bytes, NONCE_BYTES)
    return bytes([version]) + nonce + _aesgcm(key).encrypt(nonce, plaintext, aad)


def _open(version: int, key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    # One message for every cause: the caller should not learn which check failed.
    failed = DecryptionFailed(f"{what} failed authentication (wrong key or tampered data)")
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise failed
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[0] != version:
        raise failed
    nonce, sealed = bytes(blob[1 : 1 + NONCE_BYTES]), blob[1 + NONCE_BYTES :]
    try:
        return _aesgcm(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise failed from None


def wrap_key(kek: bytes, key: bytes, aad: bytes, random_bytes: RandomBytes = os.urandom) -> bytes:
    """AES-256-GCM wrap: 0x01 || nonce (12) || ciphertext || tag (16)."""
    return _seal(WRAP_VERSION, kek, key, aad, random_bytes)


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Inverse of ``wrap_key``; DecryptionFailed on any mismatch."""
    return _open(WRAP_VERSION, kek, wrapped, aad, "key unwrap")


def hkdf_subkey(master_key: bytes, purpose: str, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 subkey with info = b"mydrive/v1/" + purpose (one purpose, one key)."""
    assert len(master_key) == KEY_BYTES
    assert purpose and purpose.isascii(), "HKDF purposes are fixed ASCII labels"
    assert 1 <= length <= 255 * 32
    # No salt: the master key is already uniformly random, so HKDF-Extract adds nothing.
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=None,
        info=HKDF_INFO_PREFIX + purpose.encode("ascii"),
    )
    return hkdf.derive(master_key)


class IdentityKey:
    """A user's Ed25519 signing key; repr shows only the public half."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self._public = private_key.public_key().public_bytes_raw()

    @classmethod
    def from_seed(cls, seed: bytes) -> IdentityKey:
        if not isinstance(seed, bytes) or len(seed) != KEY_BYTES:
            raise BadRequest("an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def public_bytes(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityKey):
            return NotImplemented
        return hmac.compare_digest(self._public, other._public)

    def __hash__(self) -> int:
        return hash(self._public)

    def __repr__(self) -> str:
        return f"IdentityKey(public={self._public.hex()})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature; False on any malformed input."""
    if not (
        isinstance(public_key, bytes)
        and isinstance(message, bytes)
        and isinstance(signature, bytes)
        and len(public_key) == ED25519_PUBLIC_BYTES
        and len(signature) == ED25519_SIGNATURE_BYTES
    ):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def chunk_nonce(index: int) -> bytes:
    """12-byte GCM nonce for chunk ``index``: 4 zero bytes || index (u64 BE).

    Safe only because every file (and every new version of one) has its own key.
    """
    assert 0 <= index < 2**32
    return bytes(4) + index.to_bytes(8, "big")


def _check_chunk_position(file_id: bytes, index: int, count: int) -> None:
    # These come from metadata replicated by other peers, so they are outside input.
    if not isinstance(file_id, bytes) or not 1 <= len(file_id) <= MAX_FILE_ID_BYTES:
        raise BadRequest(f"file id must be 1..{MAX_FILE_ID_BYTES} bytes")
    if isinstance(index, bool) or isinstance(count, bool):
        raise BadRequest("chunk index and count must be integers")
    if not 1 <= count <= MAX_CHUNK_COUNT:
        raise BadRequest(f"chunk count {count} is out of range 1..{MAX_CHUNK_COUNT}")
    if not 0 <= index < count:
        raise BadRequest(f"chunk index {index} is out of range 0..{count - 1}")


def chunk_aad(file_id: bytes, index: int, count: int) -> bytes:
    """b"mydrive-chunk-v1" || file_id || index (u32 BE) || count (u32 BE).

    index and count are fixed-width at the end, so the encoding is unambiguous.
    """
    _check_chunk_position(file_id, index, count)
    return CHUNK_AAD_PREFIX + file_id + index.to_bytes(4, "big") + count.to_bytes(4, "big")


def encrypt_chunk(
    file_key: bytes, file_id: bytes, index: int, count: int, plaintext: bytes | memoryview
) -> bytes:
    """AES-256-GCM: ciphertext || tag, 16 bytes longer than the plaintext."""
    aad = chunk_aad(file_id, index, count)
    return _aesgcm(file_key).encrypt(chunk_nonce(index), plaintext, aad)


def encrypt_chunk_into(
    file_key: bytes, file_id: bytes, index: int, count: int, plaintext: bytes | memoryview,
    ciphertext: memoryview,
) -> None:
    """``encrypt_chunk`` into ``ciphertext`` (exactly 16 bytes longer than ``plaintext``),
    so a caller can reuse one buffer."""
    aad = chunk_aad(file_id, index, count)
    assert len(ciphertext) == len(plaintext) + TAG_BYTES
    _aesgcm(file_key).encrypt_into(chunk_nonce(index), plaintext, aad, ciphertext)


def decrypt_chunk(
    file_key: bytes, file_id: bytes, index: int, count: int, ciphertext: bytes | memoryview
) -> bytes:
    """Inverse of ``encrypt_chunk``; DecryptionFailed if the chunk is not exactly that chunk."""
    aad = chunk_aad(file_id, index, count)
    failed = DecryptionFailed(
        f"chunk {index} of {count} failed authentication (wrong key, tampered or misplaced)"
    )
    if len(ciphertext) < TAG_BYTES:
        raise failed
    try:
        return _aesgcm(file_key).decrypt(chunk_nonce(index), ciphertext, aad)
    except InvalidTag:
        raise failed from None


def decrypt_chunk_into(
    file_key: bytes, file_id: bytes, index: int, count: int, ciphertext: bytes | memoryview,
    plaintext: memoryview,
) -> None:
    """``decrypt_chunk`` into ``plaintext`` (exactly 16 bytes shorter than ``ciphertext``),
    so a caller can reuse one buffer; on failure its contents are unspecified."""
    aad = chunk_aad(file_id, index, count)
    if len(ciphertext) < TAG_BYTES or len(plaintext) != len(ciphertext) - TAG_BYTES:
        raise DecryptionFailed(f"chunk {index} of {count} failed authentication (wrong key, "
                               f"tampered or misplaced)")
    try:
        _aesgcm(file_key).decrypt_into(chunk_nonce(index), ciphertext, aad, plaintext)
    except InvalidTag:
        raise DecryptionFailed(f"chunk {index} of {count} failed authentication (wrong key, "
                               f"tampered or misplaced)") from None


def _name_format(file_id: bytes | None) -> tuple[int, bytes]:
    if file_id is None:
        return NAME_VERSION, NAME_AAD
    if not isinstance(file_id, bytes) or not 1 <= len(file_id) <= MAX_FILE_ID_BYTES:
        raise BadRequest(f"file id must be 1..{MAX_FILE_ID_BYTES} bytes")
    return BOUND_NAME_VERSION, BOUND_NAME_AAD_PREFIX + file_id


def encrypt_name(name_key: bytes, name: str, random_bytes: RandomBytes = os.urandom, *,
                 file_id: bytes | None = None) -> bytes:
    """0x01 || nonce (12) || AES-256-GCM(UTF-8 name, AAD b"mydrive-name-v1"); with
    ``file_id``: 0x02 || nonce || AES-256-GCM(name, AAD b"mydrive-name-v2" || file id)."""
    data = name.encode("utf-8")
    if len(data) > MAX_NAME_BYTES:
        raise BadRequest(f"name is {len(data)} bytes of UTF-8; the limit is {MAX_NAME_BYTES}")
    version, aad = _name_format(file_id)
    return _seal(version, name_key, data, aad, random_bytes)


def decrypt_name(name_key: bytes, blob: bytes, *, file_id: bytes | None = None) -> str:
    """Inverse of ``encrypt_name`` with the same ``file_id`` (DecryptionFailed otherwise)."""
    version, aad = _name_format(file_id)
    data = _open(version, name_key, blob, aad, "name decryption")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Authentic but not UTF-8 means a writer bug or a compromised key; treat as failure.
        raise DecryptionFailed("decrypted name is not valid UTF-8") from None


def name_tag(mac_key: bytes, name: str) -> str:
    """Deterministic HMAC-SHA256 lookup tag (hex) for a name; meaningless without the key."""
    assert len(mac_key) == KEY_BYTES
    return hmac.new(mac_key, name.encode("utf-8"), "sha256").hexdigest()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


# ---- Network PKI (X.509 for TLS between peers; docs/tls.md) ----------------------------

CA_VALID_DAYS = 3650
PEER_CERT_VALID_DAYS = 825  # the longest validity browsers and CAB rules still accept


@dataclass(frozen=True)
class CertificateBundle:
    """A private key and its certificate, both PEM. The key is a secret: write it 0600."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes


def _new_tls_key() -> ec.EllipticCurvePrivateKey:
    # P-256: supported by every TLS stack involved (nginx/OpenSSL, gRPC/BoringSSL, browsers).
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def new_certificate_authority(name: str, *, valid_days: int = CA_VALID_DAYS,
                              now: datetime.datetime | None = None) -> CertificateBundle:
    """A self-signed CA for one mydrive network (signs only peer certificates)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = _new_tls_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateBundle(key_pem=_key_pem(key),
                             cert_pem=cert.public_bytes(serialization.Encoding.PEM))


def issue_certificate(ca: CertificateBundle, common_name: str, *, dns_names: Sequence[str] = (),
                      ip_addresses: Sequence[str] = (), valid_days: int = PEER_CERT_VALID_DAYS,
                      not_before: datetime.datetime | None = None,
                      not_after: datetime.datetime | None = None,
                      key_pem: bytes | None = None) -> CertificateBundle:
    """A peer certificate signed by ``ca``, good for TLS server and client authentication;
    for ``key_pem`` (a key from ``new_tls_key_pem``) or a fresh key."""
    try:
        ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        ips = [ipaddress.ip_address(a) for a in ip_addresses]
        key = _new_tls_key() if key_pem is None else _load_tls_key(key_pem)
    except ValueError as exc:
        raise BadRequest(f"cannot issue certificate: {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BadRequest("the network CA key must be an EC key")
    now = datetime.datetime.now(datetime.UTC)
    start = not_before or now - datetime.timedelta(minutes=5)
    end = not_after or now + datetime.timedelta(days=valid_days)
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return CertificateBundle(key_pem=_key_pem(key),
                             cert_pem=cert.public_bytes(serialization.Encoding.PEM))


# ---- Peer identity: certificate keys name peers, and sign peer documents ----------------

MAX_CERTIFICATE_PEM_BYTES = 8 * 1024


def new_tls_key_pem() -> bytes:
    """A fresh P-256 private key (PKCS#8 PEM) for a peer certificate; a secret (0600)."""
    return _key_pem(_new_tls_key())


def _load_tls_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a peer key must be an EC key")
    return key


def _spki_digest(public_key: ec.EllipticCurvePublicKey) -> bytes:
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize()


def tls_key_digest(key_pem: bytes) -> bytes:
    """SHA-256 of the DER SubjectPublicKeyInfo of a private key's public half (32 bytes):
    the same value ``CertificateTrust.check_certificate`` gives for its certificates."""
    try:
        return _spki_digest(_load_tls_key(key_pem).public_key())
    except ValueError as exc:
        raise BadRequest(f"not a PEM EC private key: {exc}") from exc


def sign_with_tls_key(key_pem: bytes, message: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 signature (DER) of ``message`` with a peer's certificate key."""
    try:
        key = _load_tls_key(key_pem)
    except ValueError as exc:
        raise BadRequest(f"not a PEM EC private key: {exc}") from exc
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def _load_certificate(cert_pem: bytes) -> x509.Certificate:
    if len(cert_pem) > MAX_CERTIFICATE_PEM_BYTES:
        raise PermissionDenied(f"certificate larger than {MAX_CERTIFICATE_PEM_BYTES} bytes")
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise PermissionDenied(f"not a PEM certificate: {exc}") from None


_MAX_TRUSTED_CERTIFICATES = 1024


@dataclass(frozen=True)
class _IssuedCertificate:
    """A peer certificate the network CA issued, as ``CertificateTrust`` remembers it."""

    serial: int
    key_digest: bytes
    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime


class CertificateTrust:
    """What a peer believes about other peers' certificates: only what the network CA issued.

    ``check_certificate`` and ``verify_signature`` are what mydrive.formats.peerdoc needs to
    accept a peer document (its ``PeerTrust``); the CA certificate is the peer's trust anchor
    (PEER_DIR/tls/ca.crt).
    """

    def __init__(self, ca_cert_pem: bytes, *,
                 now: Callable[[], datetime.datetime] | None = None,
                 revoked: Callable[[int, bytes], bool] | None = None) -> None:
        """``revoked(serial, key digest)``: True for a certificate the network CA revoked
        (the peer's verified revocation list, mydrive.node.revocation)."""
        try:
            self._ca = x509.load_pem_x509_certificate(ca_cert_pem)
        except ValueError as exc:
            raise BadRequest(f"network CA certificate unreadable: {exc}") from exc
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self._revoked = revoked or (lambda serial, key_digest: False)
        # The time-independent part of a successful check, by certificate bytes: parsing
        # and the CA signature cost most of the check, run on every incoming StoreChunk
        # stream. Validity dates and revocation are checked again on every call.
        self._issued: dict[bytes, _IssuedCertificate] = {}

    def check_certificate(self, cert_pem: bytes) -> tuple[bytes, tuple[str, ...]]:
        """(SHA-256 of its SubjectPublicKeyInfo, its DNS names) if the network CA issued this
        peer certificate and it is valid now; PermissionDenied naming the reason otherwise."""
        issued = self._issued.get(cert_pem)
        if issued is None:
            issued = self._check_issued(cert_pem)
        now = self._now()
        if not issued.not_before <= now <= issued.not_after:
            raise PermissionDenied(f"certificate not valid now (valid "
                                   f"{issued.not_before:%Y-%m-%d} to "
                                   f"{issued.not_after:%Y-%m-%d})")
        if self._revoked(issued.serial, issued.key_digest):
            raise PermissionDenied("certificate revoked by the network CA")
        if len(self._issued) >= _MAX_TRUSTED_CERTIFICATES:
            self._issued.clear()
        self._issued[cert_pem] = issued
        return issued.key_digest, issued.names

    def _check_issued(self, cert_pem: bytes) -> _IssuedCertificate:
        """The checks of ``check_certificate`` that do not depend on the time or the
        revocation list."""
        cert = _load_certificate(cert_pem)
        try:
            cert.verify_directly_issued_by(self._ca)
        except (ValueError, TypeError, InvalidSignature):
            raise PermissionDenied("certificate not issued by the network CA") from None
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or constraints.ca:
            raise PermissionDenied("not a peer certificate (a CA certificate, or no "
                                   "basic constraints)")
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise PermissionDenied("peer certificate key is not an EC key")
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = ()
        return _IssuedCertificate(serial=cert.serial_number, key_digest=_spki_digest(public_key),
                                  names=names, not_before=cert.not_valid_before_utc,
                                  not_after=cert.not_valid_after_utc)

    def verify_signature(self, cert_pem: bytes, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` is the certificate key's ECDSA/SHA-256 signature of
        ``message`` (the certificate itself is checked by ``check_certificate``)."""
        public_key = _load_certificate(cert_pem).public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            return False
        try:
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


# ---- Revocation: the network CA's certificate revocation list (docs/tls.md) -------------

# Private CRL entry extensions (non-critical, so OpenSSL/nginx skip them) under an OID arc
# of our own (2.25.<UUID>, ITU-T X.667): the revoked certificate's key digest, which names
# the peer id, and the operator's free-text reason.
_MYDRIVE_OID_ARC = "2.25.184087753257010131850145767724772592184"
REVOKED_KEY_OID = x509.ObjectIdentifier(f"{_MYDRIVE_OID_ARC}.1")
REVOKED_NOTE_OID = x509.ObjectIdentifier(f"{_MYDRIVE_OID_ARC}.2")
MAX_CRL_PEM_BYTES = 1024 * 1024
MAX_REVOCATION_NOTE_BYTES = 200


@dataclass(frozen=True)
class Revoked:
    """One revoked certificate: its serial, the SHA-256 of its key (its peer id's source),
    when and why (the operator's text)."""

    serial: int
    key_digest: bytes
    revoked_at: datetime.datetime
    note: str = ""


@dataclass(frozen=True)
class RevocationList:
    """A CRL whose signature by the network CA has been checked. ``number`` only grows."""

    number: int
    issued_at: datetime.datetime
    entries: tuple[Revoked, ...]
    pem: bytes

    def revokes(self, serial: int, key_digest: bytes) -> bool:
        return any(e.serial == serial or e.key_digest == key_digest for e in self.entries)


_DER_OCTET_STRING, _DER_UTF8_STRING = 0x04, 0x0C


def _der(tag: int, data: bytes) -> bytes:
    """A DER value of fewer than 256 bytes (all our extension values are)."""
    assert len(data) < 256
    length = bytes([len(data)]) if len(data) < 128 else bytes([0x81, len(data)])
    return bytes([tag]) + length + data


def _from_der(tag: int, der: bytes) -> bytes:
    if len(der) >= 2 and der[0] == tag and der[1] < 128 and der[1] == len(der) - 2:
        return der[2:]
    if len(der) >= 3 and der[0] == tag and der[1] == 0x81 and der[2] == len(der) - 3:
        return der[3:]
    raise ValueError("extension value is not the expected DER string")


def certificate_identity(cert_pem: bytes, ca_cert_pem: bytes) -> tuple[int, bytes]:
    """(serial, SHA-256 of its key) of a peer certificate the network CA signed;
    PermissionDenied if another key signed it (expiry does not matter to revoke it)."""
    cert = _load_certificate(cert_pem)
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_cert_pem))
    except (ValueError, TypeError, InvalidSignature):
        raise PermissionDenied("certificate not issued by the network CA") from None
    if cert.public_bytes(serialization.Encoding.DER) == x509.load_pem_x509_certificate(
            ca_cert_pem).public_bytes(serialization.Encoding.DER):
        raise BadRequest("that is the network CA's own certificate, not a peer's")
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PermissionDenied("peer certificate key is not an EC key")
    return cert.serial_number, _spki_digest(public_key)


def sign_revocation_list(ca: CertificateBundle, entries: Sequence[Revoked], *, number: int,
                         now: datetime.datetime | None = None) -> bytes:
    """A CRL (PEM) of ``entries`` signed by the network CA. Its nextUpdate is the CA's own
    expiry: OpenSSL refuses every client once a CRL's nextUpdate has passed, and this list
    changes only when the operator revokes, never on a schedule."""
    try:
        ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    except ValueError as exc:
        raise BadRequest(f"cannot sign a revocation list: {exc}") from exc
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise BadRequest("the network CA key must be an EC key")
    now = now or datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
        .last_update(now - datetime.timedelta(minutes=5))
        .next_update(max(ca_cert.not_valid_after_utc, now + datetime.timedelta(days=1)))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder().serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .add_extension(x509.UnrecognizedExtension(
                REVOKED_KEY_OID, _der(_DER_OCTET_STRING, entry.key_digest)), critical=False)
        )
        note = entry.note.encode()[:MAX_REVOCATION_NOTE_BYTES].decode(errors="ignore")
        if note:
            revoked = revoked.add_extension(x509.UnrecognizedExtension(
                REVOKED_NOTE_OID, _der(_DER_UTF8_STRING, note.encode())), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def read_revocation_list(crl_pem: bytes, ca_cert_pem: bytes) -> RevocationList:
    """Parse a CRL and check that the network CA signed it; PermissionDenied if another key
    did (a forgery is never used), BadRequest if it is malformed."""
    if len(crl_pem) > MAX_CRL_PEM_BYTES:
        raise BadRequest(f"revocation list larger than {MAX_CRL_PEM_BYTES} bytes")
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as exc:
        raise BadRequest(f"not a PEM revocation list: {exc}") from None
    ca_key = ca_cert.public_key()
    if (crl.issuer != ca_cert.subject or not isinstance(ca_key, ec.EllipticCurvePublicKey)
            or not crl.is_signature_valid(ca_key)):
        raise PermissionDenied("revocation list not signed by the network CA")
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        entries = tuple(_revoked_entry(r) for r in crl)
    except (x509.ExtensionNotFound, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"revocation list entry malformed: {exc}") from None
    return RevocationList(number=number, issued_at=crl.last_update_utc, entries=entries,
                          pem=crl_pem)


def _revoked_entry(entry: x509.RevokedCertificate) -> Revoked:
    key = entry.extensions.get_extension_for_oid(REVOKED_KEY_OID).value
    digest = _from_der(_DER_OCTET_STRING, key.value)  # type: ignore[attr-defined]
    if len(digest) != 32:
        raise ValueError("revoked key digest is not 32 bytes")
    try:
        note = entry.extensions.get_extension_for_oid(REVOKED_NOTE_OID).value
        note_text = _from_der(_DER_UTF8_STRING, note.value).decode()  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        note_text = ""
    return Revoked(serial=entry.serial_number, key_digest=digest,
                   revoked_at=entry.revocation_date_utc, note=note_text)
