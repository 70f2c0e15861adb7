"""``mydrive pki init | revoke | install-crl | crl``: the network's certificate authority
(TLS between peers) and its revocation list (docs/tls.md)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import click

from mydrive.errors import BadRequest, MydriveError

from .common import handle_errors, json_option, peer_option, print_json


@click.group()
def pki() -> None:
    """The network's certificate authority (TLS between peers)."""


@pki.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", default="mydrive network", show_default=True)
def pki_init(directory: Path, name: str) -> None:
    """Create a network CA in DIRECTORY (ca.key stays there, 0600; ca.crt is public)."""
    from mydrive.node.pki import CA_KEY, init_network

    with handle_errors():
        cert = init_network(directory, name=name)
        click.echo(f"network CA written: {cert} (keep {directory / CA_KEY} private)")


network_option = click.option(
    "--network", "network_dir", required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="the network CA directory (mydrive pki init; holds ca.key)")


@pki.command("revoke")
@click.argument("target")
@network_option
@click.option("--reason", default="", help="why (kept in the list, shown by pki crl)")
@click.option("--install", "install_dirs", multiple=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="also install the new list into this local peer directory and reload "
                   "its nginx (repeatable)")
@json_option
def pki_revoke(target: str, network_dir: Path, reason: str, install_dirs: tuple[Path, ...],
               as_json: bool) -> None:
    """Revoke TARGET's certificate: a peer id, a peer directory or a certificate file.

    Writes NETWORK_DIR/crl.pem (signed by the CA). Every peer honours it once it has the
    list: copy crl.pem to each and run `mydrive pki install-crl` there (docs/tls.md)."""
    from mydrive.node.pki import load_network
    from mydrive.node.revocation import CRL_NAME, describe, revoke

    with handle_errors():
        done = revoke(network_dir, load_network(network_dir), target, note=reason)
        installed = [_install(d, done.crl.pem) for d in install_dirs]
        if as_json:
            print_json({"peer_id": done.peer_id, "serial": format(done.serial, "x"),
                        "already_revoked": done.already, "crl": describe(done.crl),
                        "installed": installed})
            return
        what = "was already revoked" if done.already else "revoked"
        click.echo(f"peer {done.peer_id} (certificate {done.serial:x}) {what}; "
                   f"{network_dir / CRL_NAME} is list number {done.crl.number}")
        for entry in installed:
            click.echo(f"{entry['peer']}: {entry['result']}")
        if not install_dirs:
            click.echo(f"now copy {network_dir / CRL_NAME} to every peer and run there: "
                       f"mydrive pki install-crl crl.pem --peer PEER_DIR")


@pki.command("install-crl")
@click.argument("crl_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@peer_option
def pki_install_crl(crl_file: Path, peer_dir: Path) -> None:
    """Make CRL_FILE (from the network CA) this peer's revocation list; reload its nginx.

    Refused unless the peer's network CA signed it and it is newer than the installed one
    and keeps every revocation of it."""
    with handle_errors():
        entry = _install(peer_dir, crl_file.read_bytes())
        click.echo(f"{entry['peer']}: {entry['result']}")


@pki.command("crl")
@click.option("--network", "network_dir",
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="show the CA's list (NETWORK_DIR/crl.pem)")
@click.option("--peer", "peer_dir", type=click.Path(path_type=Path, file_okay=False,
                                                    exists=True),
              help="show the list this peer enforces (PEER_DIR/tls/crl.pem)")
@json_option
def pki_crl(network_dir: Path | None, peer_dir: Path | None, as_json: bool) -> None:
    """Show a revocation list: the CA's (--network) or a peer's (--peer), verified."""
    from mydrive.crypto.primitives import read_revocation_list
    from mydrive.node.revocation import CRL_NAME, describe

    with handle_errors():
        if (network_dir is None) == (peer_dir is None):
            raise BadRequest("give exactly one of --network and --peer")
        where = network_dir if network_dir is not None else peer_dir / "tls"  # type: ignore[operator]
        try:
            crl = read_revocation_list((where / CRL_NAME).read_bytes(),
                                       (where / "ca.crt").read_bytes())
        except OSError as exc:
            raise BadRequest(f"no revocation list in {where}: {exc}") from exc
        shown = describe(crl)
        if as_json:
            print_json(shown)
            return
        click.echo(f"revocation list number {crl.number}, issued {shown['issued']}, "
                   f"{len(crl.entries)} revoked")
        for entry in shown["revoked"]:  # type: ignore[attr-defined]
            click.echo(f"  {entry['peer_id']}  serial {entry['serial']}  revoked "
                       f"{entry['revoked']}  {entry['reason']}")


def _install(peer_dir: Path, crl_pem: bytes) -> dict[str, str]:
    """Install a list into a peer directory and reload its nginx; what happened."""
    from mydrive.node.nginx import reload
    from mydrive.node.peerdir import PeerDir
    from mydrive.node.revocation import install_crl, publish_crl

    peer = PeerDir(peer_dir)
    crl, changed = install_crl(peer.tls_dir, crl_pem)
    result = (f"list number {crl.number} installed; {reload(peer)}" if changed
              else f"list number {crl.number} is already installed")
    if peer.config.metadata == "couchdb":  # replication carries it to the other peers
        try:
            with closing(peer.open_metadata()) as store:
                publish_crl(store, crl)
            result += "; published in the metadata for the other peers"
        except MydriveError as exc:
            result += f"; not published ({exc}): install it on every peer"
    return {"peer": peer.config.name, "result": result}
