"""The SFTP face fetches each chunk under its file record's chunk id scheme (not a guess
from the chunk: ``fetch_chunk`` without a scheme takes an id its digests give as derived)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mydrive.engine import download
from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG
from mydrive.sftp.chunks import chunk_fetcher
from tests.derived_ids import alice_puts_a_file, use_chunk_ids


@pytest.mark.parametrize("alg", [WHOLE_CHUNK_ALG, DERIVED_ID_ALG])
def test_sftp_fetches_chunks_under_the_records_scheme(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      alg: str) -> None:
    use_chunk_ids(monkeypatch, alg)
    c, a, src, record = alice_puts_a_file(tmp_path)
    asked: list[Any] = []
    into: set[int] = set()
    real = download.fetch_chunk_into

    def spy(*args: Any, **kwargs: Any) -> None:
        asked.append(kwargs.get("digest_alg"))
        into.add(id(args[0].obj))
        real(*args, **kwargs)

    monkeypatch.setattr(download, "fetch_chunk_into", spy)
    fetch = chunk_fetcher(c, a, record)
    buffers = ChunkBuffers()
    pieces = []
    for i in range(len(record.chunks)):
        plaintext = fetch(i, buffers)
        pieces.append(bytes(plaintext))
        buffers.give(plaintext)  # as the window does once the chunk is read
    assert b"".join(pieces) == src.read_bytes()
    assert asked == [alg] * len(record.chunks)
    # The ciphertext goes into the free list's buffers, not a fresh chunk-sized object each
    # (one chunk at a time here: the two buffers take turns).
    assert len(record.chunks) > 2 and len(into) <= 2
    c.close()


def test_sftp_chunk_of_the_wrong_length_is_refused_before_it_is_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record whose plan gives a chunk another plaintext length than its ciphertext less
    the tag is an error, not a partly filled read; nothing is fetched for it."""
    c, a, _, record = alice_puts_a_file(tmp_path)
    fetched: list[Any] = []
    real = download.fetch_chunk_into

    def spy(*args: Any, **kwargs: Any) -> None:
        fetched.append(args)
        real(*args, **kwargs)

    monkeypatch.setattr(download, "fetch_chunk_into", spy)
    plan = replace(record.plan, chunk_size_bytes=record.plan.chunk_size_bytes - 1)
    fetch = chunk_fetcher(c, a, replace(record, plan=plan))
    with pytest.raises(BadRequest, match=f"expected {plan.chunk_size_bytes}"):
        fetch(0, ChunkBuffers())
    assert fetched == []
    c.close()
