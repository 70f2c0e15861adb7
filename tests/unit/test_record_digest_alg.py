"""A new file record's ``digest_alg`` is the scheme its chunks were named by: the record and
its chunks can't disagree, whichever scheme the uploading engine used."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.client import chunk_id_scheme
from mydrive.errors import BadRequest
from mydrive.formats.digest import DERIVED_ID_ALG, DIGEST_ALG, WHOLE_CHUNK_ALG
from tests.derived_ids import alice_puts_a_file, use_chunk_ids


@pytest.mark.parametrize("alg", [WHOLE_CHUNK_ALG, DERIVED_ID_ALG])
def test_put_records_the_scheme_its_engine_used(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                alg: str) -> None:
    """The engine alone is switched (the client's record follows it, not a constant of its
    own): the record names that scheme and the file reads back."""
    use_chunk_ids(monkeypatch, alg)
    c, a, src, record = alice_puts_a_file(tmp_path)
    assert len(record.chunks) >= 2
    assert record.digest_alg == alg
    assert all(ch.id_consistent(DERIVED_ID_ALG) == (alg == DERIVED_ID_ALG)
               for ch in record.chunks)
    out, _ = c.get(a, "/f.bin", out_dir=tmp_path / "out")
    assert out.read_bytes() == src.read_bytes()
    c.close()


def test_new_uploads_use_derived_ids() -> None:
    assert DIGEST_ALG == DERIVED_ID_ALG


def test_chunks_of_two_schemes_name_no_scheme(tmp_path: Path) -> None:
    c, _, _, record = alice_puts_a_file(tmp_path)
    assert chunk_id_scheme(record.chunks) == DERIVED_ID_ALG
    assert chunk_id_scheme(()) == DERIVED_ID_ALG
    odd = replace(record.chunks[1], chunk_id=bytes(32))
    with pytest.raises(BadRequest, match="different chunk id schemes"):
        chunk_id_scheme((record.chunks[0], odd, *record.chunks[2:]))
    assert chunk_id_scheme(tuple(replace(ch, chunk_id=bytes([ch.index]) * 32)
                                 for ch in record.chunks)) == WHOLE_CHUNK_ALG
    c.close()
