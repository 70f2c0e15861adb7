"""Hosting jobs in a service: the store, the worker thread, the socket. Download jobs in the
receiver, upload jobs in the sender.

``mydrive serve receiver|sender`` calls ``start_job_service`` (mydrive.node.serve); tests
call it with an in-memory client. Why the receiver downloads: it is the receiver's part of
the data path (DESIGN: it fetches an owner's chunks, reassembles, decrypts and writes the
file). Why the sender uploads: it is the peer's sending side, the File Sender that hands
chunks to the network. What a crash leaves: see mydrive.node.jobs_store, jobs_runner and
jobs_upload.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from mydrive.client import PeerClient
from mydrive.errors import BadRequest
from mydrive.node.jobs_control import (
    SOCKET_NAME,
    UPLOAD_SOCKET_NAME,
    ControlServicer,
    ensure_token,
    signed_document_check,
    start_control_server,
)
from mydrive.node.jobs_runner import JobRunner, delegate_key
from mydrive.node.jobs_store import JOBS_DIR_NAME, UPLOAD_JOBS_DIR_NAME, JobStore
from mydrive.node.jobs_upload import UploadRunner

STOP_GRACE_S = 2.0


@dataclass
class JobService:
    store: JobStore
    runner: JobRunner
    server: grpc.Server
    thread: threading.Thread
    stop_event: threading.Event

    def stop(self) -> None:
        self.stop_event.set()
        self.server.stop(grace=STOP_GRACE_S).wait()
        self.thread.join(timeout=STOP_GRACE_S)


def start_job_service(peer_root: Path, client: PeerClient,
                      stop: threading.Event | None = None, *,
                      kind: str = "download") -> JobService:
    """Load the jobs (re-queueing any that a crash left running), start the worker and
    the Control socket. ``kind``: "download" (the receiver) or "upload" (the sender)."""
    if kind not in ("download", "upload"):
        raise BadRequest(f"no {kind!r} jobs")
    upload = kind == "upload"
    stop_event = stop if stop is not None else threading.Event()
    store = JobStore(peer_root, now_ms=client.clock.now_ms,
                     new_id=lambda: os.urandom(8).hex(),
                     dir_name=UPLOAD_JOBS_DIR_NAME if upload else JOBS_DIR_NAME)
    key = delegate_key(peer_root)
    runner = UploadRunner(store, client, key, peer_root=peer_root) if upload else \
        JobRunner(store, client, key)
    servicer = ControlServicer(peer_id=client.peer_id, token=ensure_token(peer_root), key=key,
                               store=store, runner=runner, kind=kind,
                               verify_stored=signed_document_check(client) if upload else None)
    server = start_control_server(peer_root, servicer,
                                  UPLOAD_SOCKET_NAME if upload else SOCKET_NAME)
    thread = threading.Thread(target=runner.run_forever, args=(stop_event,), daemon=True,
                              name=f"{kind}-jobs")
    thread.start()
    return JobService(store=store, runner=runner, server=server, thread=thread,
                      stop_event=stop_event)
