"""Protobuf messages <-> mydrive's own data, one place for both ends of the wire."""

from __future__ import annotations

from mydrive.formats.chunkheader import ChunkHeader
from mydrive.transport.wire import mydrive_pb2 as pb


def header_from_pb(msg: pb.ChunkHeader) -> ChunkHeader:
    return ChunkHeader(chunk_id=bytes(msg.chunk_id), digest_alg=msg.digest_alg,
                       owner_public_key=bytes(msg.owner_public_key),
                       chunk_size_bytes=msg.chunk_size_bytes,
                       segment_size_bytes=msg.segment_size_bytes,
                       segment_digests=tuple(bytes(d) for d in msg.segment_digests))


def header_to_pb(header: ChunkHeader) -> pb.ChunkHeader:
    return pb.ChunkHeader(chunk_id=header.chunk_id, digest_alg=header.digest_alg,
                          owner_public_key=header.owner_public_key,
                          chunk_size_bytes=header.chunk_size_bytes,
                          segment_size_bytes=header.segment_size_bytes,
                          segment_digests=list(header.segment_digests))
