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
    real = download.fetch_chunk

    def spy(*args: Any, **kwargs: Any) -> bytes:
        asked.append(kwargs.get("digest_alg"))
        return real(*args, **kwargs)

    monkeypatch.setattr(download, "fetch_chunk", spy)
    fetch = chunk_fetcher(c, a, record)
    buffers = ChunkBuffers()
    data = b"".join(bytes(fetch(i, buffers)) for i in range(len(record.chunks)))
    assert data == src.read_bytes()
    assert asked == [alg] * len(record.chunks)
    c.close()


def test_sftp_chunk_of_the_wrong_length_is_refused_before_it_is_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record whose plan gives a chunk another plaintext length than its ciphertext less
    the tag is an error, not a partly filled read; nothing is fetched for it."""
    c, a, _, record = alice_puts_a_file(tmp_path)
    fetched: list[Any] = []
    real = download.fetch_chunk

    def spy(*args: Any, **kwargs: Any) -> bytes:
        fetched.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(download, "fetch_chunk", spy)
    plan = replace(record.plan, chunk_size_bytes=record.plan.chunk_size_bytes - 1)
    fetch = chunk_fetcher(c, a, replace(record, plan=plan))
    with pytest.raises(BadRequest, match=f"expected {plan.chunk_size_bytes}"):
        fetch(0, ChunkBuffers())
    assert fetched == []
    c.close()
