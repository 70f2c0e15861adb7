"""A peer that answers with the user's error classes: never believed as the user's.

gRPC errors carry the mydrive error class in trailing metadata. A dishonest peer can put
any name there: "WrongPassphrase" to a fetch would tell the user their passphrase is wrong,
"FileExists" to a store that their file is in the way. Here a real gRPC server on loopback
answers every Receiver and Sender call so, and the real GrpcTransport and engine are asked:
each forged user-side class comes back as MisbehavingPeer (exit 11), uploads and downloads
fail over from the forger, and what a peer may honestly say (PermissionDenied, PeerBusy)
still arrives as itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from mydrive import errors
from mydrive.engine.download import download_file
from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.node.peerdir import init_peer
from mydrive.node.serve import build_server
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.metrics import Metrics
from mydrive.transport.base import PeerAddress
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.signed_delete import sign_delete
from mydrive.transport.signed_fetch import sign_fetch
from mydrive.transport.status import ERROR_CLASS_KEY
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.strategies import SMALL_SETTINGS, fast_user, record_of

OWNER_PEER_ID = "0123456789abcdef"  # the uploading peer: not one of the peers that store

# Every class that speaks about the user's own side: a peer can't know any of them.
USER_SIDE = ["WrongPassphrase", "UnknownUser", "UserExists", "UnknownFile", "FileExists",
             "DecryptionFailed", "UntrustedMetadata", "NotLoggedIn", "PathTraversal",
             "MetadataUnavailable", "MetadataAuthFailed"]


class _Forger(pb_grpc.ReceiverServicer, pb_grpc.SenderServicer):
    """Every call ends with ``name`` as the error class (a code that fits it, too)."""

    def __init__(self) -> None:
        self.name = "WrongPassphrase"

    def _refuse(self, context: grpc.ServicerContext) -> None:
        context.set_trailing_metadata(((ERROR_CLASS_KEY, self.name),))
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{self.name}, says the forger")

    def StoreChunk(self, request_iterator, context):  # noqa: N802 (gRPC's names)
        next(request_iterator, None)
        self._refuse(context)

    def ChunkStatus(self, request, context):  # noqa: N802
        self._refuse(context)

    def DeleteChunks(self, request, context):  # noqa: N802
        self._refuse(context)

    def FetchChunk(self, request, context):  # noqa: N802
        self._refuse(context)


@pytest.fixture
def forger() -> Iterator[tuple[_Forger, PeerAddress]]:
    servicer = _Forger()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ReceiverServicer_to_server(servicer, server)
    pb_grpc.add_SenderServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, PeerAddress(peer_id="f0f0f0f0f0f0f0f0", receiver_address=f"127.0.0.1:{port}",
                                sender_address=f"127.0.0.1:{port}")
    server.stop(grace=None)


@pytest.fixture
def honest(tmp_path: Path) -> Iterator[list[PeerInfo]]:
    """Four real peers (receiver and sender each) on loopback."""
    servers, infos = [], []
    for i in range(4):
        peer = init_peer(tmp_path / f"peer-{i}")
        for kind in ("receiver", "sender"):
            server, _ = build_server(kind, peer, Metrics())
            server.start()
            servers.append(server)
        infos.append(PeerInfo(address=peer.config.address(), capacity_bytes=10**12))
    yield infos
    for server in servers:
        server.stop(grace=None)


def test_transport_never_believes_a_user_side_class(forger) -> None:
    servicer, address = forger
    keys = fast_user()
    transport = GrpcTransport(rpc_timeout_s=20)
    clock = SystemClock()
    chunk_id = os.urandom(32)
    calls = {
        "ChunkStatus": lambda: transport.chunk_status(address, chunk_id),
        "FetchChunk": lambda: list(transport.fetch(address, sign_fetch(
            keys.identity, chunk_id=chunk_id, target_peer_id=address.peer_id,
            segment_indices=[], clock=clock))),
        "DeleteChunks": lambda: transport.delete_chunks(address, sign_delete(
            keys.identity, chunk_ids=[chunk_id], target_peer_id=address.peer_id,
            clock=clock)),
    }
    try:
        for name in USER_SIDE:
            servicer.name = name
            forged = getattr(errors, name)
            for rpc, call in calls.items():
                with pytest.raises(errors.MydriveError) as caught:
                    call()
                assert type(caught.value) is errors.MisbehavingPeer, (name, rpc)
                assert not isinstance(caught.value, forged)
                assert caught.value.exit_code == 11
        # What a peer may honestly mean still arrives as itself.
        for name in ("PermissionDenied", "PeerBusy", "ChunkNotFound"):
            servicer.name = name
            with pytest.raises(getattr(errors, name)):
                calls["FetchChunk"]()
    finally:
        transport.close()


def test_upload_and_download_fail_over_from_the_forger(forger, honest, tmp_path: Path) -> None:
    servicer, address = forger
    keys = fast_user()
    transport = GrpcTransport(rpc_timeout_s=20)
    clock = SystemClock()
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(150_000))
    try:
        for name in ("WrongPassphrase", "FileExists"):
            servicer.name = name
            # The forger answers the capacity probe too, so it is left out or failed over.
            peers = [*honest, PeerInfo(address=address, capacity_bytes=10**15)]
            # The owner is none of the four, so they stay eligible: with three, losing the
            # forger left exactly six replica places for three chunks, and random placement
            # could corner itself (about one run in four).
            result = upload_file(src, keys=keys, owner_peer_id=OWNER_PEER_ID, peers=peers,
                                 settings=SMALL_SETTINGS, transport=transport, clock=clock)
            assert all(address.peer_id not in c.replicas for c in result.chunks)
            record = record_of(result, keys)
            # A replica address that leads to the forger: the download asks the other one.
            addresses = {i.peer_id: i.address for i in honest}
            addresses[record.chunks[0].replicas[0]] = address
            out = tmp_path / f"out-{name}.bin"
            download_file(record, out, keys=keys, peers=addresses, settings=SMALL_SETTINGS,
                          transport=transport, clock=clock)
            assert out.read_bytes() == src.read_bytes()
            # Every replica of a chunk a forger: the user hears MisbehavingPeer, not `name`.
            forged_everywhere = {p: address for p in addresses}
            with pytest.raises(errors.MisbehavingPeer):
                download_file(record, tmp_path / f"never-{name}.bin", keys=keys,
                              peers=forged_everywhere, settings=SMALL_SETTINGS,
                              transport=transport, clock=clock)
    finally:
        transport.close()
