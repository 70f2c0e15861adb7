"""Nothing readable leaves the owner: a unique marker in file contents and names is found on
no other peer's disk and in no metadata document, in any common encoding."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

from tests.clientnet import client_net
from tests.markerscan import find_in_bytes, marker_forms, scan_paths


def _marked_file(path: Path, marker: bytes, size: int) -> Path:
    filler = bytes(range(256)) * (size // 256 + 1)
    chunks = [filler[:997], marker, b" ", base64.b64encode(b"x" + marker), b" ",
              marker.hex().encode()]
    body = b"".join(chunks) * (size // 1200 + 1)
    path.write_bytes(body[:size] + marker)
    return path


def test_marker_not_on_other_peers_or_in_metadata(tmp_path: Path) -> None:
    """Marker (raw, base64 at 3 alignments, hex, UTF-16) absent from peers' disks and documents."""
    marker = f"MARKER-{uuid.uuid4().hex}".encode()
    forms = marker_forms(marker)
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    a = c.login("alice", "alice passphrase")
    src_dir = tmp_path / "owner-files"
    src_dir.mkdir()
    m = marker.decode()
    records = []
    for i, size in enumerate((100, 70_000, 300_000)):
        src = _marked_file(src_dir / f"{m}-{i}.txt", marker, size)
        records.append(c.put(a, src, f"/{m}/notes-{m}-{i}.txt"))
    c.put(a, _marked_file(src_dir / "f.txt", marker, 5_000), f"/{m}/")  # folder form
    assert len(c.list_files(a)) == 4
    c.inspect(a, f"/{m}/notes-{m}-1.txt")
    net.transport.down.add(records[0].chunks[0].replicas[0])  # so a tombstone stays
    c.remove(a, f"/{m}/notes-{m}-0.txt")
    net.transport.down.clear()

    # Every byte on every other peer's disk: chunk store, metadata file, config, logs.
    others = [d.root for d in net.dirs[1:]]
    assert scan_paths(others, forms) == []
    # The owner's peer directory too (its metadata is what gets replicated), except the
    # download directory, where the owner's own plaintext is meant to land.
    owner = net.dirs[0]
    assert scan_paths([owner.root], forms, skip=[owner.download_dir]) == []
    # Every metadata document, as stored JSON.
    docs = c.store.list_prefix("")
    assert {d.split(":")[0] for d, _ in docs} >= {"user", "peer", "file", "tomb"}
    for doc_id, doc in docs:
        assert find_in_bytes(json.dumps(doc).encode(), forms) == [], doc_id
        assert m not in doc_id

    # The scan can fail: the owner's own files and a download hold the marker in every form.
    hits = {name for _, name in scan_paths([src_dir], forms)}
    assert {"raw", "hex"} <= hits and any(h.startswith("b64@") for h in hits)
    c.get(a, f"/{m}/notes-{m}-1.txt")
    assert scan_paths([owner.download_dir], forms)


def test_marker_forms_find_every_alignment() -> None:
    """Each base64 alignment, hex and UTF-16 of a marker buried in other bytes is detected."""
    marker = b"MARKER-0123456789abcdef0123456789abcdef"
    forms = marker_forms(marker)
    for shift in range(3):
        blob = b"zz" + base64.b64encode(b"q" * shift + marker) + b"zz"
        assert f"b64@{shift}" in find_in_bytes(blob, forms)
        blob = base64.urlsafe_b64encode(b"\xff" * shift + b"\xfe" + marker)
        assert find_in_bytes(blob, forms)
    assert find_in_bytes(b"..." + marker.hex().upper().encode(), forms) == ["HEX"]
    assert find_in_bytes(marker.decode().encode("utf-16-le"), forms) == ["utf-16-le"]
    assert find_in_bytes(b"nothing to see", forms) == []
