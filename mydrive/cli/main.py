"""The ``mydrive`` command line. Every command that acts for a user takes ``--peer DIR``
(or MYDRIVE_PEER) and ``--user NAME``; the passphrase comes from MYDRIVE_PASSPHRASE or a
prompt. ``--json`` output is stable and documented in docs/cli.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mydrive.errors import BadRequest, MydriveError

PASSPHRASE_ENV = "MYDRIVE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
NEW_PASSPHRASE_ENV = "MYDRIVE_NEW_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def _fail(exc: MydriveError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


fault_plan_option = click.option(
    "--fault-plan", type=click.Path(path_type=Path, dir_okay=False, exists=True), hidden=True,
    help="test-bed only: corrupt segments as this seeded plan (JSON) says")


def _fault_hooks(fault_plan: Path | None) -> Any:
    """The hooks for ``--fault-plan``: seeded faults when the test-bed asks, else none."""
    from mydrive.runtime.faults import NO_FAULTS

    if fault_plan is None:
        return NO_FAULTS
    from mydrive.testing.faults import FaultPlan, SeededFaults

    return SeededFaults(FaultPlan.from_file(fault_plan))


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except MydriveError as exc:
        _fail(exc)


def _passphrase(confirm: bool) -> str:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise BadRequest(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal")
    text: str = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    return text


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


peer_option = click.option("--peer", "peer_dir", envvar="MYDRIVE_PEER", required=True,
                           type=click.Path(path_type=Path, file_okay=False),
                           help="peer directory to act on (or MYDRIVE_PEER)")
user_option = click.option("--user", "user", envvar="MYDRIVE_USER", required=True,
                           help="user name (or MYDRIVE_USER)")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log more")
def cli(verbose: bool) -> None:
    """mydrive: a peer-to-peer encrypted file store."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


# ---- peers and services --------------------------------------------------------------
@cli.group()
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
    with _errors():
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
def peer_render_nginx(directory: Path, container: bool, expect_peer_port: int | None,
                      expect_ui_port: int | None) -> None:
    """Write DIR/nginx/nginx.conf for this peer (what its nginx runs with)."""
    from mydrive.node.nginx import render
    from mydrive.node.peerdir import PeerDir

    with _errors():
        peer = PeerDir(directory)
        cfg = peer.config
        for what, want, have in (("nginx_port", expect_peer_port, cfg.nginx_port),
                                 ("ui_port", expect_ui_port, cfg.ui_port)):
            if want is not None and want != have:
                raise BadRequest(f"{directory}/peer.json has {what} {have} but {want} is "
                                 f"published: make them equal (env file or peer.json)")
        click.echo(f"wrote {render(peer, container=container)}")


@peer.command("doc")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
def peer_doc(directory: Path) -> None:
    """Print this peer's peer document (public: how others reach it) for `peer register`."""
    from mydrive.node.peerdir import PeerDir, peer_document

    with _errors():
        _print_json(peer_document(PeerDir(directory).config))


@peer.command("register")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("docs", nargs=-1, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--wait-s", type=click.FloatRange(0, 3600), default=0.0, show_default=True,
              help="keep retrying this long while the metadata server is not up yet")
def peer_register(directory: Path, docs: tuple[Path, ...], wait_s: float) -> None:
    """Record this peer, and the peers in DOCS (files from `peer doc`), in DIR's metadata.

    With CouchDB metadata the documents then replicate to every peer by themselves.
    """
    import time
    from contextlib import closing

    from mydrive.errors import MetadataUnavailable
    from mydrive.node.peerdir import PeerDir, check_peer_document, peer_document

    with _errors():
        peer = PeerDir(directory)
        found = [peer_document(peer.config)]
        for path in docs:
            try:
                found.append(check_peer_document(json.loads(path.read_text())))
            except ValueError as exc:
                raise BadRequest(f"{path}: not JSON ({exc})") from exc
            except BadRequest as exc:
                raise BadRequest(f"{path}: {exc}") from exc
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with closing(peer.open_metadata()) as store:
                    if peer.config.metadata == "couchdb":
                        _ensure_couch_system_dbs(store)
                    for doc in found:
                        store.put(f"peer:{doc['peer_id']}", doc)
                break
            except MetadataUnavailable as exc:
                if time.monotonic() >= deadline or type(exc) is not MetadataUnavailable:
                    raise
                time.sleep(1.0)
        for doc in found:
            click.echo(f"registered peer {doc.get('name', '?')} ({doc['peer_id']}) at "
                       f"{doc['receiver_address']}")


def _ensure_couch_system_dbs(store: Any) -> None:
    # A fresh single-node CouchDB 3 (the couchdb:3 image) has no _replicator (our pulls live
    # there) nor _users until someone creates them; 412 means it exists.
    for db in ("_users", "_replicator"):
        store.request("PUT", f"/{db}", ok=(201, 202, 412))


@peer.command("health")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--service", envvar="MYDRIVE_SERVICE", required=True,
              type=click.Choice(["receiver", "sender", "ui"]),
              help="which service of the peer to check (or MYDRIVE_SERVICE)")
def peer_health(directory: Path, service: str) -> None:
    """Exit 0 if this peer's SERVICE answers /healthz (container health checks)."""
    from mydrive.node.cluster import service_healthy
    from mydrive.node.peerdir import PeerDir
    from mydrive.node.ui_address import ui_healthy

    with _errors():
        cfg = PeerDir(directory).config
        if service == "ui":
            ok = ui_healthy(cfg, timeout_s=5.0)
        else:
            port = cfg.receiver_metrics_port if service == "receiver" else cfg.sender_metrics_port
            ok = service_healthy(cfg.service_host, port)
        click.echo(f"{service} {'healthy' if ok else 'NOT healthy'}")
        sys.exit(0 if ok else 1)


@cli.group()
def pki() -> None:
    """The network's certificate authority (TLS between peers)."""


@pki.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", default="mydrive network", show_default=True)
def pki_init(directory: Path, name: str) -> None:
    """Create a network CA in DIRECTORY (ca.key stays there, 0600; ca.crt is public)."""
    from mydrive.node.pki import init_network

    with _errors():
        cert = init_network(directory, name=name)
        click.echo(f"network CA written: {cert} (keep {directory / 'ca.key'} private)")


@cli.command()
@click.argument("service", type=click.Choice(["sender", "receiver", "ui"]))
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--server", "ui_server", type=click.Choice(["auto", "gunicorn", "waitress"]),
              envvar="MYDRIVE_UI_SERVER", default="auto", show_default=True,
              help="ui only: WSGI server (auto: gunicorn on Linux/macOS, waitress elsewhere)")
@fault_plan_option
def serve(service: str, directory: Path, ui_server: str, fault_plan: Path | None) -> None:
    """Run one service of a peer in the foreground (ui: the browser UI on loopback)."""
    logging.getLogger().setLevel(logging.INFO)
    if service == "ui":
        from mydrive.ui.serve import run as run_ui

        with _errors():
            run_ui(directory, server=ui_server)
        return
    from mydrive.node.serve import serve as run

    with _errors():
        run(service, directory, faults=_fault_hooks(fault_plan))


# ---- local network -------------------------------------------------------------------
@cli.group()
def cluster() -> None:
    """A local network of N peers as separate processes on loopback."""


home_option = click.option("--home", type=click.Path(path_type=Path, file_okay=False),
                           required=True, help="directory holding the peers")


@cluster.command("up")
@home_option
@click.option("--peers", type=int, default=5, show_default=True)
@click.option("--replicas", type=int, default=2, show_default=True)
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="put each peer behind its own nginx with mutual TLS")
@click.option("--metadata", type=click.Choice(["sqlite", "couchdb"]), default="sqlite",
              show_default=True,
              help="metadata backend; couchdb runs one pouchdb-server per peer, replicating "
                   "master-master (docs/metadata.md)")
@click.option("--detach", is_flag=True, help="return once healthy, leave the peers running")
def cluster_up(home: Path, peers: int, replicas: int, tls: bool, metadata: str,
               detach: bool) -> None:
    """Create (or reuse) N peers under HOME and start their services."""
    import time

    from mydrive.node import cluster as local

    with _errors():
        local.create(home, peers, replicas=replicas, tls=tls, metadata=metadata)
        local.start(home)
        _print_status(home, as_json=False)
        for p in local.status(home):
            for s in p["services"]:
                if s.kind == "ui":
                    click.echo(f"UI of {p['name']}: {s.address}")
        if detach:
            click.echo(f"running; stop with: mydrive cluster down --home {home}")
            return
        click.echo("running; Ctrl-C stops the network")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo("stopping")
        finally:
            local.stop(home)


@cluster.command("status")
@home_option
@click.option("--json", "as_json", is_flag=True)
def cluster_status(home: Path, as_json: bool) -> None:
    """Show every peer's services: PID, address, health."""
    with _errors():
        healthy = _print_status(home, as_json=as_json)
    sys.exit(0 if healthy else 1)


def _print_status(home: Path, *, as_json: bool) -> bool:
    from mydrive.node import cluster as local

    peers = local.status(home)
    ok = all(s.healthy for p in peers for s in p["services"])
    if as_json:
        _print_json({"healthy": ok, "peers": [
            {"name": p["name"], "peer_id": p["peer_id"], "dir": p["dir"],
             "services": {s.kind: {"pid": s.pid, "alive": s.alive, "healthy": s.healthy,
                                   "address": s.address, "metrics_url": s.metrics_url}
                          for s in p["services"]}} for p in peers]})
        return ok
    for p in peers:
        parts = [f"{s.kind} {s.address} {'healthy' if s.healthy else 'DOWN'}"
                 for s in p["services"]]
        click.echo(f"{p['name']:<8} {p['peer_id']}  " + "  ".join(parts))
    return ok


@cluster.command("down")
@home_option
def cluster_down(home: Path) -> None:
    """Stop every service this tool started for the network in HOME."""
    from mydrive.node import cluster as local

    with _errors():
        local.stop(home)
        click.echo("stopped")


# ---- users and files -----------------------------------------------------------------
@cli.group()
def user() -> None:
    """User accounts."""


@user.command("create")
@peer_option
@user_option
def user_create(peer_dir: Path, user: str) -> None:
    """Create a user on this peer (asks for the passphrase twice)."""
    from mydrive.node.local_client import open_client

    with _errors():
        client = open_client(peer_dir)
        try:
            record = client.create_user(user, _passphrase(confirm=True))
        finally:
            client.close()
        click.echo(f"created user {record.name} ({record.user_id})")


@user.command("rotate-passphrase")
@peer_option
@user_option
def user_rotate_passphrase(peer_dir: Path, user: str) -> None:
    """Change your passphrase: re-wraps one key, re-encrypts and re-sends nothing.

    The current passphrase comes from MYDRIVE_PASSPHRASE or a prompt, the new one from
    MYDRIVE_NEW_PASSPHRASE or a prompt (asked twice).
    """
    from mydrive.node.local_client import open_client

    with _errors():
        current = _passphrase(confirm=False)
        new = os.environ.get(NEW_PASSPHRASE_ENV)
        if not new:
            if not sys.stdin.isatty():
                raise BadRequest(f"no new passphrase: set {NEW_PASSPHRASE_ENV} or run in a "
                                 f"terminal")
            new = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
        client = open_client(peer_dir)
        try:
            record = client.rotate_passphrase(user, current, str(new))
        finally:
            client.close()
        click.echo(f"passphrase of user {record.name} changed; no file data was re-encrypted")


@contextmanager
def _session(peer_dir: Path, user: str, *,
             faults: Any = None) -> Iterator[tuple[Any, Any]]:
    from mydrive.node.local_client import open_client
    from mydrive.runtime.faults import NO_FAULTS

    client = open_client(peer_dir, faults=faults or NO_FAULTS)
    try:
        keys = client.login(user, _passphrase(confirm=False))
        yield client, keys
    finally:
        client.close()


@contextmanager
def _progress(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=None, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@cli.command()
@peer_option
@user_option
@click.argument("local", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("remote", required=False)
@click.option("--json", "as_json", is_flag=True)
@fault_plan_option
def put(peer_dir: Path, user: str, local: Path, remote: str | None, as_json: bool,
        fault_plan: Path | None) -> None:
    """Encrypt LOCAL and store it on other peers as REMOTE (default: /NAME)."""
    with _errors(), _session(peer_dir, user, faults=_fault_hooks(fault_plan)) as (client, keys):
        size = local.stat().st_size
        with _progress(f"put {local.name}", size, enabled=not as_json) as progress:
            record = client.put(keys, local, remote, progress=progress)
        info = client.describe(keys, record)
        if as_json:
            _print_json(info)
        else:
            click.echo(f"stored {info['path']}: {size} bytes in {info['chunk_count']} chunks "
                       f"on {len(info['chunks_per_peer'])} peers")


@cli.command("ls")
@peer_option
@user_option
@click.option("--json", "as_json", is_flag=True)
def ls(peer_dir: Path, user: str, as_json: bool) -> None:
    """List your files."""
    with _errors(), _session(peer_dir, user) as (client, keys):
        entries = client.list_files(keys)
        if as_json:
            _print_json({"files": [e.to_json() for e in entries]})
            return
        for e in entries:
            click.echo(f"{e.size_bytes:>14}  {e.path}")


@cli.command()
@peer_option
@user_option
@click.argument("remote")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="directory to write into (default: the peer's download directory)")
@click.option("--overwrite", is_flag=True, help="replace an existing local file")
@click.option("--json", "as_json", is_flag=True)
def get(peer_dir: Path, user: str, remote: str, out_dir: Path | None, overwrite: bool,
        as_json: bool) -> None:
    """Fetch REMOTE back from the peers, verify and decrypt it."""
    with _errors(), _session(peer_dir, user) as (client, keys):
        record = client.find(keys, remote)
        with _progress(f"get {remote}", record.size_bytes, enabled=not as_json) as progress:
            path, ledger = client.get(keys, remote, out_dir=out_dir, overwrite=overwrite,
                                      progress=progress)
        if as_json:
            _print_json({"path": str(path), "size_bytes": record.size_bytes,
                         "transfer": ledger.to_json()})
        else:
            click.echo(f"wrote {path}")


@cli.command()
@peer_option
@user_option
@click.argument("remote")
@click.option("--json", "as_json", is_flag=True)
def inspect(peer_dir: Path, user: str, remote: str, as_json: bool) -> None:
    """Chunks, segments, replica peers and transfer accounting of one of your files."""
    with _errors(), _session(peer_dir, user) as (client, keys):
        info = client.inspect(keys, remote)
        if as_json:
            _print_json(info)
            return
        names = {pid: str(doc.get("name", pid)) for pid, doc in
                 ((d.get("peer_id"), d) for _, d in client.store.list_prefix("peer:"))}
        click.echo(f"{info['path']}: {info['size_bytes']} bytes, {info['chunk_count']} chunks")
        for c in info["chunks"]:
            where = ", ".join(names.get(p, p) for p in c["replicas"])
            click.echo(f"  chunk {c['index']:>4} {c['chunk_id'][:16]}  {c['segments']:>4} "
                       f"segments  on {where}")
        totals = info["transfer"].get("upload", {}).get("totals", {})
        if totals:
            click.echo(f"  upload: {totals['segments_sent']} segments sent, "
                       f"{totals['segments_rejected']} rejected, "
                       f"{totals['segments_resent']} resent")


def _print_gc(report: Any) -> None:
    if report.pending:
        for file_id, peers in sorted(report.pending.items()):
            click.echo(f"  file {file_id[:16]}: chunks still on {', '.join(peers)} "
                       f"(unreachable now; run `mydrive gc` later)")
    for error in report.errors:
        click.echo(f"  note: {error}", err=True)


@cli.command("rm")
@peer_option
@user_option
@click.argument("remote")
@click.option("-r", "--recursive", is_flag=True, help="remove every file under a folder")
@click.option("--json", "as_json", is_flag=True)
def rm(peer_dir: Path, user: str, remote: str, recursive: bool, as_json: bool) -> None:
    """Delete REMOTE from the metadata and its chunks from every replica peer."""
    with _errors(), _session(peer_dir, user) as (client, keys):
        result = client.remove(keys, remote, recursive=recursive)
        if as_json:
            _print_json(result.to_json())
            return
        for path in result.paths:
            click.echo(f"removed {path}")
        click.echo(f"{result.gc.chunks_removed} chunk replica(s) deleted from peers")
        _print_gc(result.gc)


@cli.command("gc")
@peer_option
@user_option
@click.option("--json", "as_json", is_flag=True)
def gc(peer_dir: Path, user: str, as_json: bool) -> None:
    """Retry deleting chunks of removed files from peers that were down (owner-signed)."""
    with _errors(), _session(peer_dir, user) as (client, keys):
        report = client.collect_garbage(keys)
        if as_json:
            _print_json(report.to_json())
            return
        click.echo(f"{report.tombstones} pending deletion(s): {report.chunks_removed} chunk "
                   f"replica(s) deleted, {report.tombstones_done} finished")
        _print_gc(report)


@cli.command()
@peer_option
def metrics(peer_dir: Path) -> None:
    """Print the Prometheus metrics of this peer's running services."""
    import urllib.request

    from mydrive.node.peerdir import PeerDir

    with _errors():
        cfg = PeerDir(peer_dir).config
        for port in (cfg.receiver_metrics_port, cfg.sender_metrics_port):
            try:
                url = f"http://{cfg.service_host}:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
                    click.echo(r.read().decode(), nl=False)
            except OSError as exc:
                click.echo(f"# {url}: {exc}", err=True)


def main() -> None:
    cli(prog_name="mydrive")
