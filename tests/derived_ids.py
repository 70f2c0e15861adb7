"""Pinning the chunk id scheme of new uploads in a test, whatever the default.

Receivers commit either scheme (``ChunkHeader.whole_chunk_hash_needed`` tells the commit
whether to hash the whole chunk), so pinning the uploading side is enough.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.client import PeerClient
from mydrive.crypto.keys import UserKeys
from mydrive.engine import upload as upload_module
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG
from mydrive.formats.filerecord import FileRecord
from tests.clientnet import client_net
from tests.strategies import random_file


def use_chunk_ids(monkeypatch: pytest.MonkeyPatch, alg: str) -> None:
    """New uploads name chunks under ``alg``, whatever the default."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", alg)


def use_whole_chunk_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads name chunks the old way ("blake3"), whatever the default."""
    use_chunk_ids(monkeypatch, WHOLE_CHUNK_ALG)


def use_derived_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads name chunks by derived ids ("blake3-derived"), whatever the default."""
    use_chunk_ids(monkeypatch, DERIVED_ID_ALG)


def alice_puts_a_file(tmp_path: Path) -> tuple[PeerClient, UserKeys, Path, FileRecord]:
    """On a fresh in-memory network, alice puts 150 kB of random bytes as /f.bin (several
    chunks); her client (the caller closes it), keys, the local file and the record."""
    client = client_net(tmp_path / "n").client()
    client.create_user("alice", "alice passphrase")
    keys = client.login("alice", "alice passphrase")
    src = random_file(tmp_path / "f.bin", 150_000)
    return client, keys, src, client.put(keys, src, "/f.bin")
