"""N peers as Kubernetes manifests: ``mydrive kubernetes generate --peers N OUT/``.

The pod is docker/compose.peer.yaml's, taken from the compose generator
(``mydrive.node.compose.pod_services``) and translated container by container, so the two
deployments can't drift apart (tests/unit/test_kubernetes_manifests.py compares them):

* a compose one-shot (``restart: "no"``: render, register) becomes an init container; a
  service a one-shot waits for (nginx, CouchDB) becomes a sidecar (an init container with
  ``restartPolicy: Always``, Kubernetes 1.29+) whose startup probe is its compose health
  check, so the order is compose's ``depends_on``; receiver, sender and ui are the pod's
  containers, probed with the image's health check (``mydrive peer health /peer``);
* ``network_mode: service:nginx`` is what a pod is: one network namespace;
* compose's ``user`` is the container's ``runAsUser`` (the image's 10001); the pod's
  ``fsGroup`` makes the volumes theirs;
* environment variables from the env file are Secret references (``peer-I-couchdb``);
* the peer directory is a persistent volume (``volumeClaimTemplates``; the peer offers
  ``CAPACITY_SHARE`` of it to the others as its ``capacity_bytes``), seeded on every
  start by a ``seed`` init container from the peer's Secrets (peer.json; its key and
  certificate as a ``kubernetes.io/tls`` Secret), so a renewed certificate is a Secret
  update and a restart; CouchDB's data is a second persistent volume;
* ``register`` reads every peer's public document from the ConfigMap ``public-peers``;
  CouchDB's port file is the ConfigMap ``couchdb-config``, copied by ``seed`` into the
  writable ``etc/local.d`` (an emptyDir; the image's entrypoint chowns it and writes its
  admin there): CouchDB listens on the pod's loopback only (nginx, the only listener
  others reach, is in the same pod);
* render adds ``--resolver system``: nginx asks the cluster's DNS (the pod's
  /etc/resolv.conf) instead of Docker's.

Each peer is its own StatefulSet of one pod (``peer-I``, pod ``peer-I-0``): a peer is an
identity (its own key, certificate and peer id), not an interchangeable replica, and a
StatefulSet's pods share one template, so N replicas would mount every peer's private key
into every pod. Peers dial each other at their own Service, ``peer-I.NAMESPACE.svc.DOMAIN``
(the ``host`` in their certificate and peer document), port 7443; a headless Service
``peers`` governs the StatefulSets, and a NetworkPolicy admits only the peer port. Nothing
here talks to a cluster.

  OUT/kubernetes/00-namespace.yaml     the namespace
  OUT/kubernetes/10-network.yaml       the headless Service, the NetworkPolicy, ConfigMaps
  OUT/kubernetes/20-peer-I.yaml        peer I's Secrets, Service and StatefulSet (0600)
  OUT/pki/, OUT/peers/, OUT/public/    as for compose (mydrive.node.peerset): ca.key stays
                                       here, never in a manifest
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest
from mydrive.node.compose import ComposePeer, image_tag, pod_services, to_yaml
from mydrive.node.peerdir import PeerDir
from mydrive.node.peerset import (
    PUBLIC_DIR,
    PeerPlan,
    check_empty,
    check_peer_count,
    make_peer_set,
)
from mydrive.node.pki import CA_CERT, PEER_CERT, PEER_KEY
from mydrive.node.revocation import CRL_NAME
from mydrive.runtime.disk import atomic_write_bytes

DEFAULT_PEERS = 5
DEFAULT_NAMESPACE = "mydrive"
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
DEFAULT_STORAGE = "10Gi"
DEFAULT_COUCHDB_STORAGE = "2Gi"
PEER_PORT = 7443      # every pod has its own address, so every peer uses the same ports
UI_PORT = 7444
COUCHDB_PORT = 5984
IMAGE_UID = 10001     # docker/Dockerfile's USER
PEER_MOUNT = "/peer"
MANIFESTS_DIR = "kubernetes"
GOVERNING_SERVICE = "peers"
PUBLIC_CONFIG = "public-peers"
COUCHDB_CONFIG = "couchdb-config"
COUCHDB_INI = "10-mydrive.ini"
COUCHDB_LOCAL_D = "couchdb-local-d"   # CouchDB's etc/local.d: the ConfigMap's file, copied
PEER_VOLUME = "peer"
COUCHDB_VOLUME = "couchdb-data"
_PEER_SOURCE = "@peer-directory"   # what pod_services mounts at /peer: here, the volume
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_ENV_SECRET = re.compile(r"\$\{(MYDRIVE_COUCHDB_USER|MYDRIVE_COUCHDB_PASSWORD_\d+)(:\?[^}]*)?\}")
_DURATION = re.compile(r"(\d+)s")
_QUANTITY = re.compile(r"([1-9][0-9]{0,8})(Mi|Gi|Ti)")
_QUANTITY_UNIT = {"Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
# The share of the peer volume this peer offers others (peer.json's capacity_bytes); the rest
# is its own downloads, jobs, nginx's files and logs.
CAPACITY_SHARE = 0.8


@dataclass(frozen=True)
class KubernetesPeer:
    name: str          # peer-I: its StatefulSet, Service and Secrets' prefix; pod peer-I-0
    peer_id: str
    host: str          # its Service's DNS name: where the other peers dial it
    directory: Path    # OUT/peers/peer-I: the seed of its Secrets


@dataclass(frozen=True)
class KubernetesProject:
    root: Path
    namespace: str
    peers: tuple[KubernetesPeer, ...]

    @property
    def manifests(self) -> Path:
        return self.root / MANIFESTS_DIR

    def to_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "root": str(self.root),
                "manifests": str(self.manifests),
                "peers": [{"name": p.name, "peer_id": p.peer_id, "pod": f"{p.name}-0",
                           "dialed_at": f"{p.host}:{PEER_PORT}", "dir": str(p.directory)}
                          for p in self.peers]}


# ---- the pod, from compose's -------------------------------------------------------------
def labels(peer: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "mydrive", "app.kubernetes.io/instance": peer}


def volume_bytes(size: str, option: str) -> int:
    """A volume size (``10Gi``) in bytes; only binary units, so it is exact."""
    m = _QUANTITY.fullmatch(size)
    if m is None:
        raise BadRequest(f"{option} {size!r}: a size like 500Mi, 10Gi or 2Ti")
    return int(m.group(1)) * _QUANTITY_UNIT[m.group(2)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _seconds(value: str) -> int:
    m = _DURATION.fullmatch(value)
    assert m, f"compose duration {value!r} is not in seconds"
    return int(m.group(1))


def _env(name: str, value: str, peer: str) -> dict[str, Any]:
    """A compose environment entry: a literal, or the env file's secret as a Secret key."""
    m = _ENV_SECRET.fullmatch(value)
    if m:
        key = "user" if m.group(1) == "MYDRIVE_COUCHDB_USER" else "password"
        return {"name": name,
                "valueFrom": {"secretKeyRef": {"name": f"{peer}-couchdb", "key": key}}}
    assert "${" not in value, f"{name}={value}: no Kubernetes source for this variable"
    return {"name": name, "value": value}


def _mount(volume: str, peer: str) -> dict[str, Any]:
    """A compose volume entry as the pod's volume mount."""
    source, target, *mode = volume.split(":")
    read_only = {"readOnly": True} if mode == ["ro"] else {}
    if source == _PEER_SOURCE:
        return {"name": PEER_VOLUME, "mountPath": target}
    if source == f"couchdb-{peer}":
        return {"name": COUCHDB_VOLUME, "mountPath": target}
    if source == f"./couchdb/{peer}":  # writable: CouchDB's entrypoint chowns it, adds an ini
        return {"name": COUCHDB_LOCAL_D, "mountPath": target}
    if source == f"./{PUBLIC_DIR}":
        return {"name": PUBLIC_CONFIG, "mountPath": target, **read_only}
    raise AssertionError(f"compose volume {volume} has no Kubernetes translation")


def _probe(check: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(startup, readiness) probes running compose's health check as it runs there."""
    test = list(check["test"])
    assert test[0] == "CMD", f"health check {test}: only the exec form translates"
    interval = _seconds(check["interval"])
    ready = {"exec": {"command": test[1:]}, "periodSeconds": interval,
             "timeoutSeconds": _seconds(check["timeout"]),
             "failureThreshold": int(check["retries"])}
    grace = -(-_seconds(check.get("start_period", "0s")) // interval)
    return {**ready, "failureThreshold": int(check["retries"]) + grace}, ready


IMAGE_HEALTH = {"exec": {"command": ["mydrive", "peer", "health", PEER_MOUNT]},
                "periodSeconds": 15, "timeoutSeconds": 30, "failureThreshold": 3}
AS_IMAGE_USER = {"runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "runAsNonRoot": True,
                 "allowPrivilegeEscalation": False}


def container(role: str, svc: Mapping[str, Any], peer: str, image: str) -> dict[str, Any]:
    """One compose service of ``peer``'s pod as a Kubernetes container named ``role``."""
    is_mydrive = str(svc["image"]).startswith("${MYDRIVE_IMAGE")
    c: dict[str, Any] = {"name": role, "image": image if is_mydrive else svc["image"]}
    if "entrypoint" in svc:
        c["command"] = list(svc["entrypoint"])
    if "command" in svc:  # else the image's own (CouchDB)
        c["args"] = [str(a) for a in svc["command"]]
    if role == "render":
        c["args"] += ["--resolver", "system"]  # the cluster's DNS, not Docker's
    env = [_env(k, str(v), peer) for k, v in (svc.get("environment") or {}).items()]
    if env:
        c["env"] = env
    c["volumeMounts"] = [_mount(str(v), peer) for v in svc.get("volumes", [])]
    if "user" in svc:
        c["securityContext"] = dict(AS_IMAGE_USER)
    if role == "nginx":
        c["ports"] = [{"name": "peer", "containerPort": PEER_PORT},
                      {"name": "ui", "containerPort": UI_PORT}]
    check = svc.get("healthcheck") or {}
    if check and not check.get("disable"):
        c["startupProbe"], c["readinessProbe"] = _probe(check)
    elif is_mydrive and svc.get("restart") != "no":
        c["readinessProbe"] = dict(IMAGE_HEALTH)
    return c


def _role(peer: str, service: str) -> str:
    return "nginx" if service == peer else service.removeprefix(f"{peer}-")


def seed_container(image: str) -> dict[str, Any]:
    """Copies the peer's Secrets into its volume, 0600, on every start (Secret updates
    take effect on the next restart; everything else in the volume is left alone), and
    CouchDB's port file into its etc/local.d."""
    script = "\n".join([
        "set -eu",
        f"install -d -m 0700 {PEER_MOUNT}/tls {PEER_MOUNT}/store {PEER_MOUNT}/downloads "
        f"{PEER_MOUNT}/logs",
        f"install -m 0600 /seed/peer.json {PEER_MOUNT}/peer.json",
        f"install -m 0600 /seed-tls/tls.key {PEER_MOUNT}/tls/{PEER_KEY}",
        f"install -m 0644 /seed-tls/tls.crt {PEER_MOUNT}/tls/{PEER_CERT}",
        f"install -m 0644 /seed-tls/ca.crt {PEER_MOUNT}/tls/{CA_CERT}",
        # Only when missing: the peer replaces its list with newer CA-signed ones at run
        # time (docs/tls.md), and a restart must not bring back the generated, older one.
        f"[ -f {PEER_MOUNT}/tls/{CRL_NAME} ] || "
        f"install -m 0644 /seed-tls/{CRL_NAME} {PEER_MOUNT}/tls/{CRL_NAME}",
        f"install -m 0644 /{COUCHDB_CONFIG}/{COUCHDB_INI} /{COUCHDB_LOCAL_D}/{COUCHDB_INI}"])
    return {"name": "seed", "image": image, "command": ["sh", "-c", script],
            "volumeMounts": [{"name": PEER_VOLUME, "mountPath": PEER_MOUNT},
                             {"name": "seed", "mountPath": "/seed", "readOnly": True},
                             {"name": "seed-tls", "mountPath": "/seed-tls", "readOnly": True},
                             {"name": COUCHDB_CONFIG, "mountPath": f"/{COUCHDB_CONFIG}",
                              "readOnly": True},
                             {"name": COUCHDB_LOCAL_D, "mountPath": f"/{COUCHDB_LOCAL_D}"}],
            "securityContext": dict(AS_IMAGE_USER)}


def pod_spec(peer: str, all_peers: Sequence[str], image: str) -> dict[str, Any]:
    """``peer``'s pod: compose's pod services, in compose's dependency order."""
    services = pod_services(
        ComposePeer(name=peer, peer_id="", directory=Path(), pod_address="",
                    peer_port=PEER_PORT, ui_port=UI_PORT, couchdb_port=COUCHDB_PORT),
        all_peers=all_peers, mount=_PEER_SOURCE)
    one_shots = [n for n, s in services.items() if s.get("restart") == "no"]
    awaited: set[str] = set()
    todo = list(one_shots)
    while todo:  # everything a one-shot waits for runs before it: an init container
        for dep in services[todo.pop()].get("depends_on", {}):
            if dep not in awaited:
                awaited.add(dep)
                todo.append(dep)
    init: list[dict[str, Any]] = [seed_container(image)]
    main: list[dict[str, Any]] = []
    started: set[str] = set()
    for name, svc in services.items():
        c = container(_role(peer, name), svc, peer, image)
        if name in one_shots or name in awaited:
            assert set(svc.get("depends_on", {})) <= started, f"{name} before its dependencies"
            if name not in one_shots:
                c["restartPolicy"] = "Always"  # a sidecar: runs alongside the containers
            init.append(c)
            started.add(name)
        else:
            main.append(c)
    return {
        "securityContext": {"fsGroup": IMAGE_UID, "fsGroupChangePolicy": "OnRootMismatch"},
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,  # nothing here talks to the API server
        "initContainers": init,
        "containers": main,
        "volumes": [
            {"name": "seed", "secret": {"secretName": f"{peer}-peer", "defaultMode": 0o440}},
            {"name": "seed-tls", "secret": {"secretName": f"{peer}-tls", "defaultMode": 0o440}},
            {"name": PUBLIC_CONFIG, "configMap": {"name": PUBLIC_CONFIG}},
            {"name": COUCHDB_CONFIG, "configMap": {"name": COUCHDB_CONFIG}},
            {"name": COUCHDB_LOCAL_D, "emptyDir": {}},
        ],
    }


# ---- the manifests -------------------------------------------------------------------------
def _meta(name: str, namespace: str, peer: str | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": namespace,
            "labels": labels(peer) if peer else {"app.kubernetes.io/name": "mydrive"}}


def _claim(name: str, size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name}, "spec": spec}


def peer_documents(peer: PeerDir, namespace: str, image: str, all_peers: Sequence[str], *,
                   storage: str, couchdb_storage: str,
                   storage_class: str | None) -> list[dict[str, Any]]:
    """Peer ``peer``'s Secrets, Service and StatefulSet."""
    name, cfg = peer.config.name, peer.config
    tls = peer.tls_dir
    secrets = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(f"{name}-tls", namespace, name),
         "type": "kubernetes.io/tls",
         "data": {"tls.crt": _b64((tls / PEER_CERT).read_bytes()),
                  "tls.key": _b64((tls / PEER_KEY).read_bytes()),
                  "ca.crt": _b64((tls / CA_CERT).read_bytes()),
                  CRL_NAME: _b64((tls / CRL_NAME).read_bytes())}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(f"{name}-peer", namespace, name),
         "type": "Opaque", "data": {"peer.json": _b64((peer.root / "peer.json").read_bytes())}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": _meta(f"{name}-couchdb", namespace, name), "type": "Opaque",
         "data": {"user": _b64(cfg.couchdb_user.encode()),
                  "password": _b64(cfg.couchdb_password.encode())}},
    ]
    # A changed Secret changes the template, so `kubectl apply` restarts the pod with it.
    digest = hashlib.sha256(json.dumps(secrets, sort_keys=True).encode()).hexdigest()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, name),
               "spec": {"selector": labels(name),
                        "ports": [{"name": "peer", "port": PEER_PORT, "targetPort": "peer",
                                   "protocol": "TCP"}]}}
    stateful_set = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, namespace, name),
        "spec": {
            "replicas": 1, "serviceName": GOVERNING_SERVICE,
            "selector": {"matchLabels": labels(name)},
            "template": {
                "metadata": {"labels": labels(name),
                             "annotations": {"mydrive/secrets-sha256": digest}},
                "spec": pod_spec(name, all_peers, image)},
            "volumeClaimTemplates": [_claim(PEER_VOLUME, storage, storage_class),
                                     _claim(COUCHDB_VOLUME, couchdb_storage, storage_class)]}}
    return [*secrets, service, stateful_set]


def shared_documents(namespace: str, public: Mapping[str, str]) -> list[dict[str, Any]]:
    """The governing Service, the NetworkPolicy and the ConfigMaps (nothing secret)."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(GOVERNING_SERVICE, namespace),
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                  "selector": {"app.kubernetes.io/name": "mydrive"},
                  "ports": [{"name": "peer", "port": PEER_PORT, "protocol": "TCP"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta("peer-port-only", namespace),
         "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mydrive"}},
                  "policyTypes": ["Ingress"],
                  "ingress": [{"ports": [{"protocol": "TCP", "port": PEER_PORT}]}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(PUBLIC_CONFIG, namespace),
         "data": dict(public)},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(COUCHDB_CONFIG, namespace),
         "data": {COUCHDB_INI: "; mydrive kubernetes generate: CouchDB on the pod's loopback "
                  f"only (nginx is its only client from outside)\n[chttpd]\n"
                  f"port = {COUCHDB_PORT}\nbind_address = 127.0.0.1\n"}},
    ]


def to_documents(documents: Sequence[Mapping[str, Any]]) -> str:
    return "".join(f"---\n{to_yaml(d)}\n" for d in documents)


def _write(path: Path, header: str, documents: Sequence[Mapping[str, Any]], *,
           secret: bool) -> None:
    atomic_write_bytes(path, (header + to_documents(documents)).encode())
    if secret and os.name == "posix":
        os.chmod(path, 0o600)


def generate(out: Path, *, peers: int = DEFAULT_PEERS, namespace: str = DEFAULT_NAMESPACE,
             cluster_domain: str = DEFAULT_CLUSTER_DOMAIN, image: str | None = None,
             replicas: int = 2, storage: str = DEFAULT_STORAGE,
             couchdb_storage: str = DEFAULT_COUCHDB_STORAGE, storage_class: str | None = None,
             **overrides: Any) -> KubernetesProject:
    """Write N peers' manifests (and their PKI and seeds) into ``out`` (empty or absent)."""
    check_peer_count(peers)
    if not _DNS_LABEL.fullmatch(namespace):
        raise BadRequest(f"--namespace {namespace!r} is not a DNS label (lowercase letters, "
                         f"digits and '-', at most 63)")
    if not all(_DNS_LABEL.fullmatch(part) for part in cluster_domain.split(".")):
        raise BadRequest(f"--cluster-domain {cluster_domain!r} is not a DNS name")
    capacity = int(volume_bytes(storage, "--storage") * CAPACITY_SHARE)
    volume_bytes(couchdb_storage, "--couchdb-storage")
    overrides = {"capacity_bytes": capacity, **overrides}
    out = check_empty(out)
    out.mkdir(parents=True, exist_ok=True)
    image = image or image_tag()
    names = [f"peer-{i}" for i in range(peers)]
    plans = [PeerPlan(name=n, host=f"{n}.{namespace}.svc.{cluster_domain}",
                      nginx_port=PEER_PORT, ui_port=UI_PORT, couchdb_port=COUCHDB_PORT)
             for n in names]
    made = make_peer_set(out, plans, network_name=f"mydrive network {namespace}",
                         replicas=replicas, **overrides)
    manifests = out / MANIFESTS_DIR
    manifests.mkdir()
    header = ("# Generated by `mydrive kubernetes generate` (mydrive/node/kubernetes.py); "
              "docs/deploy.md.\n")
    _write(manifests / "00-namespace.yaml", header, [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": {"app.kubernetes.io/name": "mydrive"}}}],
        secret=False)
    public = {f"{n}.json": (out / PUBLIC_DIR / f"{n}.json").read_text() for n in names}
    _write(manifests / "10-network.yaml", header, shared_documents(namespace, public),
           secret=False)
    for peer in made:
        _write(manifests / f"20-{peer.config.name}.yaml",
               header + "# Holds this peer's private key and passwords: keep it 0600.\n",
               peer_documents(peer, namespace, image, names, storage=storage,
                              couchdb_storage=couchdb_storage, storage_class=storage_class),
               secret=True)
    return KubernetesProject(root=out, namespace=namespace, peers=tuple(
        KubernetesPeer(name=p.config.name, peer_id=p.config.peer_id, host=p.config.host,
                       directory=p.root) for p in made))
