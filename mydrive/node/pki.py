"""Files of the network PKI: the network CA directory and each peer's TLS directory.

  NETWORK_DIR/ca.crt   the network CA certificate (public: every peer has a copy)
  NETWORK_DIR/ca.key   its private key (0600; stays on the machine that admits peers)
  PEER_DIR/tls/ca.crt  copy of the network CA certificate (trust anchor)
  PEER_DIR/tls/peer.crt, peer.key   the peer's certificate and key (key 0600)
See docs/tls.md for how a new machine joins a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mydrive.crypto.primitives import (
    CertificateBundle,
    issue_certificate,
    new_certificate_authority,
)
from mydrive.errors import BadRequest
from mydrive.runtime.disk import atomic_write_bytes

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
PEER_CERT = "peer.crt"
PEER_KEY = "peer.key"


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600 on POSIX)."""
    atomic_write_bytes(path, data)
    if os.name == "posix":
        os.chmod(path, 0o600)


def init_network(network_dir: Path, name: str = "mydrive network") -> Path:
    """Create a network CA in ``network_dir``; refuses to overwrite an existing one."""
    if (network_dir / CA_KEY).exists():
        raise BadRequest(f"{network_dir} already holds a network CA")
    network_dir.mkdir(parents=True, exist_ok=True)
    ca = new_certificate_authority(name)
    write_secret(network_dir / CA_KEY, ca.key_pem)
    atomic_write_bytes(network_dir / CA_CERT, ca.cert_pem)
    return network_dir / CA_CERT


def load_network(network_dir: Path) -> CertificateBundle:
    try:
        return CertificateBundle(key_pem=(network_dir / CA_KEY).read_bytes(),
                                 cert_pem=(network_dir / CA_CERT).read_bytes())
    except OSError as exc:
        raise BadRequest(f"{network_dir} is not a network CA directory "
                         f"(create one with: mydrive pki init {network_dir})") from exc


def issue_peer_certificate(network_dir: Path, tls_dir: Path, *, peer_name: str,
                           hosts: list[str]) -> None:
    """Give a peer its certificate (SAN: its addresses) and the network's trust anchor."""
    ca = load_network(network_dir)
    dns = [h for h in hosts if not _is_ip(h)]
    ips = [h for h in hosts if _is_ip(h)]
    bundle = issue_certificate(ca, peer_name, dns_names=dns, ip_addresses=ips)
    tls_dir.mkdir(parents=True, exist_ok=True)
    write_secret(tls_dir / PEER_KEY, bundle.key_pem)
    atomic_write_bytes(tls_dir / PEER_CERT, bundle.cert_pem)
    atomic_write_bytes(tls_dir / CA_CERT, ca.cert_pem)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(CA certificate, peer key, peer certificate) PEM bytes."""
        try:
            return self.ca_cert.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise BadRequest(f"TLS files missing: {exc}") from exc


def tls_files(tls_dir: Path) -> TlsFiles:
    return TlsFiles(ca_cert=tls_dir / CA_CERT, cert=tls_dir / PEER_CERT, key=tls_dir / PEER_KEY)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
