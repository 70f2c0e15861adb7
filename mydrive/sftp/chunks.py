"""One chunk of a stored file, fetched from its replicas, verified and decrypted.

The engine fetches a chunk with replica failover and per-segment verification
(``mydrive.engine.download.fetch_chunk``); this adds the chunk's decryption, which checks
that the chunk is the one at that index of that file. It decrypts into the caller's buffer
(``mydrive.sftp.reader.ChunkWindow`` reuses a few), not into a fresh chunk-sized object.
Nothing is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine import download
from mydrive.engine.accounting import TransferLedger
from mydrive.errors import BadRequest, DataLoss
from mydrive.formats.filerecord import FileRecord
from mydrive.sftp.reader import Fetch


def chunk_fetcher(client: PeerClient, keys: UserKeys, record: FileRecord) -> Fetch:
    """A function ``(index, into)`` that fills ``into`` with the plaintext of chunk
    ``index`` of ``record``, verified; ``into`` is exactly that long (thread-safe)."""
    file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    peers = {p.peer_id: p.address for p in client.known_peers()}
    ledger = TransferLedger()

    def fetch(index: int, into: memoryview) -> None:
        chunk = record.chunks[index]
        if chunk.index != index:
            raise DataLoss(f"chunk {index} of the file record says it is chunk {chunk.index}")
        if chunk.size_bytes != len(into) + crypto.TAG_BYTES:  # fetch_chunk returns as many
            raise BadRequest(f"chunk {index} would decrypt to "
                             f"{max(0, chunk.size_bytes - crypto.TAG_BYTES)} bytes, "
                             f"expected {len(into)}")
        ciphertext = download.fetch_chunk(chunk, keys=keys, peers=peers,
                                          transport=client.transport, clock=client.clock,
                                          randomness=client.randomness, ledger=ledger,
                                          settings=client.settings,
                                          digest_alg=record.digest_alg)
        crypto.decrypt_chunk_into(file_key, record.file_id, index, record.plan.chunk_count,
                                  ciphertext, into)

    return fetch
