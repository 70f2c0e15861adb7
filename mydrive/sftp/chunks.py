"""One chunk of a stored file, fetched from its replicas, verified and decrypted.

The engine fetches a chunk with replica failover and per-segment verification
(``mydrive.engine.download.fetch_chunk``); this adds the chunk's decryption, which checks
that the chunk is the one at that index of that file. It decrypts into a buffer of the
caller's free list (``mydrive.sftp.reader.ChunkWindow`` reuses a few), taken only once the
ciphertext is in, not into a fresh chunk-sized object; the ciphertext is fetched into one of
the same list's buffers (they fit both: ``ChunkBuffers`` rounds capacities up) and given
back once decrypted.
Nothing is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine import download
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest, DataLoss
from mydrive.formats.filerecord import FileRecord
from mydrive.sftp.reader import Fetch


def chunk_fetcher(client: PeerClient, keys: UserKeys, record: FileRecord) -> Fetch:
    """A function ``(index, buffers)`` returning the verified plaintext of chunk ``index``
    of ``record`` in a buffer taken from ``buffers`` (thread-safe)."""
    file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    peers = {p.peer_id: p.address for p in client.known_peers()}
    ledger = TransferLedger()

    def fetch(index: int, buffers: ChunkBuffers) -> memoryview:
        chunk = record.chunks[index]
        if chunk.index != index:
            raise DataLoss(f"chunk {index} of the file record says it is chunk {chunk.index}")
        length = record.plan.plaintext_length(index)
        if chunk.size_bytes != length + crypto.TAG_BYTES:  # fetch_chunk returns as many
            raise BadRequest(f"chunk {index} would decrypt to "
                             f"{max(0, chunk.size_bytes - crypto.TAG_BYTES)} bytes, "
                             f"expected {length}")
        ciphertext = buffers.take(chunk.size_bytes)
        try:
            download.fetch_chunk_into(ciphertext, chunk, keys=keys, peers=peers,
                                      transport=client.transport, clock=client.clock,
                                      randomness=client.randomness, ledger=ledger,
                                      settings=client.settings, digest_alg=record.digest_alg)
            plaintext = buffers.take(length)
            try:
                crypto.decrypt_chunk_into(file_key, record.file_id, index,
                                          record.plan.chunk_count, ciphertext, plaintext)
            except BaseException:
                buffers.give(plaintext)  # its contents are unspecified: never returned
                raise
        finally:
            buffers.give(ciphertext)
        return plaintext

    return fetch
