"""Another account on the same machine reads what it can of a peer directory (issue 11).

The secrets are the peer's TLS key and, on CouchDB, its own admin and member passwords in
peer.json; nothing of them may be readable by others, and no two peers may share them.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from mydrive.formats.peerdoc import PeerDocument
from mydrive.node.peerdir import PeerDir, init_peer, peer_document
from mydrive.node.pki import init_network

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes (Windows: ACLs)")


def _others_can_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


@posix_only
def test_peer_secrets_unreadable_by_others_and_never_shared(tmp_path: Path) -> None:
    """peer.json and the TLS key are 0600 from the start (even under a permissive umask);
    each peer's CouchDB passwords are its own; none appears in its public peer document."""
    init_network(tmp_path / "pki")
    old = os.umask(0o000)  # the most permissive account setting
    try:
        peers = [init_peer(tmp_path / f"p{i}", network_dir=tmp_path / "pki",
                           metadata="couchdb") for i in range(2)]
    finally:
        os.umask(old)
    secrets = []
    for peer in peers:
        for rel in ("peer.json", "tls/peer.key"):
            assert not _others_can_read(peer.root / rel), rel
        c = peer.config
        secrets += [c.couchdb_password, c.couchdb_member_password]
        public = json.dumps(peer_document(peer))
        assert c.couchdb_password not in public and c.couchdb_member_password not in public
        assert PeerDocument.from_doc(json.loads(public)).tls
    assert all(secrets) and len(set(secrets)) == len(secrets)


@posix_only
def test_peer_json_made_private_when_found_readable(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A peer.json left readable by others (copied with the wrong mode, an older version) is
    made 0600 when the peer loads it, with a warning saying so."""
    peer = init_peer(tmp_path / "p", metadata="couchdb")
    config = peer.root / "peer.json"
    os.chmod(config, 0o644)
    assert _others_can_read(config)  # the attack's precondition holds
    with caplog.at_level(logging.WARNING, logger="mydrive.node.peerdir"):
        PeerDir(peer.root)
    assert not _others_can_read(config)
    assert "readable by other users" in caplog.text
