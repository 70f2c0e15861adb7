"""Any single bit flip in a file document's cryptographic fields is detected, precisely.

One upload per test run; each example flips one bit of one field in the stored document,
runs the owner's operation that reads that field, and restores the document.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mydrive.errors import DataLoss, DecryptionFailed
from tests.clientnet import client_net
from tests.strategies import random_file

PASS = "alice passphrase"


def _flip_hex(text: str, bit: int) -> str:
    raw = bytearray(bytes.fromhex(text))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return raw.hex()


# field -> (where in the doc, which operation notices, the precise error)
FIELDS = {
    "wrapped_file_key": ("get", DecryptionFailed),
    "encrypted_path": ("ls", DecryptionFailed),
    "path_tag": ("ls", DecryptionFailed),
    "file_id": ("get", DecryptionFailed),
    "chunk_id": ("get", DataLoss),
    "segment_digest": ("get", DataLoss),
}


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


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(FIELDS)), bit=st.integers(0, 8 * 64 - 1),
       chunk=st.integers(0, 100), segment=st.integers(0, 100))
def test_file_document_bit_flip_detected(uploaded, field: str, bit: int, chunk: int,
                                         segment: int) -> None:
    """A flipped bit in a wrapped file key, encrypted path, tag, file id or digest is refused."""
    net, c, keys, record, src, root = uploaded
    original = c.store.get(record.doc_id)
    doc = {**original, "chunks": [dict(ch) for ch in original["chunks"]]}
    ch = doc["chunks"][chunk % len(doc["chunks"])]
    if field == "chunk_id":
        ch["chunk_id"] = _flip_hex(ch["chunk_id"], bit)
    elif field == "segment_digest":
        digests = list(ch["segment_digests"])
        i = segment % len(digests)
        digests[i] = _flip_hex(digests[i], bit)
        ch["segment_digests"] = digests
    else:
        doc[field] = _flip_hex(doc[field], bit)
    operation, error = FIELDS[field]
    out = root / "out"
    c.store.put(record.doc_id, doc)
    try:
        with pytest.raises(error):
            if operation == "ls":
                c.list_files(keys)
            else:
                c.get(keys, "/f.bin", out_dir=out, overwrite=True)
        assert not (out / "f.bin").exists(), "tampered document produced plaintext"
    finally:
        c.store.put(record.doc_id, original)


def test_file_document_untampered_round_trip(uploaded) -> None:
    """Control: the untouched document lists and downloads bit-identical."""
    net, c, keys, record, src, root = uploaded
    assert [e.path for e in c.list_files(keys)] == ["/f.bin"]
    path, _ = c.get(keys, "/f.bin", out_dir=root / "control", overwrite=True)
    assert path.read_bytes() == src.read_bytes()
