"""Run one service of a peer (``mydrive serve sender|receiver PEER_DIR``) until signalled.

Each service also answers plain HTTP on its metrics port, on loopback only:
``/metrics`` (Prometheus text) and ``/healthz``, which names the peer (``ok <peer_id>``) so
that another program that took the port does not pass for the service. ``service_healthy``
is the one probe of it (``mydrive cluster``, ``mydrive peer health``, the chaos test-bed).

The process keeps no state of its own; what a crash leaves in the peer's chunk store is
told in mydrive.storage.chunkstore. The receiver also runs this peer's download jobs, the
sender its upload jobs (mydrive.node.jobs_service: PEER_DIR/jobs/ and upload-jobs/, local
Control sockets; docs/jobs.md).
"""

from __future__ import annotations

import http.client
import logging
import signal
import sys
import threading
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc

from mydrive.errors import BadRequest, MydriveError
from mydrive.node.peerdir import PeerConfig, PeerDir
from mydrive.node.service_socket import bind_private_socket, service_listen
from mydrive.node.ui_address import health_body
from mydrive.runtime.allocator import tune_for_transfers
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.metrics import Metrics
from mydrive.storage.caller import CallerIdentity
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.deleter import ChunkDeleter, describe_delete_metrics
from mydrive.storage.receiver import describe_receiver_metrics
from mydrive.storage.receiver_service import ReceiverServicer
from mydrive.storage.sender import ChunkServer, describe_sender_metrics
from mydrive.storage.sender_service import SenderServicer
from mydrive.storage.stream_limits import StreamLimits
from mydrive.transport.grpc_client import CHANNEL_OPTIONS
from mydrive.transport.signed_fetch import ReplayGuard
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

SERVICES = ("receiver", "sender")
MAX_CONCURRENT_RPCS = 64
RPC_THREADS = 32
SERVER_OPTIONS = [*CHANNEL_OPTIONS]  # gRPC server options (message sizes as the client's)
STOP_GRACE_S = 5.0  # calls in flight get this long to finish after SIGTERM
HEALTH_PROBE_TIMEOUT_S = 1.0
log = logging.getLogger("mydrive.serve")


def serve_command(kind: str, peer_dir: Path, *, fault_plan: Path | None = None) -> list[str]:
    """The command line that runs one service of the peer in ``peer_dir``."""
    plan = ["--fault-plan", str(fault_plan)] if fault_plan is not None else []
    return [sys.executable, "-m", "mydrive", "serve", kind, str(peer_dir), *plan]


def serve_words(kind: str, peer_dir: Path) -> tuple[str, ...]:
    """Words the command line of that service holds while it runs (mydrive.node.supervisor)."""
    return ("mydrive", "serve", kind, str(peer_dir))


def metrics_port(config: PeerConfig, kind: str) -> int:
    """The loopback HTTP port of a service's /metrics and /healthz."""
    if kind not in SERVICES:
        raise BadRequest(f"unknown service {kind!r}; expected one of {', '.join(SERVICES)}")
    return config.receiver_metrics_port if kind == "receiver" else config.sender_metrics_port


def metrics_url(config: PeerConfig, kind: str, path: str = "/metrics") -> str:
    """The URL of a service's /metrics (or of another ``path`` of its metrics port)."""
    return f"http://{config.service_host}:{metrics_port(config, kind)}{path}"


def service_healthy(config: PeerConfig, kind: str, *,
                    timeout_s: float = HEALTH_PROBE_TIMEOUT_S) -> bool:
    """GET /healthz of the service's metrics port answers 200 naming this peer."""
    url = metrics_url(config, kind, "/healthz")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310
            return bool(r.status == 200) and r.read(256).decode() == health_body(config.peer_id)
    except (OSError, UnicodeDecodeError, http.client.HTTPException):
        # HTTPException (e.g. BadStatusLine): something else answered on that port, such as
        # a gRPC server that took it while our service was down. Not healthy either.
        return False


def build_server(kind: str, peer: PeerDir, metrics: Metrics, *,
                 faults: FaultHooks = NO_FAULTS) -> tuple[grpc.Server, str]:
    config = peer.config
    if kind == "receiver":
        # Every segment (256 KiB) it receives is a fresh buffer: kept in glibc's heap, not
        # mapped and unmapped each time: 10 to 15 % less CPU per GiB received (its peak RSS
        # stays below the untuned one since the arenas are capped at two). A sender serving
        # chunks measured no steady gain (its upload jobs tune it themselves).
        # docs/benchmarks.md, "Peer-side optimisations (measured)".
        tune_for_transfers()
    store = ChunkStore(peer.store_dir, capacity_bytes=config.capacity_bytes,
                       partial_ttl_s=config.partial_ttl_s)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=RPC_THREADS,
                                                    thread_name_prefix=kind),
                         options=SERVER_OPTIONS,
                         maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    if kind == "receiver":
        describe_receiver_metrics(metrics)
        describe_delete_metrics(metrics)
        deleter = ChunkDeleter(store, peer_id=config.peer_id, clock=SystemClock(),
                               replay_guard=ReplayGuard(), metrics=metrics)
        limits = config.stream_limits()
        limits.validate(workers=RPC_THREADS)
        store.clean_stale_partials()  # what a crash or an uploader that never came back left
        servicer = ReceiverServicer(store, metrics, deleter=deleter,
                                    limits=StreamLimits(limits, SystemClock()),
                                    identify=CallerIdentity(peer.peer_trust()))
        pb_grpc.add_ReceiverServicer_to_server(servicer, server)
    elif kind == "sender":
        describe_sender_metrics(metrics)
        chunk_server = ChunkServer(store, peer_id=config.peer_id, clock=SystemClock(),
                                   replay_guard=ReplayGuard(), metrics=metrics,
                                   faults=faults)
        pb_grpc.add_SenderServicer_to_server(SenderServicer(chunk_server), server)
    else:
        raise BadRequest(f"unknown service {kind!r}; expected one of {', '.join(SERVICES)}")
    listen = service_listen(peer.root, config, kind)
    if listen.socket is None:
        server.add_insecure_port(str(listen.tcp))
    else:  # a TLS peer: nginx's only way in, and no other account's (service_socket)
        try:
            bind_private_socket(server.add_insecure_port, listen.socket, peer.root)
        except (RuntimeError, OSError) as exc:
            # No loopback port instead: nginx is rendered to use the socket, so the port
            # would serve only the machine's other accounts (docs/security.md).
            raise BadRequest(f"{kind} can't listen on its unix socket {listen.socket} "
                             f"({exc}): the peer directory must be on a file system that "
                             f"holds unix sockets, with nothing else at that path") from exc
    return server, listen.address


def _metrics_http(metrics: Metrics, host: str, port: int, peer_id: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/metrics":
                body = metrics.render().encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            elif self.path == "/healthz":
                body, ctype = health_body(peer_id).encode(), "text/plain"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # scrapes every few seconds would drown the service log

    httpd = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd


def serve(kind: str, peer_dir: Path, *, faults: FaultHooks = NO_FAULTS) -> None:
    """Run one service until SIGTERM/SIGINT; ``faults`` only from the test-bed's switch."""
    peer = PeerDir(peer_dir)
    metrics = Metrics()
    server, address = build_server(kind, peer, metrics, faults=faults)
    port = metrics_port(peer.config, kind)
    server.start()  # before /healthz answers: healthy must mean the gRPC port serves
    httpd = _metrics_http(metrics, peer.config.service_host, port, peer.config.peer_id)
    log.info("%s of peer %s (%s) listening on %s, metrics on %s:%d", kind, peer.config.name,
             peer.config.peer_id, address, peer.config.service_host, port)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if sys.platform == "win32":  # the supervisor's graceful stop there is CTRL_BREAK_EVENT
        signal.signal(signal.SIGBREAK, on_signal)
    jobs = None
    if kind == "receiver":
        from mydrive.node.container import record_receiver_root
        from mydrive.node.jobs_service import start_job_service
        from mydrive.node.local_client import open_client

        record_receiver_root(peer.root)  # where the CLI's job destinations must point
        try:
            jobs = start_job_service(peer.root, open_client(peer.root), stop)
        except MydriveError as exc:  # e.g. a peer path too long for a unix socket
            log.warning("no download jobs on this peer (CLI and UI run in-process): %s", exc)
    if kind == "sender":
        from mydrive.node.jobs_service import start_job_service
        from mydrive.node.local_client import open_client

        try:  # the sender runs this peer's upload jobs (docs/jobs.md)
            jobs = start_job_service(peer.root, open_client(peer.root), stop, kind="upload")
        except MydriveError as exc:
            log.warning("no upload jobs on this peer (CLI and UI upload in-process): %s", exc)
    if kind == "receiver" and peer.config.metadata == "couchdb":
        from mydrive.node.replication import supervise_peer

        threading.Thread(target=supervise_peer, args=(peer, stop), daemon=True,
                         name="replication").start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("%s of peer %s stopping", kind, peer.config.name)
        if jobs is not None:
            jobs.stop()
        server.stop(grace=STOP_GRACE_S).wait()
        httpd.shutdown()
