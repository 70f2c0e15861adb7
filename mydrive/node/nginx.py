"""Render and run a peer's nginx (TLS termination and routing; docs/tls.md).

The template is nginx/peer.conf.template; the rendered config, pid file, logs and temp
directories live in PEER_DIR/nginx/, the prefix nginx is started with. The rendered config
holds the CouchDB member's password (its ``/couchdb/`` route reads as that member for the
other peers), so it is written 0600, atomically: a crash leaves the old config or the new.
"""

from __future__ import annotations

import base64
import logging
import re
import shutil
import ssl
import string
import subprocess
import sys
import urllib.request
from pathlib import Path

from mydrive.errors import BadRequest
from mydrive.node.peerdir import PeerConfig, PeerDir
from mydrive.node.pki import TlsFiles, tls_files, write_secret
from mydrive.node.service_socket import (
    nginx_upstream,
    nginx_worker_user,
    record_nginx_upstream,
    root_peer,
)

log = logging.getLogger("mydrive.node.nginx")

# In a source checkout (editable install) the template is nginx/ in the tree; a plain install
# (the docker image) has it in PREFIX/share/mydrive/nginx/ (pyproject data-files).
TEMPLATE_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "nginx" / "peer.conf.template",
    Path(sys.prefix) / "share" / "mydrive" / "nginx" / "peer.conf.template",
)


def template_path() -> Path:
    for candidate in TEMPLATE_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise BadRequest(f"nginx config template not found (looked at "
                     f"{', '.join(str(c) for c in TEMPLATE_CANDIDATES)}); reinstall mydrive")
_DB_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def nginx_binary() -> str:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in NGINX_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise BadRequest("nginx is not installed: run scripts/setup.sh "
                     "(it installs Debian's nginx-light)")


def prefix(peer: PeerDir) -> Path:
    return peer.root / "nginx"


# Local processes: the UI listener admits this machine's loopback only.
LOOPBACK_UI_ACCESS = "allow 127.0.0.1;\n        allow ::1;\n        deny all;"
# In a container the browser's connection arrives from Docker's port forwarding, never from
# 127.0.0.1; the compose file publishes the UI port on the host's 127.0.0.1 only instead.
CONTAINER_UI_ACCESS = "# access: the host publishes this port on 127.0.0.1 only (docker/)"
# Docker's embedded DNS: the egress proxy_pass names its target in a variable, which nginx
# resolves at request time (peer hosts are names like peer-1 in a compose network).
CONTAINER_RESOLVER = "resolver 127.0.0.11 ipv6=off valid=30s;"


# In a pod nginx dials the services' loopback ports, so its workers need no socket and keep
# nginx's own unprivileged default: never the peer's account, which may be root there.
CONTAINER_WORKER_USER = ("# workers: nginx's default unprivileged account (the services are on "
                         "the pod's loopback)")


def render(peer: PeerDir, *, container: bool = False, resolver: str | None = None) -> Path:
    """Write PEER_DIR/nginx/nginx.conf for this peer's ports and certificates.

    ``container``: nginx runs in the peer's container network namespace (docker/, shared
    with the services, which stay on its loopback, told so by PEER_DIR/nginx/upstream.json;
    elsewhere they listen on their 0600 unix sockets only, and a root-started nginx runs
    its workers as the peer's account to open them; in a pod they keep nginx's default
    unprivileged account): it listens on every address there,
    leaves the UI's host restriction to the port publishing, and resolves names with
    Docker's DNS (``resolver``: another name server's address, e.g. Kubernetes' DNS).
    """
    cfg = peer.config
    if not cfg.tls:
        raise BadRequest(f"peer {cfg.name} has no TLS configured (create it with a network CA)")
    base = prefix(peer)
    for sub in ("logs", "tmp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    files = tls_files(peer.tls_dir)
    if not cfg.egress_port:
        raise BadRequest(f"peer {cfg.name} predates the egress listener: create it again")
    if _DB_NAME_RE.fullmatch(cfg.couchdb_db) is None:
        raise BadRequest(f"couchdb_db {cfg.couchdb_db!r}: behind nginx it must be lowercase "
                         f"letters, digits, '_' and '-', starting with a letter")
    couchdb_pass = couchdb_read_route(cfg) if cfg.couchdb_port else "return 404;"
    text = string.Template(template_path().read_text()).substitute(
        prefix=base.resolve().as_posix(), peer_id=cfg.peer_id,
        temp=_worker_temp_dir(peer, container=container).as_posix(),
        worker_user=CONTAINER_WORKER_USER if container else nginx_worker_user(peer.root),
        listen_host="0.0.0.0" if container else cfg.host,  # noqa: S104 - the pod's own netns
        ui_access=CONTAINER_UI_ACCESS if container else LOOPBACK_UI_ACCESS,
        resolver=(f"resolver {resolver} ipv6=off valid=30s;" if resolver
                  else CONTAINER_RESOLVER if container else ""),
        peer_port=cfg.nginx_port, ui_port=cfg.ui_port, ui_backend_port=cfg.ui_backend_port,
        receiver=nginx_upstream(peer.root, "receiver", "127.0.0.1", cfg.receiver_port,
                                container=container),
        sender=nginx_upstream(peer.root, "sender", "127.0.0.1", cfg.sender_port,
                              container=container),
        egress_port=cfg.egress_port,
        cert=files.cert.resolve().as_posix(), key=files.key.resolve().as_posix(),
        ca_cert=files.ca_cert.resolve().as_posix(), couchdb_db=cfg.couchdb_db,
        couchdb_pass=couchdb_pass, **_crl_directives(files))
    path = base / "nginx.conf"
    write_secret(path, text.encode())  # it holds the member's password
    # The services listen where this config sends nginx: their sockets, or in a container
    # their loopback ports (mydrive.node.service_socket.service_listen).
    record_nginx_upstream(peer.root, container=container)
    return path


def _worker_temp_dir(peer: PeerDir, *, container: bool) -> Path:
    """Where nginx's workers write request and response bodies they buffer: PEER_DIR/nginx/
    tmp, or for a peer of root's its runtime directory's (its workers, not root, may not
    search PEER_DIR's; mydrive.node.nginx_workers)."""
    if container or not root_peer(peer.root):
        return prefix(peer).resolve() / "tmp"
    from mydrive.node.nginx_workers import prepare_runtime_dir, temp_dir, worker_account

    prepare_runtime_dir(peer.root, worker_account())
    return temp_dir(peer.root)


def _crl_directives(files: TlsFiles) -> dict[str, str]:
    """``ssl_crl``/``proxy_ssl_crl`` on the peer's revocation list. A peer directory made
    before revocation has none (only the CA can sign one): nginx then runs without, said
    loudly, until ``mydrive pki install-crl`` gives it the network's list."""
    if not files.crl.is_file():
        log.warning("%s missing: nginx will not refuse revoked certificates; install the "
                    "network's list with: mydrive pki install-crl", files.crl)
        missing = "# no revocation list installed (mydrive pki install-crl)"
        return {"client_crl": missing, "upstream_crl": missing}
    path = files.crl.resolve().as_posix()
    return {"client_crl": f"ssl_crl {path};", "upstream_crl": f"proxy_ssl_crl {path};"}


def reload(peer: PeerDir) -> str:
    """Make a running nginx re-read its config and revocation list (``nginx -s reload``:
    the master re-reads and replaces its workers; a connection already open keeps going
    until it closes). What happened, for the operator."""
    base = prefix(peer).resolve()
    conf = base / "nginx.conf"
    if not conf.is_file():
        return "nginx's config is not rendered yet; nginx reads the list when it starts"
    if "ssl_crl" not in conf.read_text(errors="replace"):
        return ("nginx's config does not read the revocation list yet: render it again "
                "(mydrive peer render-nginx, or restart the peer) and restart nginx")
    if not (base / "nginx.pid").is_file():
        return "nginx is not running; it reads the revocation list when it starts"
    result = subprocess.run([nginx_binary(), "-p", str(base), "-c", str(conf),
                             "-e", str(base / "logs" / "error.log"), "-s", "reload"],
                            capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise BadRequest(f"nginx reload failed: {result.stderr.strip()[-400:]}")
    return "nginx reloaded: it refuses the revoked certificates from now on"


def couchdb_read_route(cfg: PeerConfig) -> str:
    """The proxy half of every allowed ``/couchdb/`` location: to this peer's CouchDB, as its
    database member, whatever credentials, cookies or proxy-auth headers the caller sent."""
    if not cfg.couchdb_member_password:
        raise BadRequest(f"peer {cfg.name} has no couchdb_member_password in peer.json: "
                         f"create the peer again (mydrive peer init)")
    basic = base64.b64encode(
        f"{cfg.couchdb_member_user}:{cfg.couchdb_member_password}".encode()).decode()
    return "\n            ".join([
        "rewrite ^/couchdb(/.*)$ $1 break;",
        f"proxy_pass http://127.0.0.1:{cfg.couchdb_port};",
        f'proxy_set_header Authorization "Basic {basic}";',
        'proxy_set_header Cookie "";',
        'proxy_set_header X-Auth-CouchDB-UserName "";',
        'proxy_set_header X-Auth-CouchDB-Roles "";',
        'proxy_set_header X-Auth-CouchDB-Token "";',
        "proxy_hide_header Set-Cookie;",
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "proxy_read_timeout 3600s;",
    ])


# glibc's malloc in nginx (read once, when the master starts; its workers inherit it). Each
# peer stream allocates the template's 1 MiB client_body_buffer_size (and grpc_buffer_size)
# and frees it when the stream ends; with glibc's defaults the heap grows by those buffers
# and is trimmed back after every few streams, so their pages fault in afresh: about 100,000
# minor faults per GiB of file put, 15 % of nginx's CPU on a put (docs/benchmarks.md,
# "Peer-side optimisations"). Above the buffers the mmap threshold keeps them in the heap;
# the trim threshold keeps the freed heap for the next streams (about 2 MiB more RSS).
MALLOC_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
MALLOC_TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
# The same for nginx in a container (a Linux image with glibc, whatever the host is).
GLIBC_MALLOC_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(MALLOC_MMAP_THRESHOLD_BYTES),
                            "MALLOC_TRIM_THRESHOLD_": str(MALLOC_TRIM_THRESHOLD_BYTES)}


def malloc_environment() -> dict[str, str]:
    """glibc's environment variables for nginx's allocator (mallopt(3)); Linux only (on
    musl they are ignored, Windows has neither them nor ``env``)."""
    if not sys.platform.startswith("linux"):
        return {}
    return dict(GLIBC_MALLOC_ENVIRONMENT)


def command(peer: PeerDir) -> list[str]:
    """The foreground nginx command line for this peer (renders the config first); on
    Linux through ``env`` with ``malloc_environment()``, which ``env`` hands to nginx
    alone (it execs nginx in its place: same PID, nginx's own process title)."""
    conf = render(peer)
    base = prefix(peer).resolve()
    argv = [nginx_binary(), "-p", str(base), "-c", str(conf.resolve()),
            "-e", str(base / "logs" / "error.log")]
    environment = malloc_environment()
    env_binary = shutil.which("env") if environment else None
    if env_binary is None:
        return argv
    return [env_binary, *(f"{k}={v}" for k, v in environment.items()), *argv]


def healthy(peer: PeerDir, *, timeout_s: float = 2.0) -> bool:
    """GET /healthz over mutual TLS with the peer's own certificate."""
    cfg = peer.config
    files = tls_files(peer.tls_dir)
    try:
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        context.load_cert_chain(str(files.cert), str(files.key))
        url = f"https://{cfg.nginx_address}/healthz"
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as r:  # noqa: S310
            return bool(r.status == 200)
    except (OSError, ssl.SSLError):
        return False
