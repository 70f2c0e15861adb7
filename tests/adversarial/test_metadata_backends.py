"""Issue 11's metadata attacks on both backends, the attacker acting on its own database only.

Three metadata databases: A (alice's own peer), B (an honest peer: the victim) and C (a
dishonest member's). C receives alice's documents the way every peer does, does what it
likes to them in its own database, and B takes what C has, as it takes what A has.

* On CouchDB (one real pouchdb-server, three databases) that is real replication: a one-shot
  ``POST /_replicate`` from C into B, which carries revision trees, so C can also hand B a
  *fork* (a revision it wrote beside another with ``new_edits=false``, as replication
  itself writes). B then runs its real replication supervisor (conflict policy and guard)
  over its ``_changes``.
* On SQLite there is no replication (docs/metadata.md): here "B takes what C has" copies
  C's current documents and deletions, and B's guard reviews what changed, which is what a
  supervisor would do if SQLite peers replicated. Forks don't exist there.

The real three-server network (continuous pulls, supervisors as threads) is
test_couchdb_metadata.py (integration). Each docstring says what the attack did before.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mydrive.client import PeerClient
from mydrive.crypto import keys as keyslib
from mydrive.crypto.primitives import new_kdf_params
from mydrive.errors import WrongPassphrase
from mydrive.formats.filerecord import FileRecord
from mydrive.formats.tombstone import Tombstone
from mydrive.metadata.base import Document, MetadataStore
from mydrive.metadata.couchdb import CouchStore
from mydrive.metadata.guard import MetadataGuard
from mydrive.metadata.replication import ReplicationSupervisor, with_credentials
from mydrive.metadata.signed import sign_document, verified_key
from mydrive.metadata.sqlite import SqliteStore
from tests.clientnet import ClientNet, client_net
from tests.couchfix import PouchServer
from tests.strategies import FAST_KDF, random_file

PASS = "alice passphrase"
NEW = "alice's new passphrase"
EVIL = "mallory passphrase"
SIGNED_PREFIXES = ("user:", "file:", "tomb:")


@dataclass
class World:
    backend: str
    net: ClientNet
    stores: list[MetadataStore]  # A, B, C
    alice_peer: PeerClient  # on A
    victim: PeerClient  # on B
    pouch: PouchServer | None = None
    supervisor: ReplicationSupervisor | None = None
    guard: MetadataGuard | None = None
    seen: set[str] = field(default_factory=set)

    @property
    def attacker(self) -> MetadataStore:
        return self.stores[2]

    def sync(self, src: int, dst: int) -> None:
        """Store ``dst`` takes what store ``src`` has (one replication)."""
        source, target = self.stores[src], self.stores[dst]
        if isinstance(source, CouchStore) and isinstance(target, CouchStore):
            assert self.pouch is not None
            url = self.pouch.url
            body = {"source": with_credentials(f"{url}/{source.db}", self.pouch.user,
                                               self.pouch.password),
                    "target": with_credentials(f"{url}/{target.db}", self.pouch.user,
                                               self.pouch.password)}
            target.request("POST", "/_replicate", body=body, ok=(200, 201, 202))
            return
        theirs = {i: d for p in SIGNED_PREFIXES for i, d in source.list_prefix(p)}
        ours = {i: d for p in SIGNED_PREFIXES for i, d in target.list_prefix(p)}
        for doc_id, doc in theirs.items():
            if ours.get(doc_id) != doc:
                target.put(doc_id, doc)
        for doc_id in ours.keys() - theirs.keys():
            target.delete(doc_id)
        self.seen |= theirs.keys() | ours.keys()

    def settle(self) -> None:
        """B's supervisor round: conflict policy (CouchDB) and guard over what changed."""
        if self.supervisor is not None:
            self.supervisor.catch_up()
        else:
            assert self.guard is not None
            for doc_id in sorted(self.seen):
                self.guard.review(doc_id)

    def deliver(self) -> None:
        """What C did reaches B, and B's supervisor runs."""
        self.sync(2, 1)
        self.settle()

    def spread(self) -> None:
        """alice's peer's documents reach C and B, and B's supervisor runs."""
        self.sync(0, 2)
        self.sync(0, 1)
        self.settle()

    def fork(self, doc_id: str, body: Document, *, beside: str | None = None) -> None:
        """C writes ``body`` as a second leaf beside its current revision of ``doc_id`` (or
        beside revision ``beside``): a conflict for everyone who takes C's tree."""
        store = self.attacker
        assert isinstance(store, CouchStore)
        raw = store.request("GET", f"/{store.db}/{doc_id}",
                            params={"revs": "true", **({"rev": beside} if beside else {})},
                            ok=(200,)).json()
        start, ids = raw["_revisions"]["start"], raw["_revisions"]["ids"]
        # A branch from the same parent, six revisions long: generations ahead of the current.
        new = hashlib.md5(uuid.uuid4().bytes).hexdigest()
        doc = {**body, "_id": doc_id, "_rev": f"{start + 5}-{new}",
               "_revisions": {"start": start + 5, "ids": [new, *[new[:-1] + str(i)
                                                                   for i in range(5)],
                                                          *ids[1:]]}}
        store.request("POST", f"/{store.db}/_bulk_docs",
                      body={"docs": [doc], "new_edits": False}, ok=(201,))


def _client(net: ClientNet, store: MetadataStore, out: Path) -> PeerClient:
    return PeerClient(peer_id=net.dirs[0].config.peer_id,
                      settings=net.dirs[0].config.transfer_settings(), download_dir=out,
                      store=store, transport=net.transport, clock=net.clock,
                      kdf_costs=FAST_KDF)


@pytest.fixture(params=["sqlite", "couchdb"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    net = client_net(tmp_path / "net")
    pouch: PouchServer | None = None
    stores: list[MetadataStore]
    if request.param == "couchdb":
        pouch = request.getfixturevalue("pouch")
        run = uuid.uuid4().hex[:10]
        stores = [pouch.store(f"{name}-{run}") for name in ("a", "b", "c")]
    else:
        stores = [SqliteStore(tmp_path / f"{name}.sqlite3") for name in ("a", "b", "c")]
    with closing(net.dirs[0].open_metadata()) as peers:
        for doc_id, doc in peers.list_prefix("peer:"):
            for store in stores:
                store.put(doc_id, doc)
    world = World(backend=request.param, net=net, stores=stores, pouch=pouch,
                  alice_peer=_client(net, stores[0], tmp_path / "dl-a"),
                  victim=_client(net, stores[1], tmp_path / "dl-b"))
    if pouch is not None:
        world.supervisor = ReplicationSupervisor(stores[1], None,  # type: ignore[arg-type]
                                                 local_peer_id="x")
    else:
        world.guard = MetadataGuard(stores[1], now_ms=net.clock.now_ms)
    try:
        yield world
    finally:
        for store in stores:
            store.close()


def _alice(world: World, tmp_path: Path, *names: str) -> tuple[keyslib.UserKeys,
                                                                   list[FileRecord]]:
    """alice, created on A with files ``names``; A's documents reach C and B, and B has
    verified them (alice has logged in on B)."""
    a = world.alice_peer
    a.create_user("alice", PASS)
    keys = a.login("alice", PASS)
    records = [a.put(keys, random_file(tmp_path / n, 20_000), f"/{n}") for n in names]
    world.spread()
    assert world.victim.login("alice", PASS).user_id == keys.user_id
    return keys, records


def _mallorys_alice(updated_ms: int = 2**52) -> Document:
    """C's own user document for the name alice: validly signed, by C's key."""
    record, evil = keyslib.create_user("alice", EVIL, kdf_params=new_kdf_params(**FAST_KDF))
    return sign_document("user:alice", {**record.to_doc(), "updated_ms": updated_ms},
                         evil.identity)


def _downloads(client: PeerClient, keys: keyslib.UserKeys, name: str, src: Path,
               out: Path) -> bool:
    got, _ = client.get(keys, f"/{name}", out_dir=out, overwrite=True)
    return got.read_bytes() == src.read_bytes()


def _logs_in(client: PeerClient, passphrase: str) -> bool:
    try:
        client.login("alice", passphrase)
    except WrongPassphrase:
        return False
    return True


# ---- 2. metadata destroyed network-wide ----------------------------------------------------

def test_file_document_deleted_by_a_replica_comes_back(world: World, tmp_path: Path) -> None:
    """C deletes alice's file document in its own database: on B the deletion is undone (the
    last verified revision written back) and alice downloads the file there. (Before: the
    document, wrapped file key and all, was deleted on every peer; the file was lost.)"""
    keys, (rec,) = _alice(world, tmp_path, "f.bin")
    world.attacker.delete(rec.doc_id)
    world.deliver()
    assert world.stores[1].get(rec.doc_id) is not None
    assert [e.path for e in world.victim.list_files(keys)] == ["/f.bin"]
    assert _downloads(world.victim, keys, "f.bin", tmp_path / "f.bin", tmp_path / "out")


@pytest.mark.parametrize("how", ["replace", "fork"])
def test_forged_user_document_never_locks_alice_out(world: World, tmp_path: Path,
                                                    how: str) -> None:
    """C's own validly signed user document for alice with a huge updated_ms, as a new
    revision or as a conflicting leaf (CouchDB): on B alice logs in with her passphrase and
    C's passphrase doesn't work. (Before: the forgery won every conflict and alice got
    "wrong passphrase" on every peer.)"""
    if how == "fork" and world.backend == "sqlite":
        pytest.skip("SQLite keeps no revision trees: no conflicts")
    keys, _ = _alice(world, tmp_path)
    forged = _mallorys_alice()
    if how == "fork":
        world.fork("user:alice", forged)
    else:
        world.attacker.put("user:alice", forged)
    world.sync(2, 1)
    if how == "fork":
        assert isinstance(world.stores[1], CouchStore)
        assert len(world.stores[1].leaves("user:alice")) == 2  # a conflict on B
    world.settle()
    assert world.victim.login("alice", PASS).user_id == keys.user_id
    assert not _logs_in(world.victim, EVIL)


def test_rotation_arriving_beside_a_forged_leaf_is_kept(world: World, tmp_path: Path) -> None:
    """alice rotates her passphrase on A; C takes the new revision and hands B a tree in which
    its own forged alice (another key, huge updated_ms) is a conflicting leaf beside it. The
    policy keeps C's leaf in the store (it can't know whose name it is), but B's pin moves to
    alice's newer revision: on B the new passphrase works and the old one doesn't. (Before
    pin_newer_revision: the policy deleted alice's revision unseen, and B kept accepting the
    passphrase she had rotated away from; the new one was "wrong". SQLite has no trees: the
    forgery arrives after the rotation.)"""
    keys, _ = _alice(world, tmp_path)
    old_rev = None
    if isinstance(world.attacker, CouchStore):
        old_rev = world.attacker.request("GET", f"/{world.attacker.db}/user:alice",
                                         ok=(200,)).json()["_rev"]
    world.net.clock.advance_ms(1000)
    world.alice_peer.rotate_passphrase("alice", PASS, NEW)
    world.sync(0, 2)  # C has alice's rotation; B does not have it yet
    if world.backend == "couchdb":
        world.fork("user:alice", _mallorys_alice(), beside=old_rev)
        world.sync(2, 1)
        assert isinstance(world.stores[1], CouchStore)
        assert len(world.stores[1].leaves("user:alice")) == 2  # both arrive as a conflict
        world.settle()
    else:
        world.sync(2, 1)
        world.settle()
        world.attacker.put("user:alice", _mallorys_alice())
        world.deliver()
    assert world.victim.login("alice", NEW).user_id == keys.user_id
    assert not _logs_in(world.victim, PASS)
    assert not _logs_in(world.victim, EVIL)


def test_replayed_user_document_keeps_the_new_passphrase(world: World, tmp_path: Path) -> None:
    """After alice's rotation reached B, C writes her old, genuinely signed document back as
    its newest revision: on B the old passphrase stays dead. (A signature check alone would
    take it: it is alice's.)"""
    keys, _ = _alice(world, tmp_path)
    old_doc = world.stores[0].get("user:alice")
    assert old_doc is not None
    world.net.clock.advance_ms(1000)
    world.alice_peer.rotate_passphrase("alice", PASS, NEW)
    world.spread()
    world.attacker.put("user:alice", old_doc)
    world.deliver()
    assert not _logs_in(world.victim, PASS)
    assert world.victim.login("alice", NEW).user_id == keys.user_id


def test_rotation_keeps_the_identity_key(world: World, tmp_path: Path) -> None:
    """A rotation on A reaches B as a revision signed by the same identity key: B takes it
    (same user id and key), and alice's files download on B with the new passphrase."""
    keys, (rec,) = _alice(world, tmp_path, "f.bin")
    before = world.victim.user_record("alice")
    world.net.clock.advance_ms(1000)
    world.alice_peer.rotate_passphrase("alice", PASS, NEW)
    world.spread()
    after = world.victim.user_record("alice")
    assert after.identity_public_key == before.identity_public_key
    assert after.user_id == before.user_id and after.updated_ms > before.updated_ms
    new_keys = world.victim.login("alice", NEW)
    assert new_keys.user_id == keys.user_id
    assert _downloads(world.victim, new_keys, "f.bin", tmp_path / "f.bin", tmp_path / "out")


# ---- 6. content substitution ---------------------------------------------------------------

def test_swapped_names_never_serve_other_content(world: World, tmp_path: Path) -> None:
    """C swaps the name fields of alice's x and y: on B, get /x.bin gives x's bytes and
    /y.bin y's. (Before: y's content for x, exit 0.)"""
    keys, (x, y) = _alice(world, tmp_path, "x.bin", "y.bin")
    dx, dy = world.attacker.get(x.doc_id), world.attacker.get(y.doc_id)
    assert dx is not None and dy is not None
    for name in ("encrypted_path", "path_tag"):
        dx[name], dy[name] = dy[name], dx[name]
    world.attacker.put(x.doc_id, dx)
    world.attacker.put(y.doc_id, dy)
    world.deliver()
    for name in ("x.bin", "y.bin"):
        assert _downloads(world.victim, keys, name, tmp_path / name, tmp_path / "out")


def test_forked_file_leaves_never_win(world: World, tmp_path: Path) -> None:
    """C forks alice's file document twice: a tampered leaf (its own replica list, a huge
    updated_ms) and a leaf signed by C's own key, both generations ahead, and B has no
    verified copy of the file to fall back on (a peer that never read it): the conflict
    policy alone keeps alice's revision in B's store, and the file downloads. (Before
    signing: the highest revision won.)"""
    if world.backend == "sqlite":
        pytest.skip("SQLite keeps no revision trees: no conflicts")
    keys, (rec,) = _alice(world, tmp_path, "f.bin")
    genuine = world.stores[1].get(rec.doc_id)
    assert genuine is not None
    world.stores[1].delete_local(verified_key(rec.doc_id))
    tampered = {**genuine, "updated_ms": 2**52,
                "chunks": [{**c, "replicas": c["replicas"][:1]} for c in genuine["chunks"]]}
    _, evil = keyslib.create_user("mallory", EVIL, kdf_params=new_kdf_params(**FAST_KDF))
    resigned = sign_document(rec.doc_id, {k: v for k, v in tampered.items()
                                          if k != "signature"}, evil.identity)
    world.fork(rec.doc_id, tampered)
    world.fork(rec.doc_id, resigned)
    world.sync(2, 1)
    assert isinstance(world.stores[1], CouchStore)
    assert len(world.stores[1].leaves(rec.doc_id)) == 3  # a three-way conflict on B
    world.settle()
    assert world.stores[1].get(rec.doc_id) == genuine
    assert _downloads(world.victim, keys, "f.bin", tmp_path / "f.bin", tmp_path / "out")


# ---- 3. tombstone replay -------------------------------------------------------------------

def test_rewritten_tombstone_deletes_no_live_chunk(world: World, tmp_path: Path) -> None:
    """alice removed a file while one of its replicas was down, so its tombstone is pending.
    C rewrites the pending list to name her live file's chunks, and the live file's document
    to list other chunks (so a check against the live set can't help); alice then runs gc
    on B: no live chunk is deleted and the live file downloads. (Before: gc deleted the live
    file's chunks; ls still listed it and get failed.)"""
    keys, (live,) = _alice(world, tmp_path, "live.bin")
    a = world.alice_peer
    dead = a.put(keys, random_file(tmp_path / "dead.bin", 20_000), "/dead.bin")
    down = dead.chunks[0].replicas[0]
    world.net.transport.down.add(down)
    a.remove(keys, "/dead.bin")
    world.spread()
    tomb_id = Tombstone.for_record(dead, 0).doc_id
    forged = world.attacker.get(tomb_id)
    assert forged is not None and forged["pending"]
    forged["pending"] = {p: [c.chunk_id.hex() for c in live.chunks if p in c.replicas]
                         for c in live.chunks for p in c.replicas}
    world.attacker.put(tomb_id, forged)
    bogus = world.attacker.get(live.doc_id)
    assert bogus is not None
    bogus["chunks"] = [{**c, "chunk_id": "00" * 32} for c in bogus["chunks"]]
    world.attacker.put(live.doc_id, bogus)
    world.deliver()
    world.net.transport.down.discard(down)
    world.victim.collect_garbage(keys)
    assert all(world.net.holders(c.chunk_id) == set(c.replicas) for c in live.chunks)
    assert _downloads(world.victim, keys, "live.bin", tmp_path / "live.bin", tmp_path / "out")


def test_removed_file_brought_back_by_a_replica_stays_removed(world: World,
                                                              tmp_path: Path) -> None:
    """alice removes /g.bin on A. C writes the file's last genuine revision back: on CouchDB
    as a live leaf forked beside the deletion (a live leaf beats a deleted one in any
    conflict), on SQLite as a new document. On B the file stays removed: not listed, and its
    document is deleted again since the owner's signed tombstone orders it. (Without the
    tombstone check the signed document would simply be a file again, in every listing.)"""
    keys, (gone, keep) = _alice(world, tmp_path, "g.bin", "keep.bin")
    last_live = world.attacker.get(gone.doc_id)
    assert last_live is not None
    world.alice_peer.remove(keys, "/g.bin")
    world.spread()
    assert world.stores[1].get(gone.doc_id) is None
    if isinstance(world.attacker, CouchStore):
        store = world.attacker
        rows = store.request("GET", f"/{store.db}/_all_docs",
                             params={"keys": f'["{gone.doc_id}"]'}, ok=(200,)).json()["rows"]
        deleted_rev = rows[0]["value"]["rev"]
        assert rows[0]["value"].get("deleted")
        world.fork(gone.doc_id, last_live, beside=deleted_rev)
        world.sync(2, 1)
        assert world.stores[1].get(gone.doc_id) is not None  # it is a file again in B's store
        world.settle()
    else:
        world.attacker.put(gone.doc_id, last_live)
        world.deliver()
    assert [e.path for e in world.victim.list_files(keys)] == ["/keep.bin"]
    assert world.stores[1].get(gone.doc_id) is None


def test_rotation_overwritten_by_a_forged_revision_is_kept(world: World,
                                                           tmp_path: Path) -> None:
    """alice rotates on A; B receives the rotation from A, but before B's supervisor round C
    (which took it too) writes its own alice on top of it, and B takes that from C: the
    rotation is no longer a leaf anywhere, only an earlier revision in B's tree. B's pin still
    moves to it: the new passphrase works on B and the old one doesn't. (Before: the guard
    saw only C's revision, kept the old pin, and B went on accepting the passphrase alice
    had rotated away from. On SQLite, which keeps no revisions, the rotation is reviewed as
    it arrives.)"""
    keys, _ = _alice(world, tmp_path)
    world.net.clock.advance_ms(1000)
    world.alice_peer.rotate_passphrase("alice", PASS, NEW)
    world.sync(0, 1)  # B has the rotation ...
    if world.backend == "sqlite":
        world.settle()
    world.sync(0, 2)
    world.attacker.put("user:alice", _mallorys_alice())  # ... C writes on top of it
    world.deliver()  # ... and B's supervisor first runs now
    assert world.victim.login("alice", NEW).user_id == keys.user_id
    assert not _logs_in(world.victim, PASS)
