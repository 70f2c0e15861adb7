"""The ``tomb:<owner id>:<file id>`` document: an owner's signed order to delete one file.

``rm`` writes it from the owner's own verified file document before deleting that document;
the collector (mydrive.engine.gc) then deletes exactly the (peer, chunk) pairs it lists as
pending, re-signing it as peers answer. It is signed over all of its fields
(mydrive.formats.signed_doc), the pending lists included, so nobody but the owner can add a
chunk to it; and every rewrite carries a larger ``updated_ms``, so an older revision can't be
replayed over a newer one. A finished tombstone (nothing pending) is kept until it is
``MAX_TOMBSTONE_AGE_MS`` old: it is what tells every peer that the file document's deletion
was its owner's (docs/deletion.md). Pure data: nothing here writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mydrive.errors import BadRequest
from mydrive.formats.digest import DIGEST_BYTES
from mydrive.formats.filerecord import FILE_PREFIX, FileRecord, file_doc_id

TOMB_PREFIX = "tomb:"
TOMB_DOC_TYPE = "tomb"
TOMB_DOC_VERSION = 2
# A tombstone lives this long after the rm that wrote it, finished or not. A peer away
# longer keeps its orphaned chunks (encrypted, unreadable; an operator can wipe its store),
# and a peer whose metadata is older than this may bring the removed file's document back
# (docs/deletion.md, "Limits"). Without a limit, tombstones would pile up forever.
MAX_TOMBSTONE_AGE_MS = 90 * 24 * 3600 * 1000
MAX_PENDING_PEERS = 4096


def tomb_doc_id(owner_id: str, file_id: bytes) -> str:
    """``tomb:<owner id>:<file id hex>``, beside the file document ``file:<same>``."""
    return f"{TOMB_PREFIX}{owner_id}:{file_id.hex()}"


def tomb_id_of_file(file_doc: str) -> str:
    """The tombstone id that orders the removal of the file document ``file_doc``."""
    assert file_doc.startswith(FILE_PREFIX)
    return TOMB_PREFIX + file_doc[len(FILE_PREFIX):]


def file_id_of_tomb(tomb_doc: str) -> str:
    """The file document id whose removal the tombstone ``tomb_doc`` orders."""
    assert tomb_doc.startswith(TOMB_PREFIX)
    return FILE_PREFIX + tomb_doc[len(TOMB_PREFIX):]


@dataclass(frozen=True)
class Tombstone:
    file_id: bytes
    owner_id: str
    created_ms: int
    updated_ms: int  # grows with every rewrite by the owner's collector
    pending: dict[str, tuple[bytes, ...]]  # peer id -> chunk ids still to remove there

    @property
    def doc_id(self) -> str:
        return tomb_doc_id(self.owner_id, self.file_id)

    @property
    def file_doc_id(self) -> str:
        return file_doc_id(self.owner_id, self.file_id)

    @property
    def finished(self) -> bool:
        return not self.pending

    def expired(self, now_ms: int) -> bool:
        return now_ms - self.created_ms > MAX_TOMBSTONE_AGE_MS

    def with_pending(self, pending: dict[str, tuple[bytes, ...]], now_ms: int) -> Tombstone:
        return Tombstone(file_id=self.file_id, owner_id=self.owner_id,
                         created_ms=self.created_ms,
                         updated_ms=max(now_ms, self.updated_ms + 1),
                         pending={p: ids for p, ids in sorted(pending.items()) if ids})

    @classmethod
    def for_record(cls, record: FileRecord, now_ms: int) -> Tombstone:
        """The tombstone of ``record``: every replica of every chunk it lists is pending."""
        pending: dict[str, list[bytes]] = {}
        for chunk in record.chunks:
            for peer_id in chunk.replicas:
                pending.setdefault(peer_id, []).append(chunk.chunk_id)
        return cls(file_id=record.file_id, owner_id=record.owner_id, created_ms=now_ms,
                   updated_ms=now_ms,
                   pending={p: tuple(ids) for p, ids in sorted(pending.items())})

    def to_doc(self) -> dict[str, Any]:
        """The unsigned body (mydrive.metadata.signed adds the owner's signature)."""
        return {"type": TOMB_DOC_TYPE, "version": TOMB_DOC_VERSION,
                "file_id": self.file_id.hex(), "owner_id": self.owner_id,
                "created_ms": self.created_ms, "updated_ms": self.updated_ms,
                "pending": {p: [c.hex() for c in ids] for p, ids in sorted(self.pending.items())}}

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Tombstone:
        """Parse (not verify) a tombstone; BadRequest naming what is wrong."""
        if not isinstance(d, Mapping) or d.get("type") != TOMB_DOC_TYPE:
            raise BadRequest("not a tombstone document")
        if d.get("version") == 1:
            raise BadRequest("tombstone version 1 (its signature covers only the file id, "
                             "not the chunks); not used")
        if d.get("version") != TOMB_DOC_VERSION:
            raise BadRequest(f"unsupported tombstone version {d.get('version')!r:.20}")
        try:
            pending_doc = d["pending"]
            if not isinstance(pending_doc, Mapping) or len(pending_doc) > MAX_PENDING_PEERS:
                raise ValueError(f"pending must map at most {MAX_PENDING_PEERS} peers")
            pending: dict[str, tuple[bytes, ...]] = {}
            for peer_id, ids in pending_doc.items():
                if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
                    raise ValueError(f"pending chunks of peer {peer_id!r:.40} are not a list")
                chunk_ids = tuple(bytes.fromhex(c) for c in ids)
                if any(len(c) != DIGEST_BYTES for c in chunk_ids):
                    raise ValueError(f"a chunk id is not {DIGEST_BYTES} bytes")
                if chunk_ids:
                    pending[str(peer_id)] = chunk_ids
            tomb = cls(file_id=bytes.fromhex(d["file_id"]), owner_id=str(d["owner_id"]),
                       created_ms=_int(d["created_ms"]), updated_ms=_int(d["updated_ms"]),
                       pending=pending)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed tombstone: {exc}") from exc
        if not tomb.file_id:
            raise BadRequest("malformed tombstone: empty file id")
        return tomb


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r:.40} is not a non-negative integer")
    return value
