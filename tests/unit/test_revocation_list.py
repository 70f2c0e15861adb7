"""The network's revocation list: its X.509 CRL format, its verification, and the rules by
which a peer replaces its copy (mydrive.crypto.primitives, mydrive.node.revocation)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mydrive.cli.main import cli
from mydrive.crypto import primitives as crypto
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.formats.peerdoc import peer_id_from_key_digest
from mydrive.node.nginx import render
from mydrive.node.peerdir import PeerDir, init_peer
from mydrive.node.pki import init_network, load_network, network_trust, revocations, tls_files
from mydrive.node.revocation import (
    CRL_NAME,
    check_successor,
    install_crl,
    peer_ids,
    revoke,
)

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def _entry(serial: int, byte: int, note: str = "") -> crypto.Revoked:
    return crypto.Revoked(serial=serial, key_digest=bytes([byte]) * 32, revoked_at=NOW,
                          note=note)


@pytest.fixture(scope="module")
def ca() -> crypto.CertificateBundle:
    return crypto.new_certificate_authority("mydrive network")


def test_list_round_trip(ca: crypto.CertificateBundle) -> None:
    """Serials, key digests (hence peer ids), dates and notes (any text, cut at 200 bytes
    on a character boundary) come back as written, with the number."""
    long_note = "é" * 150  # 300 bytes of UTF-8
    entries = [_entry(7, 1, "laptop stolen"), _entry(2**150, 2, long_note), _entry(9, 3)]
    pem = crypto.sign_revocation_list(ca, entries, number=42, now=NOW)
    crl = crypto.read_revocation_list(pem, ca.cert_pem)
    assert crl.number == 42 and crl.pem == pem
    assert [(e.serial, e.key_digest, e.revoked_at) for e in crl.entries] == \
        [(e.serial, e.key_digest, e.revoked_at) for e in entries]
    assert [e.note for e in crl.entries] == ["laptop stolen", "é" * 100, ""]
    assert peer_ids(crl) == {peer_id_from_key_digest(bytes([b]) * 32) for b in (1, 2, 3)}
    assert crl.revokes(7, b"x" * 32) and crl.revokes(1, bytes([3]) * 32)
    assert not crl.revokes(8, bytes([4]) * 32)
    empty = crypto.read_revocation_list(crypto.sign_revocation_list(ca, [], number=1),
                                        ca.cert_pem)
    assert empty.number == 1 and empty.entries == ()


def test_list_not_signed_by_the_ca_refused(ca: crypto.CertificateBundle) -> None:
    """Another key under the very same CA name, another network's CA, or a peer's own key:
    PermissionDenied; the same entries signed by the CA verify (the control)."""
    entries = [_entry(5, 5)]
    impostor = crypto.new_certificate_authority("mydrive network")
    other_net = crypto.new_certificate_authority("another network")
    peer = crypto.issue_certificate(ca, "a peer")
    for signer in (impostor, other_net, peer):
        pem = crypto.sign_revocation_list(signer, entries, number=99)
        with pytest.raises(PermissionDenied, match="not signed by the network CA"):
            crypto.read_revocation_list(pem, ca.cert_pem)
    crypto.read_revocation_list(crypto.sign_revocation_list(ca, entries, number=99),
                                ca.cert_pem)


def test_tampered_or_malformed_list_refused(ca: crypto.CertificateBundle) -> None:
    """A list altered after signing (one serial changed in its DER) fails the signature;
    garbage and oversized input are BadRequest."""
    pem = crypto.sign_revocation_list(ca, [_entry(0x112233, 5)], number=3)
    body = b"".join(pem.splitlines()[1:-1])
    der = base64.b64decode(body)
    assert der.count(bytes([0x11, 0x22, 0x33])) == 1
    tampered_der = der.replace(bytes([0x11, 0x22, 0x33]), bytes([0x11, 0x22, 0x34]))
    tampered = (b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(tampered_der)
                + b"-----END X509 CRL-----\n")
    with pytest.raises(PermissionDenied):
        crypto.read_revocation_list(tampered, ca.cert_pem)
    with pytest.raises(BadRequest):
        crypto.read_revocation_list(b"not a list", ca.cert_pem)
    with pytest.raises(BadRequest, match="larger"):
        crypto.read_revocation_list(b"x" * (crypto.MAX_CRL_PEM_BYTES + 1), ca.cert_pem)


def test_successor_rules(ca: crypto.CertificateBundle) -> None:
    """A copy is replaced only by a newer list that keeps every revocation."""
    def crl(number: int, *entries: crypto.Revoked) -> crypto.RevocationList:
        return crypto.read_revocation_list(
            crypto.sign_revocation_list(ca, list(entries), number=number), ca.cert_pem)

    one, two = _entry(1, 1), _entry(2, 2)
    installed = crl(5, one)
    assert check_successor(None, installed)
    assert not check_successor(installed, installed)
    assert check_successor(installed, crl(6, one, two))
    with pytest.raises(PermissionDenied, match="not newer"):
        check_successor(installed, crl(4, one, two))
    with pytest.raises(PermissionDenied, match="not newer"):
        check_successor(installed, crl(5, one, two))  # same number, other content
    with pytest.raises(PermissionDenied, match="un-revokes"):
        check_successor(installed, crl(7, two))


def test_certificate_trust_refuses_revoked(ca: crypto.CertificateBundle) -> None:
    """CertificateTrust (what every peer-document reader uses) refuses a certificate the
    list names by serial or by key, and accepts the others."""
    revoked_cert = crypto.issue_certificate(ca, "revoked")
    fine = crypto.issue_certificate(ca, "fine")
    serial, digest = crypto.certificate_identity(revoked_cert.cert_pem, ca.cert_pem)
    by_serial = crypto.read_revocation_list(crypto.sign_revocation_list(
        ca, [crypto.Revoked(serial, b"\0" * 32, NOW)], number=2), ca.cert_pem)
    by_key = crypto.read_revocation_list(crypto.sign_revocation_list(
        ca, [crypto.Revoked(1, digest, NOW)], number=2), ca.cert_pem)
    for crl in (by_serial, by_key):
        trust = crypto.CertificateTrust(ca.cert_pem, revoked=crl.revokes)
        with pytest.raises(PermissionDenied, match="revoked"):
            trust.check_certificate(revoked_cert.cert_pem)
        trust.check_certificate(fine.cert_pem)
    crypto.CertificateTrust(ca.cert_pem).check_certificate(revoked_cert.cert_pem)
    with pytest.raises(PermissionDenied, match="not issued by the network CA"):
        crypto.certificate_identity(
            crypto.issue_certificate(crypto.new_certificate_authority("x"), "y").cert_pem,
            ca.cert_pem)


def test_certificate_trust_checks_revocation_and_dates_on_every_call(
        ca: crypto.CertificateBundle) -> None:
    """A certificate accepted before (its CA signature remembered) is refused once it is
    revoked, and once it is no longer valid; another CA's certificate is refused every time."""
    cert = crypto.issue_certificate(ca, "peer")
    revoked: set[int] = set()
    clock = [datetime.datetime.now(datetime.UTC)]
    trust = crypto.CertificateTrust(ca.cert_pem, now=lambda: clock[0],
                                    revoked=lambda serial, digest: serial in revoked)
    first = trust.check_certificate(cert.cert_pem)
    assert trust.check_certificate(cert.cert_pem) == first
    revoked.add(crypto.certificate_identity(cert.cert_pem, ca.cert_pem)[0])
    with pytest.raises(PermissionDenied, match="revoked"):
        trust.check_certificate(cert.cert_pem)
    revoked.clear()
    assert trust.check_certificate(cert.cert_pem) == first
    clock[0] += datetime.timedelta(days=100 * 365)
    with pytest.raises(PermissionDenied, match="not valid now"):
        trust.check_certificate(cert.cert_pem)
    foreign = crypto.issue_certificate(crypto.new_certificate_authority("x"), "y").cert_pem
    for _ in range(2):
        with pytest.raises(PermissionDenied, match="not issued by the network CA"):
            trust.check_certificate(foreign)


def _net(tmp_path: Path, n: int = 2) -> list[PeerDir]:
    init_network(tmp_path / "pki")
    return [init_peer(tmp_path / f"p{i}", network_dir=tmp_path / "pki") for i in range(n)]


def test_revoke_names_a_peer_by_id_directory_or_certificate(tmp_path: Path) -> None:
    """``revoke`` finds the certificate by peer id (the CA's issued/ record), by peer
    directory or certificate file; each revocation is a new list, number + 1; a second
    revocation of the same certificate changes nothing; unknown targets, certificates of
    another CA and the CA's own are refused."""
    p0, p1, p2 = _net(tmp_path, 3)
    network, ca = tmp_path / "pki", load_network(tmp_path / "pki")
    assert crypto.read_revocation_list((network / CRL_NAME).read_bytes(),
                                       ca.cert_pem).number == 1
    first = revoke(network, ca, p0.config.peer_id, note="by id")
    second = revoke(network, ca, str(p1.root))
    third = revoke(network, ca, str(tls_files(p2.tls_dir).cert))
    assert [r.crl.number for r in (first, second, third)] == [2, 3, 4]
    assert [r.peer_id for r in (first, second, third)] == \
        [p.config.peer_id for p in (p0, p1, p2)]
    assert not third.already and revoke(network, ca, p0.config.peer_id).already
    assert peer_ids(third.crl) == {p.config.peer_id for p in (p0, p1, p2)}
    with pytest.raises(BadRequest, match="no certificate issued"):
        revoke(network, ca, "0123456789abcdef")
    foreign = tmp_path / "foreign.crt"
    foreign.write_bytes(crypto.issue_certificate(crypto.new_certificate_authority("x"),
                                                 "y").cert_pem)
    with pytest.raises(PermissionDenied):
        revoke(network, ca, str(foreign))
    with pytest.raises(BadRequest, match="CA's own certificate"):
        revoke(network, ca, str(network / "ca.crt"))


def test_peer_follows_its_installed_list(tmp_path: Path) -> None:
    """A peer's readers see a newly installed list without being made again; a file that
    does not verify, written later, is not used (the list in force stays); read first, it
    is an error; a peer directory from before revocation (no file) revokes nothing."""
    p0, p1 = _net(tmp_path)
    network, ca = tmp_path / "pki", load_network(tmp_path / "pki")
    view, trust = revocations(p0.tls_dir), network_trust(p0.tls_dir)
    p1_cert = tls_files(p1.tls_dir).cert.read_bytes()
    assert not view.peer_revoked(p1.config.peer_id)
    trust.check_certificate(p1_cert)
    revoke(network, ca, p1.config.peer_id)
    crl, changed = install_crl(p0.tls_dir, (network / CRL_NAME).read_bytes())
    assert changed and crl.number == 2
    assert view.peer_revoked(p1.config.peer_id)
    with pytest.raises(PermissionDenied, match="revoked"):
        trust.check_certificate(p1_cert)
    forged = crypto.sign_revocation_list(crypto.new_certificate_authority("mydrive network"),
                                         [], number=50)
    (p0.tls_dir / CRL_NAME).write_bytes(forged)
    assert view.peer_revoked(p1.config.peer_id)
    with pytest.raises(BadRequest, match="not signed by the network CA"):
        revocations(p0.tls_dir)
    (p0.tls_dir / CRL_NAME).unlink()
    assert not revocations(p0.tls_dir).peer_revoked(p1.config.peer_id)


def test_nginx_config_reads_the_list(tmp_path: Path) -> None:
    """The rendered config checks clients (ssl_crl) and upstream peers (proxy_ssl_crl)
    against the peer's list; without a list it says so instead of failing to start."""
    (p0,) = _net(tmp_path, 1)
    crl = (p0.tls_dir / CRL_NAME).resolve().as_posix()
    text = render(p0).read_text()
    assert f"ssl_crl {crl};" in text and f"proxy_ssl_crl {crl};" in text
    (p0.tls_dir / CRL_NAME).unlink()
    text = render(p0).read_text()
    assert "ssl_crl" not in text.replace("# no revocation list installed", "")
    assert "no revocation list installed" in text


def test_cli_revoke_install_and_show(tmp_path: Path) -> None:
    """``pki revoke`` then ``pki install-crl`` and ``pki crl`` as an operator runs them."""
    p0, p1 = _net(tmp_path)
    runner = CliRunner()
    network = str(tmp_path / "pki")
    done = runner.invoke(cli, ["pki", "revoke", p1.config.peer_id, "--network", network,
                               "--reason", "left the network", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["crl"]["number"] == 2
    installed = runner.invoke(cli, ["pki", "install-crl", str(tmp_path / "pki" / CRL_NAME),
                                    "--peer", str(p0.root)])
    assert installed.exit_code == 0 and "list number 2 installed" in installed.output
    shown = json.loads(runner.invoke(cli, ["pki", "crl", "--peer", str(p0.root),
                                           "--json"]).output)
    assert shown["revoked"][0]["peer_id"] == p1.config.peer_id
    assert shown["revoked"][0]["reason"] == "left the network"
    older = runner.invoke(cli, ["pki", "install-crl", str(p1.tls_dir / CRL_NAME),
                                "--peer", str(p0.root)])
    assert older.exit_code == PermissionDenied.exit_code and "not newer" in older.output
