"""Whose stream is it: the receiver counts streams by the caller's certificate peer id when
nginx passes the certificate (TLS on), else by address. Real gRPC server on loopback; the
header is sent as this peer's nginx sends it ($ssl_client_escaped_cert)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from urllib.parse import quote

import grpc
import pytest

from mydrive.crypto.primitives import (
    CertificateBundle,
    CertificateTrust,
    issue_certificate,
    new_certificate_authority,
    tls_key_digest,
)
from mydrive.formats.peerdoc import peer_id_from_key_digest
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.metrics import Metrics
from mydrive.storage.caller import CLIENT_CERT_HEADER, CallerIdentity
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver_service import ReceiverServicer
from mydrive.storage.stream_limits import StreamLimits, StreamLimitSettings
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.store_streams import HeaderOnlyUpload

CA = new_certificate_authority("test network")
PEER_A = issue_certificate(CA, "a")
PEER_B = issue_certificate(CA, "b")


def _server(tmp_path: Path, identify: CallerIdentity) -> Iterator[grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    limits = StreamLimits(StreamLimitSettings(per_peer=1, total=4), SystemClock())
    servicer = ReceiverServicer(ChunkStore(tmp_path, capacity_bytes=10**9), Metrics(),
                                limits=limits, identify=identify)
    pb_grpc.add_ReceiverServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(grace=None)


@pytest.fixture
def behind_nginx(tmp_path: Path) -> Iterator[grpc.Channel]:
    yield from _server(tmp_path, CallerIdentity(CertificateTrust(CA.cert_pem)))


@pytest.fixture
def without_tls(tmp_path: Path) -> Iterator[grpc.Channel]:
    yield from _server(tmp_path, CallerIdentity())


def _one_by_one(channel: grpc.Channel, uploads: list[HeaderOnlyUpload],
                peers: list[CertificateBundle]) -> list[bool]:
    """Open a stream for each peer in turn (kept open in ``uploads``), its certificate in
    the header nginx sets; which were admitted."""
    admitted = []
    for peer in peers:
        header = ((CLIENT_CERT_HEADER, quote(peer.cert_pem.decode())),)
        uploads.append(HeaderOnlyUpload(channel, metadata=header))
        admitted.append(uploads[-1].admitted())
    return admitted


def test_streams_counted_by_certificate_peer_id(behind_nginx: grpc.Channel) -> None:
    """From one address: peer A's second stream is refused (one each here), peer B's first
    is admitted. A certificate the network CA did not issue is refused outright."""
    uploads: list[HeaderOnlyUpload] = []
    try:
        assert _one_by_one(behind_nginx, uploads, [PEER_A, PEER_A, PEER_B]) == [True, False, True]
        stranger = issue_certificate(new_certificate_authority("other"), "x")
        with pytest.raises(grpc.RpcError) as refused:
            _one_by_one(behind_nginx, uploads, [stranger])
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        for u in uploads:
            u.close()


def test_certificate_header_ignored_without_tls(without_tls: grpc.Channel) -> None:
    """Without TLS nobody checked the header: anyone could send any certificate in it. The
    caller is its address, so peer B's certificate does not get a second slot."""
    uploads: list[HeaderOnlyUpload] = []
    try:
        assert _one_by_one(without_tls, uploads, [PEER_A, PEER_B]) == [True, False]
    finally:
        for u in uploads:
            u.close()


def test_caller_name_is_the_certificate_key_peer_id() -> None:
    identity = CallerIdentity(CertificateTrust(CA.cert_pem))
    expected = peer_id_from_key_digest(tls_key_digest(PEER_A.key_pem))
    assert identity.of_certificate(quote(PEER_A.cert_pem.decode())) == f"peer:{expected}"
