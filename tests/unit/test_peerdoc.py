"""The peer document format (mydrive.formats.peerdoc): shape checks, signature, binding of
the id to the certificate key, and the checks a TLS reader makes."""

from __future__ import annotations

import datetime
import json
from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.crypto import primitives as crypto
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.formats.peerdoc import (
    MAX_PEER_DOCUMENT_BYTES,
    PeerDocument,
    accept_peer_documents,
    tls_name,
    verify_peer_document,
)
from mydrive.node.peerdir import init_peer, peer_document
from mydrive.node.pki import init_network, network_trust


@pytest.fixture
def signed(tmp_path: Path) -> tuple[dict, crypto.CertificateTrust]:
    init_network(tmp_path / "pki")
    peer = init_peer(tmp_path / "p", network_dir=tmp_path / "pki", metadata="couchdb")
    return peer_document(peer), network_trust(peer.tls_dir)


def test_peerdoc_signed_document_verifies_and_names_its_key(signed) -> None:
    """A peer's own document verifies; its id is its certificate key's and the certificate
    names it; parsing and writing back gives the same JSON."""
    doc, trust = signed
    peer = verify_peer_document(doc, trust, doc_id=f"peer:{doc['peer_id']}")
    digest, names = trust.check_certificate(peer.certificate_pem.encode())
    assert digest[:8].hex() == peer.peer_id and tls_name(peer.peer_id) in names
    assert PeerDocument.from_doc(json.loads(json.dumps(doc))).to_doc() == doc
    assert doc["version"] == 2 and doc["couchdb_url"].endswith("/couchdb")


@pytest.mark.parametrize("field,value", [
    ("name", "evil"), ("receiver_address", "evil.example:1"), ("sender_address", "e:1"),
    ("capacity_bytes", 2**40), ("tls", False), ("updated_ms", 1),
    ("couchdb_url", "https://evil.example:1/couchdb"),
])
def test_peerdoc_any_changed_field_breaks_the_signature(signed, field, value) -> None:
    """Every field is covered by the signature: changing any one is PermissionDenied."""
    doc, trust = signed
    with pytest.raises(PermissionDenied):
        verify_peer_document({**doc, field: value}, trust)


def test_peerdoc_certificate_checks(signed, tmp_path: Path) -> None:
    """Not yet valid or expired certificates, and certificates of another CA, are refused;
    without trust (no TLS) the same documents pass the shape checks only."""
    doc, _ = signed
    ca_pem = (tmp_path / "pki" / "ca.crt").read_bytes()
    later = crypto.CertificateTrust(ca_pem, now=lambda: datetime.datetime.now(datetime.UTC)
                                    + datetime.timedelta(days=900))
    with pytest.raises(PermissionDenied, match="not valid now"):
        verify_peer_document(doc, later)
    other = crypto.CertificateTrust(crypto.new_certificate_authority("other").cert_pem)
    with pytest.raises(PermissionDenied, match="not issued by the network CA"):
        verify_peer_document(doc, other)
    assert verify_peer_document(doc, None).peer_id == doc["peer_id"]


@pytest.mark.parametrize("change,needle", [
    ({"type": "user"}, "not a peer document"),
    ({"peer_id": "ABC"}, "peer_id must be 16 hex digits"),
    ({"receiver_address": "no port"}, "receiver_address must be host:port"),
    ({"capacity_bytes": -1}, "capacity_bytes must be an integer"),
    ({"capacity_bytes": True}, "capacity_bytes must be an integer"),
    ({"tls": "yes"}, "tls must be true or false"),
    ({"couchdb_url": "https://u:p@h:1/couchdb"}, "without credentials"),
    ({"couchdb_url": "ftp://h/x"}, "http(s) URL"),
    ({"certificate": "not pem"}, "one PEM certificate"),
    ({"signature": "zz"}, "signature must be hex"),
    ({"version": 3}, "version 3 is not one of"),
    ({"name": "a\nb"}, "name must be"),
    ({"padding": "x" * MAX_PEER_DOCUMENT_BYTES}, "larger than"),
])
def test_peerdoc_shape_errors_name_the_field(signed, change, needle) -> None:
    """A malformed document is BadRequest naming what is wrong, before any crypto runs."""
    doc, trust = signed
    with pytest.raises(BadRequest, match=needle.replace("(", r"\(").replace(")", r"\)")):
        verify_peer_document({**doc, **change}, trust)


def test_peerdoc_listing_keeps_verified_documents_only(signed) -> None:
    """accept_peer_documents keeps the genuine document, drops the document stored under
    another id, an unsigned one and garbage, and never raises."""
    doc, trust = signed
    unsigned = replace(PeerDocument.from_doc(doc), peer_id="0" * 16, certificate_pem=None,
                       signature=None).to_doc()
    rows = [(f"peer:{doc['peer_id']}", doc), ("peer:" + "1" * 16, doc),
            ("peer:" + "0" * 16, unsigned), ("peer:x", {"type": "peer"}), ("peer:y", 42)]
    assert [p.peer_id for p in accept_peer_documents(rows, trust)] == [doc["peer_id"]]
    # Without TLS the unsigned document counts (no Sybil defence there).
    assert "0" * 16 in [p.peer_id for p in accept_peer_documents(rows, None)]
