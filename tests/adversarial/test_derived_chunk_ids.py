"""Dishonest peers against the derived chunk id scheme ("blake3-derived").

Under it nobody hashes a whole chunk: a receiver checks the id against the header's sizes and
segment digests (``ChunkHeader.validate``, before a byte arrives) and each segment against its
digest; a downloader checks the signed record's id against its digests once and each segment.
Each test is one lie that must be caught by exactly those checks: a sender's header whose
digests were swapped, sizes changed or count changed under an id they don't give, a segment
that doesn't match; a replica serving swapped segments or another chunk's bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.errors import BadRequest, DataLoss
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.chunkplan import segment_ranges
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG, derive_chunk_id, digest
from mydrive.storage.chunkstore import ChunkStore
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport.base import PeerAddress
from mydrive.transport.signed_fetch import SignedFetch
from tests.derived_ids import use_derived_ids
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file, record_of

SEGMENT = 4096


def _chunk(size: int = 5 * SEGMENT + 100) -> tuple[ChunkHeader, list[bytes]]:
    data = os.urandom(size)
    segments = [data[a:b] for a, b in segment_ranges(size, SEGMENT)]
    digests = tuple(digest(s) for s in segments)
    header = ChunkHeader(chunk_id=derive_chunk_id(size, SEGMENT, digests),
                         digest_alg=DERIVED_ID_ALG, owner_public_key=b"k" * 32,
                         chunk_size_bytes=size, segment_size_bytes=SEGMENT,
                         segment_digests=digests)
    return header, segments


def _lies(header: ChunkHeader) -> dict[str, ChunkHeader]:
    """Headers a dishonest sender could announce under the honest chunk's id."""
    d = header.segment_digests
    return {
        "digests swapped": replace(header, segment_digests=(d[1], d[0], *d[2:])),
        "a digest replaced": replace(header, segment_digests=(digest(b"x"), *d[1:])),
        "chunk size changed": replace(header, chunk_size_bytes=header.chunk_size_bytes - 1),
        "segment count changed": replace(header, chunk_size_bytes=header.chunk_size_bytes
                                         + SEGMENT, segment_digests=(*d, digest(b"more"))),
        "segment size changed": replace(header, segment_size_bytes=SEGMENT * 2,
                                        chunk_size_bytes=SEGMENT * 2 * (len(d) - 1) + 1),
        "another chunk's id": replace(header, chunk_id=_chunk()[0].chunk_id),
    }


@pytest.mark.parametrize("lie", list(_lies(_chunk()[0])))
def test_receiver_refuses_a_header_whose_id_its_digests_do_not_give(tmp_path: Path,
                                                                     lie: str) -> None:
    """Refused in ``begin``, before any byte: no reservation, no partial file."""
    honest, _ = _chunk()
    forged = _lies(honest)[lie]
    forged_count = max(1, -(-forged.chunk_size_bytes // forged.segment_size_bytes))
    assert forged.segment_count == forged_count  # only the id gives the lie away
    store = ChunkStore(tmp_path / "store", capacity_bytes=2**30)
    with pytest.raises(BadRequest, match="derived"):
        store.begin(forged)
    assert list((tmp_path / "store" / "incoming").iterdir()) == []
    assert not store.has(forged.chunk_id)
    # And the honest header of that id is still welcome afterwards.
    store.begin(honest).close()


def test_receiver_refuses_a_forged_header_over_the_wire(tmp_path: Path) -> None:
    honest, _ = _chunk()
    transport = MemoryTransport()
    peer = transport.add_peer("p1", tmp_path / "p1", clock=ManualClock())
    session = transport.open_store(peer)
    with pytest.raises(BadRequest, match="derived"):
        session.start(_lies(honest)["digests swapped"])


def test_receiver_keeps_only_segments_matching_their_digests(tmp_path: Path) -> None:
    """With no whole-chunk hash, the segment digests are the receiver's only check of the
    bytes: a segment that doesn't match is not kept, swapped segments neither."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path / "store", capacity_bytes=2**30)
    pending = store.begin(header)
    try:
        assert not pending.write_segment(0, segments[1])
        assert not pending.write_segment(1, segments[0])
        assert not pending.write_segment(2, bytes(len(segments[2])))
        assert pending.write_segment(3, segments[3])
        assert pending.missing() == [0, 1, 2, 4, 5]
    finally:
        pending.close()


def test_an_old_scheme_header_with_a_derived_id_fails_the_whole_chunk_check(
        tmp_path: Path) -> None:
    """A sender naming a derived id "blake3" (so that validate can't check it) gets the old
    check: the whole chunk's digest, which does not match, and nothing is committed."""
    header, segments = _chunk()
    disguised = replace(header, digest_alg=WHOLE_CHUNK_ALG)
    store = ChunkStore(tmp_path / "store", capacity_bytes=2**30)
    pending = store.begin(disguised)
    try:
        for i, data in enumerate(segments):
            assert pending.write_segment(i, data)
        with pytest.raises(DataLoss):
            pending.commit()
    finally:
        pending.close()
    assert not store.has(header.chunk_id)


class _DishonestReplica:
    """The in-memory network where the peers in ``liars`` answer fetches as ``act``."""

    def __init__(self, inner: MemoryTransport, liars: set[str], act: str) -> None:
        self.inner, self.liars, self.act = inner, liars, act

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        honest = list(self.inner.fetch(peer, signed))
        if peer.peer_id not in self.liars:
            yield from honest
            return
        if self.act == "swap":  # equal-sized segments 0 and 1 trade places
            data = dict(honest)
            swap = {0: 1, 1: 0} if {0, 1} <= data.keys() else {}
            yield from ((i, data[swap.get(i, i)]) for i in data)
        elif self.act == "zeroes":
            yield from ((i, bytes(len(d))) for i, d in honest)


def _derived_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    use_derived_ids(monkeypatch)
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 200_000)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    record = replace(record_of(result, keys), digest_alg=DERIVED_ID_ALG)
    return net, record, src.read_bytes(), keys


@pytest.mark.parametrize("act", ["swap", "zeroes"])
def test_download_fails_over_from_a_replica_serving_wrong_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, act: str) -> None:
    net, record, data, keys = _derived_file(tmp_path, monkeypatch)
    liar = record.chunks[0].replicas[0]
    transport = _DishonestReplica(net.transport, {liar}, act)
    out = tmp_path / "out.bin"
    ledger = download_file(record, out, keys=keys, peers=net.addresses,
                           settings=SMALL_SETTINGS, transport=transport,  # type: ignore[arg-type]
                           clock=net.clock)
    assert out.read_bytes() == data
    bad = {(c, p) for c, _, p in ledger.bad_fetched}
    assert (0, liar) in bad and {p for _, p in bad} == {liar}


@pytest.mark.parametrize("act", ["swap", "zeroes"])
def test_download_with_every_replica_lying_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, act: str) -> None:
    net, record, _, keys = _derived_file(tmp_path, monkeypatch)
    transport = _DishonestReplica(net.transport, set(record.chunks[0].replicas), act)
    out = tmp_path / "out.bin"
    with pytest.raises(DataLoss):
        download_file(record, out, keys=keys, peers=net.addresses, settings=SMALL_SETTINGS,
                      transport=transport, clock=net.clock)  # type: ignore[arg-type]
    assert not out.exists()


def test_a_record_naming_another_chunks_id_is_refused_before_fetching(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record whose chunk 0 carries chunk 1's id (a replica holding chunk 1 would serve
    it): the id does not match chunk 0's digests, so nothing is fetched or written."""
    net, record, _, keys = _derived_file(tmp_path, monkeypatch)
    swapped = replace(record.chunks[0], chunk_id=record.chunks[1].chunk_id,
                      replicas=record.chunks[1].replicas)
    bad = replace(record, chunks=(swapped, *record.chunks[1:]))
    out = tmp_path / "out.bin"
    with pytest.raises(DataLoss, match="does not match its segment digests"):
        download_file(bad, out, keys=keys, peers=net.addresses, settings=SMALL_SETTINGS,
                      transport=net.transport, clock=net.clock)
    assert not out.exists()
