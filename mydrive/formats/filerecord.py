"""The ``file:<id>`` metadata document: everything the owner needs to fetch a file back.

It holds no plaintext name (only the encrypted path, bound to the file id, and a keyed tag
for lookups) and no usable key (the file key is wrapped by the owner's key). Version 2 is
signed by its owner over every field (mydrive.formats.signed_doc; the signing and checking
are in mydrive.metadata.signed); version 1 documents, from before signing, are refused.
See docs/metadata.md. Pure data: nothing here writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import ChunkPlan, segment_ranges
from mydrive.formats.digest import (
    chunk_id_matches_digests,
    digest,
    digests_equal,
    whole_chunk_hash_needed,
)

FILE_DOC_TYPE = "file"
FILE_DOC_VERSION = 2
FILE_PREFIX = "file:"


def file_doc_id(owner_id: str, file_id: bytes) -> str:
    """``file:<owner id>:<file id hex>``: the owner is part of the id, so one user's signed
    document can never stand in for another user's file of the same id."""
    return f"{FILE_PREFIX}{owner_id}:{file_id.hex()}"


def owner_prefix(owner_id: str) -> str:
    """The id prefix of every file document of ``owner_id``."""
    return f"{FILE_PREFIX}{owner_id}:"


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    chunk_id: bytes
    size_bytes: int  # ciphertext
    segment_size_bytes: int
    segment_digests: tuple[bytes, ...]
    replicas: tuple[str, ...]  # peer ids, in the order to try

    def id_consistent(self, digest_alg: str) -> bool:
        """Whether the chunk id is the one its size and segment digests give, for a scheme
        with derived ids (cheap: no chunk bytes). Under ``"blake3"`` only the whole
        ciphertext can tell, so True here. Segments that match their digests and a
        consistent id are the chunk the id names."""
        if whole_chunk_hash_needed(digest_alg):
            return True
        return chunk_id_matches_digests(digest_alg, self.chunk_id, self.size_bytes,
                                        self.segment_size_bytes, self.segment_digests)

    def matches_ciphertext(self, ciphertext: bytes | memoryview, digest_alg: str) -> bool:
        """Whether ``ciphertext`` is this chunk, checked as its scheme says (for whoever
        holds a whole chunk's bytes, e.g. a checker reading a replica's file): the id from
        the whole bytes under ``"blake3"``; the id from the digests and every segment
        against its digest under a derived scheme."""
        if whole_chunk_hash_needed(digest_alg):
            return digests_equal(digest(ciphertext, digest_alg), self.chunk_id)
        ranges = segment_ranges(self.size_bytes, self.segment_size_bytes)
        if len(ciphertext) != self.size_bytes or len(ranges) != len(self.segment_digests) \
                or not self.id_consistent(digest_alg):
            return False
        view = memoryview(ciphertext)
        return all(digests_equal(digest(view[a:b], digest_alg), expected)
                   for (a, b), expected in zip(ranges, self.segment_digests, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "chunk_id": self.chunk_id.hex(),
                "size_bytes": self.size_bytes, "segment_size_bytes": self.segment_size_bytes,
                "segment_digests": [d.hex() for d in self.segment_digests],
                "replicas": list(self.replicas)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChunkRecord:
        return cls(index=int(d["index"]), chunk_id=bytes.fromhex(d["chunk_id"]),
                   size_bytes=int(d["size_bytes"]),
                   segment_size_bytes=int(d["segment_size_bytes"]),
                   segment_digests=tuple(bytes.fromhex(x) for x in d["segment_digests"]),
                   replicas=tuple(str(p) for p in d["replicas"]))


@dataclass(frozen=True)
class FileRecord:
    file_id: bytes
    owner_id: str
    path_tag: str
    encrypted_path: bytes
    plan: ChunkPlan
    wrapped_file_key: bytes
    digest_alg: str
    created_ms: int
    chunks: tuple[ChunkRecord, ...]
    transfer: dict[str, Any] = field(default_factory=dict, compare=False)
    # Grows with every rewrite by the owner (a rename): an older revision can't be replayed.
    updated_ms: int = 0

    @property
    def doc_id(self) -> str:
        return file_doc_id(self.owner_id, self.file_id)

    @property
    def size_bytes(self) -> int:
        return self.plan.size_bytes

    def to_doc(self) -> dict[str, Any]:
        """The unsigned body (mydrive.metadata.signed adds the owner's signature)."""
        return {"type": FILE_DOC_TYPE, "version": FILE_DOC_VERSION,
                "file_id": self.file_id.hex(),
                "owner_id": self.owner_id, "path_tag": self.path_tag,
                "encrypted_path": self.encrypted_path.hex(), "plan": self.plan.to_json(),
                "wrapped_file_key": self.wrapped_file_key.hex(), "digest_alg": self.digest_alg,
                "created_ms": self.created_ms, "chunks": [c.to_json() for c in self.chunks],
                "transfer": self.transfer, "updated_ms": self.updated_ms}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> FileRecord:
        """Parse (not verify) a version 2 file document; BadRequest naming what is wrong."""
        if not isinstance(d, dict):
            raise BadRequest("malformed file document: not a JSON object")
        if d.get("type") == FILE_DOC_TYPE and d.get("version") == 1:
            raise BadRequest("file document version 1 (unsigned, from before owner-signed "
                             "metadata); not used: upload the file again")
        try:
            if d.get("type") != FILE_DOC_TYPE or d.get("version") != FILE_DOC_VERSION:
                raise ValueError("not a version 2 file document")
            return cls(file_id=bytes.fromhex(d["file_id"]), owner_id=str(d["owner_id"]),
                       path_tag=str(d["path_tag"]),
                       encrypted_path=bytes.fromhex(d["encrypted_path"]),
                       plan=ChunkPlan.from_json(d["plan"]),
                       wrapped_file_key=bytes.fromhex(d["wrapped_file_key"]),
                       digest_alg=str(d["digest_alg"]), created_ms=int(d["created_ms"]),
                       chunks=tuple(ChunkRecord.from_json(c) for c in d["chunks"]),
                       transfer=dict(d.get("transfer", {})),
                       updated_ms=_non_negative(d.get("updated_ms", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed file document: {exc}") from exc


def _non_negative(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"updated_ms {value!r:.40} is not a non-negative integer")
    return value
