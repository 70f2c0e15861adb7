"""N peers as one docker compose project: ``mydrive compose generate --peers N OUT/``.

Why a generator: docker/compose.local.yaml holds three hand-written pods and three peers
can't keep R = 2 replicas without one peer holding a whole file (placement needs N >= 4).
This module writes a project for any N with everything it needs, so ``docker compose up``
is the only step left:

  OUT/compose.yaml        N pods and one Toxiproxy on one network with fixed addresses
  OUT/.env                each pod's own CouchDB admin password (from its peer.json, never
                          shared), the image, the uid/gid the containers run as (0600: it
                          holds the passwords; compose reads it)
  OUT/pki/                the network CA; ca.key is never mounted into any container
  OUT/peers/peer-I/       the peer directories, bind-mounted at /peer in pod I; the host's
                          `mydrive … --peer OUT/peers/peer-I` works on the same directory
  OUT/public/peer-I.json  public peer documents; every pod's register step introduces all
  OUT/couchdb/peer-I/     CouchDB's etc/local.d of pod I (its port)
  OUT/toxiproxy.json      the proxies Toxiproxy creates when it starts, one per peer

Each pod is the pod of docker/compose.peer.yaml (tests/unit/test_compose_files.py compares
them), with these differences only:

* service names are prefixed ``peer-I-``; the nginx service, which owns the pod's network
  namespace, is ``peer-I`` itself (as in docker/compose.local.yaml);
* nginx publishes no peer port on the host: the pods and the host reach every peer through
  Toxiproxy, at ``TOXIPROXY_IP:PEER_PORT`` (each peer its own port), which forwards to the
  pod's own fixed address. That address is the peer's ``host`` (in its certificate and its
  peer document), so the test-bed can slow, cut or reset every peer's traffic;
* nginx also publishes the pod's CouchDB on the host's 127.0.0.1 at the peer's own
  ``couchdb_port`` (CouchDB listens there inside the pod, set in ``couchdb/peer-I/``), so
  ``mydrive`` run on the host with ``--peer OUT/peers/peer-I`` reads that peer's metadata
  exactly as the pod's services do; the UI is published on 127.0.0.1 as in the pod file;
* ``register`` introduces every peer of the project (the documents in ``public/``), and each
  pod's CouchDB admin password is its own variable, ``MYDRIVE_COUCHDB_PASSWORD_I``, as in
  docker/compose.local.yaml;
* health checks may run more often (``health_interval_s``) so a test cluster is up sooner.

Addresses: the network is one /24; Toxiproxy is ``.5``, pod I is ``.(10+I)``. The host
reaches both directly (Linux routes to docker's bridge networks). Nothing here talks to a
Docker engine: the chaos harness and the tests bring the project up (docs/deploy.md).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest
from mydrive.node.nginx import GLIBC_MALLOC_ENVIRONMENT
from mydrive.node.peerdir import PeerDir, free_port
from mydrive.node.peerset import (
    PeerPlan,
    check_empty,
    check_peer_count,
    make_peer_set,
    project_name,
)
from mydrive.runtime.disk import atomic_write_bytes

DEFAULT_PEERS = 5
FIRST_PEER_PORT = 7443
PEER_MOUNT = "/peer"
TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"
TOXIPROXY_API_PORT = 8474
NGINX_IMAGE = "nginx:1.28"
COUCHDB_IMAGE = "couchdb:3"
TOXIPROXY_OCTET = 5
FIRST_PEER_OCTET = 10
DEFAULT_SUBNET_POOL = ipaddress.ip_network("10.219.0.0/16")
NETWORK = "mesh"
COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env"
TOXIPROXY_CONFIG = "toxiproxy.json"


@dataclass(frozen=True)
class ComposePeer:
    """One peer of a generated project, as the host and the test-bed see it."""

    name: str            # peer-I: the pod's nginx service (the other services: peer-I-*)
    peer_id: str
    directory: Path      # OUT/peers/peer-I, mounted at /peer in the pod
    pod_address: str     # the pod's own address on the project network
    peer_port: int       # nginx's mutual-TLS port in the pod, and Toxiproxy's for this peer
    ui_port: int         # published on the host's 127.0.0.1
    couchdb_port: int    # published on the host's 127.0.0.1

    @property
    def advertised_address(self) -> str:
        """What other peers and the host dial: this peer's proxy on Toxiproxy."""
        return PeerDir(self.directory).config.nginx_address


@dataclass(frozen=True)
class ComposeProject:
    """What ``generate`` wrote: read back with ``load``."""

    root: Path
    name: str
    subnet: str
    toxiproxy_address: str
    peers: tuple[ComposePeer, ...]

    @property
    def compose_file(self) -> Path:
        return self.root / COMPOSE_FILE

    @property
    def network(self) -> str:
        """The docker network's name (compose prefixes the project name)."""
        return f"{self.name}_{NETWORK}"

    @property
    def toxiproxy_api(self) -> str:
        return f"http://{self.toxiproxy_address}:{TOXIPROXY_API_PORT}"

    def to_json(self, *, relative: bool = False) -> dict[str, Any]:
        def where(path: Path) -> str:
            return path.relative_to(self.root).as_posix() if relative else str(path)

        return {"name": self.name, "root": "." if relative else str(self.root),
                "subnet": self.subnet, "toxiproxy": self.toxiproxy_api,
                "compose_file": where(self.compose_file),
                "peers": [{"name": p.name, "peer_id": p.peer_id, "dir": where(p.directory),
                           "pod_address": p.pod_address, "peer_port": p.peer_port,
                           "ui": f"https://127.0.0.1:{p.ui_port}/",
                           "couchdb_port": p.couchdb_port} for p in self.peers]}


def image_tag() -> str:
    """The project image the containers run: ``mydrive:<version>`` (docker/Dockerfile)."""
    try:
        version = importlib_metadata.version("mydrive")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover - not installed
        version = "0.1.0"
    return f"mydrive:{version}"


def default_subnet(name: str) -> str:
    """A /24 of 10.219.0.0/16 chosen by the project name (``--subnet`` picks another)."""
    index = int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big") % 256
    return str(list(DEFAULT_SUBNET_POOL.subnets(new_prefix=24))[index])


def _check_subnet(subnet: str, peers: int) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as exc:
        raise BadRequest(f"--subnet {subnet!r} is not a network address: {exc}") from exc
    if not isinstance(net, ipaddress.IPv4Network) or net.num_addresses < FIRST_PEER_OCTET \
            + peers + 2:
        raise BadRequest(f"--subnet {subnet} is too small for {peers} peers (use a /24)")
    return net


# ---- the pod ----------------------------------------------------------------------------
LOGGING: dict[str, Any] = {"driver": "json-file",
                           "options": {"max-size": "10m", "max-file": "3"}}
USER = "${MYDRIVE_UID:-10001}:${MYDRIVE_GID:-10001}"


def password_variable(peer: str) -> str:
    """The env file's variable holding ``peer-I``'s own CouchDB admin password."""
    return f"MYDRIVE_COUCHDB_PASSWORD_{peer.rsplit('-', 1)[1]}"


def mydrive_env(peer: str) -> dict[str, str]:
    """What every mydrive container of ``peer``'s pod gets: its CouchDB admin."""
    var = password_variable(peer)
    return {"MYDRIVE_COUCHDB_USER":
            "${MYDRIVE_COUCHDB_USER:?set MYDRIVE_COUCHDB_USER in the env file}",
            "MYDRIVE_COUCHDB_PASSWORD": f"${{{var}:?set {var} ({peer}'s own) in the env file}}"}


def _mydrive_service(env: dict[str, str], **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"image": "${MYDRIVE_IMAGE:-mydrive:0.1.0}", "user": USER,
                            "restart": "unless-stopped"}
    base.update(fields)
    base.setdefault("environment", dict(env))
    base["logging"] = LOGGING
    return base


def pod_services(peer: ComposePeer, *, all_peers: Sequence[str], mount: str,
                 health_interval_s: int = 10) -> dict[str, dict[str, Any]]:
    """The services of one peer's pod: docker/compose.peer.yaml's pod, for this project."""
    pod = peer.name
    env = mydrive_env(pod)
    volumes = [f"{mount}:{PEER_MOUNT}"]
    interval = f"{health_interval_s}s"
    after_register = {pod: {"condition": "service_healthy", "restart": True},
                      f"{pod}-register": {"condition": "service_completed_successfully"}}
    couch_up = (f"exec 3<>/dev/tcp/127.0.0.1/{peer.couchdb_port} && "
                "printf 'GET /_up HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"ok\"' <&3")
    return {
        # One-shot: render /peer/nginx/nginx.conf for the container (and check the ports).
        f"{pod}-render": _mydrive_service(
            env,
            network_mode="none", restart="no", healthcheck={"disable": True},
            volumes=list(volumes),
            command=["peer", "render-nginx", PEER_MOUNT, "--container",
                     "--expect-peer-port", str(peer.peer_port),
                     "--expect-ui-port", str(peer.ui_port)]),
        pod: {
            "image": NGINX_IMAGE, "user": USER, "restart": "unless-stopped",
            "entrypoint": ["nginx"],
            "environment": dict(GLIBC_MALLOC_ENVIRONMENT),  # as a local peer's nginx
            "command": ["-p", f"{PEER_MOUNT}/nginx", "-c", f"{PEER_MOUNT}/nginx/nginx.conf",
                        "-e", f"{PEER_MOUNT}/nginx/logs/error.log"],
            "ports": [f"127.0.0.1:{peer.ui_port}:{peer.ui_port}",
                      f"127.0.0.1:{peer.couchdb_port}:{peer.couchdb_port}"],
            "volumes": list(volumes),
            "networks": {NETWORK: {"ipv4_address": peer.pod_address}},
            "depends_on": {f"{pod}-render": {"condition": "service_completed_successfully"}},
            "healthcheck": {"test": ["CMD", "bash", "-c",
                                     f"exec 3<>/dev/tcp/127.0.0.1/{peer.peer_port}"],
                            "interval": interval, "timeout": "5s", "retries": 3,
                            "start_period": "5s"},
            "logging": LOGGING,
        },
        f"{pod}-couchdb": {
            "image": COUCHDB_IMAGE, "restart": "unless-stopped",
            "network_mode": f"service:{pod}",
            "environment": {"COUCHDB_USER": "${MYDRIVE_COUCHDB_USER}",
                            "COUCHDB_PASSWORD": f"${{{password_variable(pod)}}}"},
            "volumes": [f"couchdb-{pod}:/opt/couchdb/data",
                        f"./couchdb/{pod}:/opt/couchdb/etc/local.d"],
            "depends_on": {pod: {"condition": "service_healthy", "restart": True}},
            "healthcheck": {"test": ["CMD", "bash", "-c", couch_up], "interval": interval,
                            "timeout": "5s", "retries": 6, "start_period": "20s"},
            "logging": LOGGING,
        },
        # One-shot: CouchDB's _users and _replicator, and every peer's document.
        f"{pod}-register": _mydrive_service(
            env,
            network_mode=f"service:{pod}", restart="no", healthcheck={"disable": True},
            volumes=[*volumes, "./public:/public:ro"],
            command=["peer", "register", PEER_MOUNT, "--wait-s", "120",
                     *[f"/public/{name}.json" for name in all_peers]],
            depends_on={f"{pod}-couchdb": {"condition": "service_healthy"}}),
        f"{pod}-receiver": _mydrive_service(
            env, network_mode=f"service:{pod}", volumes=list(volumes),
            command=["serve", "receiver", PEER_MOUNT],
            environment={**env, "MYDRIVE_SERVICE": "receiver"},
            depends_on=dict(after_register)),
        f"{pod}-sender": _mydrive_service(
            env, network_mode=f"service:{pod}", volumes=list(volumes),
            command=["serve", "sender", PEER_MOUNT],
            environment={**env, "MYDRIVE_SERVICE": "sender"},
            depends_on=dict(after_register)),
        f"{pod}-ui": _mydrive_service(
            env, network_mode=f"service:{pod}", volumes=list(volumes),
            command=["serve", "ui", PEER_MOUNT, "--server", "gunicorn"],
            environment={**env, "MYDRIVE_SERVICE": "ui"},
            depends_on=dict(after_register)),
    }


def compose_model(project: ComposeProject, *, health_interval_s: int = 10,
                  toxiproxy_args: Sequence[str] = ()) -> dict[str, Any]:
    """The whole compose file as data (``write_compose`` renders it as YAML)."""
    names = [p.name for p in project.peers]
    services: dict[str, Any] = {}
    for peer in project.peers:
        services.update(pod_services(peer, all_peers=names,
                                     mount=f"./peers/{peer.name}",
                                     health_interval_s=health_interval_s))
    services["toxiproxy"] = {
        "image": TOXIPROXY_IMAGE, "restart": "unless-stopped",
        "command": ["-host=0.0.0.0", f"-port={TOXIPROXY_API_PORT}",
                    f"-config=/config/{TOXIPROXY_CONFIG}", *toxiproxy_args],
        "volumes": [f"./{TOXIPROXY_CONFIG}:/config/{TOXIPROXY_CONFIG}:ro"],
        "networks": {NETWORK: {"ipv4_address": project.toxiproxy_address}},
        "logging": LOGGING,
    }
    return {
        "name": project.name,
        "services": services,
        "networks": {NETWORK: {"ipam": {"config": [{"subnet": project.subnet}]}}},
        "volumes": {f"couchdb-{name}": {} for name in names},
    }


def toxiproxy_config(project: ComposeProject) -> list[dict[str, Any]]:
    """One proxy per peer: TOXIPROXY:PEER_PORT -> the pod's own address, same port."""
    return [{"name": peer.name, "listen": f"0.0.0.0:{peer.peer_port}",
             "upstream": f"{peer.pod_address}:{peer.peer_port}", "enabled": True}
            for peer in project.peers]


# ---- YAML -------------------------------------------------------------------------------
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]+")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str), f"no YAML for {type(value).__name__}"
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block YAML for the plain data of a compose file (dicts, lists, str, int, bool).

    The product has no YAML library; compose files need only this much. Lists of scalars are
    written in flow style, like the hand-written files in docker/.
    """
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            k = key if _PLAIN_KEY.fullmatch(key) else json.dumps(key)
            nested = isinstance(item, Mapping) and bool(item)
            nested |= isinstance(item, list) and not all(
                isinstance(v, (str, int, bool)) for v in item)
            if nested:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(item, indent + 1))
            else:
                lines.append(f"{pad}{k}: {_inline(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping):
                first, *rest = to_yaml(item, indent + 1).splitlines()
                lines.append(f"{pad}- {first.lstrip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_inline(item)}")
    else:
        lines.append(pad + _scalar(value))
    return "\n".join(lines)


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _scalar(value)


def write_compose(project: ComposeProject, model: Mapping[str, Any]) -> Path:
    header = ("# Generated by `mydrive compose generate` (mydrive/node/compose.py); "
              "docs/deploy.md.\n"
              f"# {len(project.peers)} peer pods and a Toxiproxy in front of every peer's "
              "port. From this directory:\n"
              "#   docker compose up -d --wait        docker compose down -v\n")
    path = project.compose_file
    atomic_write_bytes(path, (header + to_yaml(model) + "\n").encode())
    return path


# ---- generate ---------------------------------------------------------------------------
def _secret_file(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
    if os.name == "posix":
        os.chmod(path, 0o600)


def generate(out: Path, *, peers: int = DEFAULT_PEERS, name: str | None = None,
             subnet: str | None = None, replicas: int = 2, image: str | None = None,
             uid: int | None = None, gid: int | None = None, health_interval_s: int = 10,
             toxiproxy_args: Sequence[str] = (), **overrides: Any) -> ComposeProject:
    """Write an N-peer compose project into ``out`` (which must be empty or absent).

    ``overrides`` go into every peer's peer.json (chunk sizes, timeouts, …). ``uid``/``gid``
    are what the containers run as (default: the caller's, so the host's ``mydrive`` and
    the pods share the peer directories; on Windows 10001).
    """
    check_peer_count(peers)
    out = check_empty(out)
    name = project_name(out, name)
    net = _check_subnet(subnet or default_subnet(name), peers)
    hosts = list(net.hosts())
    toxiproxy_ip = str(hosts[TOXIPROXY_OCTET - 1])
    out.mkdir(parents=True, exist_ok=True)
    plans = [PeerPlan(name=f"peer-{i}", host=toxiproxy_ip, nginx_port=FIRST_PEER_PORT + i,
                      ui_port=free_port(), couchdb_port=free_port()) for i in range(peers)]
    made: list[ComposePeer] = []
    admins: dict[str, tuple[str, str]] = {}  # peer -> its own CouchDB admin (init_peer's)
    for i, (plan, peer) in enumerate(zip(plans, make_peer_set(
            out, plans, network_name=f"mydrive network {name}", replicas=replicas,
            **overrides), strict=True)):
        admins[plan.name] = (peer.config.couchdb_user, peer.config.couchdb_password)
        made.append(ComposePeer(name=plan.name, peer_id=peer.config.peer_id,
                                directory=peer.root,
                                pod_address=str(hosts[FIRST_PEER_OCTET + i - 1]),
                                peer_port=plan.nginx_port, ui_port=plan.ui_port,
                                couchdb_port=plan.couchdb_port))
        local_d = out / "couchdb" / plan.name
        local_d.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(local_d / "10-mydrive-port.ini",
                           (f"; written by mydrive compose generate: the port {plan.name}'s "
                            f"services and the host use\n[chttpd]\nport = {plan.couchdb_port}\n"
                            f"bind_address = 0.0.0.0\n").encode())
    project = ComposeProject(root=out, name=name, subnet=str(net),
                             toxiproxy_address=toxiproxy_ip, peers=tuple(made))
    atomic_write_bytes(out / TOXIPROXY_CONFIG,
                       json.dumps(toxiproxy_config(project), indent=2).encode())
    if uid is None:
        uid = os.getuid() if hasattr(os, "getuid") else 10001
    if gid is None:
        gid = os.getgid() if hasattr(os, "getgid") else 10001
    users = {user for user, _ in admins.values()}
    assert len(users) == 1, f"peers got different CouchDB admin names {users}"
    _secret_file(out / ENV_FILE, "\n".join([
        "# Read by docker compose from this directory (written by mydrive compose generate).",
        "# Each pod's CouchDB admin: the same name, a password of its own (from its peer.json;",
        "# no peer ever needs another's).",
        f"MYDRIVE_COUCHDB_USER={users.pop()}",
        *[f"{password_variable(name)}={password}" for name, (_, password) in admins.items()],
        f"MYDRIVE_IMAGE={image or image_tag()}",
        "# The containers run as the owner of peers/ (the host's mydrive shares them).",
        f"MYDRIVE_UID={uid}",
        f"MYDRIVE_GID={gid}", ""]))
    write_compose(project, compose_model(project, health_interval_s=health_interval_s,
                                         toxiproxy_args=toxiproxy_args))
    _write_manifest(project)
    return project


MANIFEST = "project.json"


def _write_manifest(project: ComposeProject) -> None:
    atomic_write_bytes(project.root / MANIFEST,
                       json.dumps(project.to_json(relative=True), indent=2).encode())


def load(root: Path) -> ComposeProject:
    """A generated project read back from its directory (``project.json``)."""
    root = root.resolve()
    path = root / MANIFEST
    try:
        doc = json.loads(path.read_text())
        peers = tuple(
            ComposePeer(name=p["name"], peer_id=p["peer_id"], directory=root / p["dir"],
                        pod_address=p["pod_address"], peer_port=int(p["peer_port"]),
                        ui_port=int(str(p["ui"]).rsplit(":", 1)[1].rstrip("/")),
                        couchdb_port=int(p["couchdb_port"]))
            for p in doc["peers"])
        api = str(doc["toxiproxy"])
        return ComposeProject(root=root, name=str(doc["name"]),
                              subnet=str(doc["subnet"]),
                              toxiproxy_address=api.split("//", 1)[1].rsplit(":", 1)[0],
                              peers=peers)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise BadRequest(f"{root} is not a generated compose project ({path}: {exc})") from exc
