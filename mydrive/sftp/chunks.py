"""One chunk of a stored file, fetched from its replicas, verified and decrypted.

The engine fetches a chunk with replica failover and per-segment verification
(``mydrive.engine.download.fetch_chunk``); this adds the chunk's decryption, which checks
that the chunk is the one at that index of that file.
Nothing is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine import download
from mydrive.engine.accounting import TransferLedger
from mydrive.errors import DataLoss
from mydrive.formats.filerecord import FileRecord


def chunk_fetcher(client: PeerClient, keys: UserKeys,
                  record: FileRecord) -> Callable[[int], bytes]:
    """A function ``index -> plaintext of chunk index`` for ``record`` (thread-safe)."""
    file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    peers = {p.peer_id: p.address for p in client.known_peers()}
    ledger = TransferLedger()

    def fetch(index: int) -> bytes:
        chunk = record.chunks[index]
        if chunk.index != index:
            raise DataLoss(f"chunk {index} of the file record says it is chunk {chunk.index}")
        ciphertext = download.fetch_chunk(chunk, keys=keys, peers=peers,
                                          transport=client.transport, clock=client.clock,
                                          randomness=client.randomness, ledger=ledger,
                                          settings=client.settings,
                                          digest_alg=record.digest_alg)
        return crypto.decrypt_chunk(file_key, record.file_id, index, record.plan.chunk_count,
                                    ciphertext)

    return fetch
