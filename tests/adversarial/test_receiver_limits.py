"""Issue 11: a dishonest uploader can't stall a receiver or fill it with unfinished uploads.

Each test is one attack on the real receiver (its gRPC server on loopback, or its chunk
store): many idle streams from one peer, a stream that goes idle, partial uploads beyond
capacity, partial uploads left behind forever (docs/chunk-store.md, "Limits").
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest

from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.errors import PeerBusy, PeerUnavailable, TooLarge
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.peerdoc import tls_name
from mydrive.node import cluster
from mydrive.node.peerdir import CONFIG_NAME, PeerDir, init_peer
from mydrive.node.pki import tls_files
from mydrive.node.serve import build_server
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.events import EventLog
from mydrive.runtime.metrics import Metrics
from mydrive.storage.caller import CLIENT_CERT_HEADER
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import ReceiverSession
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.store_streams import HeaderOnlyUpload
from tests.strategies import SMALL_SETTINGS, fast_user, random_chunk, random_file
from tests.tcpgate import TcpGate

CHUNK = 16 * 4096  # 16 segments of 4 KiB


@contextlib.contextmanager
def _receiver(tmp_path: Path, **config: object) -> Iterator[PeerDir]:
    """A receiver service on loopback with these peer.json settings."""
    root = init_peer(tmp_path / "receiver").root
    path = root / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    peer = PeerDir(root)
    server, _ = build_server("receiver", peer, Metrics())
    server.start()
    try:
        yield peer
    finally:
        server.stop(grace=None)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[PeerDir]:
    with _receiver(tmp_path) as peer:
        yield peer


class IdleStreams:
    """``count`` StoreChunk calls from one caller that send nothing until closed."""

    def __init__(self, address: str, count: int) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stop = threading.Event()
        stub = pb_grpc.ReceiverStub(self._channel)
        self.calls = [stub.StoreChunk(self._nothing(), timeout=60) for _ in range(count)]

    def _nothing(self) -> Iterator[pb.StoreMsg]:
        self._stop.wait()
        return
        yield  # a generator that yields nothing

    def refused(self, expected: int, within_s: float = 10.0) -> list[grpc.StatusCode]:
        """The codes of the calls that ended, once ``expected`` did (or time ran out)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and sum(c.done() for c in self.calls) < expected:
            time.sleep(0.02)
        return [c.code() for c in self.calls if c.done()]

    def close(self) -> None:
        self._stop.set()
        for call in self.calls:
            call.cancel()
        self._channel.close()


def _store(transport: GrpcTransport, peer: PeerDir, header: ChunkHeader,
           segments: list[bytes]) -> None:
    session = transport.open_store(peer.config.address())
    try:
        held = session.start(header)
        assert session.send_round((i, s) for i, s in enumerate(segments)
                                  if i not in held.indices) == []
    finally:
        session.close()


def test_idle_streams_of_one_peer_do_not_stall_another(receiver: PeerDir) -> None:
    """Attack: a peer opens as many idle StoreChunk streams as the receiver has worker
    threads (32). Before the limits every worker waited on it and another peer's upload
    timed out; now the attacker gets its 8 (per-peer limit), every further stream is
    refused at once with PeerBusy (RESOURCE_EXHAUSTED), and another peer's upload
    completes promptly."""
    limits = receiver.config.stream_limits()
    gate = TcpGate(receiver.config.receiver_port, source="127.0.0.2")  # the attacker's address
    attacker = IdleStreams(f"127.0.0.1:{gate.port}", 32)
    transport = GrpcTransport(rpc_timeout_s=10)
    try:
        refused = attacker.refused(32 - limits.per_peer)
        header, segments = random_chunk(CHUNK)
        started = time.monotonic()
        _store(transport, receiver, header, segments)  # another peer: 127.0.0.1
        elapsed = time.monotonic() - started
        assert ChunkStore(receiver.store_dir, capacity_bytes=1 << 40).has(header.chunk_id)
        assert elapsed < 5.0, f"another peer's upload took {elapsed:.1f} s"
        assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (32 - limits.per_peer)
        busy = [c for c in attacker.calls if c.done()][0]
        assert dict(busy.trailing_metadata() or ())["mydrive-error"] == PeerBusy.__name__
    finally:
        attacker.close()
        transport.close()
        gate.stop()


def test_many_addresses_can_not_take_every_worker(receiver: PeerDir) -> None:
    """Attack: idle streams from four addresses (a peer with several identities). They
    get the total limit (24, below the 32 workers) and no more: another peer's upload is
    refused at once with PeerBusy, so its uploader fails over, and ChunkStatus (what
    uploaders probe with) still answers. Before, both waited until they timed out."""
    limits = receiver.config.stream_limits()
    gates = [TcpGate(receiver.config.receiver_port, source=f"127.0.0.{i}") for i in (2, 3, 4, 5)]
    attackers = [IdleStreams(f"127.0.0.1:{g.port}", limits.per_peer) for g in gates]
    transport = GrpcTransport(rpc_timeout_s=5)
    try:
        refusals = 4 * limits.per_peer - limits.total
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(
            c.done() for a in attackers for c in a.calls) < refusals:
            time.sleep(0.02)
        header, segments = random_chunk(CHUNK)
        started = time.monotonic()
        with pytest.raises(PeerBusy, match="uploads"):
            _store(transport, receiver, header, segments)
        transport.chunk_status(receiver.config.address(), header.chunk_id, timeout_s=5)
        assert time.monotonic() - started < 4.0
    finally:
        for a in attackers:
            a.close()
        transport.close()
        for g in gates:
            g.stop()


def test_idle_stream_is_ended_and_its_partial_resumes(tmp_path: Path) -> None:
    """Attack: a stream sends a header and some segments, then nothing, holding its slot
    (here the only one this peer gets) forever. It is ended after the idle timeout; the
    peer's next stream is admitted and resumes from the segments the idle one sent."""
    with _receiver(tmp_path, max_streams_per_peer=1, stream_idle_timeout_s=0.3) as peer:
        transport = GrpcTransport(rpc_timeout_s=10)
        header, segments = random_chunk(CHUNK)
        idle = transport.open_store(peer.config.address())
        try:
            idle.start(header)
            assert idle.send_round(enumerate(segments[:5])) == list(range(5, 16))
            started = time.monotonic()
            second = None
            while second is None:  # the slot comes free once the idle stream is ended
                candidate = transport.open_store(peer.config.address())
                try:
                    held = candidate.start(header)
                    second = candidate
                except PeerBusy:
                    candidate.close()
                    assert time.monotonic() - started < 5.0, "the idle stream was never ended"
                    time.sleep(0.05)
            assert time.monotonic() - started >= 0.25  # not before the timeout (0.3 s)
            assert held.indices == frozenset(range(5))  # its partial was kept for the resume
            assert second.send_round((i, segments[i]) for i in range(5, 16)) == []
            second.close()
            with pytest.raises(PeerUnavailable):
                idle.send_round([])
        finally:
            idle.close()
            transport.close()


def test_uploader_fails_over_from_a_busy_peer(tmp_path: Path) -> None:
    """A receiver whose upload slots are all taken answers PeerBusy (RESOURCE_EXHAUSTED);
    the owner's uploader treats that as a peer failure and places those replicas on the
    other peers: the upload completes and the busy peer holds none of its chunks."""
    with contextlib.ExitStack() as stack:
        peers = [stack.enter_context(_receiver(tmp_path / f"p{i}")) for i in range(3)]
        busy = stack.enter_context(_receiver(tmp_path / "busy", max_streams_per_peer=1,
                                             max_streams_total=1))
        attacker = IdleStreams(busy.config.receiver_address, 2)
        stack.callback(attacker.close)
        # One of the two is refused: the other holds the busy peer's only slot.
        assert attacker.refused(1) == [grpc.StatusCode.RESOURCE_EXHAUSTED]
        transport = GrpcTransport(rpc_timeout_s=10)
        stack.callback(transport.close)
        src = random_file(tmp_path / "src", 20 * SMALL_SETTINGS.chunk_size_bytes - 100)
        events = EventLog()
        infos = [PeerInfo(address=p.config.address(), capacity_bytes=10**12)
                 for p in [*peers, busy]]
        result = upload_file(src, keys=fast_user(), owner_peer_id="owner", peers=infos,
                             settings=SMALL_SETTINGS, transport=transport, clock=SystemClock(),
                             events=events)
    failovers = [dict(e.fields) for e in events.of_kind("upload.failover")]
    # The first is PeerBusy; the uploader then skips that peer ("failed earlier").
    assert failovers and failovers[0]["error"] == PeerBusy.__name__
    assert {f["error"] for f in failovers} <= {PeerBusy.__name__, PeerUnavailable.__name__}
    assert {f["peer"] for f in failovers} == {busy.config.peer_id}
    assert all(busy.config.peer_id not in c.replicas for c in result.chunks)


def test_partial_uploads_count_against_capacity(tmp_path: Path) -> None:
    """Attack: start uploads and never finish them; each leaves a .part of its declared
    size. Before, they did not count and filled the disk past capacity; now they are
    reserved, and one beyond capacity is refused as "peer is full", even after a restart."""
    store = ChunkStore(tmp_path, capacity_bytes=2 * CHUNK + CHUNK // 2)
    for _ in range(2):
        header, segments = random_chunk(CHUNK)
        session = ReceiverSession(store, Metrics())
        session.start(header)
        session.segment(0, segments[0])
        session.close()  # the attacker goes away
    third, _ = random_chunk(CHUNK)
    with pytest.raises(TooLarge, match="peer is full"):
        store.begin(third)
    with pytest.raises(TooLarge, match="peer is full"):
        ChunkStore(tmp_path, capacity_bytes=2 * CHUNK + CHUNK // 2).begin(third)


def test_stale_partials_are_removed_fresh_ones_resume(tmp_path: Path) -> None:
    """Attack: partial uploads left behind forever. One untouched for longer than the
    partial TTL (an hour) is removed when the store next starts an upload (and at the
    receiver's start); a fresh one is kept, and its upload resumes where it stopped."""
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    (stale, stale_segments), (fresh, fresh_segments) = random_chunk(CHUNK), random_chunk(CHUNK)
    for header, segments in ((stale, stale_segments), (fresh, fresh_segments)):
        session = ReceiverSession(store, Metrics())
        session.start(header)
        for i in range(4):
            session.segment(i, segments[i])
        session.close()
    two_hours_ago = time.time() - 2 * 3600
    os.utime(tmp_path / "incoming" / f"{stale.chunk_id.hex()}.part",
             (two_hours_ago, two_hours_ago))
    restarted = ChunkStore(tmp_path, capacity_bytes=10**9)
    other, _ = random_chunk(CHUNK)
    restarted.begin(other).close()
    left = sorted(p.name for p in (tmp_path / "incoming").iterdir())
    assert not [n for n in left if n.startswith(stale.chunk_id.hex())], left
    session = ReceiverSession(restarted, Metrics())
    assert session.start(fresh).indices == frozenset(range(4))  # resumes
    for i in range(4, 16):
        session.segment(i, fresh_segments[i])
    assert session.end_round() == []
    session.close()
    assert restarted.has(fresh.chunk_id)


# ---- Real nginx (integration) -----------------------------------------------------------

def _tls_channel(target: PeerDir, client: PeerDir) -> grpc.Channel:
    """A channel to ``target``'s nginx presenting ``client``'s certificate."""
    ca_pem, key_pem, cert_pem = tls_files(client.tls_dir).read()
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem,
                                               certificate_chain=cert_pem)
    return grpc.secure_channel(
        target.config.nginx_address, credentials,
        options=[("grpc.ssl_target_name_override", tls_name(target.config.peer_id))])


@pytest.mark.integration
def test_nginx_names_the_caller_by_its_certificate(tmp_path: Path) -> None:
    """Through the real nginx, with one stream per peer: peer 1's second stream is refused
    even when it sends peer 2's certificate in the receiver's header (nginx replaces the
    header with the certificate peer 1 presented); peer 2, from the same address, still
    gets its own stream."""
    home = tmp_path / "net"
    receiver, peer1, peer2 = cluster.create(home, 3, tls=True)
    path = receiver.root / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), "max_streams_per_peer": 1}))
    uploads: list[HeaderOnlyUpload] = []
    channels = {p.config.peer_id: _tls_channel(receiver, p) for p in (peer1, peer2)}
    try:
        cluster.start(home, only=[receiver.config.name], kinds=("receiver", "nginx"))
        forged = ((CLIENT_CERT_HEADER, quote(tls_files(peer2.tls_dir).cert.read_text())),)
        admitted = []
        for client, headers in ((peer1, ()), (peer1, forged), (peer2, ())):
            uploads.append(HeaderOnlyUpload(channels[client.config.peer_id], metadata=headers))
            admitted.append(uploads[-1].admitted())
        assert admitted == [True, False, True]
    finally:
        for upload in uploads:
            upload.close()
        for channel in channels.values():
            channel.close()
        cluster.stop(home, hard=True)
