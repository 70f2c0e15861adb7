"""Pinning the chunk id scheme of new uploads in a test, whatever the default.

Receivers commit either scheme (``ChunkHeader.whole_chunk_hash_needed`` tells the commit
whether to hash the whole chunk), so pinning the uploading side is enough.
"""

from __future__ import annotations

import pytest

from mydrive.engine import upload as upload_module
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG


def use_whole_chunk_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads name chunks the old way ("blake3"), whatever the default."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", WHOLE_CHUNK_ALG)


def use_derived_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """New uploads name chunks by derived ids ("blake3-derived"), whatever the default."""
    monkeypatch.setattr(upload_module, "DIGEST_ALG", DERIVED_ID_ALG)
