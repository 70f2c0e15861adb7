"""``mydrive cluster up|status|down --home H``: a local network of N peers as separate
processes on loopback (mydrive.node.cluster)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from .common import handle_errors, json_option, print_json


@click.group()
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
    from mydrive.node import cluster as local

    with handle_errors():
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
@json_option
def cluster_status(home: Path, as_json: bool) -> None:
    """Show every peer's services: PID, address, health."""
    with handle_errors():
        healthy = _print_status(home, as_json=as_json)
    sys.exit(0 if healthy else 1)


def _print_status(home: Path, *, as_json: bool) -> bool:
    from mydrive.node import cluster as local

    peers = local.status(home)
    ok = all(s.healthy for p in peers for s in p["services"])
    if as_json:
        print_json({"healthy": ok, "peers": [
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

    with handle_errors():
        local.stop(home)
        click.echo("stopped")
