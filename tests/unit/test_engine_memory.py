"""The upload/download engine over the in-memory transport: no sockets, real logic."""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.errors import DataLoss, FileExists, TooFewPeers
from mydrive.faults import FaultPlan, FaultPoints, read_fault_log
from mydrive.filerecord import FileRecord
from mydrive.keys import UserKeys
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file


def _record(result, keys: UserKeys) -> FileRecord:
    return FileRecord(file_id=result.file_id, owner_id=keys.user_id, path_tag="t",
                      encrypted_path=b"x", plan=result.plan,
                      wrapped_file_key=result.wrapped_file_key, digest_alg="blake3",
                      created_ms=0, chunks=result.chunks)


def test_engine_round_trip_multi_chunk(tmp_path: Path) -> None:
    """A multi-chunk file comes back bit-identical and no peer holds every chunk."""
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 300_001)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=FaultPoints(FaultPlan()))
    counts: dict[str, int] = {}
    for chunk in result.chunks:
        assert len(set(chunk.replicas)) == 2 and "p0" not in chunk.replicas
        for p in chunk.replicas:
            counts[p] = counts.get(p, 0) + 1
    assert max(counts.values()) < len(result.chunks)
    out = tmp_path / "out" / "src.bin"
    out.parent.mkdir()
    download_file(_record(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    assert out.read_bytes() == src.read_bytes()
    with pytest.raises(FileExists):
        download_file(_record(result, keys), out, keys=keys, peers=net.addresses,
                      settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)


def test_engine_resends_exactly_corrupted_segments(tmp_path: Path) -> None:
    """Segments corrupted in flight are rejected and resent alone: resent set == corrupted set."""
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 500_000)
    log = tmp_path / "faults.jsonl"
    faults = FaultPoints(FaultPlan(seed=11, corrupt_upload_rate=0.1, log=log))
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=faults)
    index_of = {c.chunk_id.hex(): c.index for c in result.chunks}
    corrupted = {(index_of[e["chunk_id"]], e["segment"], e["peer"]) for e in read_fault_log(log)}
    assert corrupted, "seed 11 at 10% must corrupt something"
    assert set(result.ledger.resent) == corrupted
    assert result.ledger.totals().segments_rejected == len(corrupted)


def test_engine_download_fails_over_dead_and_bad_replicas(tmp_path: Path) -> None:
    """With one replica peer dead the file still downloads; with all replicas dead: DataLoss."""
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 200_000)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=FaultPoints(FaultPlan()))
    victim = result.chunks[0].replicas[0]
    net.transport.down.add(victim)
    out = tmp_path / "a.bin"
    download_file(_record(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    assert out.read_bytes() == src.read_bytes()
    net.transport.down.update(result.chunks[0].replicas)
    with pytest.raises(DataLoss):
        download_file(_record(result, keys), tmp_path / "b.bin", keys=keys,
                      peers=net.addresses, settings=SMALL_SETTINGS, transport=net.transport,
                      clock=net.clock)
    assert not (tmp_path / "b.bin").exists()
    assert not (tmp_path / ".mydrive-partial").exists()


def test_engine_refuses_too_few_peers(tmp_path: Path) -> None:
    """Two peers (one is the owner) can't hold R=2 replicas: TooFewPeers names N, R."""
    net = mem_network(tmp_path / "peers", 2)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 10)
    with pytest.raises(TooFewPeers, match="1 eligible peer"):
        upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                    settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                    faults=FaultPoints(FaultPlan()))
