"""Certificate revocation (issue 11): a peer the network CA revoked is cut off.

The revoked member keeps everything it had: its key, its certificate, its peer directory
(with the list from before its revocation), its address in everyone's metadata. The CA runs
``pki revoke``; a peer honours the new list once it is installed (``pki install-crl``).
Then: its certificate is refused by the other peers' nginx; the owner's gRPC client never
uploads to it nor downloads from it, failing over to the other replicas; readers of ``peer:``
documents skip it. A list not signed by the CA is never used, and the revoked peer can't
make a peer go back to a list from before its revocation.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.engine.durability import DurabilitySettings
from mydrive.errors import BadRequest, PeerUnavailable, PermissionDenied
from mydrive.formats.peerdoc import PeerDocument
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.sqlite import SqliteStore
from mydrive.node import cluster
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import PeerDir, init_peer, peer_document
from mydrive.node.pki import (
    init_network,
    load_network,
    network_trust,
    revocations,
    signer,
    tls_files,
)
from mydrive.node.revocation import (
    CRL_DOC_ID,
    CRL_NAME,
    adopt_published_crl,
    crl_document,
    install_crl,
    publish_crl,
    revoke,
)
from mydrive.node.serve import build_server
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.base import PeerAddress
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.signed_fetch import sign_fetch
from tests.clientnet import SMALL_CHUNKS
from tests.couchfix import PouchServer
from tests.strategies import FAST_KDF, fast_user, random_file

PEERS = 6  # the owner and five: with one revoked, four remain for two replicas per chunk


@dataclass
class Served:
    peers: list[PeerDir]
    metrics: dict[str, Metrics]  # peer id -> its sender's metrics
    servers: list[grpc.Server]

    def chunks_on(self, peer: PeerDir) -> int:
        return sum(1 for _ in ChunkStore(peer.store_dir, capacity_bytes=1).chunk_ids())

    def fetches_from(self, peer: PeerDir) -> float:
        return self.metrics[peer.config.peer_id].value("sender_fetches_total")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """PEERS peers of one network, each a real receiver and sender (the product's own
    servers) over mutual TLS with the peer's own certificate, as nginx would present it;
    every peer document (signed by its peer) names those ports and is known to peer 0."""
    init_network(tmp_path / "pki")
    peers = [init_peer(tmp_path / f"peer-{i}", name=f"peer-{i}", network_dir=tmp_path / "pki",
                       **SMALL_CHUNKS) for i in range(PEERS)]
    servers: list[grpc.Server] = []
    metrics: dict[str, Metrics] = {}
    try:
        with closing(peers[0].open_metadata()) as store:
            for peer in peers:
                ca_pem, key_pem, cert_pem = tls_files(peer.tls_dir).read()
                credentials = grpc.ssl_server_credentials(
                    [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)
                addresses = {}
                for kind in ("receiver", "sender"):
                    peer_metrics = Metrics()
                    server, _ = build_server(kind, peer, peer_metrics)
                    port = server.add_secure_port("127.0.0.1:0", credentials)
                    server.start()
                    servers.append(server)
                    addresses[kind] = f"127.0.0.1:{port}"
                    if kind == "sender":
                        metrics[peer.config.peer_id] = peer_metrics
                doc = replace(PeerDocument.from_doc(peer_document(peer)),
                              receiver_address=addresses["receiver"],
                              sender_address=addresses["sender"]).signed(signer(peer.tls_dir))
                store.put(doc.doc_id, doc.to_doc())
        yield Served(peers=peers, metrics=metrics, servers=servers)
    finally:
        for server in servers:
            server.stop(grace=None)


def _revoke(root: Path, target: PeerDir, *into: PeerDir) -> bytes:
    """``pki revoke`` at the CA, then ``pki install-crl`` on each peer of ``into``."""
    network = root / "pki"
    revoke(network, load_network(network), target.config.peer_id, note="test")
    crl = (network / CRL_NAME).read_bytes()
    for peer in into:
        install_crl(peer.tls_dir, crl)
    return crl


def _owner(served: Served) -> tuple[PeerClient, object]:
    client = open_client(served.peers[0].root, kdf_costs=FAST_KDF)
    client.create_user("alice", "alice passphrase")
    return client, client.login("alice", "alice passphrase")


def test_revoked_peer_is_skipped_by_peer_readers(served: Served, tmp_path: Path) -> None:
    """Once the owner's peer has the list, the revoked peer is no longer a peer there:
    ``known_peers`` (placement, fetch addresses, replication) leaves it out, without a
    restart of the client. Before, it was one."""
    owner, revoked = served.peers[0], served.peers[3]
    client, _ = _owner(served)
    try:
        assert revoked.config.peer_id in {p.peer_id for p in client.known_peers()}
        _revoke(tmp_path, revoked, owner)
        known = {p.peer_id for p in client.known_peers()}
        assert revoked.config.peer_id not in known
        assert known == {p.config.peer_id for p in served.peers} - {revoked.config.peer_id}
    finally:
        client.close()


def test_grpc_client_neither_uploads_to_nor_downloads_from_revoked_peer(
        served: Served, tmp_path: Path) -> None:
    """The gRPC client itself refuses a revoked peer, whatever list of peers it is handed
    (here the revoked one's document still counts, as on a reader that has not looked
    again): a download that lists it as a chunk's first replica fetches from the next one
    instead, an upload that places chunks on it stores them elsewhere; neither sends it a
    byte; ``check --repair --dead-after-s 0`` moves its replicas to other peers. The
    control: before the revocation it served fetches, and a transport without the list
    stores chunks on it."""
    owner = served.peers[0]
    client, keys = _owner(served)
    try:
        record = client.put(keys, random_file(tmp_path / "f.bin", 600_000), "/f.bin")
        firsts = [c.replicas[0] for c in record.chunks]
        revoked_id = max(set(firsts), key=firsts.count)  # the first replica of most chunks
        revoked = next(p for p in served.peers if p.config.peer_id == revoked_id)
        client.get(keys, "/f.bin", out_dir=tmp_path / "before")
        assert served.fetches_from(revoked) > 0  # the control: it is asked first

        _revoke(tmp_path, revoked, owner)
        # As a reader that still counts the revoked peer's document: only the transport's
        # own check stands between the engine and that peer.
        unlisted = crypto.CertificateTrust(tls_files(owner.tls_dir).ca_cert.read_bytes())
        client.peer_trust = unlisted
        assert revoked_id in {p.peer_id for p in client.known_peers()}
        fetched = served.fetches_from(revoked)
        path, _ = client.get(keys, "/f.bin", out_dir=tmp_path / "after")
        assert path.read_bytes() == (tmp_path / "f.bin").read_bytes()
        assert served.fetches_from(revoked) == fetched

        held = served.chunks_on(revoked)
        stored = client.put(keys, random_file(tmp_path / "g.bin", 600_000), "/g.bin")
        assert all(revoked_id not in c.replicas for c in stored.chunks)
        assert served.chunks_on(revoked) == held

        # With the list in force for readers too, the revoked peer's replicas are
        # unreachable, and a repair that treats unreachable as dead at once (check --repair
        # --dead-after-s 0) moves them to other peers.
        client.peer_trust = network_trust(owner.tls_dir)
        client.check(keys, "/f.bin", repair=True,
                     settings=DurabilitySettings(dead_after_s=0, min_failed_probes=1))
        repaired = client.find(keys, "/f.bin")
        assert all(revoked_id not in c.replicas and len(c.replicas) == 2
                   for c in repaired.chunks)
        assert served.chunks_on(revoked) == held

        # The control: the same client with a transport that does not know the list does
        # put chunks on the revoked peer (it is one of the five it spreads them over).
        client.peer_trust = unlisted
        client.transport.close()
        client.transport = GrpcTransport(rpc_timeout_s=10, tls=tls_files(owner.tls_dir).read())
        unchecked = client.put(keys, random_file(tmp_path / "h.bin", 600_000), "/h.bin")
        assert any(revoked_id in c.replicas for c in unchecked.chunks)
    finally:
        client.close()


def test_grpc_calls_to_revoked_peer_fail_as_unavailable(served: Served, tmp_path: Path) -> None:
    """Probes, stores and fetches to a revoked peer are PeerUnavailable (what the engine
    fails over on) before anything is sent; the peer answered the same probe before."""
    owner, revoked = served.peers[0], served.peers[2]
    with closing(owner.open_metadata()) as store:
        doc = PeerDocument.from_doc(store.get(f"peer:{revoked.config.peer_id}"))
    target = PeerAddress(doc.peer_id, doc.receiver_address, doc.sender_address)
    transport = GrpcTransport(rpc_timeout_s=10, tls=tls_files(owner.tls_dir).read(),
                              revoked=revocations(owner.tls_dir).peer_revoked)
    try:
        assert not transport.chunk_status(target, bytes(32), timeout_s=10).committed
        _revoke(tmp_path, revoked, owner)
        with pytest.raises(PeerUnavailable, match="revoked"):
            transport.chunk_status(target, bytes(32), timeout_s=10)
        with pytest.raises(PeerUnavailable, match="revoked"):
            transport.open_store(target)
        signed = sign_fetch(fast_user().identity, chunk_id=bytes(32),
                            target_peer_id=doc.peer_id, segment_indices=[],
                            clock=SystemClock())
        with pytest.raises(PeerUnavailable, match="revoked"):
            list(transport.fetch(target, signed))
    finally:
        transport.close()


def _entry_for(peer: PeerDir) -> crypto.Revoked:
    ca_cert = tls_files(peer.tls_dir).ca_cert.read_bytes()
    serial, digest = crypto.certificate_identity(tls_files(peer.tls_dir).cert.read_bytes(),
                                                 ca_cert)
    return crypto.Revoked(serial=serial, key_digest=digest,
                          revoked_at=datetime.datetime.now(datetime.UTC))


def _foreign_crl(revoking: PeerDir, number: int) -> bytes:
    """A list naming ``revoking`` made by someone without the CA key: a CA of its own with
    the network CA's very name ("mydrive network", init_network's), and a higher number
    than anyone's."""
    fake_ca = crypto.new_certificate_authority("mydrive network")
    return crypto.sign_revocation_list(fake_ca, [_entry_for(revoking)], number=number)


def test_forged_revocation_list_is_ignored(served: Served, tmp_path: Path) -> None:
    """A list signed by another key (same issuer name, the victim on it, a huge number) is
    refused by ``pki install-crl``; written straight over a peer's list, it is not used
    either: the list in force stays. The victim stays a peer and is still dialled (a new
    process refuses to start on a list that does not verify, rather than run without). The
    control: the same list signed by the CA does revoke the victim."""
    owner, victim = served.peers[0], served.peers[4]
    forged = _foreign_crl(victim, number=10**6)
    with pytest.raises(PermissionDenied, match="not signed by the network CA"):
        install_crl(owner.tls_dir, forged)
    result = subprocess.run([sys.executable, "-m", "mydrive", "pki", "install-crl",
                             str(_write(tmp_path / "forged.pem", forged)), "--peer",
                             str(owner.root)], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == PermissionDenied.exit_code, result
    client = open_client(owner.root, kdf_costs=FAST_KDF)
    try:
        (owner.tls_dir / CRL_NAME).write_bytes(forged)  # behind the command's back
        # A running client keeps the list it verified; a new one refuses to start on it.
        peers = {p.peer_id: p for p in client.known_peers()}
        assert victim.config.peer_id in peers
        client.transport.chunk_status(peers[victim.config.peer_id].address, bytes(32),
                                      timeout_s=10)
        with pytest.raises(BadRequest, match="not signed by the network CA"):
            revocations(owner.tls_dir)
    finally:
        client.close()
    _write(owner.tls_dir / CRL_NAME, (tmp_path / "pki" / CRL_NAME).read_bytes())
    # The control: signed by the CA, the same revocation takes effect.
    genuine = crypto.sign_revocation_list(load_network(tmp_path / "pki"),
                                          [_entry_for(victim)], number=2)
    install_crl(owner.tls_dir, genuine)
    assert revocations(owner.tls_dir).peer_revoked(victim.config.peer_id)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_revoked_peer_cannot_unrevoke_itself(served: Served, tmp_path: Path) -> None:
    """What the revoked peer has: its key, its certificate and the genuine list from before
    its revocation (number 1, in its own directory). Offering that older list, a list
    signed with its own key, or a newer genuine-looking one without it: all refused, the
    list in force stays and it stays revoked; its freshly signed peer document is skipped.
    The control: an older list would have un-revoked it had it been taken."""
    owner, revoked = served.peers[0], served.peers[1]
    old = (revoked.tls_dir / CRL_NAME).read_bytes()  # its copy from before: number 1
    _revoke(tmp_path, revoked, owner)
    in_force = (owner.tls_dir / CRL_NAME).read_bytes()
    with pytest.raises(PermissionDenied, match="not newer"):
        install_crl(owner.tls_dir, old)
    own_key_ca = crypto.CertificateBundle(
        key_pem=tls_files(revoked.tls_dir).key.read_bytes(),
        cert_pem=tls_files(revoked.tls_dir).cert.read_bytes())
    with pytest.raises(PermissionDenied, match="not signed by the network CA"):
        install_crl(owner.tls_dir, crypto.sign_revocation_list(own_key_ca, [], number=99))
    assert (owner.tls_dir / CRL_NAME).read_bytes() == in_force
    assert revocations(owner.tls_dir).peer_revoked(revoked.config.peer_id)
    # A new, validly signed peer document from the revoked peer: skipped by readers.
    with closing(owner.open_metadata()) as store:
        fresh = peer_document(revoked, updated_ms=int(time.time() * 1000) + 10**6)
        store.put(f"peer:{revoked.config.peer_id}", fresh)
    client = open_client(owner.root, kdf_costs=FAST_KDF)
    try:
        assert revoked.config.peer_id not in {p.peer_id for p in client.known_peers()}
    finally:
        client.close()
    # The control: the old list, were it in force, would not revoke it.
    assert not crypto.read_revocation_list(
        old, tls_files(owner.tls_dir).ca_cert.read_bytes()).entries


# ---- Real nginx (integration) -----------------------------------------------------------

@pytest.fixture
def nginx_net(tmp_path: Path) -> Iterator[list[PeerDir]]:
    """Three TLS peers: peer-0 runs everything (receiver, sender, UI, nginx); peer-1 and
    peer-2 only their nginx, whose certificates are what the test presents."""
    home = tmp_path / "net"
    peers = cluster.create(home, 3, tls=True)
    try:
        cluster.start(home, only=["peer-0"])
        cluster.start(home, only=["peer-1", "peer-2"], kinds=("nginx",))
        yield peers
    finally:
        cluster.stop(home, hard=True)


def _healthz(target: PeerDir, client: PeerDir) -> bytes:
    """GET /healthz on ``target``'s peer listener with ``client``'s certificate: the reply."""
    files = tls_files(client.tls_dir)
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    context.check_hostname = False
    context.load_cert_chain(str(files.cert), str(files.key))
    context.set_alpn_protocols(["http/1.1"])
    cfg = target.config
    with socket.create_connection((cfg.host, cfg.nginx_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=cfg.host) as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(4096)


def _egress(owner: PeerDir, remote: PeerDir) -> bytes:
    """GET through ``owner``'s loopback egress (its CouchDB pulls' way out) to ``remote``."""
    cfg, rcfg = owner.config, remote.config
    with socket.create_connection(("127.0.0.1", cfg.egress_port), timeout=10) as raw:
        raw.sendall(f"GET /remote/{rcfg.host}/{rcfg.nginx_port}/{rcfg.peer_id}/ HTTP/1.1\r\n"
                    f"Host: x\r\nConnection: close\r\n\r\n".encode())
        return raw.recv(4096)


def _wait_for(check, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.integration
def test_nginx_refuses_revoked_client_certificate(nginx_net: list[PeerDir]) -> None:
    """After ``pki revoke --install`` (the CLI, which reloads nginx), peer-0's nginx answers
    the revoked peer's certificate with nginx's certificate-error reply before any routing,
    and gRPC calls with it fail; another member's certificate still gets in. peer-0's egress
    refuses to pull from the revoked peer's nginx (its server certificate is revoked too).
    The controls: the same certificate got in, and the egress reached it, before."""
    owner, revoked, other = nginx_net
    assert _healthz(owner, revoked).startswith(b"HTTP/1.1 200")
    assert _egress(owner, revoked).startswith(b"HTTP/1.1 404")  # its nginx answered
    result = subprocess.run(
        [sys.executable, "-m", "mydrive", "pki", "revoke", revoked.config.peer_id,
         "--network", str(owner.root.parent / "pki"), "--reason", "test",
         "--install", str(owner.root)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "nginx reloaded" in result.stdout, result.stdout
    # nginx replaces its workers asynchronously after the reload signal: for a moment the
    # old worker may still take a connection. Then every one is refused.
    assert _wait_for(lambda: all(_healthz(owner, revoked).startswith(b"HTTP/1.1 400")
                                 for _ in range(5))), _healthz(owner, revoked)
    for _ in range(5):
        assert b"SSL certificate error" in _healthz(owner, revoked)
    assert _healthz(owner, other).startswith(b"HTTP/1.1 200")
    reply = _egress(owner, revoked)
    assert reply.startswith(b"HTTP/1.1 502"), reply[:200]
    assert _egress(owner, other).startswith(b"HTTP/1.1 404")

    # gRPC with the revoked certificate, from a client that does not itself check the list
    # (the revoked peer's own): refused by nginx, PeerUnavailable.
    target = owner.config.address()
    as_revoked = GrpcTransport(rpc_timeout_s=10, tls=tls_files(revoked.tls_dir).read())
    as_other = GrpcTransport(rpc_timeout_s=10, tls=tls_files(other.tls_dir).read())
    try:
        assert not as_other.chunk_status(target, bytes(32), timeout_s=10).committed
        with pytest.raises(PeerUnavailable):
            as_revoked.chunk_status(target, bytes(32), timeout_s=10)
    finally:
        as_revoked.close()
        as_other.close()


@pytest.mark.integration
def test_nginx_starts_with_the_empty_list_of_a_new_network(nginx_net: list[PeerDir]) -> None:
    """A new network's peers carry the CA's empty list (number 1) and their nginx runs with
    ``ssl_crl`` on it: every member gets in."""
    for peer in nginx_net:
        crl = revocations(peer.tls_dir).crl
        assert crl is not None and crl.number == 1 and not crl.entries
        conf = (peer.root / "nginx" / "nginx.conf").read_text()
        assert f"ssl_crl {(peer.tls_dir / CRL_NAME).resolve().as_posix()};" in conf
    for client in nginx_net:
        assert _healthz(nginx_net[0], client).startswith(b"HTTP/1.1 200")


# ---- The list spread through the metadata ----------------------------------------------

def _metadata_store(backend: str, request: pytest.FixtureRequest,
                    tmp_path: Path) -> MetadataStore:
    if backend == "sqlite":
        return SqliteStore(tmp_path / "replicated.sqlite3")
    server: PouchServer = request.getfixturevalue("pouch")
    return server.store("crl-" + uuid.uuid4().hex[:10])


@pytest.mark.parametrize("backend", ["sqlite", "couchdb"])
def test_published_list_is_adopted_and_defended(tmp_path: Path, backend: str,
                                                request: pytest.FixtureRequest) -> None:
    """``crl:network`` as it arrives by replication: the CA's newer list is adopted; a
    dishonest member's forged list, the genuine list from before a revocation, another
    member's garbage or a deletion are not: the peer writes its own list back over them
    and keeps enforcing it. The control: the older list, had it been taken, revokes
    nobody. On both backends (SQLite doesn't replicate: its operator installs lists)."""
    init_network(tmp_path / "pki")
    p0, p1, bad = (init_peer(tmp_path / n, network_dir=tmp_path / "pki")
                   for n in ("p0", "p1", "bad"))
    old = (bad.tls_dir / CRL_NAME).read_bytes()  # number 1, from before its revocation
    crl = _revoke(tmp_path, bad, p0)
    # stands for the replicated database
    with closing(_metadata_store(backend, request, tmp_path)) as replicated:
        publish_crl(replicated, crypto.read_revocation_list(
            crl, tls_files(p0.tls_dir).ca_cert.read_bytes()))
        view = revocations(p1.tls_dir)
        assert not view.peer_revoked(bad.config.peer_id)
        assert adopt_published_crl(replicated, p1.tls_dir) == "installed"
        assert view.peer_revoked(bad.config.peer_id)
        assert adopt_published_crl(replicated, p1.tls_dir) == "same"
        in_force = (p1.tls_dir / CRL_NAME).read_bytes()
        forged = {**crl_document(crypto.read_revocation_list(old, tls_files(
            p1.tls_dir).ca_cert.read_bytes())), "number": 10**6, "updated_ms": 10**6}
        forged["crl"] = crypto.sign_revocation_list(
            crypto.new_certificate_authority("mydrive network"), [], number=10**6).decode()
        older = crl_document(crypto.read_revocation_list(
            old, tls_files(p1.tls_dir).ca_cert.read_bytes()))
        for attack in (forged, older, {"type": "crl", "version": 1, "crl": 7}, None):
            if attack is None:
                replicated.delete(CRL_DOC_ID)
            else:
                replicated.put(CRL_DOC_ID, attack)
            assert adopt_published_crl(replicated, p1.tls_dir) == "restored", attack
            assert (p1.tls_dir / CRL_NAME).read_bytes() == in_force
            assert replicated.get(CRL_DOC_ID)["crl"] == in_force.decode()
            assert view.peer_revoked(bad.config.peer_id)
    # The control: the older list's content is exactly what the revoked peer would want.
    assert not crypto.read_revocation_list(
        old, tls_files(p1.tls_dir).ca_cert.read_bytes()).entries


@pytest.fixture
def couch_net(tmp_path: Path) -> Iterator[list[PeerDir]]:
    """Three TLS peers on CouchDB metadata, everything running (replication included)."""
    home = tmp_path / "couch"
    try:
        peers = cluster.create(home, 3, tls=True, metadata="couchdb", replicas=1)
        cluster.start(home)
        yield peers
    finally:
        cluster.stop(home, hard=True)


@pytest.mark.integration
def test_list_installed_on_one_peer_reaches_the_others(couch_net: list[PeerDir]) -> None:
    """``pki revoke --install`` on peer-0 only: replication carries the list to peer-1,
    whose replication supervisor installs it and reloads peer-1's nginx, which then
    refuses the revoked peer-2's certificate. The control: peer-1's nginx let it in
    before."""
    owner, follower, revoked = couch_net
    assert _healthz(follower, revoked).startswith(b"HTTP/1.1 200")
    result = subprocess.run(
        [sys.executable, "-m", "mydrive", "pki", "revoke", revoked.config.peer_id,
         "--network", str(owner.root.parent / "pki"), "--install", str(owner.root)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "published in the metadata" in result.stdout, result.stdout
    started = time.monotonic()
    assert _wait_for(lambda: revocations(follower.tls_dir).peer_revoked(
        revoked.config.peer_id), timeout_s=60), "the list did not reach peer-1"
    assert _wait_for(lambda: all(_healthz(follower, revoked).startswith(b"HTTP/1.1 400")
                                 for _ in range(5)), timeout_s=30)
    print(f"list honoured by peer-1's nginx {time.monotonic() - started:.1f} s after "
          f"pki revoke returned")
    assert _healthz(follower, owner).startswith(b"HTTP/1.1 200")
