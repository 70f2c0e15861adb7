"""``mydrive kubernetes generate --peers N OUT/``: N peers as Kubernetes manifests
(mydrive.node.kubernetes; docs/deploy.md "Kubernetes")."""

from __future__ import annotations

from pathlib import Path

import click

from .common import handle_errors, json_option, print_json


@click.group()
def kubernetes() -> None:
    """Kubernetes manifests of N peers (docs/deploy.md)."""


@kubernetes.command("generate")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--peers", type=int, default=5, show_default=True,
              help="how many peers (at least 4: R = 2 replicas without a whole file on any "
                   "peer)")
@click.option("--replicas", type=int, default=2, show_default=True)
@click.option("--namespace", default="mydrive", show_default=True,
              help="the namespace (it is in every peer's certificate: peers are dialed at "
                   "peer-I.NAMESPACE.svc.DOMAIN)")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--image", help="the mydrive image (default: mydrive:<this version>)")
@click.option("--storage", default="10Gi", show_default=True,
              help="each peer directory's volume (chunks it stores, downloads)")
@click.option("--couchdb-storage", default="2Gi", show_default=True)
@click.option("--storage-class", help="the volumes' StorageClass (default: the cluster's)")
@json_option
def kubernetes_generate(out: Path, peers: int, replicas: int, namespace: str,
                        cluster_domain: str, image: str | None, storage: str,
                        couchdb_storage: str, storage_class: str | None,
                        as_json: bool) -> None:
    """Write OUT/kubernetes/*.yaml (a StatefulSet, Service and Secrets per peer, the
    namespace, ConfigMaps, a NetworkPolicy) with their PKI in OUT/pki; then
    `kubectl apply -f OUT/kubernetes/`."""
    from mydrive.node.kubernetes import generate

    with handle_errors():
        project = generate(out, peers=peers, replicas=replicas, namespace=namespace,
                           cluster_domain=cluster_domain, image=image, storage=storage,
                           couchdb_storage=couchdb_storage, storage_class=storage_class)
    if as_json:
        print_json(project.to_json())
        return
    click.echo(f"wrote {project.manifests}/ (namespace {project.namespace}, "
               f"{len(project.peers)} peers; the peer files hold private keys: keep them 0600)")
    for p in project.peers:
        click.echo(f"  {p.name:<8} {p.peer_id}  pod {p.name}-0  dialed at {p.host}:7443")
    click.echo(f"keep:   {project.root}/pki/ca.key off the cluster (it admits peers)")
    click.echo(f"apply:  kubectl apply -f {project.manifests}/")
    click.echo(f"use:    kubectl -n {project.namespace} exec -it {project.peers[0].name}-0 "
               f"-c receiver -- mydrive user create --peer /peer --user NAME")
    click.echo(f"UI:     kubectl -n {project.namespace} port-forward "
               f"pod/{project.peers[0].name}-0 7444:7444   # https://127.0.0.1:7444/")
