"""The real gRPC services in this process on loopback: round trip and hostile input."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mydrive.engine.download import download_file
from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.errors import PermissionDenied
from mydrive.node.peerdir import PeerDir, init_peer
from mydrive.node.serve import build_server
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.faults import NO_FAULTS
from mydrive.runtime.metrics import Metrics
from mydrive.testing.clock import ManualClock
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.signed_fetch import sign_fetch
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.strategies import SMALL_SETTINGS, fast_user, record_of


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[PeerDir]]:
    dirs = [init_peer(tmp_path / f"peer-{i}") for i in range(4)]
    servers = []
    for peer in dirs:
        for kind in ("receiver", "sender"):
            server, _ = build_server(kind, peer, Metrics())
            server.start()
            servers.append(server)
    yield dirs
    for server in servers:
        server.stop(grace=None)


def test_grpc_round_trip_and_owner_only(peers: list[PeerDir], tmp_path: Path) -> None:
    """Upload and download over real gRPC; a fetch signed by another user is refused."""
    keys, mallory = fast_user("alice"), fast_user("mallory")
    transport = GrpcTransport(rpc_timeout_s=30)
    infos = [PeerInfo(address=p.config.address(), capacity_bytes=10**12) for p in peers]
    src = tmp_path / "src"
    src.write_bytes(os.urandom(200_000))
    clock = SystemClock()
    result = upload_file(src, keys=keys, owner_peer_id=peers[0].config.peer_id, peers=infos,
                         settings=SMALL_SETTINGS, transport=transport, clock=clock,
                         faults=NO_FAULTS)
    record = record_of(result, keys)
    out = tmp_path / "out"
    download_file(record, out, keys=keys, peers={i.peer_id: i.address for i in infos},
                  settings=SMALL_SETTINGS, transport=transport, clock=clock)
    assert out.read_bytes() == src.read_bytes()

    chunk = result.chunks[0]
    holder = next(i.address for i in infos if i.peer_id == chunk.replicas[0])
    stolen = sign_fetch(mallory.identity, chunk_id=chunk.chunk_id,
                        target_peer_id=holder.peer_id, segment_indices=[], clock=clock)
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        list(transport.fetch(holder, stolen))
    other = next(i.address for i in infos if i.peer_id == chunk.replicas[1])
    misdirected = sign_fetch(keys.identity, chunk_id=chunk.chunk_id,
                             target_peer_id=other.peer_id, segment_indices=[], clock=clock)
    with pytest.raises(PermissionDenied, match="another peer"):
        list(transport.fetch(holder, misdirected))
    fresh = sign_fetch(keys.identity, chunk_id=chunk.chunk_id, target_peer_id=holder.peer_id,
                       segment_indices=[0], clock=clock)
    assert len(list(transport.fetch(holder, fresh))) == 1
    with pytest.raises(PermissionDenied, match="replayed"):
        list(transport.fetch(holder, fresh))
    old = ManualClock(start_ms=clock.now_ms() - 10 * 60 * 1000)
    stale = sign_fetch(keys.identity, chunk_id=chunk.chunk_id, target_peer_id=holder.peer_id,
                       segment_indices=[0], clock=old)
    with pytest.raises(PermissionDenied, match="stale"):
        list(transport.fetch(holder, stale))
    transport.close()


def _receiver(peer: PeerDir) -> pb_grpc.ReceiverStub:
    channel = grpc.insecure_channel(peer.config.receiver_address,
                                    options=[("grpc.max_send_message_length", 64 * 2**20)])
    return pb_grpc.ReceiverStub(channel)


def test_grpc_oversize_message_refused(peers: list[PeerDir]) -> None:
    """A message larger than a segment plus framing is refused with RESOURCE_EXHAUSTED."""
    huge = pb.StoreMsg(segment=pb.Segment(index=0, data=b"x" * (6 * 2**20)))
    with pytest.raises(grpc.RpcError) as err:
        list(_receiver(peers[1]).StoreChunk(iter([huge]), timeout=10))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_malformed_messages_refused(peers: list[PeerDir]) -> None:
    """A stream not starting with a header, a bad header, or garbage fetch: INVALID_ARGUMENT."""
    stub = _receiver(peers[1])
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StoreChunk(iter([pb.StoreMsg(round_end=pb.RoundEnd())]), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be the chunk header" in (err.value.details() or "")
    bad_header = pb.ChunkHeader(chunk_id=b"short", digest_alg="blake3",
                                owner_public_key=b"k" * 32, chunk_size_bytes=10,
                                segment_size_bytes=4096, segment_digests=[b"d" * 32])
    with pytest.raises(grpc.RpcError) as err:
        list(stub.StoreChunk(iter([pb.StoreMsg(header=bad_header)]), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    sender = pb_grpc.SenderStub(grpc.insecure_channel(peers[1].config.sender_address))
    with pytest.raises(grpc.RpcError) as err:
        list(sender.FetchChunk(pb.SignedFetch(request=b"\xff\xff garbage", signature=b""),
                               timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list((peers[1].store_dir / "chunks").rglob("*.chunk")) == []
