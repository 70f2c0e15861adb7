"""A CouchDB peer's replication, set up and supervised from its peer directory.

The mechanism (pull documents, the supervisor, the conflict policy) is in
mydrive.metadata.replication; this module only reads the peer's config to run it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mydrive.errors import MydriveError
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.couchdb import CouchStore
from mydrive.metadata.replication import ReplicationSupervisor, Replicator, remote_peers
from mydrive.node.nginx import reload
from mydrive.node.peerdir import PeerDir
from mydrive.node.revocation import CRL_DOC_ID, adopt_published_crl

log = logging.getLogger("mydrive.node.replication")


def _open(peer: PeerDir) -> tuple[CouchStore, Replicator]:
    """This peer's store (as admin) and replicator; makes sure the database's one member
    (as whom pulled documents are written, and nginx reads for the others) exists."""
    c = peer.config
    store = peer.open_metadata()
    assert isinstance(store, CouchStore), "peer is not on CouchDB metadata"
    try:
        store.ensure_member(c.couchdb_member_user, c.couchdb_member_password)
    except BaseException:
        store.close()
        raise
    return store, Replicator(store, member_user=c.couchdb_member_user,
                             member_password=c.couchdb_member_password, tls=c.tls,
                             trust=peer.peer_trust())


def ensure_for_peer(peer: PeerDir) -> None:
    """Set up (or correct) a CouchDB peer's pulls from every peer it knows."""
    store, replicator = _open(peer)
    try:
        replicator.ensure(remote_peers(store, local_peer_id=peer.config.peer_id,
                                       reach=peer.config.reach_couchdb,
                                       trust=replicator.trust))
    finally:
        store.close()


def supervise_peer(peer: PeerDir, stop: threading.Event, *, interval_s: float = 1.0) -> None:
    """Run a CouchDB peer's replication supervisor until ``stop``; never raises."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    while not stop.is_set():
        try:
            store, replicator = _open(peer)
        except MydriveError as exc:
            log.warning("replication supervisor waits for the metadata server: %s", exc)
            stop.wait(interval_s)
            continue
        try:
            ReplicationSupervisor(store, replicator, local_peer_id=peer.config.peer_id,
                                  reach=peer.config.reach_couchdb,
                                  on_change=revocation_follower(peer, store)).run(
                stop, interval_s=interval_s)
        finally:
            store.close()


def revocation_follower(peer: PeerDir, store: MetadataStore) -> Callable[[str], None]:
    """What the supervisor does when the published revocation list changes: adopt it if it
    is the CA's and newer (then reload this peer's nginx), else write this peer's back
    (mydrive.node.revocation)."""
    def changed(doc_id: str) -> None:
        if doc_id != CRL_DOC_ID or not peer.config.tls:
            return
        if adopt_published_crl(store, peer.tls_dir) == "installed":
            try:
                log.warning("%s", reload(peer))
            except MydriveError as exc:
                log.error("revocation list installed but nginx not reloaded (%s): reload or "
                          "restart it", exc)
    return changed
