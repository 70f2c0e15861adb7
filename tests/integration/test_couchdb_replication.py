"""Two real pouchdb-servers replicating master-master through _replicator documents:
convergence, the conflict policy after a partition, kicks, and bad input."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mydrive.errors import MetadataAuthFailed, MetadataUnavailable
from mydrive.metadata.couchdb import CouchStore
from mydrive.metadata.replication import (
    RemotePeer,
    ReplicationSupervisor,
    Replicator,
)
from mydrive.node.peerdir import free_port
from tests.couchfix import PouchServer
from tests.tcpgate import TcpGate
from tests.unit.test_conflict_policy import signed_user

pytestmark = pytest.mark.integration
CONVERGE_S = 20.0
MEMBER = "mydrive-replicator"
MEMBER_PASSWORD = "member-" + uuid.uuid4().hex
PEER_B = "0123456789abcdef"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = CONVERGE_S) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.1)
    return time.monotonic() - start


class Pair:
    """Server a pulls from b through b's gate and b from a through a's gate."""

    def __init__(self, a: PouchServer, b: PouchServer, db: str) -> None:
        self.servers = [a, b]
        self.gates = [TcpGate(a.port), TcpGate(b.port)]
        self.stores = [a.store(db), b.store(db)]
        for store in self.stores:  # no TLS here: the two servers share one member password
            store.ensure_member(MEMBER, MEMBER_PASSWORD)
        self.replicators = [Replicator(s, member_user=MEMBER, member_password=MEMBER_PASSWORD)
                            for s in self.stores]
        self.remotes = [RemotePeer("peerb", self.gates[1].url),
                        RemotePeer("peera", self.gates[0].url)]

    def connect(self) -> None:
        for i in (0, 1):
            self.replicators[i].ensure([self.remotes[i]])

    def partition(self) -> None:
        for gate in self.gates:
            gate.close_gate()

    def heal(self) -> None:
        """Reopen the gates and kick both pulls, as the supervisors do on a peer's return."""
        for gate in self.gates:
            gate.open_gate()
        for i in (0, 1):
            self.replicators[i].kick(self.remotes[i])

    def close(self) -> None:
        for r in self.replicators:
            r.remove_all()
        for s in self.stores:
            s.close()
        for gate in self.gates:
            gate.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PouchServer]]:
    started = []
    try:
        for name in ("a", "b"):
            started.append(PouchServer(tmp_path_factory.mktemp(f"pouch-{name}")).start())
        yield started
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def pair(servers: list[PouchServer]) -> Iterator[Pair]:
    p = Pair(servers[0], servers[1], "repl-" + uuid.uuid4().hex[:10])
    p.connect()
    yield p
    p.close()


def test_replication_both_directions(pair: Pair) -> None:
    """A write on either server appears on the other."""
    a, b = pair.stores
    a.put("user:alice", {"type": "user", "version": 1, "from": "a"})
    b.put("file:01", {"type": "file", "version": 1, "from": "b"})
    wait_for("a -> b", lambda: b.get("user:alice") is not None)
    wait_for("b -> a", lambda: a.get("file:01") is not None)


def test_replication_partition_converges_to_policy_winner(pair: Pair) -> None:
    """Signed writes on both sides of a partition end as the highest-updated_ms version on
    both, with the losing revision deleted; an unsigned one with a higher updated_ms loses."""
    a, b = pair.stores
    a.put("user:alice", signed_user(1))
    wait_for("initial copy", lambda: b.get("user:alice") is not None)
    pair.partition()
    a.put("user:alice", signed_user(300))
    b.put("user:alice", signed_user(200))
    b.put("user:alice", {"type": "user", "version": 2, "updated_ms": 10**12, "side": "b2"})
    pair.heal()
    wait_for("conflict on both", lambda: all(len(s.leaves("user:alice")) >= 1 for s in (a, b))
             and all(s.get("user:alice") == signed_user(300) for s in (a, b)))
    wait_for("losers deleted everywhere",
             lambda: all(len(s.leaves("user:alice")) == 1 for s in (a, b)))


def test_replication_tie_has_same_winner_everywhere(pair: Pair) -> None:
    """Equal updated_ms on both sides: both servers keep the same revision."""
    a, b = pair.stores
    pair.partition()
    a.put("peer:x", {"type": "peer", "version": 1, "updated_ms": 7, "side": "a"})
    b.put("peer:x", {"type": "peer", "version": 1, "updated_ms": 7, "side": "b"})
    pair.heal()
    wait_for("both see both", lambda: all(s.get("peer:x") is not None for s in (a, b))
             and a.get("peer:x") == b.get("peer:x") and len(a.leaves("peer:x")) == 1
             and len(b.leaves("peer:x")) == 1)


def test_replication_without_policy_would_diverge(pair: Pair) -> None:
    """The check above can fail: before resolution each server holds two live leaves."""
    a, b = pair.stores
    pair.partition()
    a.put("peer:y", {"type": "peer", "version": 1, "updated_ms": 1})
    b.put("peer:y", {"type": "peer", "version": 1, "updated_ms": 2})
    pair.heal()
    wait_for("conflict visible", lambda: len(a.leaves("peer:y")) == 2)


def test_replication_supervisor_kicks_returning_peer(pair: Pair) -> None:
    """When a remote server comes back, the supervisor re-puts its pull document."""
    a = pair.stores[0]
    a.put(f"peer:{PEER_B}", {"type": "peer", "version": 2, "peer_id": PEER_B, "name": "b",
                             "receiver_address": "127.0.0.1:1", "sender_address": "127.0.0.1:1",
                             "tls": False, "capacity_bytes": 1, "updated_ms": 1,
                             "couchdb_url": pair.gates[1].url})
    up = {"value": True}
    sup = ReplicationSupervisor(a, pair.replicators[0], local_peer_id="peera",
                                probe=lambda url: up["value"])
    sup.step()
    before = [d["_id"] for d in pair.replicators[0].current()[PEER_B]]
    up["value"] = False
    sup.step()
    assert [d["_id"] for d in pair.replicators[0].current()[PEER_B]] == before
    up["value"] = True
    sup.step()
    after = [d["_id"] for d in pair.replicators[0].current()[PEER_B]]
    assert len(after) == 1 and after != before


def test_replication_malformed_replica_document_logged_and_skipped(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    """Garbage written on one server replicates to the other: the supervisor logs it and
    goes on (a kind mydrive never writes is deleted); listing still works."""
    a, b = pair.stores
    b.request("PUT", f"/{b.db}/file:bad", body={"type": 42, "chunks": "nonsense"})
    b.request("PUT", f"/{b.db}/weird:thing", body={"x": 1})
    a.put("file:good", {"type": "file", "version": 1})
    # Replication order isn't guaranteed: wait for both garbage documents.
    wait_for("garbage arrives", lambda: a.get("file:bad") is not None
             and a.get("weird:thing") is not None)
    sup = ReplicationSupervisor(a, pair.replicators[0], local_peer_id="peera")
    with caplog.at_level(logging.WARNING):
        sup.step()
    assert "file:bad" in sup.malformed
    assert "malformed document 'file:bad'" in caplog.text
    assert "deleted 'weird:thing'" in caplog.text
    assert a.request("GET", f"/{a.db}/weird:thing", ok=(200, 404)).status_code == 404
    assert [i for i, _ in a.list_prefix("file:")] == ["file:bad", "file:good"]


def test_couchdb_unreachable_is_clear_error() -> None:
    """No server on the port: MetadataUnavailable naming the server, quickly."""
    port = free_port()
    start = time.monotonic()
    with pytest.raises(MetadataUnavailable, match=f"127.0.0.1:{port} is unreachable"):
        CouchStore(f"http://127.0.0.1:{port}", user="u", password="p", timeout_s=2.0)
    assert time.monotonic() - start < 5


def test_couchdb_wrong_credentials_is_clear_error(servers: list[PouchServer]) -> None:
    """A wrong password: MetadataAuthFailed that names the user, never the password."""
    with pytest.raises(MetadataAuthFailed) as info:
        CouchStore(servers[0].url, "mydrive", user=servers[0].user, password="wrong-secret")
    assert "refused the credentials" in str(info.value)
    assert "wrong-secret" not in str(info.value)


def test_couchdb_database_closed_to_anonymous(servers: list[PouchServer]) -> None:
    """The metadata database is readable by admins only."""
    store = servers[0].store("anon-" + uuid.uuid4().hex[:8])
    store.put("user:a", {"v": 1})
    r = httpx.get(f"{servers[0].url}/{store.db}/user:a", timeout=5)
    assert r.status_code in (401, 403)
    store.close()


def test_couchdb_changes_feed_pages(servers: list[PouchServer], tmp_path: Path) -> None:
    """_changes returns every write once, page by page, with a resumable seq."""
    store = servers[0].store("changes-" + uuid.uuid4().hex[:8])
    for i in range(5):
        store.put(f"file:{i}", {"i": i})
    store.delete("file:3")
    seen, since = [], "0"
    while True:
        changes, since = store.changes(since, limit=2)
        if not changes:
            break
        seen.extend((c.doc_id, c.deleted) for c in changes)
    assert sorted(seen) == [("file:0", False), ("file:1", False), ("file:2", False),
                            ("file:3", True), ("file:4", False)]
    store.close()
