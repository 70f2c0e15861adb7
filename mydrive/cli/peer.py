"""``mydrive peer …``: make a peer directory, and what containers need of one (its nginx
config, its public peer document, registering peers, a health check)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from mydrive.errors import BadRequest, MetadataUnavailable, PermissionDenied
from mydrive.metadata.base import MetadataStore

from .common import handle_errors, print_json

REGISTER_RETRY_S = 1.0
UI_HEALTH_TIMEOUT_S = 5.0  # what a container health check waits for the UI to answer


@click.group()
def peer() -> None:
    """Peer directories."""


@peer.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", help="a human name for the peer (default: the directory name)")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address other peers reach this one at (goes into its certificate)")
@click.option("--network", "network_dir", type=click.Path(path_type=Path, file_okay=False),
              help="network CA directory (mydrive pki init): issue a certificate, run behind "
                   "nginx with mutual TLS")
@click.option("--capacity-bytes", type=int, default=None, help="space offered to others")
@click.option("--replicas", type=int, default=2, show_default=True)
@click.option("--metadata", type=click.Choice(["sqlite", "couchdb"]), default="sqlite",
              show_default=True, help="metadata backend (couchdb: replicated, docs/metadata.md)")
@click.option("--peer-port", type=click.IntRange(1, 65535), default=None,
              help="with --network: nginx's port for other peers (default: a free port)")
@click.option("--ui-port", type=click.IntRange(1, 65535), default=None,
              help="with --network: nginx's port for the browser UI (default: a free port)")
@click.option("--couchdb-port", type=click.IntRange(1, 65535), default=None,
              help="with --metadata couchdb: the local CouchDB's port (5984 in docker/)")
def peer_init(directory: Path, name: str | None, host: str, network_dir: Path | None,
              capacity_bytes: int | None, replicas: int, metadata: str,
              peer_port: int | None, ui_port: int | None, couchdb_port: int | None) -> None:
    """Create a peer directory with a fresh id and free ports."""
    from mydrive.node.peerdir import init_peer

    overrides: dict[str, Any] = {"replicas": replicas}
    if capacity_bytes is not None:
        overrides["capacity_bytes"] = capacity_bytes
    if metadata != "sqlite":
        overrides["metadata"] = metadata
    for key, value in (("nginx_port", peer_port), ("ui_port", ui_port),
                       ("couchdb_port", couchdb_port)):
        if value is not None:
            overrides[key] = value
    with handle_errors():
        if (peer_port or ui_port) and network_dir is None:
            raise BadRequest("--peer-port and --ui-port need --network (they are nginx's)")
        if couchdb_port and metadata != "couchdb":
            raise BadRequest("--couchdb-port needs --metadata couchdb")
        p = init_peer(directory, name=name, host=host, network_dir=network_dir, **overrides)
        click.echo(f"peer {p.config.name} ({p.config.peer_id}) in {directory}: receiver "
                   f"{p.config.receiver_address}, sender {p.config.sender_address}")


@peer.command("render-nginx")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--container", is_flag=True,
              help="for docker/: listen on all of the peer's container addresses, UI access "
                   "left to the host's port publishing, Docker's DNS as resolver")
@click.option("--expect-peer-port", type=int, default=None,
              help="fail unless peer.json's nginx_port is this (the port compose publishes)")
@click.option("--expect-ui-port", type=int, default=None,
              help="fail unless peer.json's ui_port is this (the port compose publishes)")
@click.option("--resolver", default=None,
              help="the name server nginx asks (an IP address, or 'system': the first "
                   "nameserver of /etc/resolv.conf, e.g. in Kubernetes)")
def peer_render_nginx(directory: Path, container: bool, expect_peer_port: int | None,
                      expect_ui_port: int | None, resolver: str | None) -> None:
    """Write DIR/nginx/nginx.conf for this peer (what its nginx runs with)."""
    from mydrive.node.container import SYSTEM_RESOLVER, nginx_resolver, system_resolver
    from mydrive.node.nginx import render
    from mydrive.node.peerdir import PeerDir

    with handle_errors():
        peer = PeerDir(directory)
        cfg = peer.config
        for what, want, have in (("nginx_port", expect_peer_port, cfg.nginx_port),
                                 ("ui_port", expect_ui_port, cfg.ui_port)):
            if want is not None and want != have:
                raise BadRequest(f"{directory}/peer.json has {what} {have} but {want} is "
                                 f"published: make them equal (env file or peer.json)")
        if resolver is not None:
            resolver = system_resolver() if resolver == SYSTEM_RESOLVER \
                else nginx_resolver(resolver)
        click.echo(f"wrote {render(peer, container=container, resolver=resolver)}")


@peer.command("doc")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
def peer_doc(directory: Path) -> None:
    """Print this peer's peer document (public: how others reach it) for `peer register`."""
    from mydrive.node.peerdir import PeerDir, peer_document

    with handle_errors():
        print_json(peer_document(PeerDir(directory)))


@peer.command("register")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("docs", nargs=-1, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--wait-s", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="keep retrying this long while the metadata server is not up yet")
def peer_register(directory: Path, docs: tuple[Path, ...], wait_s: float) -> None:
    """Record this peer, and the peers in DOCS (files from `peer doc`), in DIR's metadata.

    With CouchDB metadata the documents then replicate to every peer by themselves.
    """
    from mydrive.node.peerdir import PeerDir, check_peer_document, peer_document

    with handle_errors():
        peer = PeerDir(directory)
        found = [peer_document(peer)]
        trust = peer.peer_trust()  # with TLS: documents signed by a network certificate only
        for path in docs:
            try:
                found.append(check_peer_document(json.loads(path.read_text()), trust))
            except ValueError as exc:
                raise BadRequest(f"{path}: not JSON ({exc})") from exc
            except (BadRequest, PermissionDenied) as exc:
                raise type(exc)(f"{path}: {exc}") from exc
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with closing(peer.open_metadata()) as store:
                    if peer.config.metadata == "couchdb":
                        _ensure_couch_system_dbs(store, peer)
                    for doc in found:
                        store.put(f"peer:{doc['peer_id']}", doc)
                break
            except MetadataUnavailable as exc:
                if time.monotonic() >= deadline or type(exc) is not MetadataUnavailable:
                    raise
                time.sleep(REGISTER_RETRY_S)
        for doc in found:
            click.echo(f"registered peer {doc.get('name', '?')} ({doc['peer_id']}) at "
                       f"{doc['receiver_address']}")


def _ensure_couch_system_dbs(store: MetadataStore, peer: Any) -> None:
    # A fresh single-node CouchDB 3 (the couchdb:3 image) has no _replicator (our pulls live
    # there) nor _users until someone creates them; 412 means it exists. Then the database's
    # one member, as whom replication writes and nginx reads for the other peers.
    from mydrive.metadata.couchdb import CouchStore

    assert isinstance(store, CouchStore)
    for db in ("_users", "_replicator"):
        store.request("PUT", f"/{db}", ok=(201, 202, 412))
    store.ensure_member(peer.config.couchdb_member_user, peer.config.couchdb_member_password)


@peer.command("health")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--service", envvar="MYDRIVE_SERVICE", required=True,
              type=click.Choice(["receiver", "sender", "ui"]),
              help="which service of the peer to check (or MYDRIVE_SERVICE)")
def peer_health(directory: Path, service: str) -> None:
    """Exit 0 if this peer's SERVICE answers /healthz (container health checks)."""
    from mydrive.node.peerdir import PeerDir
    from mydrive.node.serve import service_healthy
    from mydrive.node.ui_address import ui_healthy

    with handle_errors():
        cfg = PeerDir(directory).config
        if service == "ui":
            ok = ui_healthy(cfg, timeout_s=UI_HEALTH_TIMEOUT_S)
        else:
            ok = service_healthy(cfg, service)
        click.echo(f"{service} {'healthy' if ok else 'NOT healthy'}")
        sys.exit(0 if ok else 1)
