"""Uploads under the derived chunk id scheme ("blake3-derived") before it is the default.

New uploads use ``DIGEST_ALG`` ("blake3") until the receiver's commit skips the whole-chunk
hash for derived ids (mydrive.storage.chunkstore, ``ChunkHeader.whole_chunk_hash_needed``).
Until then a test that needs a full upload under the new scheme switches the uploading side
to it and stands in for that commit change: a chunk whose derived id ``ChunkStore.begin``
accepted (``validate`` checked it against the digests) passes the commit's id comparison.
Remove the store half once chunkstore.py makes that choice itself.
"""

from __future__ import annotations

import threading

import pytest

from mydrive import client as client_module
from mydrive.engine import upload as upload_module
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG, digests_equal
from mydrive.storage import chunkstore


def use_whole_chunk_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads (engine and client) name chunks the old way, whatever the default."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", WHOLE_CHUNK_ALG)
    monkeypatch.setattr(client_module, "DIGEST_ALG", WHOLE_CHUNK_ALG)


def use_derived_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads (engine and client) name chunks by derived ids, and stores commit them."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", DERIVED_ID_ALG)
    monkeypatch.setattr(client_module, "DIGEST_ALG", DERIVED_ID_ALG)
    accepted: set[bytes] = set()
    lock = threading.Lock()
    real_begin = chunkstore.ChunkStore.begin

    def begin(self: chunkstore.ChunkStore, header: ChunkHeader) -> chunkstore.PendingChunk:
        pending = real_begin(self, header)  # validate() ran: a derived id matches its digests
        if not header.whole_chunk_hash_needed:
            with lock:
                accepted.add(header.chunk_id)
        return pending

    def equal(a: bytes, b: bytes) -> bool:
        # The commit compares (whole digest, chunk id); a derived id needs no whole digest.
        with lock:
            return digests_equal(a, b) or b in accepted

    monkeypatch.setattr(chunkstore.ChunkStore, "begin", begin)
    monkeypatch.setattr(chunkstore, "digests_equal", equal)
