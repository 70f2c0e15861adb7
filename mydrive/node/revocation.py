"""Certificate revocation: the network CA's revocation list (CRL) and each peer's copy.

  NETWORK_DIR/crl.pem              the CA's list, signed by ca.key (pki init, pki revoke)
  NETWORK_DIR/issued/<peer id>.crt every certificate the CA issued, so a peer can be revoked
                                   by its id
  PEER_DIR/tls/crl.pem             the peer's verified copy (peer init, pki install-crl)

A peer's copy is what it enforces: nginx refuses revoked client certificates with it
(``ssl_crl``) and checks the peers it pulls metadata from (``proxy_ssl_crl``); the gRPC
clients refuse to dial a revoked peer id and the readers of ``peer:`` documents skip revoked
certificates (``PeerRevocations``). A list is used only if the network CA signed it, and a
copy is replaced only by a list with a larger CRL number that still revokes everything the
old one did: nobody without ca.key can revoke a peer, and nobody can un-revoke one by
handing out an older (genuine) list. docs/tls.md, "Revoking a peer".
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from mydrive.crypto.primitives import (
    CertificateBundle,
    RevocationList,
    Revoked,
    certificate_identity,
    read_revocation_list,
    sign_revocation_list,
)
from mydrive.errors import BadRequest, MydriveError, PermissionDenied
from mydrive.formats.peerdoc import peer_id_from_key_digest
from mydrive.metadata.base import MetadataStore
from mydrive.runtime.disk import atomic_write_bytes

log = logging.getLogger("mydrive.node.revocation")

CRL_NAME = "crl.pem"
ISSUED_DIR = "issued"
_PEER_ID_RE = re.compile(r"[0-9a-f]{16}")


def peer_ids(crl: RevocationList) -> frozenset[str]:
    """The peer ids whose certificates ``crl`` revokes."""
    return frozenset(peer_id_from_key_digest(e.key_digest) for e in crl.entries)


# ---- The CA's side ----------------------------------------------------------------------

def ensure_network_crl(network_dir: Path, ca: CertificateBundle) -> Path:
    """NETWORK_DIR/crl.pem, written empty (number 1) if the network has none yet: nginx
    needs a list from the CA before it starts checking client certificates against it."""
    path = network_dir / CRL_NAME
    if not path.exists():
        atomic_write_bytes(path, sign_revocation_list(ca, [], number=1))
    return path


def record_issued(network_dir: Path, peer_id: str, cert_pem: bytes) -> None:
    """Keep a copy of a certificate the CA issued (public), for ``revoke`` by peer id."""
    (network_dir / ISSUED_DIR).mkdir(exist_ok=True)
    atomic_write_bytes(network_dir / ISSUED_DIR / f"{peer_id}.crt", cert_pem)


def _certificate_of(network_dir: Path, target: str) -> bytes:
    """The certificate ``target`` names: a peer id the CA issued to, a peer directory, or a
    certificate file."""
    candidates = [Path(target) / "tls" / "peer.crt", Path(target)]
    if _PEER_ID_RE.fullmatch(target):
        candidates.insert(0, network_dir / ISSUED_DIR / f"{target}.crt")
    for path in candidates:
        if path.is_file():
            try:
                return path.read_bytes()
            except OSError as exc:
                raise BadRequest(f"cannot read {path}: {exc}") from exc
    raise BadRequest(f"{target!r}: no certificate issued to that peer id in "
                     f"{network_dir / ISSUED_DIR}, and not a certificate file or peer "
                     f"directory (give the peer's certificate: its PEER_DIR/tls/peer.crt, or "
                     f"the \"certificate\" of its peer document)")


@dataclass(frozen=True)
class Revocation:
    peer_id: str
    serial: int
    crl: RevocationList
    already: bool  # the certificate was revoked before; nothing changed


def revoke(network_dir: Path, ca: CertificateBundle, target: str, *, note: str = "",
           now: datetime.datetime | None = None) -> Revocation:
    """Add ``target``'s certificate to NETWORK_DIR/crl.pem (a new list, number + 1)."""
    serial, key_digest = certificate_identity(_certificate_of(network_dir, target),
                                              ca.cert_pem)
    peer_id = peer_id_from_key_digest(key_digest)
    current = read_revocation_list(ensure_network_crl(network_dir, ca).read_bytes(),
                                   ca.cert_pem)
    if current.revokes(serial, key_digest):
        return Revocation(peer_id, serial, current, already=True)
    now = now or datetime.datetime.now(datetime.UTC)
    entries = [*current.entries, Revoked(serial=serial, key_digest=key_digest,
                                         revoked_at=now, note=note)]
    pem = sign_revocation_list(ca, entries, number=current.number + 1, now=now)
    atomic_write_bytes(network_dir / CRL_NAME, pem)
    return Revocation(peer_id, serial, read_revocation_list(pem, ca.cert_pem), already=False)


# ---- A peer's side ----------------------------------------------------------------------

def check_successor(old: RevocationList | None, new: RevocationList) -> bool:
    """True if ``new`` should replace ``old``, False if it is the same list; PermissionDenied
    for an older list or one that drops a revocation (an attempt to un-revoke)."""
    if old is None:
        return True
    if new.number == old.number and new.pem == old.pem:
        return False
    if new.number <= old.number:
        raise PermissionDenied(f"revocation list number {new.number} is not newer than the "
                               f"installed one ({old.number}): refused")
    dropped = {e.serial for e in old.entries} - {e.serial for e in new.entries}
    if dropped:
        raise PermissionDenied(f"revocation list drops {len(dropped)} revoked "
                               f"certificate(s): the CA never un-revokes; refused")
    return True


def install_crl(tls_dir: Path, crl_pem: bytes) -> tuple[RevocationList, bool]:
    """Verify ``crl_pem`` against the peer's network CA and make it the peer's list;
    (the list now in force, whether it changed). Refused: PermissionDenied."""
    ca_pem = _read(tls_dir / "ca.crt")
    new = read_revocation_list(crl_pem, ca_pem)
    path = tls_dir / CRL_NAME
    old = read_revocation_list(path.read_bytes(), ca_pem) if path.exists() else None
    if not check_successor(old, new):
        return new, False
    atomic_write_bytes(path, crl_pem)
    return new, True


# ---- Spreading a list through the metadata (CouchDB networks) --------------------------
#
# The peer where the operator installs a list also publishes it as the document
# ``crl:network``; replication carries it to every peer, whose replication supervisor
# installs it if it is the CA's and newer than its own (and reloads nginx), and otherwise
# writes its own list back: a member that deletes the document, or replaces it with a
# forgery or an older list, changes nothing anywhere and is overwritten.

CRL_DOC_ID = "crl:network"
CRL_DOC_TYPE = "crl"
CRL_DOC_VERSION = 1


def crl_document(crl: RevocationList) -> dict[str, object]:
    """The published form; ``updated_ms`` is the list number, so the newest list wins the
    metadata's conflict policy."""
    return {"type": CRL_DOC_TYPE, "version": CRL_DOC_VERSION, "number": crl.number,
            "updated_ms": crl.number, "crl": crl.pem.decode("ascii")}


def publish_crl(store: MetadataStore, crl: RevocationList) -> bool:
    """Put ``crl`` into this peer's metadata, for replication; False if it is there."""
    doc = crl_document(crl)
    if store.get(CRL_DOC_ID) == doc:
        return False
    store.put(CRL_DOC_ID, doc)
    return True


def installed_crl(tls_dir: Path) -> RevocationList | None:
    """The peer's list, verified; None in a peer directory from before revocation."""
    path = tls_dir / CRL_NAME
    if not path.exists():
        return None
    return read_revocation_list(path.read_bytes(), _read(tls_dir / "ca.crt"))


def adopt_published_crl(store: MetadataStore, tls_dir: Path) -> str:
    """Answer the ``crl:network`` document as it is now in this peer's metadata:
    ``installed`` (a newer list of the CA's: now this peer's), ``same``, ``restored`` (it
    was missing, forged, malformed or older: this peer's own list written back), or
    ``ignored`` (nothing to write back, or another list with this peer's number)."""
    ours = installed_crl(tls_dir)
    doc = store.get(CRL_DOC_ID)
    theirs: RevocationList | None = None
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("crl"), str):
            raise BadRequest("no list in the document" if doc is not None else "deleted")
        theirs = read_revocation_list(doc["crl"].encode("ascii", "replace"),
                                      _read(tls_dir / "ca.crt"))
        if not check_successor(ours, theirs):
            return "same"
    except PermissionDenied as exc:
        log.warning("published revocation list refused: %s", exc)
        if ours is not None and theirs is not None and theirs.number == ours.number:
            return "ignored"  # two lists with one number: the CA's own mix-up, no fight
    except BadRequest as exc:
        log.warning("published revocation list not used: %s", exc)
    else:
        assert theirs is not None
        atomic_write_bytes(tls_dir / CRL_NAME, theirs.pem)
        log.warning("revocation list %d installed from the metadata (%d revoked)",
                    theirs.number, len(theirs.entries))
        return "installed"
    if ours is None:
        return "ignored"
    store.put(CRL_DOC_ID, crl_document(ours))
    return "restored"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadRequest(f"TLS files missing: {exc}") from exc


class PeerRevocations:
    """A peer's verified revocation list (PEER_DIR/tls/crl.pem), re-read when the file
    changes, so long-running processes (UI, receiver jobs) honour a new list without a
    restart. A file that does not verify is never used: the first read raises, a later
    one keeps the list already in force (logged)."""

    def __init__(self, tls_dir: Path, ca_cert_pem: bytes) -> None:
        self.path = tls_dir / CRL_NAME
        self._ca_pem = ca_cert_pem
        self._stamp: tuple[int, int, int] | None = None
        self._crl: RevocationList | None = None
        self._peer_ids: frozenset[str] = frozenset()
        self._lock = threading.Lock()  # the upload's workers ask at once
        self._refresh(first=True)

    def _refresh(self, *, first: bool = False) -> None:
        with self._lock:
            self._refresh_locked(first=first)

    def _refresh_locked(self, *, first: bool) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return  # a peer directory from before revocation: nothing revoked
        # install_crl replaces the file (a new inode), so a change shows even within one
        # tick of a coarse file-system clock.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            crl = read_revocation_list(self.path.read_bytes(), self._ca_pem)
            check_successor(self._crl, crl)
        except (OSError, MydriveError) as exc:
            if first:
                raise BadRequest(f"{self.path}: {exc}; install the CA's list again "
                                 f"(mydrive pki install-crl)") from exc
            log.error("%s not used, keeping revocation list %d: %s", self.path,
                      self._crl.number if self._crl else 0, exc)
            self._stamp = stamp
            return
        self._stamp, self._crl, self._peer_ids = stamp, crl, peer_ids(crl)

    @property
    def crl(self) -> RevocationList | None:
        self._refresh()
        return self._crl

    def certificate_revoked(self, serial: int, key_digest: bytes) -> bool:
        crl = self.crl
        return crl is not None and crl.revokes(serial, key_digest)

    def peer_revoked(self, peer_id: str) -> bool:
        self._refresh()
        return peer_id in self._peer_ids


def describe(crl: RevocationList) -> dict[str, object]:
    """The list as ``pki crl --json`` prints it."""
    return {"number": crl.number, "issued": crl.issued_at.isoformat(),
            "revoked": [{"peer_id": peer_id_from_key_digest(e.key_digest),
                         "serial": format(e.serial, "x"), "revoked": e.revoked_at.isoformat(),
                         "reason": e.note} for e in crl.entries]}
