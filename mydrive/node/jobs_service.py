"""Hosting download jobs in the receiver service: the store, the worker thread, the socket.

``mydrive serve receiver`` calls ``start_job_service`` (mydrive.node.serve); tests call it
with an in-memory client. Why the receiver: downloading is the receiver's part of the data
path (DESIGN: it fetches an owner's chunks, reassembles, decrypts and writes the file), and
the job needs the chunk-fetching transport and this peer's download directory, which the
receiver already has. What a crash leaves: see mydrive.node.jobs_store and jobs_runner.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc

from mydrive.client import PeerClient
from mydrive.node.jobs_control import ControlServicer, ensure_token, start_control_server
from mydrive.node.jobs_runner import JobRunner, delegate_key
from mydrive.node.jobs_store import JobStore

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
                      stop: threading.Event | None = None) -> JobService:
    """Load the jobs (re-queueing any that a crash left running), start the worker and
    the Control socket."""
    stop_event = stop if stop is not None else threading.Event()
    store = JobStore(peer_root, now_ms=client.clock.now_ms,
                     new_id=lambda: os.urandom(8).hex())
    key = delegate_key(peer_root)
    runner = JobRunner(store, client, key)
    servicer = ControlServicer(peer_id=client.peer_id, token=ensure_token(peer_root), key=key,
                               store=store, runner=runner)
    server = start_control_server(peer_root, servicer)
    thread = threading.Thread(target=runner.run_forever, args=(stop_event,), daemon=True,
                              name="jobs")
    thread.start()
    return JobService(store=store, runner=runner, server=server, thread=thread,
                      stop_event=stop_event)
