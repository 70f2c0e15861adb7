"""Chunk squatting: a replica copies a chunk it was given to other peers under its own key.

The dishonest peer acts only with what it receives (the chunk's ciphertext and header) and the
store protocol. Without the defence the owner's failover lands on a planted copy, the peer
answers "committed", and the owner's record lists a replica that refuses the owner's fetch and
that the attacker may delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.crypto import primitives as crypto
from mydrive.errors import BadRequest, MydriveError, PermissionDenied, TooLarge
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import init_peer, register_peer
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import ReceiverSession
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport.base import Held, PeerAddress
from mydrive.transport.signed_fetch import sign_fetch
from tests.clientnet import SMALL_CHUNKS
from tests.strategies import FAST_KDF, random_file
from tests.unit.test_chunkstore import _chunk, _old_scheme_chunk

ATTACKER_KEY = crypto.IdentityKey.from_seed(b"\x07" * 32).public_bytes()


def _store_whole(store: ChunkStore, header: ChunkHeader, data: bytes) -> Held:
    session = ReceiverSession(store, Metrics())
    try:
        held = session.start(header)
        if not held.committed:
            segments = [(i, data[slice(*header.segment_range(i))])
                        for i in range(header.segment_count)]
            for index, segment in segments:
                session.segment(index, segment)
            assert session.end_round() == []
        return held
    finally:
        session.close()


class SquattingTransport(MemoryTransport):
    """The first of ``candidates`` the owner sends a chunk to is the attacker: it plants
    copies of that chunk under its own key on every other candidate, and then answers the
    owner "peer is full"."""

    def __init__(self) -> None:
        super().__init__()
        self.candidates: list[str] = []
        self.attacker = ""
        self.plant_on: list[str] = []
        self.planted: list[tuple[str, bytes]] = []
        self.offered: list[str] = []

    def open_store(self, peer: PeerAddress):  # type: ignore[override]
        honest = super().open_store(peer)
        if not self.attacker and peer.peer_id in self.candidates:
            self.attacker = peer.peer_id
            self.plant_on = [p for p in self.candidates if p != peer.peer_id]
        if peer.peer_id != self.attacker or self.planted:
            if any(peer.peer_id == victim for victim, _ in self.planted):
                self.offered.append(peer.peer_id)  # the owner's failover reached a squat
            return honest
        return _Squatter(self, honest)


class _Squatter:
    def __init__(self, transport: SquattingTransport, honest: object) -> None:
        self.transport = transport
        self.honest = honest
        self.header: ChunkHeader | None = None
        self.segments: dict[int, bytes] = {}

    def start(self, header: ChunkHeader) -> Held:
        self.header = header
        return Held(indices=frozenset(), committed=False)

    def send_round(self, segments: Iterable[tuple[int, bytes]]) -> list[int]:
        self.segments.update(segments)
        assert self.header is not None
        data = b"".join(self.segments[i] for i in range(self.header.segment_count))
        forged = replace(self.header, owner_public_key=ATTACKER_KEY)
        for victim in self.transport.plant_on:
            try:
                _store_whole(self.transport.peers[victim].store, forged, data)
            except MydriveError:
                continue  # that peer got the owner's copy first
            self.transport.planted.append((victim, forged.chunk_id))
        raise TooLarge("peer is full")  # the lie that sends the owner's failover elsewhere

    def close(self) -> None:
        self.honest.close()  # type: ignore[attr-defined]


def test_chunkstore_refuses_committed_chunk_under_another_owner_key(tmp_path: Path) -> None:
    """A chunk committed under the attacker's key can't be 'stored' again by its owner (the
    owner is told, never answered 'committed'), and the reverse: a copy under the attacker's
    key can't replace the owner's."""
    store = ChunkStore(tmp_path / "s", capacity_bytes=10**9)
    header, segments = _chunk()
    data = b"".join(segments)
    owner = replace(header, owner_public_key=b"o" * 32)
    squat = replace(header, owner_public_key=ATTACKER_KEY)
    _store_whole(store, squat, data)
    with pytest.raises(PermissionDenied, match="another owner key"):
        store.begin(owner)
    other = ChunkStore(tmp_path / "t", capacity_bytes=10**9)
    _store_whole(other, owner, data)
    with pytest.raises(PermissionDenied, match="another owner key"):
        other.begin(squat)
    with pytest.raises(BadRequest, match="not the one derived"):  # a derived id fixes the cut
        other.begin(_recut(owner))
    assert other.header(header.chunk_id) == owner
    assert _store_whole(other, owner, data).committed  # the owner's own re-store: a no-op


def test_chunkstore_refuses_an_old_chunk_stored_again_with_other_segments(
        tmp_path: Path) -> None:
    """Under "blake3" (old chunks) the id names the bytes, not the cut: the same id with
    other segments passes validate, and the committed header refuses it."""
    store = ChunkStore(tmp_path / "s", capacity_bytes=10**9)
    header, segments = _old_scheme_chunk()
    _store_whole(store, header, b"".join(segments))
    with pytest.raises(PermissionDenied, match="other segments"):
        store.begin(_recut(header))
    assert store.header(header.chunk_id) == header


def _recut(header: ChunkHeader) -> ChunkHeader:
    """The same chunk id, claimed with twice the segment size (and fewer digests)."""
    return replace(header, segment_size_bytes=header.segment_size_bytes * 2,
                   segment_digests=header.segment_digests[:3])


def test_squatted_peer_never_counts_as_owner_replica(tmp_path: Path) -> None:
    """After the attacker planted a chunk it was sent on every other peer under its own key
    and claimed to be full, the owner's put either fails (no file recorded) or records only
    replicas that hold the chunk under the owner's key and serve it to the owner."""
    clock = ManualClock()
    transport = SquattingTransport()
    dirs = [init_peer(tmp_path / f"peer-{i}", name=f"peer-{i}", **SMALL_CHUNKS)
            for i in range(6)]
    for d in dirs:
        transport.add_peer(d.config.peer_id, d.store_dir, clock=clock)
    with closing(dirs[0].open_metadata()) as store:
        for d in dirs:
            register_peer(store, d.config)
    transport.candidates = [d.config.peer_id for d in dirs[1:]]  # all but the owner's
    client = open_client(dirs[0].root, transport=transport, clock=clock, kdf_costs=FAST_KDF)
    try:
        client.create_user("alice", "alice passphrase")
        keys = client.login("alice", "alice passphrase")
        try:
            record = client.put(keys, random_file(tmp_path / "f.bin", 300_000), "/f.bin")
        except MydriveError:
            record = None  # every peer that could stand in was squatted: refused, not faked
        assert transport.planted, "the attacker never got a chunk: the test proves nothing"
        assert transport.offered, "the failover never reached a squatted peer"
        if record is None:
            assert client.list_files(keys) == []
            return
        for chunk in record.chunks:
            for peer_id in chunk.replicas:
                held = transport.peers[peer_id].store.header(chunk.chunk_id)
                assert held.owner_public_key == keys.identity.public_bytes(), (
                    f"chunk {chunk.index} is recorded on {peer_id}, which holds it under "
                    f"another key")
                signed = sign_fetch(keys.identity, chunk_id=chunk.chunk_id,
                                    target_peer_id=peer_id, segment_indices=[], clock=clock)
                address = PeerAddress(peer_id, f"mem:{peer_id}", f"mem:{peer_id}")
                assert len(list(transport.fetch(address, signed))) == len(
                    chunk.segment_digests)
    finally:
        client.close()
