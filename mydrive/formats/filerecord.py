"""The ``file:<id>`` metadata document: everything the owner needs to fetch a file back.

It holds no plaintext name (only the encrypted path and a keyed tag for lookups) and no
usable key (the file key is wrapped by the owner's key). See docs/metadata.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import ChunkPlan


@dataclass(frozen=True)
class ChunkRecord:
    index: int
    chunk_id: bytes
    size_bytes: int  # ciphertext
    segment_size_bytes: int
    segment_digests: tuple[bytes, ...]
    replicas: tuple[str, ...]  # peer ids, in the order to try

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

    @property
    def doc_id(self) -> str:
        return f"file:{self.file_id.hex()}"

    @property
    def size_bytes(self) -> int:
        return self.plan.size_bytes

    def to_doc(self) -> dict[str, Any]:
        return {"type": "file", "version": 1, "file_id": self.file_id.hex(),
                "owner_id": self.owner_id, "path_tag": self.path_tag,
                "encrypted_path": self.encrypted_path.hex(), "plan": self.plan.to_json(),
                "wrapped_file_key": self.wrapped_file_key.hex(), "digest_alg": self.digest_alg,
                "created_ms": self.created_ms, "chunks": [c.to_json() for c in self.chunks],
                "transfer": self.transfer}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> FileRecord:
        try:
            if d.get("type") != "file" or d.get("version") != 1:
                raise ValueError("not a version 1 file document")
            return cls(file_id=bytes.fromhex(d["file_id"]), owner_id=str(d["owner_id"]),
                       path_tag=str(d["path_tag"]),
                       encrypted_path=bytes.fromhex(d["encrypted_path"]),
                       plan=ChunkPlan.from_json(d["plan"]),
                       wrapped_file_key=bytes.fromhex(d["wrapped_file_key"]),
                       digest_alg=str(d["digest_alg"]), created_ms=int(d["created_ms"]),
                       chunks=tuple(ChunkRecord.from_json(c) for c in d["chunks"]),
                       transfer=dict(d.get("transfer", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed file document: {exc}") from exc
