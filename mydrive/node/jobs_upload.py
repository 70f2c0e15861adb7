"""The sender's upload jobs: read the owner's file, encrypt it and store its chunks.

The submitting client (CLI, UI) draws the file id and file key, wraps the key for its owner
and hands them over the local Control socket with the path of the file and what it looked
like (size, modification time, inode). This peer's sender reads the file itself (same
machine) and runs the ordinary engine (``upload_file`` with ``FileKeys``). It never holds
the owner's identity key, so it can't write the file document: when the chunks are stored
the job waits in ``awaiting_signature`` with what the owner is to sign (``result``), its file
key already wiped; the owner's client checks and signs it (mydrive.node.jobs_signing).

A crash mid-job leaves it ``running`` on disk; the next start queues it again and runs the
engine with the same file keys: the same chunks, which the receivers that committed them
answer "held" at once, so only what was not yet committed is sent again (a changed set of
reachable peers may plan differently; then all is sent again, and the first run's chunks
are orphans like any crashed upload's). A file that changed since it was submitted, or while
it was read, fails the job with a message saying so (a mix of old and new bytes is never
stored as the file).

A source inside PEER_DIR/tmp/ is a temporary copy handed over by its submitter (the UI's
uploads): the sender removes it once the job no longer needs it (stored, failed or
cancelled), so it outlives the UI process that received it but not the job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.client import PeerClient
from mydrive.crypto.primitives import IdentityKey
from mydrive.engine.upload import FileKeys, UploadResult, upload_file
from mydrive.errors import BadRequest
from mydrive.node.jobs_runner import JobRunner
from mydrive.node.jobs_store import AWAITING_SIGNATURE, Job, JobSecrets, JobStore

HANDED_OVER_DIR = "tmp"  # PEER_DIR/tmp/: sources there are the job's to remove

log = logging.getLogger("mydrive.jobs")


@dataclass(frozen=True)
class SourceFingerprint:
    """What the file looked like when the job was submitted: any change fails the job."""

    size_bytes: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> SourceFingerprint:
        st = path.stat()
        return cls(size_bytes=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)


@dataclass(frozen=True)
class UploadSpec:
    """An upload job's inputs besides the file key (JobSecrets.upload, JSON)."""

    file_id: bytes
    wrapped_file_key: bytes
    owner_public_key: bytes
    fingerprint: SourceFingerprint
    seal: str  # the owner's proof of submission, handed back with the result

    def to_json(self) -> str:
        f = self.fingerprint
        return json.dumps({"file_id": self.file_id.hex(),
                           "wrapped_file_key": self.wrapped_file_key.hex(),
                           "owner_public_key": self.owner_public_key.hex(),
                           "size_bytes": f.size_bytes, "mtime_ns": f.mtime_ns,
                           "inode": f.inode, "seal": self.seal}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UploadSpec:
        d = json.loads(text)
        return cls(file_id=bytes.fromhex(d["file_id"]),
                   wrapped_file_key=bytes.fromhex(d["wrapped_file_key"]),
                   owner_public_key=bytes.fromhex(d["owner_public_key"]),
                   fingerprint=SourceFingerprint(int(d["size_bytes"]), int(d["mtime_ns"]),
                                                 int(d["inode"])),
                   seal=str(d["seal"]))


def check_unchanged(source: Path, expected: SourceFingerprint, when: str) -> None:
    try:
        now = SourceFingerprint.of(source)
    except OSError as exc:
        raise BadRequest(f"the file to upload can't be read {when}: {exc.strerror}") from None
    if now != expected:
        raise BadRequest(f"the file changed {when} (size, modification time or inode differ "
                         f"from when the upload was submitted); nothing was stored as the "
                         f"file: put it again")


def result_json(result: UploadResult, spec: UploadSpec) -> dict[str, Any]:
    """What the owner's client is asked to sign (docs/jobs.md); no secret in it."""
    return {"file_id": result.file_id.hex(), "wrapped_file_key": spec.wrapped_file_key.hex(),
            "plan": result.plan.to_json(), "chunks": [c.to_json() for c in result.chunks],
            "transfer": {"upload": result.ledger.to_json()}, "seal": spec.seal}


class UploadRunner(JobRunner):
    """Runs the sender's queued upload jobs one at a time (the loop is JobRunner's)."""

    def __init__(self, store: JobStore, client: PeerClient, key: IdentityKey, *,
                 peer_root: Path | None = None) -> None:
        super().__init__(store, client, key)
        self.handed_over = (peer_root / HANDED_OVER_DIR).resolve() if peer_root else None

    def _release_source(self, job: Job) -> None:
        """Remove a handed-over temporary source (under PEER_DIR/tmp/) the job is done with."""
        if self.handed_over is None or not job.source:
            return
        source = Path(job.source)
        if source.resolve().is_relative_to(self.handed_over):
            source.unlink(missing_ok=True)

    def cancel(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job.state == "queued":
            self._release_source(job)
        return super().cancel(job_id)

    def _abandon(self, job: Job) -> None:
        self._release_source(job)

    def _work(self, job: Job, secrets: JobSecrets,
              progress: Callable[[int], None]) -> Callable[[], Job]:
        """Stores the job's file; returns how to record that it awaits the owner's signature."""
        spec = UploadSpec.from_json(secrets.upload)
        source = Path(job.source)
        check_unchanged(source, spec.fingerprint, "since the upload was submitted")
        result = upload_file(
            source, keys=None, owner_peer_id=self.client.peer_id,
            peers=self.client.known_peers(), settings=self.client.settings,
            transport=self.client.transport, clock=self.client.clock,
            faults=self.client.faults, randomness=self.client.randomness,
            executor=self.client.executor, progress=progress,
            file_keys=FileKeys(file_id=spec.file_id,
                               file_key=bytes.fromhex(secrets.file_key_hex),
                               wrapped_file_key=spec.wrapped_file_key,
                               owner_public_key=spec.owner_public_key))
        check_unchanged(source, spec.fingerprint, "while it was being uploaded")

        def finish() -> Job:
            self._release_source(job)
            log.info("job %s stored; awaiting its owner's signature", job.job_id)
            return self.store.update(
                job.job_id, state=AWAITING_SIGNATURE, bytes_done=job.bytes_total,
                transfer=json.dumps(result.ledger.to_json(), sort_keys=True),
                result=json.dumps(result_json(result, spec), sort_keys=True))

        return finish
