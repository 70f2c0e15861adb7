"""Background transfers (uploads to the peers, downloads of a basket) with per-file progress.

A job is a list of files worked through in order on a small thread pool; the page polls its
progress as JSON. Jobs belong to one user and are only shown to that user. Bounded: at most
``max_queued`` unfinished jobs in all, and at most ``max_per_user`` kept per user (the oldest
finished ones are forgotten first). A crash of the UI process loses these jobs.

When this peer's receiver runs jobs, a basket is downloaded by the receiver instead, and
when its sender runs jobs, uploads are stored by the sender (``ServiceJobs``, docs/jobs.md):
those jobs are kept by the peer and outlive the UI. An upload's file document is signed here,
with the logged-in user's keys, when the user's pages next look at their jobs.
"""

from __future__ import annotations

import logging
import os
import posixpath
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mydrive.errors import MydriveError, TooLarge, UnknownFile
from mydrive.runtime.clock import Clock
from mydrive.ui.problems import INTERNAL, problem_for

if TYPE_CHECKING:
    from mydrive.client import PeerClient
    from mydrive.crypto.keys import UserKeys
    from mydrive.node.jobs_control import JobView

log = logging.getLogger("mydrive.ui.jobs")

Progress = Callable[[int], None]
# Does one file's work, reporting bytes as they are done; returns where the file landed.
Work = Callable[["JobFile", Progress], str]


@dataclass
class JobFile:
    remote_path: str
    size_bytes: int
    done_bytes: int = 0
    state: str = "queued"        # queued | running | done | failed
    error_kind: str = ""
    error_title: str = ""        # what happened, for people ("Peers unavailable")
    error_advice: str = ""       # what to do about it
    error: str = ""              # the precise reason (mydrive's error message)
    local_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.remote_path, "size_bytes": self.size_bytes,
                "done_bytes": self.done_bytes, "state": self.state,
                "error_kind": self.error_kind, "error_title": self.error_title,
                "error_advice": self.error_advice, "error": self.error,
                "local_path": self.local_path}


@dataclass
class Job:
    job_id: str
    user_id: str
    kind: str                    # upload | download
    files: list[JobFile]
    created_ms: int
    target: str = ""             # the folder uploaded into, or the download directory
    state: str = "queued"        # queued | running | done | failed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            files = [f.to_json() for f in self.files]
            return {"id": self.job_id, "kind": self.kind, "state": self.state,
                    "target": self.target, "created_ms": self.created_ms,
                    "files": files,
                    "size_bytes": sum(f.size_bytes for f in self.files),
                    "done_bytes": sum(f.done_bytes for f in self.files)}


class JobBoard:
    def __init__(self, *, clock: Clock, workers: int, max_queued: int, max_per_user: int,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        assert workers >= 1 and max_queued >= 1 and max_per_user >= 1
        self.clock = clock
        self.max_queued = max_queued
        self.max_per_user = max_per_user
        self.random_bytes = random_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ui-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, user_id: str, kind: str, files: list[JobFile], work: Work, *,
               target: str = "", cleanup: Callable[[], None] | None = None) -> Job:
        """Queue a job; ``cleanup`` runs once it has finished (or if it can't be queued)."""
        assert files
        job = Job(job_id=self.random_bytes(16).hex(), user_id=user_id, kind=kind, files=files,
                  created_ms=self.clock.now_ms(), target=target)
        try:
            with self._lock:
                unfinished = sum(1 for j in self._jobs.values() if not j.finished)
                if unfinished >= self.max_queued:
                    raise TooLarge(f"{unfinished} transfers are already waiting; try again "
                                   f"when some have finished")
                self._forget_old_locked(user_id)
                self._jobs[job.job_id] = job
            self._pool.submit(self._run, job, work, cleanup)
        except BaseException:
            if cleanup is not None:
                cleanup()
            raise
        return job

    def get(self, user_id: str, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or job.user_id != user_id:
            raise UnknownFile("no such transfer (it may have been forgotten)")
        return job

    def of_user(self, user_id: str) -> list[Job]:
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.user_id == user_id]
        return sorted(jobs, key=lambda j: j.created_ms, reverse=True)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _forget_old_locked(self, user_id: str) -> None:
        mine = sorted((j for j in self._jobs.values() if j.user_id == user_id),
                      key=lambda j: j.created_ms)
        excess = len(mine) + 1 - self.max_per_user
        for job in mine:
            if excess <= 0:
                break
            if job.finished:
                del self._jobs[job.job_id]
                excess -= 1
        # unfinished jobs are never forgotten; max_queued bounds them

    def _run(self, job: Job, work: Work, cleanup: Callable[[], None] | None) -> None:
        try:
            with job._lock:
                job.state = "running"
            for item in job.files:
                self._run_file(job, item, work)
            with job._lock:
                job.state = "failed" if any(f.state == "failed" for f in job.files) \
                    else "done"
        finally:
            if cleanup is not None:
                try:
                    cleanup()
                except OSError as exc:
                    log.warning("cleaning up after %s job %s: %s", job.kind, job.job_id, exc)

    def _run_file(self, job: Job, item: JobFile, work: Work) -> None:
        def progress(delta_bytes: int) -> None:
            with job._lock:
                item.done_bytes = min(item.size_bytes, item.done_bytes + delta_bytes)

        with job._lock:
            item.state = "running"
        try:
            local_path = work(item, progress)
        except MydriveError as exc:
            problem = problem_for(exc)
            log.info("%s job %s: a file failed: %s", job.kind, job.job_id, problem.kind)
            with job._lock:
                item.state, item.error_kind = "failed", problem.kind
                item.error_title, item.error_advice = problem.title, problem.advice
                item.error = str(exc)
            return
        except Exception:
            log.exception("%s job %s: unexpected error", job.kind, job.job_id)
            with job._lock:
                item.state, item.error_kind = "failed", "internal"
                item.error_title, item.error_advice = INTERNAL.title, INTERNAL.advice
                item.error = "unexpected error"
            return
        with job._lock:
            item.state, item.local_path = "done", local_path
            item.done_bytes = item.size_bytes


def _file_of(view: JobView, keys: UserKeys, target: str) -> JobFile:
    from mydrive.formats.paths import local_destination
    from mydrive.node.jobs_control import open_label, recorded_error
    from mydrive.node.jobs_store import AWAITING_SIGNATURE

    remote_path = open_label(keys, view) or "(unreadable name)"
    local_path = ""
    if view.kind == "download" and view.state == "done" and target and \
            remote_path.startswith("/"):
        local_path = str(local_destination(Path(target), remote_path))
    state = "running" if view.state == AWAITING_SIGNATURE else view.state  # signed next look
    item = JobFile(remote_path=remote_path, size_bytes=view.bytes_total,
                   done_bytes=min(view.bytes_done, view.bytes_total),
                   state=state if state in ("queued", "running", "done") else "failed",
                   local_path=local_path)
    if item.state == "failed":
        problem = problem_for(recorded_error(view.error or view.state))
        item.error_kind, item.error_title = problem.kind, problem.title
        item.error_advice, item.error = problem.advice, view.error or view.state
    return item


class ServiceJobs:
    """Basket downloads run as jobs by this peer's receiver and uploads run by its sender
    (docs/jobs.md), shown as this board's Jobs: one UI job per basket or upload form (the
    service jobs of one ``group``). They live in the peer's jobs directories, so they
    outlive this UI process; nothing is kept here."""

    def __init__(self, peer_root: Path) -> None:
        self.peer_root = peer_root

    def available(self) -> bool:
        from mydrive.node.jobs_control import control_running

        return control_running(self.peer_root)

    def uploads_available(self) -> bool:
        from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, control_running

        return control_running(self.peer_root, UPLOAD_SOCKET_NAME)

    def submit_basket(self, client: PeerClient, keys: UserKeys, paths: list[str], *,
                      overwrite: bool, group: str) -> None:
        from mydrive.node.jobs_control import ControlClient, submit_get

        control = ControlClient(self.peer_root)
        try:
            for path in paths:
                submit_get(client, keys, path, control, overwrite=overwrite, group=group)
        finally:
            control.close()

    def submit_uploads(self, client: PeerClient, keys: UserKeys,
                       files: list[tuple[Path, str]], *, group: str) -> None:
        """Hand (local file, remote path) pairs to the sender; the files are its to remove
        (they are under PEER_DIR/tmp/: mydrive.node.jobs_upload). UnknownFile for the first
        file: the sender does not see them (it runs in a container); nothing was handed."""
        from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient
        from mydrive.node.jobs_signing import submit_put

        control = ControlClient(self.peer_root, socket_name=UPLOAD_SOCKET_NAME)
        try:
            for n, (local, remote) in enumerate(files):
                try:
                    submit_put(client, keys, local, remote, control, group=group)
                except MydriveError as exc:
                    if n == 0 and isinstance(exc, UnknownFile):
                        raise  # the sender does not see them: the caller uploads itself
                    for rest, _ in files[n:]:  # not handed over: not the sender's to remove
                        rest.unlink(missing_ok=True)
                    raise
        finally:
            control.close()

    def _views(self, keys: UserKeys, client: PeerClient | None) -> list[JobView]:
        """This user's grouped jobs of both services (either may be down); before listing,
        the user's stored uploads are signed with the session's keys."""
        from mydrive.node.jobs_control import SOCKET_NAME, UPLOAD_SOCKET_NAME, ControlClient
        from mydrive.node.jobs_signing import finish_pending_uploads

        views: list[JobView] = []
        failures: list[MydriveError] = []
        for name in (SOCKET_NAME, UPLOAD_SOCKET_NAME):
            try:
                control = ControlClient(self.peer_root, socket_name=name)
            except MydriveError as exc:
                failures.append(exc)
                continue
            try:
                if name == UPLOAD_SOCKET_NAME and client is not None:
                    for job_id, outcome in finish_pending_uploads(client, keys, control):
                        log.info("upload job %s: %s", job_id, outcome.partition(":")[0])
                views += [v for v in control.jobs() if v.owner_id == keys.user_id and v.group]
            except MydriveError as exc:
                failures.append(exc)
            finally:
                control.close()
        if len(failures) == 2:
            raise failures[0]
        return views

    def of_user(self, keys: UserKeys, *, target: str = "",
                client: PeerClient | None = None) -> list[Job]:
        groups: dict[str, list[JobView]] = {}
        for view in self._views(keys, client):
            groups.setdefault(view.group, []).append(view)
        jobs = [self._job(keys, group, views, target) for group, views in groups.items()]
        return sorted(jobs, key=lambda j: j.created_ms, reverse=True)

    def get(self, keys: UserKeys, group: str, *, target: str = "",
            client: PeerClient | None = None) -> Job:
        views = [v for v in self._views(keys, client) if v.group == group]
        if not views:
            raise UnknownFile("no such transfer (it may have been forgotten)")
        return self._job(keys, group, views, target)

    @staticmethod
    def _job(keys: UserKeys, group: str, views: list[JobView], target: str) -> Job:
        user_id = keys.user_id
        kind = views[0].kind
        files = [_file_of(v, keys, target)
                 for v in sorted(views, key=lambda v: (v.created_ms, v.job_id))]
        states = {f.state for f in files}
        state = ("done" if states == {"done"} else "queued" if states == {"queued"}
                 else "failed" if states <= {"done", "failed"} else "running")
        return Job(job_id=group, user_id=user_id, kind=kind, files=files,
                   created_ms=min(v.created_ms for v in views),
                   target=target if kind == "download" else
                   posixpath.dirname(files[0].remote_path) or "/", state=state)
