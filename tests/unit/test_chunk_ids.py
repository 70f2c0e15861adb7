"""Chunk ids under both digest schemes: "blake3" (the digest of the whole ciphertext) and
"blake3-derived" (a domain-separated BLAKE3 of the cut and the segment digests)."""

from __future__ import annotations

import io
import os
from dataclasses import replace

import blake3
import pytest

from mydrive.engine import upload as upload_module
from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest
from mydrive.formats import digest as digest_module
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.chunkplan import plan_chunks, segment_ranges
from mydrive.formats.digest import (
    CHUNK_ID_CONTEXT,
    DERIVED_ID_ALG,
    WHOLE_CHUNK_ALG,
    chunk_id_for,
    derive_chunk_id,
    digest,
    whole_chunk_hash_needed,
)
from mydrive.formats.filerecord import ChunkRecord
from mydrive.transport.codec import header_from_pb, header_to_pb
from tests.strategies import SMALL_SETTINGS

# Fixed so that the format can't drift silently: every stored chunk and signed file record of
# the scheme carries ids computed this way.
VECTOR_DIGESTS = tuple(bytes([i]) * 32 for i in range(3))
VECTOR_ID = "692f38f6bb764de5e9519260b914620582a89a23dce219f5a56395f0dbb8928c"


def test_derived_id_matches_the_fixed_test_vector() -> None:
    assert derive_chunk_id(10_000, 4096, VECTOR_DIGESTS).hex() == VECTOR_ID


def test_derived_id_is_the_documented_encoding() -> None:
    """docs/keys-and-encryption.md: BLAKE3 in key derivation mode under CHUNK_ID_CONTEXT over
    u64 chunk size | u64 segment size | u32 segment count | the digests (big-endian)."""
    encoded = (10_000).to_bytes(8, "big") + (4096).to_bytes(8, "big") + (3).to_bytes(4, "big")
    expected = blake3.blake3(encoded + b"".join(VECTOR_DIGESTS),
                             derive_key_context=CHUNK_ID_CONTEXT).digest()
    assert derive_chunk_id(10_000, 4096, VECTOR_DIGESTS) == expected
    # Domain separation: not the plain BLAKE3 of the same bytes.
    assert expected != digest(encoded + b"".join(VECTOR_DIGESTS))


def _derived_header(size: int = 10_000, segment_size: int = 4096) -> tuple[ChunkHeader, bytes]:
    data = os.urandom(size)
    digests = tuple(digest(data[a:b]) for a, b in segment_ranges(size, segment_size))
    header = ChunkHeader(chunk_id=derive_chunk_id(size, segment_size, digests),
                         digest_alg=DERIVED_ID_ALG, owner_public_key=b"k" * 32,
                         chunk_size_bytes=size, segment_size_bytes=segment_size,
                         segment_digests=digests)
    return header, data


def test_a_derived_header_validates_and_needs_no_whole_chunk_hash() -> None:
    header, _ = _derived_header()
    header.validate()
    assert not header.whole_chunk_hash_needed
    assert ChunkHeader.from_json(header.to_json()) == header
    assert header_from_pb(header_to_pb(header)) == header


def test_a_header_with_a_wrong_derived_id_is_refused_by_validate() -> None:
    header, _ = _derived_header()
    flipped = bytes([header.chunk_id[0] ^ 1]) + header.chunk_id[1:]
    with pytest.raises(BadRequest, match="derived"):
        replace(header, chunk_id=flipped).validate()
    with pytest.raises(BadRequest, match="derived"):
        ChunkHeader.from_json(replace(header, chunk_id=flipped).to_json())


def test_an_old_blake3_header_is_still_accepted_and_checked_against_the_whole_chunk() -> None:
    data = os.urandom(10_000)
    digests = tuple(digest(data[a:b]) for a, b in segment_ranges(len(data), 4096))
    header = ChunkHeader(chunk_id=digest(data), digest_alg=WHOLE_CHUNK_ALG,
                         owner_public_key=b"k" * 32, chunk_size_bytes=len(data),
                         segment_size_bytes=4096, segment_digests=digests)
    header.validate()  # its id can't be checked without the bytes: validate accepts it
    assert header.whole_chunk_hash_needed
    assert header.chunk_id_matches_whole(digest(data))
    assert not header.chunk_id_matches_whole(digest(data[1:]))


def test_an_unknown_scheme_is_refused() -> None:
    header, _ = _derived_header()
    with pytest.raises(BadRequest, match="unknown digest algorithm"):
        replace(header, digest_alg="blake3-derived-v9").validate()
    with pytest.raises(BadRequest, match="unknown digest algorithm"):
        whole_chunk_hash_needed("md5")


def test_chunk_id_for_hashes_the_bytes_only_under_blake3() -> None:
    data = os.urandom(9000)
    digests = tuple(digest(data[a:b]) for a, b in segment_ranges(len(data), 4096))
    assert chunk_id_for(WHOLE_CHUNK_ALG, data, 4096, digests) == digest(data)
    assert chunk_id_for(DERIVED_ID_ALG, data, 4096, digests) == \
        derive_chunk_id(len(data), 4096, digests)


@pytest.mark.parametrize("alg", [WHOLE_CHUNK_ALG, DERIVED_ID_ALG])
def test_encrypt_chunk_hashes_each_byte_once_under_the_derived_scheme(
        monkeypatch: pytest.MonkeyPatch, alg: str) -> None:
    """The uploading side: under "blake3" the ciphertext is hashed twice (segments, then
    whole), under "blake3-derived" once; either way the header validates."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", alg)
    hashed: list[int] = []
    real = digest_module.digest

    def counting(data: bytes | memoryview, alg: str = WHOLE_CHUNK_ALG) -> bytes:
        hashed.append(len(data))
        return real(data, alg)

    monkeypatch.setattr(upload_module, "digest", counting)
    monkeypatch.setattr(digest_module, "digest", counting)
    plaintext = os.urandom(100_000)
    plan = plan_chunks(len(plaintext), chunk_size_bytes=SMALL_SETTINGS.chunk_size_bytes,
                       segment_size_bytes=SMALL_SETTINGS.segment_size_bytes, min_chunks=1)
    chunk = upload_module._encrypt_chunk(io.BytesIO(plaintext), plan, 0, os.urandom(16),
                                         os.urandom(32), b"k" * 32, SMALL_SETTINGS,
                                         ChunkBuffers())
    header = chunk.header
    header.validate()
    assert header.digest_alg == alg
    size = header.chunk_size_bytes
    assert sum(hashed) == (2 * size if alg == WHOLE_CHUNK_ALG else size)
    assert header.segment_digests == tuple(
        digest(chunk.ciphertext[a:b]) for a, b in segment_ranges(size, 4096))


@pytest.mark.parametrize("alg", [WHOLE_CHUNK_ALG, DERIVED_ID_ALG])
def test_a_record_tells_whether_bytes_are_its_chunk(alg: str) -> None:
    """ChunkRecord.matches_ciphertext, for checkers holding a replica's whole file."""
    data = os.urandom(3 * 4096 + 7)
    digests = tuple(digest(data[a:b]) for a, b in segment_ranges(len(data), 4096))
    record = ChunkRecord(index=0, chunk_id=chunk_id_for(alg, data, 4096, digests),
                         size_bytes=len(data), segment_size_bytes=4096,
                         segment_digests=digests, replicas=("p",))
    assert record.matches_ciphertext(data, alg)
    flipped = bytes([data[0] ^ 1]) + data[1:]
    assert not record.matches_ciphertext(flipped, alg)
    assert not record.matches_ciphertext(data[:-1], alg)
    other_id = replace(record, chunk_id=digest(b"other"))
    assert not other_id.matches_ciphertext(data, alg)
    if alg == DERIVED_ID_ALG:  # a digest list longer than the cut proves nothing
        longer = replace(record, segment_digests=(*digests, digest(b"")))
        assert not longer.matches_ciphertext(data, alg)
