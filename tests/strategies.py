"""Shared test helpers: an in-memory network of peers driving the real engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mydrive.crypto.keys import UserKeys, create_user
from mydrive.crypto.primitives import new_kdf_params
from mydrive.engine import upload as upload_module
from mydrive.engine.settings import TransferSettings
from mydrive.engine.upload import PeerInfo, UploadResult
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.chunkplan import segment_ranges
from mydrive.formats.digest import DIGEST_ALG, chunk_id_for, digest
from mydrive.formats.filerecord import FileRecord
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport

FAST_KDF = {"time_cost": 1, "memory_kib": 8 * 1024, "parallelism": 1}
SMALL_SETTINGS = TransferSettings(chunk_size_bytes=64 * 1024, segment_size_bytes=4 * 1024,
                                  replicas=2, max_inflight_chunks=3)


def fast_user(name: str = "alice", passphrase: str = "correct horse") -> UserKeys:
    _, keys = create_user(name, passphrase, kdf_params=new_kdf_params(**FAST_KDF))
    return keys


@dataclass
class MemNetwork:
    transport: MemoryTransport
    peers: list[PeerInfo]
    clock: ManualClock

    @property
    def addresses(self) -> dict[str, object]:
        return {p.peer_id: p.address for p in self.peers}


def mem_network(root: Path, n: int, *, capacity_bytes: int = 2**40) -> MemNetwork:
    clock = ManualClock()
    transport = MemoryTransport()
    peers = []
    for i in range(n):
        address = transport.add_peer(f"p{i}", root / f"p{i}", clock=clock,
                                     capacity_bytes=capacity_bytes)
        peers.append(PeerInfo(address=address, capacity_bytes=capacity_bytes))
    return MemNetwork(transport=transport, peers=peers, clock=clock)


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def record_of(result: UploadResult, keys: UserKeys) -> FileRecord:
    """The file record for an engine-level upload (name fields are placeholders), under the
    digest scheme the engine uploads with (read now: a test may have switched it)."""
    return FileRecord(file_id=result.file_id, owner_id=keys.user_id, path_tag="t",
                      encrypted_path=b"x", plan=result.plan,
                      wrapped_file_key=result.wrapped_file_key,
                      digest_alg=upload_module.DIGEST_ALG,
                      created_ms=0, chunks=result.chunks,
                      transfer={"upload": result.ledger.to_json()})


def random_chunk(size: int, segment_size: int = 4096) -> tuple[ChunkHeader, list[bytes]]:
    """A chunk of random bytes as a receiver gets it: its header and its segments."""
    data = os.urandom(size)
    segments = [data[a:b] for a, b in segment_ranges(size, segment_size)]
    digests = tuple(digest(s) for s in segments)
    header = ChunkHeader(chunk_id=chunk_id_for(DIGEST_ALG, data, segment_size, digests),
                         digest_alg=DIGEST_ALG, owner_public_key=b"k" * 32,
                         chunk_size_bytes=size, segment_size_bytes=segment_size,
                         segment_digests=digests)
    return header, segments
