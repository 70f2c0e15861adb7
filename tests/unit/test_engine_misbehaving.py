"""A dishonest replica peer: the engine fails over from it on upload and download, and when
no replica can stand in the user hears MisbehavingPeer (exit 11), never their own bad input."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from mydrive.crypto.keys import UserKeys
from mydrive.engine.download import download_file
from mydrive.engine.upload import UploadResult, upload_file
from mydrive.errors import (
    BadRequest,
    DataLoss,
    MisbehavingPeer,
    TooLarge,
    WrongPassphrase,
)
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.runtime.events import EventLog
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport.base import Held, PeerAddress, StoreSession
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import SignedFetch
from tests.strategies import (
    SMALL_SETTINGS,
    MemNetwork,
    fast_user,
    mem_network,
    random_file,
    record_of,
)


class _LyingSession:
    """A StoreChunk exchange with a receiver that answers ``lie``."""

    def __init__(self, inner: StoreSession, lie: str) -> None:
        self.inner, self.lie = inner, lie
        self.segment_count = 0

    def start(self, header: ChunkHeader) -> Held:
        self.segment_count = header.segment_count
        if self.lie == "held_out_of_range":
            held = self.inner.start(header)
            return Held(indices=held.indices | {header.segment_count + 7}, committed=False)
        if self.lie == "store_bad_request":
            raise BadRequest("your perfectly valid header is malformed, says the liar")
        if self.lie == "store_wrong_passphrase":
            raise WrongPassphrase("the passphrase is wrong, says the liar")
        return self.inner.start(header)

    def send_round(self, segments: Iterable[tuple[int, bytes]]) -> list[int]:
        if self.lie == "bad_out_of_range":
            list(segments)
            return [self.segment_count]
        if self.lie == "bad_negative":
            list(segments)
            return [-1]
        if self.lie == "bad_twice":
            list(segments)
            return [0, 0]
        return self.inner.send_round(segments)

    def close(self) -> None:
        self.inner.close()


class _Liar:
    """The in-memory transport, where the peers in ``liars`` break the protocol as ``lie``;
    with no liars named, the first peer the engine stores to becomes the liar."""

    def __init__(self, inner: MemoryTransport, liars: set[str], lie: str) -> None:
        self.inner, self.liars, self.lie = inner, liars, lie

    def open_store(self, peer: PeerAddress) -> StoreSession:
        if not self.liars:
            self.liars.add(peer.peer_id)
        session = self.inner.open_store(peer)
        return _LyingSession(session, self.lie) if peer.peer_id in self.liars else session

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        return self.inner.chunk_status(peer, chunk_id, timeout_s=timeout_s)

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        honest = self.inner.fetch(peer, signed)
        if peer.peer_id not in self.liars:
            yield from honest
            return
        segments = list(honest)
        if self.lie == "fetch_extra":
            yield len(segments) + 3, segments[0][1]
        elif self.lie == "fetch_twice":
            yield segments[0]
            yield segments[0]
        elif self.lie == "fetch_short":
            yield from segments[: len(segments) // 2]
        elif self.lie == "fetch_oversized":
            index, data = segments[0]
            yield index, data + bytes(64 * 1024)
        elif self.lie == "fetch_bad_request":
            raise BadRequest("your valid fetch is malformed, says the liar")
        elif self.lie == "fetch_wrong_passphrase":
            raise WrongPassphrase("the passphrase is wrong, says the liar")
        elif self.lie == "fetch_too_large":
            raise TooLarge("your 4 KiB segment is too large, says the liar")
        else:
            yield from segments

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        return self.inner.delete_chunks(peer, signed)


STORE_LIES = ["held_out_of_range", "bad_out_of_range", "bad_negative", "bad_twice",
              "store_bad_request", "store_wrong_passphrase"]
FETCH_LIES = ["fetch_extra", "fetch_twice", "fetch_short", "fetch_oversized",
              "fetch_bad_request", "fetch_wrong_passphrase", "fetch_too_large"]


@pytest.mark.parametrize("lie", STORE_LIES)
def test_engine_upload_fails_over_from_a_misbehaving_receiver(tmp_path: Path, lie: str) -> None:
    """A receiver that lies (indices out of range, twice, a nonsensical error class) is
    replaced like a dead one: the upload succeeds and the liar holds no chunk."""
    net = mem_network(tmp_path / "peers", 6)
    transport = _Liar(net.transport, set(), lie)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 250_000)
    events = EventLog()
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=transport, clock=net.clock,
                         events=events)
    (liar,) = transport.liars
    assert all(liar not in c.replicas and len(set(c.replicas)) == 2 for c in result.chunks)
    failovers = [dict(e.fields) for e in events.of_kind("upload.failover")]
    assert failovers and {f["peer"] for f in failovers} == {liar}
    # The first encounter names the lie; later chunks skip the peer as failed earlier.
    assert failovers[0]["error"] == "MisbehavingPeer"
    assert result.ledger.per_peer[liar].failures == len(failovers)
    out = tmp_path / "out.bin"
    download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("lie", ["bad_out_of_range", "store_bad_request",
                                 "store_wrong_passphrase"])
def test_engine_upload_without_stand_in_reports_misbehaving_peer(tmp_path: Path,
                                                                 lie: str) -> None:
    """Three eligible peers, R = 2, one liar: nobody can take its replicas, and the error is
    MisbehavingPeer (exit 11), not the user's bad input (2) or passphrase (3)."""
    net = mem_network(tmp_path / "peers", 4)
    transport = _Liar(net.transport, {"p1"}, lie)
    src = random_file(tmp_path / "src.bin", 100_000)
    with pytest.raises(MisbehavingPeer, match="p1") as caught:
        upload_file(src, keys=fast_user(), owner_peer_id="p0", peers=net.peers,
                    settings=SMALL_SETTINGS, transport=transport, clock=net.clock)
    assert caught.value.exit_code == 11
    assert not isinstance(caught.value, (BadRequest, WrongPassphrase))


def _uploaded(tmp_path: Path) -> tuple[MemNetwork, UploadResult, bytes, UserKeys]:
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 200_000)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    return net, result, src.read_bytes(), keys


@pytest.mark.parametrize("lie", FETCH_LIES)
def test_engine_download_fails_over_from_a_misbehaving_sender(tmp_path: Path, lie: str) -> None:
    """A sender that streams segments not asked for, twice, too few, oversized, or answers
    with a nonsensical error class is failed over: the file still downloads intact and the
    liar is recorded as misbehaving."""
    net, result, data, keys = _uploaded(tmp_path)
    liar = result.chunks[0].replicas[0]
    transport = _Liar(net.transport, {liar}, lie)
    events = EventLog()
    out = tmp_path / "out.bin"
    ledger = download_file(record_of(result, keys), out, keys=keys,
                           peers=net.addresses,
                           settings=SMALL_SETTINGS, transport=transport,
                           clock=net.clock, events=events)
    assert out.read_bytes() == data
    failed = [dict(e.fields) for e in events.of_kind("download.failed")]
    assert failed and {f["peer"] for f in failed} == {liar}
    assert {f["error"] for f in failed} == {"MisbehavingPeer"}
    assert ledger.per_peer[liar].failures == len(failed)


@pytest.mark.parametrize("lie", ["fetch_short", "fetch_bad_request", "fetch_wrong_passphrase"])
def test_engine_download_without_honest_replica_reports_misbehaving_peer(
        tmp_path: Path, lie: str) -> None:
    """Every replica of a chunk misbehaves: MisbehavingPeer (exit 11) naming them, nothing
    written, never the user's bad input or passphrase."""
    net, result, _, keys = _uploaded(tmp_path)
    transport = _Liar(net.transport, set(result.chunks[0].replicas), lie)
    out = tmp_path / "out.bin"
    with pytest.raises(MisbehavingPeer) as caught:
        download_file(record_of(result, keys), out, keys=keys,
                      peers=net.addresses,
                      settings=SMALL_SETTINGS, transport=transport,
                      clock=net.clock)
    assert caught.value.exit_code == 11
    assert all(p in str(caught.value) for p in result.chunks[0].replicas)
    assert not out.exists()


def test_engine_download_dead_replicas_still_data_loss(tmp_path: Path) -> None:
    """Replicas that are merely down are not misbehaving: DataLoss (exit 7) as before."""
    net, result, _, keys = _uploaded(tmp_path)
    net.transport.down.update(result.chunks[0].replicas)
    with pytest.raises(DataLoss) as caught:
        download_file(record_of(result, keys), tmp_path / "out.bin", keys=keys,
                      peers=net.addresses,
                      settings=SMALL_SETTINGS, transport=net.transport,
                      clock=net.clock)
    assert not isinstance(caught.value, MisbehavingPeer)
