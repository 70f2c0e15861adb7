"""The receiver's logic for an owner-signed DeleteChunks request, independent of gRPC.

Everything is checked before anything is removed: a request that names one chunk the signer
does not own removes nothing (docs/deletion.md).
"""

from __future__ import annotations

from mydrive.errors import ChunkNotFound
from mydrive.runtime.clock import Clock
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.envelope import ReplayGuard
from mydrive.transport.signed_delete import (
    DeleteOutcome,
    SignedDelete,
    authorize,
    check_target_and_time,
    parse_delete,
)


def describe_delete_metrics(metrics: Metrics) -> None:
    metrics.describe("receiver_deletes_total", "authorized delete requests")
    metrics.describe("receiver_deletes_refused_total", "delete requests refused")
    metrics.describe("receiver_chunks_deleted_total", "chunks removed at their owner's request")


class ChunkDeleter:
    def __init__(self, store: ChunkStore, *, peer_id: str, clock: Clock,
                 replay_guard: ReplayGuard, metrics: Metrics) -> None:
        self.store = store
        self.peer_id = peer_id
        self.clock = clock
        self.replay_guard = replay_guard
        self.metrics = metrics

    def delete(self, signed: SignedDelete) -> DeleteOutcome:
        try:
            request = parse_delete(signed)
            held: list[bytes] = []
            owners: set[bytes] = set()
            for chunk_id in request.chunk_ids:
                try:
                    owners.add(self.store.header(chunk_id).owner_public_key)
                    held.append(chunk_id)
                except ChunkNotFound:
                    continue
            if not held:
                # No key to check the signature with, so nothing to remember: the key-free
                # checks run (a replay of a delete that took effect is still refused), and
                # every named chunk is answered "absent": nothing is removed.
                check_target_and_time(request, my_peer_id=self.peer_id, clock=self.clock,
                                      replay_guard=self.replay_guard)
            else:
                authorize(signed, request, owner_public_keys=owners, my_peer_id=self.peer_id,
                          clock=self.clock, replay_guard=self.replay_guard)
        except Exception:
            self.metrics.inc("receiver_deletes_refused_total")
            raise
        self.metrics.inc("receiver_deletes_total")
        removed = [c for c in held if self.store.remove(c)]
        self.metrics.inc("receiver_chunks_deleted_total", len(removed))
        absent = [c for c in request.chunk_ids if c not in set(removed)]
        return DeleteOutcome(removed=tuple(removed), absent=tuple(absent))
