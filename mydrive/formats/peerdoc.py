"""The ``peer:<id>`` metadata document: how to reach a peer, bound to its certificate.

This module owns the format (docs/peer-directory.md, "Peer documents"). Every reader of peer
documents goes through ``accept_peer_documents`` or ``verify_peer_document``: the client's
peer list (placement and fetches), replication, ``mydrive peer register``, the test-bed.

Version 2. On a TLS network a document carries the peer's certificate (PEM) and an ECDSA
signature by that certificate's key over every other field; the peer id is the first 8
bytes (16 hex digits) of SHA-256 over the certificate's SubjectPublicKeyInfo, and the
certificate names the peer as ``<peer id>.peer.mydrive``. A reader that trusts the network
CA accepts a document only if the CA issued the certificate (valid now), the id is that
certificate's key id, the document is stored as ``peer:<that id>`` and the signature
verifies. So one certificate key is one peer (a machine with one certificate counts once),
and nobody can publish a document for another peer's id; the gRPC clients then check that
the peer they dial presents a certificate with that name (mydrive.transport.grpc_client).

Without TLS (``cluster up --no-tls``, the test-bed) documents carry no certificate and are
accepted as written after the shape checks: no Sybil defence there (docs/security.md).

Pure data: nothing here touches the disk or the network, so a crash can leave nothing
behind; the certificate checks are handed in (``PeerTrust``, implemented by
mydrive.crypto.primitives.CertificateTrust).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from mydrive.errors import BadRequest, MydriveError, PermissionDenied

log = logging.getLogger("mydrive.formats.peerdoc")

VERSION = 2
KNOWN_VERSIONS = (1, 2)  # version 1: unsigned, without certificate (accepted only without TLS)
SIGNING_CONTEXT = b"mydrive-peer-document-v2\x00"
PEER_ID_BYTES = 8
TLS_NAME_SUFFIX = ".peer.mydrive"
MAX_PEER_DOCUMENT_BYTES = 64 * 1024
MAX_NAME_CHARS = 64
MAX_URL_CHARS = 512
MAX_CERTIFICATE_CHARS = 8 * 1024
MAX_SIGNATURE_BYTES = 128
MAX_CAPACITY_BYTES = 2**62
MAX_PEER_DOCUMENTS = 4096  # more than this in one listing: the rest are ignored, logged

_PEER_ID_RE = re.compile(r"[0-9a-f]{16}")
_ADDRESS_RE = re.compile(r"[A-Za-z0-9.\-\[\]:]{1,253}:[0-9]{1,5}")
_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


class PeerTrust(Protocol):
    """The certificate checks a reader on a TLS network trusts (its network CA)."""

    def check_certificate(self, cert_pem: bytes) -> tuple[bytes, tuple[str, ...]]:
        """(SHA-256 of the certificate's SubjectPublicKeyInfo, its DNS names) if the network
        CA issued it and it is valid now; raises PermissionDenied otherwise."""
        ...

    def verify_signature(self, cert_pem: bytes, message: bytes, signature: bytes) -> bool:
        """True if the certificate's key made ``signature`` over ``message``."""
        ...


def peer_id_from_key_digest(key_digest: bytes) -> str:
    """The peer id of a certificate key: the first 8 bytes of its SPKI SHA-256, hex."""
    assert len(key_digest) >= PEER_ID_BYTES
    return key_digest[:PEER_ID_BYTES].hex()


def tls_name(peer_id: str) -> str:
    """The DNS name in a peer's certificate that names the peer itself. nginx and the gRPC
    clients check it when they dial a peer (nginx matches DNS names only, not IP SANs)."""
    return f"{peer_id}{TLS_NAME_SUFFIX}"


@dataclass(frozen=True)
class PeerDocument:
    """One peer as the others see it. ``certificate_pem`` and ``signature`` are set on TLS
    networks (version 2); ``couchdb_url`` only for peers whose metadata is on CouchDB."""

    peer_id: str
    name: str
    receiver_address: str
    sender_address: str
    tls: bool
    capacity_bytes: int
    updated_ms: int = 0
    couchdb_url: str | None = None
    certificate_pem: str | None = None
    signature: bytes | None = None
    version: int = VERSION

    @property
    def doc_id(self) -> str:
        return f"peer:{self.peer_id}"

    def to_doc(self) -> dict[str, Any]:
        """The JSON document as stored (``signature`` hex, if any)."""
        doc: dict[str, Any] = {
            "type": "peer", "version": self.version, "peer_id": self.peer_id,
            "name": self.name, "receiver_address": self.receiver_address,
            "sender_address": self.sender_address, "tls": self.tls,
            "capacity_bytes": self.capacity_bytes, "updated_ms": self.updated_ms,
        }
        if self.couchdb_url is not None:
            doc["couchdb_url"] = self.couchdb_url
        if self.certificate_pem is not None:
            doc["certificate"] = self.certificate_pem
        if self.signature is not None:
            doc["signature"] = self.signature.hex()
        return doc

    @classmethod
    def from_doc(cls, doc: Any) -> PeerDocument:
        """Check the shape of a document that came from outside; BadRequest names the field."""
        if not isinstance(doc, dict) or doc.get("type") != "peer":
            raise BadRequest("not a peer document (expected a JSON object with type \"peer\"; "
                             "make one with: mydrive peer doc PEER_DIR)")
        try:
            size = len(json.dumps(doc))
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"peer document is not plain JSON: {exc}") from None
        if size > MAX_PEER_DOCUMENT_BYTES:
            raise BadRequest(f"peer document larger than {MAX_PEER_DOCUMENT_BYTES} bytes")
        version = doc.get("version", 1)
        if version not in KNOWN_VERSIONS or isinstance(version, bool):
            raise BadRequest(f"peer document: version {version!r:.20} is not one of "
                             f"{KNOWN_VERSIONS}")
        peer_id = doc.get("peer_id")
        if not isinstance(peer_id, str) or _PEER_ID_RE.fullmatch(peer_id) is None:
            raise BadRequest(f"peer document: peer_id must be 16 hex digits, got "
                             f"{peer_id!r:.40}")
        for key in ("receiver_address", "sender_address"):
            value = doc.get(key)
            if not isinstance(value, str) or _ADDRESS_RE.fullmatch(value) is None:
                raise BadRequest(f"peer document: {key} must be host:port, got {value!r:.80}")
        name = doc.get("name", peer_id)
        if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
            raise BadRequest(f"peer document: name must be 1-{MAX_NAME_CHARS} printable "
                             f"characters, got {name!r:.80}")
        tls = doc.get("tls", False)
        if not isinstance(tls, bool):
            raise BadRequest(f"peer document: tls must be true or false, got {tls!r:.20}")
        couchdb_url = _couchdb_url(doc.get("couchdb_url"))
        certificate = _certificate(doc.get("certificate"))
        signature = _signature(doc.get("signature"))
        capacity = _int_field(doc, "capacity_bytes", MAX_CAPACITY_BYTES, default=None)
        updated_ms = _int_field(doc, "updated_ms", 2**62, default=0)
        return cls(peer_id=peer_id, name=name, receiver_address=doc["receiver_address"],
                   sender_address=doc["sender_address"], tls=tls, capacity_bytes=capacity,
                   updated_ms=updated_ms, couchdb_url=couchdb_url,
                   certificate_pem=certificate, signature=signature, version=int(version))

    def signing_payload(self) -> bytes:
        """What the signature covers: a context string and the canonical JSON of every
        field of the document but ``signature`` (keys sorted, no spaces, ASCII)."""
        unsigned = self.to_doc()
        unsigned.pop("signature", None)
        return SIGNING_CONTEXT + json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                                            ensure_ascii=True).encode()

    def signed(self, sign: Callable[[bytes], bytes]) -> PeerDocument:
        """This document signed with ``sign`` (the certificate key's signing function)."""
        unsigned = replace(self, signature=None, version=VERSION)
        return replace(unsigned, signature=sign(unsigned.signing_payload()))


def _int_field(doc: Mapping[str, Any], key: str, high: int, *, default: int | None) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadRequest(f"peer document: {key} must be an integer 0..{high}, got "
                         f"{value!r:.40}")
    return value


def _couchdb_url(url: Any) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL_CHARS else None
    try:
        port_ok = parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        port_ok = False
    if (parts is None or not port_ok or parts.scheme not in ("http", "https")
            or not parts.hostname or parts.username or parts.password
            or parts.query or parts.fragment):
        raise BadRequest("peer document: couchdb_url must be an http(s) URL without "
                         "credentials, query or fragment")
    return str(url)


def _certificate(value: Any) -> str | None:
    if value is None:
        return None
    if (not isinstance(value, str) or len(value) > MAX_CERTIFICATE_CHARS
            or not value.lstrip().startswith(_PEM_BEGIN)):
        raise BadRequest(f"peer document: certificate must be one PEM certificate of at "
                         f"most {MAX_CERTIFICATE_CHARS} characters")
    return value


def _signature(value: Any) -> bytes | None:
    if value is None:
        return None
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or not 0 < len(raw) <= MAX_SIGNATURE_BYTES:
        raise BadRequest(f"peer document: signature must be hex, at most "
                         f"{MAX_SIGNATURE_BYTES} bytes")
    return raw


def verify_peer_document(doc: Any, trust: PeerTrust | None, *,
                         doc_id: str | None = None) -> PeerDocument:
    """Parse and verify one peer document from outside.

    With ``trust`` (a TLS network): BadRequest for a bad shape, PermissionDenied unless the
    certificate is the network CA's, the peer id is its key's, the certificate names the
    peer, the document is stored under its own id and the signature verifies. Without
    ``trust``: the shape and the id only.
    """
    peer = doc if isinstance(doc, PeerDocument) else PeerDocument.from_doc(doc)
    if doc_id is not None and doc_id != peer.doc_id:
        raise PermissionDenied(f"document {doc_id!r:.60} holds the peer document of "
                               f"{peer.peer_id}")
    if trust is None:
        return peer
    if not peer.tls or peer.certificate_pem is None or peer.signature is None:
        raise PermissionDenied(f"peer {peer.peer_id}: an unsigned document (no certificate "
                               f"or signature) on a TLS network")
    cert = peer.certificate_pem.encode()
    key_digest, names = trust.check_certificate(cert)
    if peer_id_from_key_digest(key_digest) != peer.peer_id:
        raise PermissionDenied(f"peer {peer.peer_id}: the id is not its certificate key's "
                               f"({peer_id_from_key_digest(key_digest)})")
    if tls_name(peer.peer_id) not in names:
        raise PermissionDenied(f"peer {peer.peer_id}: its certificate does not name "
                               f"{tls_name(peer.peer_id)}")
    if not trust.verify_signature(cert, peer.signing_payload(), peer.signature):
        raise PermissionDenied(f"peer {peer.peer_id}: the signature does not verify with "
                               f"its certificate key")
    return peer


def accept_peer_documents(rows: Iterable[tuple[str, Any]],
                          trust: PeerTrust | None) -> list[PeerDocument]:
    """The peers of ``rows`` (``(doc id, document)`` as a metadata listing gives them) that
    verify, ordered by id; every other row is logged once per call and skipped.

    Each peer id appears once (a listing has one document per id), and on a TLS network an
    id is its certificate key's, so a machine with one certificate is one peer however many
    documents point at it.
    """
    accepted: dict[str, PeerDocument] = {}
    for count, (doc_id, doc) in enumerate(rows):
        if count >= MAX_PEER_DOCUMENTS:
            log.warning("more than %d peer documents; ignoring the rest", MAX_PEER_DOCUMENTS)
            break
        try:
            peer = verify_peer_document(doc, trust, doc_id=doc_id)
        except MydriveError as exc:
            log.warning("skipping peer document %r: %s", str(doc_id)[:80], exc)
            continue
        accepted.setdefault(peer.peer_id, peer)
    return [accepted[k] for k in sorted(accepted)]
