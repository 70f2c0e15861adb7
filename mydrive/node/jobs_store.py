"""Jobs persisted on the owner's peer: one JSON file per job, download jobs under
PEER_DIR/jobs/ (the receiver runs them: mydrive.node.jobs_runner), upload jobs under
PEER_DIR/upload-jobs/ (the sender runs them: mydrive.node.jobs_upload); the CLI and UI submit
them over the local Control endpoint (mydrive.node.jobs_control). A job file holds what is needed
to run the job again after a restart: the owner's verified file document, the unwrapped
file key and the owner's delegations. So every job file is written 0600, atomically
(mydrive.node.pki.write_secret: a crash leaves the old file or the new one, never half), and
its secrets are wiped from it as soon as the job is done, failed or cancelled; only the
public part (state, bytes, error) is kept, for at most ``MAX_FINISHED_JOBS`` jobs.
A crash mid-job leaves the job ``running`` on disk; the next start queues it again.
An upload job, once its chunks are stored, waits in ``awaiting_signature`` (its secrets
already wiped) until the owner's client signs the file document (mydrive.node.jobs_signing).

No file name is kept in the clear once a job is finished: the label is the remote path sealed
with the user's name key by the submitting client (only it can open it), and the destination
is blanked when the job finishes (names stay private on the owner's own peer too).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest, TooLarge, UnknownFile
from mydrive.node.pki import write_secret

JOBS_DIR_NAME = "jobs"
UPLOAD_JOBS_DIR_NAME = "upload-jobs"
AWAITING_SIGNATURE = "awaiting_signature"  # an upload stored; the owner has yet to sign
MAX_ACTIVE_JOBS = 10_000    # queued + running (a UI basket of up to 10 000 files); more: TooLarge
MAX_FINISHED_JOBS = 1000    # done/failed/cancelled kept for listing; the oldest go first
MAX_ERROR_CHARS = 2000
ACTIVE_STATES = ("queued", "running", AWAITING_SIGNATURE)
FINISHED_STATES = ("done", "failed", "cancelled")
_JOB_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class JobSecrets:
    """What a job needs to run, and what must never reach a log: wiped when it finishes."""

    file_record: str  # a download: the owner's verified file document, JSON
    file_key_hex: str
    delegations_hex: tuple[str, ...]
    upload: str = ""  # an upload: the file id, wrapped key, owner key, source fingerprint

    def __repr__(self) -> str:
        return "JobSecrets(<withheld>)"


@dataclass(frozen=True)
class Job:
    job_id: str
    kind: str
    state: str
    label: str        # the remote path sealed with the user's name key, hex (opaque here)
    destination: str  # the local path while the job runs; "" once finished
    overwrite: bool
    bytes_total: int
    bytes_done: int
    error: str
    created_ms: int
    updated_ms: int
    transfer: str = ""  # JSON of the engine's TransferLedger once done (no secrets)
    owner_id: str = ""  # the user the job is for (the UI shows users only their own)
    group: str = ""     # jobs submitted together (one UI basket), or ""
    source: str = ""    # an upload's local file while it runs; "" once stored
    result: str = ""    # an upload's stored chunks, JSON, for the owner to sign (not secret)
    secrets: JobSecrets | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The job as `mydrive jobs --json` shows it: no secrets."""
        d = asdict(self)
        d.pop("secrets")
        return d


def _job_to_json(job: Job) -> bytes:
    d = asdict(job)
    if job.secrets is not None:
        d["secrets"]["delegations_hex"] = list(job.secrets.delegations_hex)
    return json.dumps(d, sort_keys=True).encode()


def _job_from_json(raw: bytes) -> Job:
    d = json.loads(raw)
    s = d.pop("secrets")
    secrets = None if s is None else JobSecrets(
        file_record=str(s["file_record"]), file_key_hex=str(s["file_key_hex"]),
        delegations_hex=tuple(str(x) for x in s["delegations_hex"]),
        upload=str(s.get("upload", "")))
    return Job(secrets=secrets, **d)


class JobStore:
    """The jobs of one peer, in memory and on disk; thread-safe, bounded."""

    def __init__(self, root: Path, *, now_ms: Callable[[], int], new_id: Callable[[], str],
                 max_active_jobs: int = MAX_ACTIVE_JOBS,
                 max_finished_jobs: int = MAX_FINISHED_JOBS,
                 dir_name: str = JOBS_DIR_NAME) -> None:
        self.max_active_jobs = max_active_jobs
        self.max_finished_jobs = max_finished_jobs
        self.dir = root / dir_name
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self._now_ms = now_ms
        self._new_id = new_id
        # Held for every change; waiters (the runner for a queued job, a follower for the end
        # of one) are woken at each.
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                job = _job_from_json(path.read_bytes())
            except (ValueError, KeyError, TypeError):
                continue  # a damaged file is skipped, never fatal; left for an operator
            if job.state == "running":  # the service died mid-job: run it again
                job = replace(job, state="queued")
            self._jobs[job.job_id] = job

    def _save(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        write_secret(self.dir / f"{job.job_id}.json", _job_to_json(job))
        self._lock.notify_all()

    def submit(self, *, label: str, destination: str, overwrite: bool, bytes_total: int,
               secrets: JobSecrets, owner_id: str = "", group: str = "",
               kind: str = "download", source: str = "") -> Job:
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.state in ACTIVE_STATES)
            if active >= self.max_active_jobs:
                raise TooLarge(f"this peer already has {active} jobs queued or running "
                               f"(limit {self.max_active_jobs})")
            now = self._now_ms()
            job = Job(job_id=self._new_id(), kind=kind, state="queued", label=label,
                      destination=destination, overwrite=overwrite, bytes_total=bytes_total,
                      bytes_done=0, error="", created_ms=now, updated_ms=now, secrets=secrets,
                      owner_id=owner_id, group=group, source=source)
            self._save(job)
            return job

    def get(self, job_id: str) -> Job:
        if not _JOB_ID.match(job_id):
            raise BadRequest(f"not a job id: {job_id!r}")
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise UnknownFile(f"no job {job_id} on this peer")
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: (j.created_ms, j.job_id))

    def next_queued(self, wait_s: float = 0.0) -> Job | None:
        """The oldest queued job; if none, wait up to ``wait_s`` for one to be submitted."""
        with self._lock:
            self._lock.wait_for(self._has_queued, timeout=wait_s)
            queued = [j for j in self._jobs.values() if j.state == "queued"]
        return min(queued, key=lambda j: (j.created_ms, j.job_id)) if queued else None

    def _has_queued(self) -> bool:
        return any(j.state == "queued" for j in self._jobs.values())

    def wait_settled(self, job_id: str, wait_s: float) -> Job:
        """The job once it has ended or awaits its owner's signature, or as it is after
        ``wait_s`` seconds: a follower learns of the end at once instead of at its next poll."""
        job = self.get(job_id)  # checks the id

        def settled() -> bool:
            current = self._jobs.get(job_id, job)
            return current.state in FINISHED_STATES or current.state == AWAITING_SIGNATURE

        with self._lock:
            self._lock.wait_for(settled, timeout=wait_s)
            return self._jobs.get(job_id, job)

    def update(self, job_id: str, *, persist: bool = True, **changes: Any) -> Job:
        """Change a job's public fields; a finished job, or an upload awaiting its owner's
        signature, loses its secrets (and local path) on disk at once."""
        with self._lock:
            job = self._jobs[job_id]
            if job.state in FINISHED_STATES:
                return job  # finished is final (a cancel racing the end, say)
            if "error" in changes:
                changes["error"] = str(changes["error"])[:MAX_ERROR_CHARS]
            job = replace(job, updated_ms=self._now_ms(), **changes)
            if job.state in FINISHED_STATES or job.state == AWAITING_SIGNATURE:
                job = replace(job, secrets=None, destination="", source="")
                persist = True
            if job.state in FINISHED_STATES:
                job = replace(job, result="")  # signed (it is in the file document) or moot
            if persist:
                self._save(job)
            else:
                self._jobs[job_id] = job
                self._lock.notify_all()
            if job.state in FINISHED_STATES:
                self._prune()
            return job

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED_STATES),
                          key=lambda j: (j.updated_ms, j.job_id))
        for old in finished[:max(0, len(finished) - self.max_finished_jobs)]:
            del self._jobs[old.job_id]
            (self.dir / f"{old.job_id}.json").unlink(missing_ok=True)
