"""Files of the network PKI: the network CA directory and each peer's TLS directory.

  NETWORK_DIR/ca.crt   the network CA certificate (public: every peer has a copy)
  NETWORK_DIR/ca.key   its private key (0600; stays on the machine that admits peers)
  NETWORK_DIR/crl.pem, issued/   its revocation list and issued certificates (revocation.py)
  PEER_DIR/tls/ca.crt  copy of the network CA certificate (trust anchor)
  PEER_DIR/tls/crl.pem copy of the network's revocation list (verified against ca.crt)
  PEER_DIR/tls/peer.crt, peer.key   the peer's certificate and key (key 0600)
A peer's id is its certificate key's (mydrive.formats.peerdoc), so the key is made first and
the certificate names the id. Each file is written atomically; a crash while issuing leaves a
tls/ directory without peer.crt, which ``peer init`` refuses to reuse (the peer.json is
written last). See docs/tls.md for how a new machine joins a network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mydrive.crypto.primitives import (
    CertificateBundle,
    CertificateTrust,
    issue_certificate,
    new_certificate_authority,
    new_tls_key_pem,
    sign_with_tls_key,
    tls_key_digest,
)
from mydrive.errors import BadRequest
from mydrive.formats.peerdoc import peer_id_from_key_digest, tls_name
from mydrive.node.revocation import (
    CRL_NAME,
    PeerRevocations,
    ensure_network_crl,
    install_crl,
    record_issued,
)
from mydrive.runtime.disk import atomic_write_bytes, fsync_dir

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
PEER_CERT = "peer.crt"
PEER_KEY = "peer.key"


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret (a private key, peer.json) readable by its owner only: 0600 on POSIX
    from the moment the file exists, atomically (a crash leaves the old file or the new).
    On Windows the file inherits its directory's ACL (docs/peer-directory.md)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_secret_once(path: Path, data: bytes) -> bytes:
    """Make a secret only if none is there yet, and return what the file then holds.

    Two services of one peer may start at once and both find the file missing: the new file
    is written aside and hard-linked into place, which fails when the other service linked
    first, so both end up with one secret (overwriting would leave the first one holding a
    key the file no longer has)."""
    if not path.exists():
        fresh = path.with_name(f".{path.name}.new-{os.getpid()}")
        write_secret(fresh, data)
        try:
            os.link(fresh, path)
        except FileExistsError:
            pass  # the other service made it first
        except OSError:  # a file system without hard links: a rename is the best left
            os.replace(fresh, path)
        finally:
            fresh.unlink(missing_ok=True)
        fsync_dir(path.parent)
    return path.read_bytes()


def init_network(network_dir: Path, name: str = "mydrive network") -> Path:
    """Create a network CA in ``network_dir``; refuses to overwrite an existing one."""
    if (network_dir / CA_KEY).exists():
        raise BadRequest(f"{network_dir} already holds a network CA")
    network_dir.mkdir(parents=True, exist_ok=True)
    ca = new_certificate_authority(name)
    write_secret(network_dir / CA_KEY, ca.key_pem)
    atomic_write_bytes(network_dir / CA_CERT, ca.cert_pem)
    ensure_network_crl(network_dir, ca)
    return network_dir / CA_CERT


def load_network(network_dir: Path) -> CertificateBundle:
    try:
        return CertificateBundle(key_pem=(network_dir / CA_KEY).read_bytes(),
                                 cert_pem=(network_dir / CA_CERT).read_bytes())
    except OSError as exc:
        raise BadRequest(f"{network_dir} is not a network CA directory "
                         f"(create one with: mydrive pki init {network_dir})") from exc


def issue_peer_certificate(network_dir: Path, tls_dir: Path, *, peer_name: str,
                           hosts: list[str]) -> str:
    """Give a new peer its key, its certificate and the network's trust anchor; its id.

    The id is the new key's (``peer_id_from_key_digest``); the certificate's SAN holds
    ``hosts`` and the DNS name ``<id>.peer.mydrive`` that other peers check when they dial it.
    """
    ca = load_network(network_dir)
    key_pem = new_tls_key_pem()
    peer_id = peer_id_from_key_digest(tls_key_digest(key_pem))
    names = sorted({*hosts, tls_name(peer_id)})
    dns = [h for h in names if not _is_ip(h)]
    ips = [h for h in names if _is_ip(h)]
    bundle = issue_certificate(ca, peer_name, dns_names=dns, ip_addresses=ips, key_pem=key_pem)
    tls_dir.mkdir(parents=True, exist_ok=True)
    write_secret(tls_dir / PEER_KEY, bundle.key_pem)
    atomic_write_bytes(tls_dir / PEER_CERT, bundle.cert_pem)
    atomic_write_bytes(tls_dir / CA_CERT, ca.cert_pem)
    install_crl(tls_dir, ensure_network_crl(network_dir, ca).read_bytes())
    record_issued(network_dir, peer_id, bundle.cert_pem)
    return peer_id


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path
    crl: Path  # the network's revocation list (absent in peer directories made before it)

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA certificate, peer key, peer certificate) PEM bytes."""
        try:
            return self.ca_cert.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise BadRequest(f"TLS files missing: {exc}") from exc


def tls_files(tls_dir: Path) -> TlsFiles:
    return TlsFiles(ca_cert=tls_dir / CA_CERT, cert=tls_dir / PEER_CERT, key=tls_dir / PEER_KEY,
                    crl=tls_dir / CRL_NAME)


def network_trust(tls_dir: Path) -> CertificateTrust:
    """The certificates this peer believes: those its copy of the network CA issued and its
    copy of the revocation list does not revoke."""
    return CertificateTrust(_ca_pem(tls_dir), revoked=revocations(tls_dir).certificate_revoked)


def revocations(tls_dir: Path) -> PeerRevocations:
    """This peer's verified revocation list (PEER_DIR/tls/crl.pem), kept current."""
    return PeerRevocations(tls_dir, _ca_pem(tls_dir))


def _ca_pem(tls_dir: Path) -> bytes:
    try:
        return (tls_dir / CA_CERT).read_bytes()
    except OSError as exc:
        raise BadRequest(f"TLS files missing: {exc}") from exc


def signer(tls_dir: Path) -> Callable[[bytes], bytes]:
    """Signs with this peer's certificate key (its peer document, mydrive.formats.peerdoc)."""
    key_pem = tls_files(tls_dir).read()[1]
    return lambda message: sign_with_tls_key(key_pem, message)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
