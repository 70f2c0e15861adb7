"""The engine under the derived chunk id scheme: uploads, downloads, fetch_chunk, check and
repair verify the id from the segment digests once, and hash each byte once; old "blake3"
records are still verified the old way."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.crypto.keys import UserKeys
from mydrive.engine import download as download_module
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.check import FULL_AUDIT, audit_replica
from mydrive.engine.download import download_file, fetch_chunk
from mydrive.engine.repair_policy import ReplicaState
from mydrive.engine.upload import upload_file
from mydrive.errors import DataLoss
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG, derive_chunk_id, digest
from mydrive.formats.filerecord import FileRecord
from mydrive.testing.randomness import SeededRandomness
from mydrive.transport.base import PeerAddress
from mydrive.transport.signed_fetch import SignedFetch
from tests.derived_ids import use_derived_ids, use_whole_chunk_ids
from tests.strategies import (
    SMALL_SETTINGS,
    MemNetwork,
    fast_user,
    mem_network,
    random_file,
    record_of,
)


def _uploaded(tmp_path: Path, alg: str,
              monkeypatch: pytest.MonkeyPatch) -> tuple[MemNetwork, FileRecord, bytes, UserKeys]:
    if alg == DERIVED_ID_ALG:
        use_derived_ids(monkeypatch)
    else:
        use_whole_chunk_ids(monkeypatch)
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 200_000)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    record = replace(record_of(result, keys), digest_alg=alg)
    return net, record, src.read_bytes(), keys


class _CountingFetches:
    """The in-memory transport, counting the fetches the engine makes."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.fetches = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        self.fetches += 1
        return self.inner.fetch(peer, signed)  # type: ignore[attr-defined, no-any-return]


def _count_hashed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    hashed: list[int] = []
    real = download_module.digest

    def counting(data: bytes | memoryview, alg: str = WHOLE_CHUNK_ALG) -> bytes:
        hashed.append(len(data))
        return real(data, alg)

    monkeypatch.setattr(download_module, "digest", counting)
    return hashed


def test_a_derived_upload_names_its_chunks_by_derived_ids_and_downloads_hashing_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, record, data, keys = _uploaded(tmp_path, DERIVED_ID_ALG, monkeypatch)
    for chunk in record.chunks:
        assert chunk.chunk_id == derive_chunk_id(chunk.size_bytes, chunk.segment_size_bytes,
                                                 chunk.segment_digests)
    hashed = _count_hashed_bytes(monkeypatch)
    out = tmp_path / "out.bin"
    download_file(record, out, keys=keys, peers=net.addresses, settings=SMALL_SETTINGS,
                  transport=net.transport, clock=net.clock)
    assert out.read_bytes() == data
    assert sum(hashed) == sum(c.size_bytes for c in record.chunks)  # each byte once


def test_a_download_whose_record_id_does_not_match_its_digests_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every segment the replicas serve matches its digest, but the signed record's chunk id
    is not the one those digests give: DataLoss, and not a byte is fetched for that chunk."""
    net, record, _, keys = _uploaded(tmp_path, DERIVED_ID_ALG, monkeypatch)
    other = record.chunks[1].chunk_id
    bad = replace(record, chunks=(replace(record.chunks[0], chunk_id=other),
                                  *record.chunks[1:]))
    transport = _CountingFetches(net.transport)
    settings = replace(SMALL_SETTINGS, max_inflight_chunks=1)
    out = tmp_path / "out.bin"
    with pytest.raises(DataLoss, match="chunk 0.*does not match its segment digests"):
        download_file(bad, out, keys=keys, peers=net.addresses, settings=settings,
                      transport=transport, clock=net.clock)  # type: ignore[arg-type]
    assert transport.fetches == 0
    assert not out.exists()


def test_an_old_blake3_record_still_downloads(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    net, record, data, keys = _uploaded(tmp_path, WHOLE_CHUNK_ALG, monkeypatch)
    for chunk in record.chunks:  # named by the digest of the whole ciphertext, as before
        store = net.transport.peers[chunk.replicas[0]].store
        assert chunk.chunk_id == digest(store.ciphertext(chunk.chunk_id))
    out = tmp_path / "out.bin"
    download_file(record, out, keys=keys, peers=net.addresses, settings=SMALL_SETTINGS,
                  transport=net.transport, clock=net.clock)
    assert out.read_bytes() == data


def _fetch(net: MemNetwork, record: FileRecord, keys: UserKeys, index: int,
           alg: str) -> bytes:
    return fetch_chunk(record.chunks[index], keys=keys, peers=net.addresses,
                       transport=net.transport, clock=net.clock,
                       randomness=SeededRandomness(1), ledger=TransferLedger(),
                       settings=SMALL_SETTINGS, digest_alg=alg)


def test_fetch_chunk_checks_a_derived_id_without_hashing_the_whole_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alg = DERIVED_ID_ALG
    net, record, _, keys = _uploaded(tmp_path, DERIVED_ID_ALG, monkeypatch)
    hashed = _count_hashed_bytes(monkeypatch)
    ciphertext = _fetch(net, record, keys, 0, alg)
    assert len(ciphertext) == record.chunks[0].size_bytes
    assert sum(hashed) == len(ciphertext)
    bad = replace(record, chunks=(replace(record.chunks[0],
                                          chunk_id=record.chunks[1].chunk_id),))
    with pytest.raises(DataLoss):
        _fetch(net, bad, keys, 0, alg)


def test_fetch_chunk_still_checks_an_old_id_against_the_whole_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alg = WHOLE_CHUNK_ALG
    net, record, _, keys = _uploaded(tmp_path, WHOLE_CHUNK_ALG, monkeypatch)
    ciphertext = _fetch(net, record, keys, 0, alg)
    assert digest(ciphertext) == record.chunks[0].chunk_id
    # A record whose id names other bytes, from a replica serving the bytes its digests
    # name: every segment passes, the whole chunk does not.
    chunk = record.chunks[0]
    lying = replace(record, chunks=(replace(chunk, chunk_id=digest(b"other")),))
    serving = replace(net, transport=_Serving(ciphertext, chunk.segment_size_bytes))
    with pytest.raises(DataLoss, match="does not match its id"):
        _fetch(serving, lying, keys, 0, alg)


class _Serving:
    """A replica that answers any fetch with every segment of ``ciphertext``."""

    def __init__(self, ciphertext: bytes, segment_size: int) -> None:
        self.segments = [ciphertext[a:a + segment_size]
                         for a in range(0, len(ciphertext), segment_size)]

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        yield from enumerate(self.segments)


def test_audit_of_a_chunk_whose_record_id_does_not_match_its_digests_proves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, record, _, keys = _uploaded(tmp_path, DERIVED_ID_ALG, monkeypatch)
    chunk = record.chunks[0]
    peer_id = chunk.replicas[0]
    peer = net.addresses[peer_id]

    def audit(c: object) -> ReplicaState:
        return audit_replica(c, peer, file_id=record.file_id, peer_id=peer_id,  # type: ignore[arg-type]
                             keys=keys, transport=net.transport, clock=net.clock,
                             randomness=SeededRandomness(2), segments=FULL_AUDIT,
                             digest_alg=DERIVED_ID_ALG).state

    assert audit(chunk) == ReplicaState.GOOD
    assert audit(replace(chunk, chunk_id=record.chunks[1].chunk_id)) == ReplicaState.CORRUPT


def test_check_and_repair_keep_derived_chunks_healthy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Files put under derived ids: --verify proves every replica, a lost peer's replicas
    are repaired (fetched, stored on a new peer whose receiver checks the derived id, audited)
    and every file comes back bit-identical."""
    from tests.unit.test_repair import _lost_replicas, _victim, _wipe, _world

    use_derived_ids(monkeypatch)
    world = _world(tmp_path)
    records = world.records()
    assert {r.digest_alg for r in records} == {DERIVED_ID_ALG}
    assert all(c.chunk_id == derive_chunk_id(c.size_bytes, c.segment_size_bytes,
                                             c.segment_digests)
               for r in records for c in r.chunks)
    assert world.client.check(world.keys, verify_all=True).healthy
    victim = _victim(world)
    lost = _lost_replicas(world, victim)
    _wipe(world, victim)
    report = world.client.check(world.keys, repair=True)
    assert report.healthy and report.repair is not None
    assert report.repair.replicated == len(lost)
    assert world.client.check(world.keys, verify_all=True).healthy
    world.assert_downloads()
