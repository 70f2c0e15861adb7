"""Round trips and tamper detection of the whole data path over the in-memory transport."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.errors import DataLoss
from mydrive.formats.filerecord import FileRecord
from mydrive.runtime.faults import NO_FAULTS
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, record_of

KEYS = fast_user()
CHUNK = SMALL_SETTINGS.chunk_size_bytes - 16  # plaintext per full chunk
SEG = SMALL_SETTINGS.segment_size_bytes
BOUNDARIES = sorted({0, 1, SEG - 1, SEG, SEG + 1, CHUNK - 1, CHUNK, CHUNK + 1,
                     2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK + SEG + 3})


def _upload(root: Path, data: bytes, peers: int = 5):
    net = mem_network(root / "peers", peers)
    src = root / "src"
    src.write_bytes(data)
    result = upload_file(src, keys=KEYS, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=NO_FAULTS)
    record = record_of(result, KEYS)
    return net, record


def _download(root: Path, net, record: FileRecord, name: str = "out") -> Path:
    out = root / name
    download_file(record, out, keys=KEYS, peers=net.addresses, settings=SMALL_SETTINGS,
                  transport=net.transport, clock=net.clock)
    return out


@pytest.mark.parametrize("size", BOUNDARIES)
def test_roundtrip_boundary_sizes(tmp_path: Path, size: int) -> None:
    """Files at 0, 1, segment and chunk boundaries ±1 and several chunks come back identical."""
    data = os.urandom(size)
    net, record = _upload(tmp_path, data)
    assert _download(tmp_path, net, record).read_bytes() == data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(min_value=0, max_value=6 * CHUNK), peers=st.integers(4, 9),
       seed=st.binary(min_size=4, max_size=4))
def test_roundtrip_any_size(size: int, peers: int, seed: bytes) -> None:
    """Any size on any network of 4..9 peers (R=2) comes back bit-identical."""
    data = (seed * (size // 4 + 1))[:size]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net, record = _upload(root, data, peers)
        assert _download(root, net, record).read_bytes() == data


@settings(max_examples=30, deadline=None)
@given(chunk_pick=st.integers(0, 10**6), offset_pick=st.integers(0, 10**9),
       bit=st.integers(0, 7), replicas_hit=st.sampled_from(["one", "all"]))
def test_roundtrip_any_stored_byte_change_is_detected(chunk_pick: int, offset_pick: int,
                                                     bit: int, replicas_hit: str) -> None:
    """Flipping any bit of any stored chunk is detected: the other replica serves it, or
    with every replica rotten the download fails with DataLoss and writes nothing."""
    data = os.urandom(3 * CHUNK + 100)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net, record = _upload(root, data)
        chunk = record.chunks[chunk_pick % len(record.chunks)]
        offset = offset_pick % chunk.size_bytes
        targets = chunk.replicas[:1] if replicas_hit == "one" else chunk.replicas
        for peer_id in targets:
            net.transport.peers[peer_id].store.rot_ciphertext(chunk.chunk_id, offset, 1 << bit)
        if replicas_hit == "one":
            assert _download(root, net, record).read_bytes() == data
        else:
            with pytest.raises(DataLoss):
                _download(root, net, record)
            assert not (root / "out").exists()
