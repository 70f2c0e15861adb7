"""Upload: a peer that did not answer the probe before placement is a failed replica's last
resort (a standby), probed once more before it is given anything.

Found by the compose chaos backend in CI: one peer missed the probe, a second died mid-upload,
and the two survivors could not take its chunks without one holding the whole file, while the
first peer was back and idle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.errors import PeerUnavailable
from mydrive.runtime.executor import inline_executor
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport.base import PeerAddress
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file, record_of


class FlakyTransport(MemoryTransport):
    """``silent_probes[p]``: how many ChunkStatus calls peer p leaves unanswered (then it
    answers); ``dead_stores``: peers that answer probes but whose every store fails, like a
    peer killed right after the probe."""

    def __init__(self, inner: MemoryTransport, silent_probes: dict[str, int],
                 dead_stores: set[str]) -> None:
        super().__init__()
        self.peers, self.down = inner.peers, inner.down
        self.silent_probes = dict(silent_probes)
        self.dead_stores = dead_stores
        self.probes: dict[str, int] = {}
        self.stores: dict[str, int] = {}

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None):  # type: ignore[no-untyped-def]
        self.probes[peer.peer_id] = self.probes.get(peer.peer_id, 0) + 1
        if self.silent_probes.get(peer.peer_id, 0) > 0:
            self.silent_probes[peer.peer_id] -= 1
            raise PeerUnavailable(f"peer {peer.peer_id}: connection reset")
        return super().chunk_status(peer, chunk_id, timeout_s=timeout_s)

    def open_store(self, peer: PeerAddress):  # type: ignore[no-untyped-def]
        self.stores[peer.peer_id] = self.stores.get(peer.peer_id, 0) + 1
        if peer.peer_id in self.dead_stores:
            raise PeerUnavailable(f"peer {peer.peer_id} is gone")
        return super().open_store(peer)


def _upload(tmp_path: Path, transport: FlakyTransport, net):  # type: ignore[no-untyped-def]
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 10)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=transport, clock=net.clock,
                         executor=inline_executor)
    return keys, src, result


def test_upload_falls_back_on_a_peer_that_missed_the_probe(tmp_path: Path) -> None:
    """p2 misses the probe, p1 dies: its chunks can't all go to p3 and p4 (one would hold
    every chunk), so p2 takes some, and the file reads back."""
    net = mem_network(tmp_path / "peers", 5)
    transport = FlakyTransport(net.transport, silent_probes={"p2": 1}, dead_stores={"p1"})
    keys, src, result = _upload(tmp_path, transport, net)
    holders = [set(c.replicas) for c in result.chunks]
    assert any("p2" in h for h in holders), "the standby peer took nothing"
    assert all("p1" not in h for h in holders)
    assert all(len(h) == 2 for h in holders)
    for peer in ("p2", "p3", "p4"):
        assert sum(peer in h for h in holders) < len(result.chunks), f"{peer} holds every chunk"
    assert transport.probes["p2"] == 2  # the probe before placement, and once again
    out = tmp_path / "out.bin"
    download_file(record_of(result, keys), out, keys=keys,
                  peers={p.peer_id: p.address for p in net.peers}, settings=SMALL_SETTINGS,
                  transport=transport, clock=net.clock)
    assert out.read_bytes() == src.read_bytes()


def test_upload_still_fails_fast_when_the_standby_peer_stays_silent(tmp_path: Path) -> None:
    """p2 stays down: it is probed once more, never sent a chunk, and the error counts it."""
    net = mem_network(tmp_path / "peers", 5)
    transport = FlakyTransport(net.transport, silent_probes={"p2": 10**6}, dead_stores={"p1"})
    with pytest.raises(PeerUnavailable, match=r"none of the 2 live peers \(of 4 known, 1 of "
                                              r"them silent at the start\)"):
        _upload(tmp_path, transport, net)
    assert transport.probes["p2"] == 2
    assert "p2" not in transport.stores


def test_upload_without_failures_never_asks_the_standby_peer_again(tmp_path: Path) -> None:
    net = mem_network(tmp_path / "peers", 5)
    transport = FlakyTransport(net.transport, silent_probes={"p2": 1}, dead_stores=set())
    _, _, result = _upload(tmp_path, transport, net)
    assert all("p2" not in c.replicas for c in result.chunks)
    assert transport.probes["p2"] == 1
    assert "p2" not in transport.stores
