"""One chunk of a stored file, fetched from its replicas, verified and decrypted.

The one place the SFTP face reaches into the download engine: the engine fetches a chunk
with replica failover and per-segment verification (engine/download.py); this adds the
chunk's decryption, which checks that the chunk is the one at that index of that file.
Nothing is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine import download
from mydrive.engine.accounting import TransferLedger
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.runtime.events import NO_EVENTS, ClockedEvents


def chunk_fetcher(client: PeerClient, keys: UserKeys,
                  record: FileRecord) -> Callable[[int], bytes]:
    """A function ``index -> plaintext of chunk index`` for ``record`` (thread-safe)."""
    file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    peers = {p.peer_id: p.address for p in client.known_peers()}
    ledger = TransferLedger()

    def fetch(index: int) -> bytes:
        chunk = record.chunks[index]
        assert chunk.index == index
        ciphertext = _engine_fetch(chunk, keys=keys, peers=peers, transport=client.transport,
                                   clock=client.clock, randomness=client.randomness,
                                   ledger=ledger, settings=client.settings)
        return crypto.decrypt_chunk(file_key, record.file_id, index, record.plan.chunk_count,
                                    ciphertext)

    return fetch


def _engine_fetch(chunk: ChunkRecord, **kwargs: Any) -> bytes:
    public = getattr(download, "fetch_chunk", None)
    if public is not None:
        return bytes(public(chunk, **kwargs))
    # TEMPORARY until engine/download.py offers fetch_chunk (see the report of issue 16).
    note = ClockedEvents(NO_EVENTS, kwargs["clock"])
    return download._fetch_chunk(chunk, note=note, **kwargs)
