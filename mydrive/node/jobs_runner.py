"""The job worker loop, and the receiver's download jobs: one job at a time, with the engine.

A download job runs mydrive.engine.download.download_file with the job's file key and a
DelegateSigner (this peer's delegate key + the owner's delegations), so the owner's identity
key is never here. Progress is written to the job file at most once per
``PROGRESS_SAVE_INTERVAL_MS``. The engine's temporary file is ``job-<id>.part`` in the
download directory's partial folder: a crash mid-job leaves it and the job ``running`` on
disk; the next start queues the job again and downloads the file again from its first chunk
into the same file (no byte-level resume), and a job that fails or is cancelled removes it.
Replicas that served bad segments are noted for the owner's next audit, as an in-process
``get`` does. The delegate key is PEER_DIR/delegate.key (32-byte seed, 0600), made on first
use. Upload jobs: mydrive.node.jobs_upload.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from mydrive.client import PeerClient
from mydrive.crypto.primitives import IdentityKey
from mydrive.engine.download import PARTIAL_DIR_NAME, download_file
from mydrive.errors import MydriveError
from mydrive.formats.delegation import SignedDelegation
from mydrive.formats.filerecord import FileRecord
from mydrive.node.jobs_store import AWAITING_SIGNATURE, Job, JobSecrets, JobStore
from mydrive.node.pki import write_secret_once
from mydrive.transport.signed_fetch import DelegateSigner

DELEGATE_KEY_NAME = "delegate.key"
PROGRESS_SAVE_INTERVAL_MS = 1000
STOP_CHECK_S = 0.5  # how often an idle worker looks at its stop event (submissions wake it)
log = logging.getLogger("mydrive.jobs")


class JobCancelled(MydriveError):
    """The job was cancelled by its user while it ran."""


def delegate_key(peer_root: Path) -> IdentityKey:
    """This peer's delegate key, made (0600) the first time it is asked for. The receiver
    and the sender share it, and may start at once: a job's delegation names the key the
    file holds, which must be the one its service signs with after any restart."""
    return IdentityKey.from_seed(write_secret_once(peer_root / DELEGATE_KEY_NAME,
                                                   os.urandom(32)))


def _without_names(text: str, job: Job) -> str:
    """An error as kept in the job file: the local path and file name blanked out."""
    for local, what in ((job.destination, "<destination>"), (job.source, "<source>")):
        if local:
            path = Path(local)
            text = text.replace(str(path), what)
            # The name as a word of its own ("f" must not blank the f of "of").
            text = re.sub(rf"(?<![\w.-]){re.escape(path.name)}(?![\w-])(?!\.\w)", "<file>",
                          text)
    return text


def partial_file(job: Job) -> Path | None:
    """Where a download job's engine writes before the rename (None: no destination)."""
    if job.kind != "download" or not job.destination:
        return None
    return Path(job.destination).parent / PARTIAL_DIR_NAME / f"job-{job.job_id}.part"


def remove_partial(job: Job) -> None:
    """A failed or cancelled download leaves no temporary file (a crash may have left one)."""
    part = partial_file(job)
    if part is None:
        return
    part.unlink(missing_ok=True)
    with suppress(OSError):  # another download may be using the folder
        part.parent.rmdir()


class JobRunner:
    """Takes the oldest queued job, runs it, records the outcome; until ``stop`` is set.
    This class runs download jobs; mydrive.node.jobs_upload.UploadRunner runs uploads."""

    def __init__(self, store: JobStore, client: PeerClient, key: IdentityKey) -> None:
        self.store = store
        self.client = client
        self.key = key
        self._cancel: set[str] = set()
        self._lock = threading.Lock()

    def cancel(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job.state in ("queued", AWAITING_SIGNATURE):
            remove_partial(job)  # a queued job may have run before a crash
            return self.store.update(job_id, state="cancelled", error="cancelled")
        if job.state == "running":
            with self._lock:
                self._cancel.add(job_id)
        return job

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            # Woken by a submission (not at the next poll); the timeout only bounds how
            # long a stop takes to be seen.
            job = self.store.next_queued(wait_s=STOP_CHECK_S)
            if job is not None and not stop.is_set():
                self.run_one(job)

    def _progress(self, job: Job) -> Callable[[int], None]:
        """The engine's progress callback: counts bytes, saves now and then, and is where a
        running job notices it was cancelled."""
        done = [0]
        saved_ms = [0]

        def progress(n_bytes: int) -> None:
            with self._lock:
                if job.job_id in self._cancel:
                    raise JobCancelled("cancelled")
            done[0] += n_bytes
            now = self.client.clock.now_ms()
            persist = now - saved_ms[0] >= PROGRESS_SAVE_INTERVAL_MS
            if persist:
                saved_ms[0] = now
            self.store.update(job.job_id, bytes_done=done[0], persist=persist)

        return progress

    def _failed(self, job: Job, exc: Exception) -> Job:
        if isinstance(exc, JobCancelled):
            log.info("job %s cancelled", job.job_id)
            return self.store.update(job.job_id, state="cancelled", error="cancelled")
        log.warning("job %s failed: %s", job.job_id, type(exc).__name__)
        return self.store.update(job.job_id, state="failed",
                                 error=_without_names(f"{type(exc).__name__}: {exc}", job))

    def run_one(self, job: Job) -> Job:
        """Runs ``job`` (queued) to its outcome: ``_work`` does the job's own part and hands
        back how to record its success; a failure or cancellation is recorded here, after
        ``_abandon`` cleaned up what the job left."""
        assert job.secrets is not None, "a queued job keeps its secrets"
        job = self.store.update(job.job_id, state="running", bytes_done=0, error="")
        progress = self._progress(job)
        try:
            secrets = job.secrets
            assert secrets is not None
            finish = self._work(job, secrets, progress)
        except Exception as exc:  # a job's failure is recorded, never fatal to the service
            self._abandon(job)
            return self._failed(job, exc)
        finally:
            with self._lock:
                self._cancel.discard(job.job_id)
        return finish()

    def _abandon(self, job: Job) -> None:
        """Cleans up after a failed or cancelled run: a download's partial file."""
        remove_partial(job)

    def _work(self, job: Job, secrets: JobSecrets,
              progress: Callable[[int], None]) -> Callable[[], Job]:
        """Downloads the job's file; returns how to record that it is done."""
        record = FileRecord.from_doc(json.loads(secrets.file_record))
        signer = DelegateSigner(self.key, [SignedDelegation.decode(bytes.fromhex(h))
                                           for h in secrets.delegations_hex])
        destination = Path(job.destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        peers = {p.peer_id: p.address for p in self.client.known_peers()}
        part = partial_file(job)
        assert part is not None
        ledger = download_file(record, destination, keys=None,
                      file_key=bytes.fromhex(secrets.file_key_hex), signer=signer,
                      peers=peers, settings=self.client.settings,
                      transport=self.client.transport, clock=self.client.clock,
                      overwrite=job.overwrite, randomness=self.client.randomness,
                      executor=self.client.executor, progress=progress,
                      partial_name=part.name)

        def finish() -> Job:
            try:
                self.client.note_bad_segments(record.owner_id, record, ledger)
            except MydriveError as exc:  # the file is good; only the audit hint is lost
                log.warning("job %s: bad replicas not noted: %s", job.job_id, exc)
            log.info("job %s done", job.job_id)
            return self.store.update(job.job_id, state="done", bytes_done=job.bytes_total,
                                     transfer=json.dumps(ledger.to_json(), sort_keys=True))

        return finish
