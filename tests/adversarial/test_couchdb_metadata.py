"""Issue 11 part A on a real CouchDB network: three pouchdb-servers pulling from one another
(A: alice's peer, B: an honest peer, C: a dishonest member). C acts only on its own
database; replication carries what it does to A and B, whose replication supervisors run
the guard. Before documents were signed and guarded, each attack below took effect on every
peer (the file lost, alice locked out, y's bytes served as x).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mydrive.client import PeerClient
from mydrive.crypto import keys as keyslib
from mydrive.crypto.primitives import new_kdf_params
from mydrive.formats.tombstone import Tombstone
from mydrive.metadata.couchdb import CouchStore
from mydrive.metadata.replication import ReplicationSupervisor, with_credentials
from mydrive.metadata.signed import sign_document, verified_key
from tests.clientnet import ClientNet, client_net
from tests.couchfix import PouchServer
from tests.strategies import FAST_KDF, random_file

pytestmark = pytest.mark.integration
SETTLE_S = 30.0
PASS = "alice passphrase"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = SETTLE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PouchServer]]:
    started = []
    try:
        for name in ("a", "b", "c"):
            started.append(PouchServer(tmp_path_factory.mktemp(f"pouch-{name}")).start())
        yield started
    finally:
        for s in started:
            s.stop()


@dataclass
class Network:
    net: ClientNet
    stores: list[CouchStore]  # A, B, C
    clients: list[PeerClient]  # on A and B
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    supervisors: list[ReplicationSupervisor] = field(default_factory=list)

    @property
    def attacker(self) -> CouchStore:
        return self.stores[2]


def _supervise(sup: ReplicationSupervisor, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            sup.catch_up()
        except Exception:  # the server may be busy: logged (shown if a test fails), next round
            logging.getLogger(__name__).exception("supervisor round failed")
        stop.wait(0.2)


@pytest.fixture
def network(servers: list[PouchServer], tmp_path: Path) -> Iterator[Network]:
    db = "meta-" + uuid.uuid4().hex[:10]
    stores = [s.store(db) for s in servers]
    for i, target in enumerate(servers):
        for j, source in enumerate(servers):
            if i != j:
                body = {"source": with_credentials(f"{source.url}/{db}", source.user,
                                                   source.password),
                        "target": with_credentials(f"{target.url}/{db}", target.user,
                                                   target.password),
                        "continuous": True}
                stores[i].request("PUT", f"/_replicator/{db}-from-{j}", body=body,
                                  ok=(200, 201, 202))
    net = client_net(tmp_path / "net")
    with closing(net.dirs[0].open_metadata()) as sqlite:
        for doc_id, doc in sqlite.list_prefix("peer:"):
            stores[0].put(doc_id, doc)
    clients = [PeerClient(peer_id=net.dirs[0].config.peer_id,
                          settings=net.dirs[0].config.transfer_settings(),
                          download_dir=tmp_path / f"dl-{i}", store=stores[i],
                          transport=net.transport, clock=net.clock, kdf_costs=FAST_KDF)
               for i in (0, 1)]
    world = Network(net=net, stores=stores, clients=clients)
    for store in stores[:2]:  # the honest peers run their supervisors; C does not
        sup = ReplicationSupervisor(store, None, local_peer_id="x")  # type: ignore[arg-type]
        world.supervisors.append(sup)
        thread = threading.Thread(target=_supervise, args=(sup, world.stop), daemon=True)
        thread.start()
        world.threads.append(thread)
    yield world
    world.stop.set()
    for thread in world.threads:
        thread.join(timeout=5)
    for i, store in enumerate(stores):
        for j in range(3):
            raw = store.request("GET", f"/_replicator/{db}-from-{j}", ok=(200, 404))
            if raw.status_code == 200:
                store.request("DELETE", f"/_replicator/{db}-from-{j}",
                              params={"rev": raw.json()["_rev"]}, ok=(200, 202, 404, 409))
        store.close()


def _alice(world: Network, tmp_path: Path, *names: str) -> list:
    """alice on A with files ``names``, replicated and verified on B, copied to C."""
    a, b = world.clients
    a.create_user("alice", PASS)
    keys = a.login("alice", PASS)
    records = [a.put(keys, random_file(tmp_path / n, 20_000), f"/{n}") for n in names]
    for rec in records:
        wait_for(f"{rec.doc_id} verified on B", lambda rec=rec: world.stores[1].get_local(
            verified_key(rec.doc_id)) is not None)
        wait_for(f"{rec.doc_id} on C", lambda rec=rec: world.attacker.get(rec.doc_id)
                 is not None)
    wait_for("alice verified on B", lambda: world.stores[1].get_local(
        verified_key("user:alice")) is not None)
    return [keys, *records]


def _fetches(client: PeerClient, keys: keyslib.UserKeys, path: str, src: Path,
             out: Path) -> bool:
    try:
        got, _ = client.get(keys, path, out_dir=out, overwrite=True)
    except Exception:
        return False
    return got.read_bytes() == src.read_bytes()


def test_couchdb_file_deleted_by_dishonest_peer_survives(network: Network,
                                                         tmp_path: Path) -> None:
    """C deletes alice's file document in its own database: A and B write it back, it returns
    to C too, and alice downloads the file on A and on B. (Before: deleted on every peer,
    wrapped key and all; the file was lost.)"""
    keys, rec = _alice(network, tmp_path, "f.bin")
    network.attacker.delete(rec.doc_id)
    wait_for("the deletion reaches A or B", lambda: sum(
        s.actions["restored"] for s in (sup.guard for sup in network.supervisors)) > 0)
    for i, client in enumerate(network.clients):
        wait_for(f"file back on peer {i}", lambda client=client, i=i: _fetches(
            client, keys, "/f.bin", tmp_path / "f.bin", tmp_path / f"out{i}"))
    wait_for("restored on C as well", lambda: network.attacker.get(rec.doc_id) is not None)


def test_couchdb_forged_user_document_never_locks_alice_out(network: Network,
                                                            tmp_path: Path) -> None:
    """C replaces user:alice with its own signed document with a huge updated_ms: alice logs
    in on A and on B with her passphrase; C's does not work. (Before: "wrong passphrase" for
    alice on every peer.)"""
    keys, _ = _alice(network, tmp_path, "f.bin")
    record, evil = keyslib.create_user("alice", "mallory", kdf_params=new_kdf_params(**FAST_KDF))
    forged = sign_document("user:alice", {**record.to_doc(), "updated_ms": 2**52},
                           evil.identity)
    network.attacker.put("user:alice", forged)
    wait_for("the forgery reaches A and B", lambda: all(
        s.get("user:alice") == forged for s in network.stores[:2]))
    for client in network.clients:
        assert client.login("alice", PASS).user_id == keys.user_id


def test_couchdb_swapped_names_never_serve_other_content(network: Network,
                                                         tmp_path: Path) -> None:
    """C swaps the name fields of x's and y's documents: on B, get /x.bin gives x's bytes.
    (Before: y's content, exit 0.)"""
    keys, x, y = _alice(network, tmp_path, "x.bin", "y.bin")
    dx, dy = network.attacker.get(x.doc_id), network.attacker.get(y.doc_id)
    for name in ("encrypted_path", "path_tag"):
        dx[name], dy[name] = dy[name], dx[name]
    network.attacker.put(x.doc_id, dx)
    network.attacker.put(y.doc_id, dy)
    wait_for("A or B wrote the originals back", lambda: sum(
        sup.guard.actions["restored"] for sup in network.supervisors) >= 2)
    b = network.clients[1]
    for name in ("x.bin", "y.bin"):
        wait_for(f"{name} on B", lambda name=name: _fetches(
            b, keys, f"/{name}", tmp_path / name, tmp_path / "outb"))


def test_couchdb_owner_rm_propagates_and_stays(network: Network, tmp_path: Path) -> None:
    """alice's own rm on A (signed tombstone, then the deletion) is accepted everywhere, and
    nothing brings the file back."""
    keys, rec, keep = _alice(network, tmp_path, "g.bin", "keep.bin")
    network.clients[0].remove(keys, "/g.bin")
    wait_for("deletion accepted on B", lambda: network.supervisors[1].guard.actions[
        "deletion-accepted"] >= 1)
    time.sleep(3)  # several supervisor rounds: nobody writes it back
    for store in network.stores:
        assert store.get(rec.doc_id) is None
    assert [e.path for e in network.clients[1].list_files(keys)] == ["/keep.bin"]


def test_couchdb_rewritten_tombstone_deletes_nothing_live(network: Network,
                                                          tmp_path: Path) -> None:
    """C rewrites alice's pending tombstone to list a live file's chunks: A writes the signed
    one back, and alice's gc removes no live chunk. (Before: gc deleted the live file's
    chunks.)"""
    keys, live = _alice(network, tmp_path, "live.bin")
    a = network.clients[0]
    dead = a.put(keys, random_file(tmp_path / "dead.bin", 20_000), "/dead.bin")
    down = dead.chunks[0].replicas[0]
    network.net.transport.down.add(down)
    a.remove(keys, "/dead.bin")
    tomb_id = Tombstone.for_record(dead, 0).doc_id
    # C forges on top of the last revision A wrote (after rm's gc pass), so A receives the
    # forgery as the current revision, not as a conflict the policy would settle by itself.
    wait_for("A's last tombstone on C", lambda: network.attacker.get(tomb_id) is not None
             and network.attacker.get(tomb_id) == network.stores[0].get(tomb_id))
    forged = network.attacker.get(tomb_id)
    forged["pending"] = {p: [ch.chunk_id.hex() for ch in live.chunks if p in ch.replicas]
                         for ch in live.chunks for p in ch.replicas}
    network.attacker.put(tomb_id, forged)
    # A or B writes the signed one back (whichever guard sees the forgery first; the other
    # may then receive only the write-back), and A holds it.
    wait_for("the tombstone written back on A", lambda: sum(
        sup.guard.actions["restored"] for sup in network.supervisors) >= 1
        and network.stores[0].get(tomb_id) != forged)
    network.net.transport.down.discard(down)
    a.collect_garbage(keys)
    assert all(network.net.holders(ch.chunk_id) == set(ch.replicas) for ch in live.chunks)
    assert _fetches(a, keys, "/live.bin", tmp_path / "live.bin", tmp_path / "outl")


def test_couchdb_verified_copies_never_replicate(network: Network, tmp_path: Path) -> None:
    """C writes its own local verified copy of user:alice (mallory's key): replication never
    carries local documents, so A's and B's copies stay alice's."""
    keys, _ = _alice(network, tmp_path, "f.bin")
    record, evil = keyslib.create_user("alice", "mallory", kdf_params=new_kdf_params(**FAST_KDF))
    forged = sign_document("user:alice", record.to_doc(), evil.identity)
    network.attacker.put_local(verified_key("user:alice"), forged)
    network.attacker.put("file:marker:00", {"type": "file", "version": 2})
    wait_for("a later write replicated", lambda: all(
        s.get("file:marker:00") is not None for s in network.stores[:2]))
    for store in network.stores[:2]:
        assert store.get_local(verified_key("user:alice"))["identity_public_key"] == (
            keys.identity.public_bytes().hex())
