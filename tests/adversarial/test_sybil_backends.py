"""Sybil and forged peer documents on both metadata backends, the attacker acting on its own
database only (issue 11, attack 5).

B is an honest peer's metadata, C the dishonest member's. C holds the network's genuine
``peer:`` documents like everyone, writes its forgeries into its own database, and B takes
what C has: on CouchDB by real replication (one-shot ``POST /_replicate`` into B, forks
written with ``new_edits=false`` as replication writes them) followed by B's replication
supervisor round; on SQLite, which does not replicate, by copying C's peer documents, as
``peer register`` of an exported document or a future replication would. The SQLite-only
originals with more variants are in test_sybil_peers.py.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from mydrive.client import PeerClient
from mydrive.formats.peerdoc import PeerDocument
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.couchdb import CouchStore
from mydrive.metadata.replication import (
    ReplicationSupervisor,
    keep_peer_document,
    with_credentials,
)
from mydrive.metadata.sqlite import SqliteStore
from mydrive.node.peerdir import PeerDir, peer_document
from mydrive.node.pki import signer
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport
from tests.adversarial.test_sybil_peers import (
    ATTACKER,
    SYBILS,
    _attacker_chunks,
    _network,
    _sybil_documents,
)
from tests.couchfix import PouchServer
from tests.strategies import FAST_KDF, random_file


@dataclass
class Net:
    backend: str
    dirs: list[PeerDir]
    transport: MemoryTransport
    clock: ManualClock
    victim: MetadataStore  # B
    attacker: MetadataStore  # C
    pouch: PouchServer | None
    supervisor: ReplicationSupervisor | None

    def deliver(self, check: Callable[[], bool] | None = None) -> None:
        """B takes what C has, then B's supervisor round (on SQLite: the same peer keeping).
        ``check``: asserted true between the replication and the round."""
        if isinstance(self.victim, CouchStore) and isinstance(self.attacker, CouchStore):
            assert self.pouch is not None and self.supervisor is not None
            p = self.pouch
            body = {"source": with_credentials(f"{p.url}/{self.attacker.db}", p.user,
                                               p.password),
                    "target": with_credentials(f"{p.url}/{self.victim.db}", p.user,
                                               p.password)}
            self.victim.request("POST", "/_replicate", body=body, ok=(200, 201, 202))
            assert check is None or check(), "the attack did not arrive as intended"
            self.supervisor.catch_up()
            return
        theirs = dict(self.attacker.list_prefix("peer:"))
        ours = dict(self.victim.list_prefix("peer:"))
        for doc_id, doc in theirs.items():
            if ours.get(doc_id) != doc:
                self.victim.put(doc_id, doc)
        for doc_id in ours.keys() - theirs.keys():
            self.victim.delete(doc_id)
        for doc_id in sorted(theirs.keys() | ours.keys()):
            keep_peer_document(self.victim, doc_id, self.dirs[0].peer_trust())

    def fork(self, doc_id: str, body: Document) -> None:
        """C writes ``body`` as a leaf beside its current revision of ``doc_id``."""
        store = self.attacker
        assert isinstance(store, CouchStore)
        raw = store.request("GET", f"/{store.db}/{doc_id}", params={"revs": "true"},
                            ok=(200,)).json()
        start, ids = raw["_revisions"]["start"], raw["_revisions"]["ids"]
        new = hashlib.md5(uuid.uuid4().bytes).hexdigest()
        doc = {**body, "_id": doc_id, "_rev": f"{start}-{new}",  # a sibling: same parent
               "_revisions": {"start": start, "ids": [new, *ids[1:]]}}
        store.request("POST", f"/{store.db}/_bulk_docs",
                      body={"docs": [doc], "new_edits": False}, ok=(201,))

    def client(self) -> PeerClient:
        d = self.dirs[0]
        return PeerClient(peer_id=d.config.peer_id, settings=d.config.transfer_settings(),
                          download_dir=d.root / "dl", store=self.victim,
                          peer_trust=d.peer_trust(), transport=self.transport,
                          clock=self.clock, kdf_costs=FAST_KDF)


@pytest.fixture(params=["sqlite", "couchdb"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    dirs, transport, clock = _network(tmp_path, 5)
    pouch: PouchServer | None = None
    if request.param == "couchdb":
        pouch = request.getfixturevalue("pouch")
        run = uuid.uuid4().hex[:10]
        victim: MetadataStore = pouch.store(f"b-{run}")
        attacker: MetadataStore = pouch.store(f"c-{run}")
    else:
        victim = SqliteStore(tmp_path / "b.sqlite3")
        attacker = SqliteStore(tmp_path / "c.sqlite3")
    with closing(dirs[0].open_metadata()) as genuine:
        for doc_id, doc in genuine.list_prefix("peer:"):
            victim.put(doc_id, doc)
            attacker.put(doc_id, doc)
    supervisor = None
    if isinstance(victim, CouchStore):
        # The replicator only supplies whose peer documents count (step() is not called).
        replicator = SimpleNamespace(trust=dirs[0].peer_trust())
        supervisor = ReplicationSupervisor(victim, replicator,  # type: ignore[arg-type]
                                           local_peer_id=dirs[0].config.peer_id)
    world = Net(backend=request.param, dirs=dirs, transport=transport, clock=clock,
                victim=victim, attacker=attacker, pouch=pouch, supervisor=supervisor)
    world.deliver()  # B keeps the genuine documents
    try:
        yield world
    finally:
        victim.close()
        attacker.close()


def test_sybil_documents_get_no_chunks(net: Net, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """C publishes six more peer documents, all pointing at its own machine (unsigned, signed
    with its own certificate under other ids, with certificates of a CA of its own): on B
    they count for nothing, the file's chunks go to genuine peers, and the attacker's machine
    holds fewer than all of them. (Before: every document was a peer, and the machine got
    every chunk of a file.)"""
    docs = _sybil_documents(tmp_path, net.dirs[ATTACKER])
    for doc in docs:
        net.attacker.put(doc.doc_id, doc.to_doc())
        net.transport.peers[doc.peer_id] = net.transport.peers[
            net.dirs[ATTACKER].config.peer_id]  # one machine answers for every sybil id
    net.deliver()
    assert {d.doc_id for d in docs} <= {i for i, _ in net.victim.list_prefix("peer:")}
    genuine = {d.config.peer_id for d in net.dirs}
    client = net.client()
    with caplog.at_level(logging.WARNING, logger="mydrive.formats.peerdoc"):
        assert {p.peer_id for p in client.known_peers()} == genuine
    assert caplog.text.count("skipping peer document") == SYBILS
    client.create_user("alice", "alice passphrase")
    keys = client.login("alice", "alice passphrase")
    record = client.put(keys, random_file(tmp_path / "f.bin", 400_000), "/f.bin")
    assert {p for c in record.chunks for p in c.replicas} <= genuine
    assert _attacker_chunks(net.dirs[ATTACKER]) < len(record.chunks)


@pytest.mark.parametrize("how", ["replace", "delete", "fork"])
def test_forged_peer_document_never_takes_a_peer_away(net: Net, how: str) -> None:
    """C replaces the victim peer's document with one pointing at C's own address (signed
    with C's certificate, a huge updated_ms), deletes it, or forks it (CouchDB): B writes the
    genuine document back and keeps the victim at its own address. (Before: the victim's id
    led to the attacker's machine, or the victim vanished from placement.)"""
    if how == "fork" and net.backend == "sqlite":
        pytest.skip("SQLite keeps no revision trees: no conflicts")
    victim, attacker = net.dirs[2], net.dirs[ATTACKER]
    doc_id = f"peer:{victim.config.peer_id}"
    genuine = net.victim.get(doc_id)
    mine = PeerDocument.from_doc(peer_document(attacker))
    forged = replace(PeerDocument.from_doc(peer_document(victim)),
                     receiver_address=mine.receiver_address,
                     sender_address=mine.sender_address,
                     updated_ms=2**52).signed(signer(attacker.tls_dir)).to_doc()
    if how == "replace":
        net.attacker.put(doc_id, forged)
    elif how == "delete":
        net.attacker.delete(doc_id)
    else:
        net.fork(doc_id, forged)
    net.deliver(check=(lambda: len(net.victim.leaves(doc_id)) == 2)  # type: ignore[attr-defined]
                if how == "fork" else None)
    assert net.victim.get(doc_id) == genuine
    peers = {p.address.peer_id: p.address for p in net.client().known_peers()}
    assert peers[victim.config.peer_id].receiver_address != mine.receiver_address
