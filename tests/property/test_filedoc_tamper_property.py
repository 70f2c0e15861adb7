"""Any change to any field of a file document is detected, and the changed document is never
used: the owner gets the file back from this peer's verified copy, or a precise refusal.

One upload per test run; each example changes one leaf value anywhere in the stored document
(names, tags, keys, ids, sizes, digests, replica lists, the signature itself), runs the owner's
operations and restores the document. Before documents were signed, a flipped replica list or
size went unnoticed and a swapped name served another file's content.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mydrive.errors import UntrustedMetadata
from mydrive.metadata.signed import verified_key
from tests.clientnet import client_net
from tests.strategies import random_file

PASS = "alice passphrase"


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k in sorted(value) for p in _leaves(value[k], path + (k,))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _leaves(item, path + (i,))]
    return [path]


def _changed(value: Any, bit: int) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ (1 << (bit % 20))
    if isinstance(value, str):
        try:
            raw = bytearray(bytes.fromhex(value))
        except ValueError:
            raw = None
        if raw:
            raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
            return raw.hex()
        return value + "x"
    return "x"


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tamper")
    net = client_net(root / "net")
    c = net.client()
    c.create_user("alice", PASS)
    keys = c.login("alice", PASS)
    src = random_file(root / "f.bin", 100_000)
    record = c.put(keys, src, "/f.bin")
    yield net, c, keys, record, src, root
    c.close()


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 10_000), bit=st.integers(0, 8 * 64 - 1))
def test_file_document_any_change_never_used(uploaded, which: int, bit: int) -> None:
    """Whatever leaf is changed: with the verified copy, ls and get give the original file;
    without it, ls skips the document and get refuses it (UntrustedMetadata), no plaintext."""
    net, c, keys, record, src, root = uploaded
    original = c.store.get(record.doc_id)
    kept = c.store.get_local(verified_key(record.doc_id))
    paths = _leaves(original)
    path = paths[which % len(paths)]
    doc = copy.deepcopy(original)
    _set(doc, path, _changed(_get(doc, path), bit))
    assert doc != original
    c.store.put(record.doc_id, doc)
    out = root / "out"
    try:
        assert [e.path for e in c.list_files(keys)] == ["/f.bin"]  # from the verified copy
        got, _ = c.get(keys, "/f.bin", out_dir=out, overwrite=True)
        assert got.read_bytes() == src.read_bytes(), f"changed {path} served other bytes"
        got.unlink()
        c.store.delete_local(verified_key(record.doc_id))
        assert c.list_files(keys) == []
        if path != ("path_tag",):  # a changed tag no longer names the path: UnknownFile
            with pytest.raises(UntrustedMetadata, match="is not used"):
                c.get(keys, "/f.bin", out_dir=out, overwrite=True)
        assert not (out / "f.bin").exists(), "tampered document produced plaintext"
    finally:
        c.store.put(record.doc_id, original)
        c.store.put_local(verified_key(record.doc_id), kept)


def test_file_document_untampered_round_trip(uploaded) -> None:
    """Control: the untouched document lists and downloads bit-identical."""
    net, c, keys, record, src, root = uploaded
    assert [e.path for e in c.list_files(keys)] == ["/f.bin"]
    path, _ = c.get(keys, "/f.bin", out_dir=root / "control", overwrite=True)
    assert path.read_bytes() == src.read_bytes()
