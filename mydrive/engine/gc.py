"""The owner-driven garbage collector: rm's tombstones and the passes that act on them.

``rm`` first writes ``tomb:<owner id>:<file id>`` (mydrive.formats.tombstone), signed by the
owner over every field, listing per replica peer the chunk ids still to be removed there;
then it deletes ``file:<owner id>:<file id>``; then it runs a collection pass. A pass delivers
owner-signed deletes to every pending peer and crosses off the peers that answered, writing
the tombstone again, re-signed, with a larger ``updated_ms``. A peer that is down keeps its
entry, and a later pass (the next ``rm`` or ``mydrive gc``) retries. A finished tombstone
stays until it expires (it tells every peer the file document's deletion was the owner's).

Safety: a pass only acts on tombstones that verify under the owner's own key, and only ever
deletes the (peer, chunk) pairs such a tombstone lists; the tombstone was made from the
owner's verified file document, so no forged or replayed metadata can add a chunk to it.
A pass also never asks a peer to delete a chunk that any live ``file:`` document (of any
owner) lists, and it finishes an interrupted ``rm`` (tombstone written, file document still
there) by deleting that file document before anything else. Passes are idempotent: deleting
an absent chunk answers "absent". A crash leaves the tombstone as last written: the next
pass repeats what was not crossed off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mydrive.crypto.keys import UserKeys
from mydrive.errors import MydriveError, PeerUnavailable, UntrustedMetadata
from mydrive.formats.filerecord import FILE_PREFIX, FileRecord
from mydrive.formats.tombstone import TOMB_PREFIX, Tombstone
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.pins import kept_revision
from mydrive.metadata.signed import verified_key, verify_tomb
from mydrive.metadata.trusted import write_signed
from mydrive.runtime.clock import Clock
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_delete import MAX_DELETE_CHUNK_IDS, sign_delete

log = logging.getLogger("mydrive.engine.gc")

MAX_REPORTED_ERRORS = 100


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


def bury(store: MetadataStore, keys: UserKeys, record: FileRecord, now_ms: int) -> Tombstone:
    """Steps 1 and 2 of rm: write the tombstone, then delete the file document.

    ``record`` must be the owner's verified record (PeerClient verified it): the tombstone
    lists exactly its chunks and replicas. A crash between the two steps leaves both; the
    next pass deletes the file document (the tombstone is the durable record that its owner
    asked for the delete).
    """
    assert record.owner_id == keys.user_id
    tomb = Tombstone.for_record(record, now_ms)
    existing = store.get(tomb.doc_id)
    earlier = None
    if existing is not None:  # a second rm of a half-deleted file: keep what is still due
        try:
            earlier = verify_tomb(tomb.doc_id, existing, owner_key=keys.identity.public_bytes())
        except UntrustedMetadata as exc:
            log.warning("%s: replacing an untrusted tombstone: %s", tomb.doc_id, exc)
    if earlier is None:
        write_signed(store, tomb.doc_id, tomb.to_doc(), keys.identity)  # and the pin
    else:
        tomb = earlier
    store.delete(record.doc_id)
    store.delete_local(verified_key(record.doc_id))
    return tomb


def own_tombstones(store: MetadataStore, keys: UserKeys, report: GcReport) -> list[Tombstone]:
    """This user's tombstones that verify under the user's key. One that doesn't is replaced
    by this peer's verified copy of it if there is one (the guard writes that back too);
    otherwise it is reported and ignored."""
    tombs = []
    mine = keys.identity.public_bytes()
    for doc_id, doc in store.list_prefix(f"{TOMB_PREFIX}{keys.user_id}:"):
        try:
            tombs.append(verify_tomb(doc_id, doc, owner_key=mine))
        except UntrustedMetadata as exc:
            kept = _kept_tomb(store, doc_id, mine)
            if kept is None:
                report._error(f"{exc}; ignored")
            else:
                log.warning("%s; using the last verified revision", exc)
                tombs.append(kept)
    return tombs


def _kept_tomb(store: MetadataStore, doc_id: str, mine: bytes) -> Tombstone | None:
    """This peer's pin of the tombstone (the guard's), if this user signed it."""
    kept = kept_revision(store, doc_id)
    if kept is None or kept[1].signer != mine:
        return None
    return Tombstone.from_doc(kept[0])


def collect(store: MetadataStore, keys: UserKeys, *, peers: Mapping[str, PeerAddress],
            transport: Transport, clock: Clock,
            random_bytes: Callable[[int], bytes] = os.urandom) -> GcReport:
    """One pass over this user's tombstones (docs/deletion.md)."""
    report = GcReport()
    tombs = own_tombstones(store, keys, report)
    report.tombstones = sum(1 for t in tombs if not t.finished)
    for tomb in tombs:  # finish interrupted rm's before deciding what is live
        if store.delete(tomb.file_doc_id):
            report.files_finished += 1
        store.delete_local(verified_key(tomb.file_doc_id))
    live = _live_chunk_ids(store)
    now_ms = clock.now_ms()
    for tomb in tombs:
        if tomb.finished:
            if tomb.expired(now_ms):
                store.delete(tomb.doc_id)  # kept this long so every peer saw the rm
            continue
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
            write_signed(store, tomb.doc_id, tomb.with_pending({}, now_ms).to_doc(),
                         keys.identity)
            report.tombstones_done += 1
        elif tomb.expired(now_ms):
            store.delete(tomb.doc_id)
            report.tombstones_expired += 1
        else:
            if pending != tomb.pending:
                write_signed(store, tomb.doc_id, tomb.with_pending(pending, now_ms).to_doc(),
                             keys.identity)
            report.pending[tomb.file_id.hex()] = sorted(pending)
    return report


def _live_chunk_ids(store: MetadataStore) -> set[bytes]:
    """Every chunk id any file document lists, verified or not: more is only safer here."""
    live: set[bytes] = set()
    for _, doc in store.list_prefix(FILE_PREFIX):
        chunks = doc.get("chunks", ())
        for chunk in chunks if isinstance(chunks, list) else ():
            try:
                live.add(bytes.fromhex(chunk["chunk_id"]))
            except (KeyError, TypeError, ValueError):
                continue
    return live
