"""Deletion tombstones and the owner-driven garbage collector (docs/deletion.md).

``rm`` first writes ``tomb:<file id>``, listing, per replica peer, the chunk ids still to be
removed there; then it deletes ``file:<file id>``; then it runs a collection pass. A pass
delivers owner-signed deletes to every pending peer and crosses off the peers that answered.
A peer that is down keeps its entry, and a later pass (the next ``rm`` or ``mydrive gc``)
retries. A tombstone is gone once no peer is pending.

Safety: a pass never asks a peer to delete a chunk that any live ``file:`` document (of any
owner) lists, and it finishes an interrupted ``rm`` (tombstone written, file document still
there) by deleting that file document before anything else, so "live" means "not being
deleted". Passes are idempotent: deleting an absent chunk answers "absent". Each tombstone
carries its owner's signature over the file id, so a forged tombstone in replicated metadata
cannot make the owner's own collector delete a live file document.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mydrive.crypto.keys import UserKeys
from mydrive.crypto.primitives import verify_signature
from mydrive.errors import BadRequest, MydriveError, PeerUnavailable
from mydrive.formats.filerecord import FileRecord
from mydrive.metadata.base import MetadataStore
from mydrive.runtime.clock import Clock
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_delete import MAX_DELETE_CHUNK_IDS, sign_delete

TOMB_PREFIX = "tomb:"
# A peer away longer than this keeps its orphaned chunks (encrypted, unreadable); an operator
# can wipe its store. Without a limit, tombstones of peers that never return pile up forever.
MAX_TOMBSTONE_AGE_MS = 90 * 24 * 3600 * 1000
MAX_REPORTED_ERRORS = 100
SIGNING_CONTEXT = b"mydrive-tomb-v1"


@dataclass(frozen=True)
class Tombstone:
    file_id: bytes
    owner_id: str
    created_ms: int
    pending: dict[str, tuple[bytes, ...]]  # peer id -> chunk ids still to remove there
    signature: bytes  # owner's Ed25519 signature over _signed_bytes(file_id, owner_id)

    @property
    def doc_id(self) -> str:
        return f"{TOMB_PREFIX}{self.file_id.hex()}"

    def signed_by(self, public_key: bytes) -> bool:
        return verify_signature(public_key, _signed_bytes(self.file_id, self.owner_id),
                                self.signature)

    def with_pending(self, pending: dict[str, tuple[bytes, ...]]) -> Tombstone:
        return Tombstone(file_id=self.file_id, owner_id=self.owner_id,
                         created_ms=self.created_ms, pending=pending, signature=self.signature)

    @classmethod
    def for_record(cls, record: FileRecord, keys: UserKeys, now_ms: int) -> Tombstone:
        assert record.owner_id == keys.user_id
        pending: dict[str, list[bytes]] = {}
        for chunk in record.chunks:
            for peer_id in chunk.replicas:
                pending.setdefault(peer_id, []).append(chunk.chunk_id)
        return cls(file_id=record.file_id, owner_id=record.owner_id, created_ms=now_ms,
                   pending={p: tuple(ids) for p, ids in sorted(pending.items())},
                   signature=keys.identity.sign(_signed_bytes(record.file_id, record.owner_id)))

    def to_doc(self) -> dict[str, Any]:
        return {"type": "tomb", "version": 1, "file_id": self.file_id.hex(),
                "owner_id": self.owner_id, "created_ms": self.created_ms,
                "signature": self.signature.hex(),
                "pending": {p: [c.hex() for c in ids] for p, ids in sorted(self.pending.items())}}

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Tombstone:
        try:
            if d.get("type") != "tomb" or d.get("version") != 1:
                raise ValueError("not a version 1 tombstone")
            return cls(file_id=bytes.fromhex(d["file_id"]), owner_id=str(d["owner_id"]),
                       created_ms=int(d["created_ms"]),
                       pending={str(p): tuple(bytes.fromhex(c) for c in ids)
                                for p, ids in dict(d["pending"]).items()},
                       signature=bytes.fromhex(d["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed tombstone: {exc}") from exc


@dataclass
class GcReport:
    """One collection pass: what was removed and what is still waiting for a peer."""

    tombstones: int = 0
    chunks_removed: int = 0
    chunks_absent: int = 0
    files_finished: int = 0         # interrupted rm's whose file document this pass deleted
    tombstones_done: int = 0
    tombstones_expired: int = 0
    pending: dict[str, list[str]] = field(default_factory=dict)  # file id hex -> peer ids
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tombstones": self.tombstones, "chunks_removed": self.chunks_removed,
                "chunks_absent": self.chunks_absent, "files_finished": self.files_finished,
                "tombstones_done": self.tombstones_done,
                "tombstones_expired": self.tombstones_expired,
                "pending": {k: sorted(v) for k, v in sorted(self.pending.items())},
                "errors": list(self.errors)}

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(text)


def _signed_bytes(file_id: bytes, owner_id: str) -> bytes:
    return SIGNING_CONTEXT + len(file_id).to_bytes(2, "big") + file_id + owner_id.encode()


def bury(store: MetadataStore, keys: UserKeys, record: FileRecord, now_ms: int) -> Tombstone:
    """Steps 1 and 2 of rm: write the tombstone, then delete the file document.

    A crash between the two leaves both; the next pass deletes the file document (the
    tombstone is the durable record that its owner asked for the delete).
    """
    tomb = Tombstone.for_record(record, keys, now_ms)
    existing = store.get(tomb.doc_id)
    if existing is not None:  # a second rm of a half-deleted file: keep what is still due
        try:
            earlier = Tombstone.from_doc(existing)
            if earlier.signed_by(keys.identity.public_bytes()):
                tomb = earlier
        except BadRequest:
            pass  # overwritten by the fresh one
    store.put(tomb.doc_id, tomb.to_doc())
    store.delete(record.doc_id)
    return tomb


def collect(store: MetadataStore, keys: UserKeys, *, peers: Mapping[str, PeerAddress],
            transport: Transport, clock: Clock,
            random_bytes: Callable[[int], bytes] = os.urandom) -> GcReport:
    """One pass over this user's tombstones (docs/deletion.md)."""
    report = GcReport()
    tombs: list[Tombstone] = []
    for doc_id, doc in store.list_prefix(TOMB_PREFIX):
        if doc.get("owner_id") != keys.user_id:
            continue  # only the owner can sign the deletes
        try:
            tomb = Tombstone.from_doc(doc)
        except BadRequest as exc:
            report._error(f"{doc_id}: {exc}")
            continue
        if not tomb.signed_by(keys.identity.public_bytes()):
            report._error(f"{doc_id}: not signed by this user; ignored")
            continue
        tombs.append(tomb)
    report.tombstones = len(tombs)
    for tomb in tombs:  # finish interrupted rm's before deciding what is live
        if store.delete(f"file:{tomb.file_id.hex()}"):
            report.files_finished += 1
    live = _live_chunk_ids(store)
    now_ms = clock.now_ms()
    for tomb in tombs:
        pending = dict(tomb.pending)
        for peer_id, chunk_ids in tomb.pending.items():
            due = [c for c in chunk_ids if c not in live]
            if not due:
                del pending[peer_id]
                continue
            address = peers.get(peer_id)
            if address is None:
                report._error(f"file {tomb.file_id.hex()}: peer {peer_id} is not known here")
                continue
            try:
                for start in range(0, len(due), MAX_DELETE_CHUNK_IDS):
                    batch = due[start:start + MAX_DELETE_CHUNK_IDS]
                    signed = sign_delete(keys.identity, chunk_ids=batch, target_peer_id=peer_id,
                                         clock=clock, random_bytes=random_bytes)
                    outcome = transport.delete_chunks(address, signed)
                    report.chunks_removed += len(outcome.removed)
                    report.chunks_absent += len(outcome.absent)
                del pending[peer_id]
            except PeerUnavailable as exc:
                report._error(f"file {tomb.file_id.hex()}: {exc}")
            except MydriveError as exc:  # refused (clock skew?) or bad data: retry later
                report._error(f"file {tomb.file_id.hex()}: peer {peer_id}: {exc}")
        if not pending:
            store.delete(tomb.doc_id)
            report.tombstones_done += 1
        elif now_ms - tomb.created_ms > MAX_TOMBSTONE_AGE_MS:
            store.delete(tomb.doc_id)
            report.tombstones_expired += 1
        else:
            if pending != tomb.pending:
                store.put(tomb.doc_id, tomb.with_pending(pending).to_doc())
            report.pending[tomb.file_id.hex()] = sorted(pending)
    return report


def _live_chunk_ids(store: MetadataStore) -> set[bytes]:
    live: set[bytes] = set()
    for _, doc in store.list_prefix("file:"):
        for chunk in doc.get("chunks", ()):
            try:
                live.add(bytes.fromhex(chunk["chunk_id"]))
            except (KeyError, TypeError, ValueError):
                continue
    return live
