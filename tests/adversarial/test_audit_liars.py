"""Dishonest replica peers against the owner's audits and repairs.

Each test attacks one defence: the audit believes bytes, not a peer's word; it asks fresh
random segments, so kept fragments and replayed answers fail; a request signed for one peer
can't be relayed to borrow another replica's bytes; a peer refusing every audit is replaced
once the grace period is over; a repair target that claims to hold a chunk it never stored
is not written into the owner's record.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mydrive.engine.check import FULL_AUDIT, audit_replica
from mydrive.engine.durability import DurabilitySettings
from mydrive.engine.repair_policy import ReplicaState
from mydrive.errors import PermissionDenied
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.testing.randomness import SeededRandomness
from mydrive.transport.base import Held, PeerAddress, StoreSession
from mydrive.transport.signed_fetch import SignedFetch
from tests.unit.test_repair import World, _world


class Dishonest:
    """The in-memory network, where peer ``liar`` behaves as ``act``; every other peer is
    honest. ``liar=None``: the first peer a repair stores to becomes the liar."""

    def __init__(self, inner: MemoryTransport, liar: str | None, act: str) -> None:
        self.inner, self.liar, self.act = inner, liar, act
        self.kept: dict[bytes, set[int]] = {}      # partial: segments it still has
        self.relayed_to: list[tuple[str, str]] = []  # relay: (to whom, what they said)
        self.addresses: dict[str, PeerAddress] = {}

    def open_store(self, peer: PeerAddress) -> StoreSession:
        if self.act == "claims_held" and self.liar is None:
            self.liar = peer.peer_id
        if self.act == "claims_held" and peer.peer_id == self.liar:
            return _ClaimsHeld()
        return self.inner.open_store(peer)

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        if peer.peer_id == self.liar:  # "of course I have it, all of it"
            return Held(indices=frozenset(range(64)), committed=True)
        return self.inner.chunk_status(peer, chunk_id, timeout_s=timeout_s)

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        if peer.peer_id != self.liar or self.act == "claims_held":
            yield from self.inner.fetch(peer, signed)
            return
        if self.act == "refuse":
            raise PermissionDenied("your signature looks wrong to me")
        if self.act == "relay":
            for other, address in sorted(self.addresses.items()):
                if other == peer.peer_id:
                    continue
                try:
                    yield from self.inner.fetch(address, signed)
                    return
                except PermissionDenied as exc:
                    self.relayed_to.append((other, str(exc)))
                except Exception as exc:  # noqa: BLE001 - the liar tries the next one
                    self.relayed_to.append((other, type(exc).__name__))
            raise PermissionDenied("nobody would give me the bytes")
        for index, data in self.inner.fetch(peer, signed):
            if self.act == "garbage":
                yield index, os.urandom(len(data))
            elif self.act == "partial":
                chunk_id = _chunk_id_of(signed)
                kept = self.kept.get(chunk_id)
                yield index, data if kept is None or index in kept else os.urandom(len(data))
            else:  # pragma: no cover - a typo in a test
                raise AssertionError(self.act)

    def delete_chunks(self, peer, signed):
        return self.inner.delete_chunks(peer, signed)


class _ClaimsHeld:
    """A receiver that says it holds the chunk already and stores nothing."""

    def start(self, header: ChunkHeader) -> Held:
        return Held(indices=frozenset(range(header.segment_count)), committed=True)

    def send_round(self, segments) -> list[int]:
        list(segments)
        return []

    def close(self) -> None:
        pass


def _chunk_id_of(signed: SignedFetch) -> bytes:
    from mydrive.transport.signed_fetch import parse_fetch

    return parse_fetch(signed).chunk_id


def _liar_world(tmp_path: Path, act: str, *, drop: bool) -> tuple[World, Dishonest, str]:
    """A world where the first replica of the first chunk is the liar; with ``drop`` it has
    deleted its chunks (it keeps answering as the act says)."""
    world = _world(tmp_path)
    liar = world.records()[0].chunks[0].replicas[0]
    dishonest = Dishonest(world.net.transport, liar, act)
    dishonest.addresses = {p.peer_id: p.address for p in world.client.known_peers()}
    world.client.transport = dishonest
    world.client.randomness = SeededRandomness(15)
    if drop:
        store = world.net.chunk_store(liar)
        for chunk_id in list(store.chunk_ids()):
            store.remove(chunk_id)
    return world, dishonest, liar


def _states_of(report, peer_id: str) -> set[str]:
    return {r["state"] for f in report.to_json()["files"] for c in f["chunks"]
            for r in c["replicas"] if r["peer"] == peer_id}


def test_audit_peer_claiming_a_chunk_it_dropped_is_missing(tmp_path: Path) -> None:
    """A peer whose ChunkStatus says "committed, every segment" after it dropped the data is
    found missing by the audit, and repaired away from."""
    world, _, liar = _liar_world(tmp_path, "none", drop=True)
    report = world.client.check(world.keys)
    assert _states_of(report, liar) == {"missing"}
    repaired = world.client.check(world.keys, repair=True)
    assert repaired.healthy
    assert all(liar not in c.replicas for r in world.records() for c in r.chunks)
    world.assert_downloads()


def test_audit_peer_serving_garbage_is_corrupt_and_never_a_source(tmp_path: Path) -> None:
    """Right-sized random bytes fail their digests twice: corrupt; the repair copies from the
    honest replica, and every file comes back bit-identical."""
    world, _, liar = _liar_world(tmp_path, "garbage", drop=False)
    report = world.client.check(world.keys, repair=True)
    assert _states_of(report, liar) == {"corrupt"}
    assert report.healthy and report.repair.replicated == len(
        [1 for f in report.files for c in f.before.chunks
         for r in c.replicas if r.peer_id == liar])
    assert all(liar not in c.replicas for r in world.records() for c in r.chunks)
    world.assert_downloads()


def test_audit_fresh_random_segments_catch_a_peer_keeping_a_fragment(tmp_path: Path) -> None:
    """A peer that kept only a quarter of a chunk's segments passes an audit only when the
    random draw lands on them: repeated audits catch it, --verify at once."""
    world, dishonest, liar = _liar_world(tmp_path, "partial", drop=False)
    record = world.records()[0]
    chunk = record.chunks[0]
    dishonest.kept[chunk.chunk_id] = set(range(len(chunk.segment_digests) // 4))
    address = world.client.known_peers()
    peer = next(p.address for p in address if p.peer_id == liar)
    states = [audit_replica(chunk, peer, file_id=record.file_id, peer_id=liar,
                            keys=world.keys, transport=dishonest, clock=world.net.clock,
                            randomness=world.client.randomness, segments=2).state
              for _ in range(8)]
    assert ReplicaState.CORRUPT in states
    assert states.count(ReplicaState.GOOD) <= 2  # (1/4)^2 per audit by chance at most
    full = audit_replica(chunk, peer, file_id=record.file_id, peer_id=liar, keys=world.keys,
                         transport=dishonest, clock=world.net.clock,
                         randomness=world.client.randomness, segments=FULL_AUDIT)
    assert full.state == ReplicaState.CORRUPT
    assert set(full.bad_segments) == set(range(len(chunk.segment_digests))) - \
        dishonest.kept[chunk.chunk_id]


def test_audit_request_cannot_be_relayed_to_another_replica(tmp_path: Path) -> None:
    """A peer that dropped its chunks forwards the owner's signed audit to every other peer
    to borrow their bytes: each refuses (signed for another peer), so the audit fails."""
    world, dishonest, liar = _liar_world(tmp_path, "relay", drop=True)
    report = world.client.check(world.keys)
    assert _states_of(report, liar) == {"refused"}
    assert dishonest.relayed_to
    refusals = [why for _, why in dishonest.relayed_to if "signed for another peer" in why]
    assert refusals, dishonest.relayed_to


def test_audit_peer_refusing_every_audit_is_replaced_after_grace(tmp_path: Path) -> None:
    """A peer that answers probes but refuses every audit can't keep its replicas listed
    forever: after the grace period over several checks it counts as dead and is replaced."""
    world, _, liar = _liar_world(tmp_path, "refuse", drop=False)
    settings = DurabilitySettings(dead_after_s=600, min_failed_probes=3)
    first = world.client.check(world.keys, repair=True, settings=settings)
    assert _states_of(first, liar) == {"refused"} and first.repair.replicated == 0
    for _ in range(2):
        world.net.clock.advance_ms(300_000)
        report = world.client.check(world.keys, repair=True, settings=settings)
    assert _states_of(report, liar) == {"dead"}
    assert report.healthy
    assert all(liar not in c.replicas for r in world.records() for c in r.chunks)
    world.assert_downloads()


def test_repair_target_claiming_to_hold_the_chunk_is_not_recorded(tmp_path: Path) -> None:
    """The first repair target answers StoreChunk with "committed already" and stores
    nothing: its audit fails, the owner's record never lists it, another peer takes the
    replica, and the liar's stray entry is gone after the cleanup."""
    world = _world(tmp_path)
    victim = world.records()[0].chunks[0].replicas[0]
    store = world.net.chunk_store(victim)
    for chunk_id in list(store.chunk_ids()):
        store.remove(chunk_id)
    dishonest = Dishonest(world.net.transport, None, "claims_held")
    world.client.transport = dishonest
    report = world.client.check(world.keys, repair=True)
    assert dishonest.liar is not None
    assert report.repair.failed >= 1
    assert any("did not pass its audit" in e for e in report.repair.errors)
    assert report.healthy
    for record in world.records():
        for chunk in record.chunks:
            assert dishonest.liar not in chunk.replicas or \
                world.net.chunk_store(dishonest.liar).has(chunk.chunk_id)
    world.assert_downloads()


@pytest.mark.parametrize("act", ["garbage", "refuse"])
def test_audit_liar_never_counts_as_good(tmp_path: Path, act: str) -> None:
    """Whatever the liar does, the check never reports one of its replicas good."""
    world, _, liar = _liar_world(tmp_path, act, drop=True)
    report = world.client.check(world.keys, verify_all=True)
    assert "good" not in _states_of(report, liar)
    assert not report.healthy
