"""The local Control endpoint: the CLI and UI hand their own peer's receiver download jobs,
and its sender upload jobs.

Local only: a unix socket in the peer directory (PEER_DIR/control.sock for the receiver,
PEER_DIR/uploads.sock for the sender; never a TCP port, never routed by nginx), and every
call must carry the peer's control token
(PEER_DIR/control.token, 32 random bytes hex, 0600, made by the receiver service) as the
``x-mydrive-token`` metadata; it is compared in constant time. Submitting a job sends the
unwrapped file key over this socket (and nowhere else); the servicer never logs a request.
A crash leaves the socket file behind; the next start removes it before binding.

The client side (``ControlClient``, ``submit_get``) signs the owner's delegation here, in
the submitting process, with the identity key that never leaves it (docs/jobs.md); the
upload side is mydrive.node.jobs_signing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.crypto.primitives import (
    IdentityKey,
    constant_time_equal,
    decrypt_name,
    encrypt_name,
)
from mydrive.errors import BadRequest, MydriveError, PermissionDenied, UnknownFile
from mydrive.formats.delegation import Delegation, SignedDelegation, scope_chunks
from mydrive.formats.filerecord import FileRecord, file_doc_id
from mydrive.formats.paths import local_destination, normalize_remote_path
from mydrive.metadata.signed import verify_file
from mydrive.node.container import receiver_destination
from mydrive.node.jobs_store import AWAITING_SIGNATURE, Job, JobSecrets, JobStore
from mydrive.node.pki import write_secret_once
from mydrive.transport.signed_fetch import sign_delegation
from mydrive.transport.status import abort, error_from_rpc
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

# The CLI imports this module for its client side (ControlClient, submit_get): the runner
# and the upload job, which import the transfer engine, are the service's alone.
if TYPE_CHECKING:
    from mydrive.client import PeerClient
    from mydrive.node.jobs_runner import JobRunner

SOCKET_NAME = "control.sock"          # the receiver's: download jobs
UPLOAD_SOCKET_NAME = "uploads.sock"   # the sender's: upload jobs
TOKEN_NAME = "control.token"  # noqa: S105 - a file name, not a secret
TOKEN_KEY = "x-mydrive-token"  # noqa: S105 - a metadata key
MAX_SOCKET_PATH_CHARS = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS
CONTROL_THREADS = 8  # a follower's GetJob may wait (MAX_JOB_WAIT_MS) in one of them
MAX_JOB_WAIT_MS = 1000
MAX_TAG_CHARS = 128
MAX_LABEL_CHARS = 20_000  # hex of a sealed name (names are at most 4 KiB)
CONTROL_TIMEOUT_S = 10.0
CONTROL_OPTIONS = [("grpc.max_send_message_length", 16 * 1024 * 1024),
                   ("grpc.max_receive_message_length", 16 * 1024 * 1024)]
# How long a job's delegation lets this peer fetch: long enough for a large download and a
# restart or two, short enough that a peer compromised later can't use it (docs/security.md).
DEFAULT_DELEGATION_LIFETIME_MS = 6 * 3600 * 1000


def socket_path(peer_root: Path, name: str = SOCKET_NAME) -> Path:
    path = peer_root.resolve() / name
    if len(str(path)) > MAX_SOCKET_PATH_CHARS:
        raise BadRequest(f"peer directory path too long for a unix socket: {path}")
    return path


def ensure_token(peer_root: Path) -> bytes:
    """The peer's control token, made on first use (the receiver and the sender may start
    at once: both end up with one token)."""
    return write_secret_once(peer_root / TOKEN_NAME, os.urandom(32).hex().encode()).strip()


def job_info(job: Job) -> pb.JobInfo:
    return pb.JobInfo(job_id=job.job_id, kind=job.kind, state=job.state, label=job.label,
                      bytes_total=job.bytes_total, bytes_done=job.bytes_done, error=job.error,
                      created_ms=job.created_ms, updated_ms=job.updated_ms,
                      destination=job.destination, transfer=job.transfer,
                      owner_id=job.owner_id, group=job.group, source=job.source)


class ControlServicer(pb_grpc.ControlServicer):
    """Translates Control calls to the job store and runner; checks the token first.
    ``kind``: the jobs this socket takes ("download": the receiver's, "upload": the
    sender's; ``verify_stored`` then finds the owner's signed file document)."""

    def __init__(self, *, peer_id: str, token: bytes, key: IdentityKey, store: JobStore,
                 runner: JobRunner, kind: str = "download",
                 verify_stored: Callable[[str, bytes], None] | None = None) -> None:
        self.kind = kind
        self.verify_stored = verify_stored
        self.peer_id = peer_id
        self.token = token
        self.key = key
        self.store = store
        self.runner = runner

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], object]) -> object:
        try:
            given = dict(context.invocation_metadata()).get(TOKEN_KEY, "")
            if not constant_time_equal(str(given).encode(), self.token):
                raise PermissionDenied("wrong or missing control token")
            return fn()
        except MydriveError as exc:
            abort(context, exc)
            raise AssertionError("abort returns only by raising") from exc

    def Identity(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.PeerIdentity:
        return self._call(context, lambda: pb.PeerIdentity(  # type: ignore[return-value]
            peer_id=self.peer_id, delegate_public_key=self.key.public_bytes()))

    def SubmitDownload(self, request: pb.DownloadJob,
                       context: grpc.ServicerContext) -> pb.JobRef:
        return self._call(context, lambda: self._submit(request))  # type: ignore[return-value]

    def _submit(self, request: pb.DownloadJob) -> pb.JobRef:
        if self.kind != "download":
            raise BadRequest("this is the sender's control socket: it takes upload jobs")
        if len(request.file_key) != 32:
            raise BadRequest("a file key is 32 bytes")
        if len(request.owner_id) > MAX_TAG_CHARS or len(request.group) > MAX_TAG_CHARS or \
                len(request.label) > MAX_LABEL_CHARS:
            raise BadRequest("job owner, group or label too long")
        if not os.path.isabs(request.destination):
            raise BadRequest("the destination must be an absolute path")
        try:
            record = FileRecord.from_doc(json.loads(request.file_record))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("malformed file record") from exc
        covered: set[bytes] = set()
        for blob in request.delegations:
            d = Delegation.decode(SignedDelegation.decode(bytes(blob)).body)
            if d.delegate_public_key != self.key.public_bytes() or \
                    d.delegate_peer_id != self.peer_id:
                raise BadRequest("a delegation names another peer than this one")
            covered.update(d.chunk_ids)
        if any(ch.chunk_id not in covered for ch in record.chunks):
            raise BadRequest("the delegations do not cover every chunk of the file")
        job = self.store.submit(
            label=request.label, destination=request.destination, overwrite=request.overwrite,
            bytes_total=record.size_bytes, owner_id=request.owner_id, group=request.group,
            secrets=JobSecrets(
                file_record=request.file_record.decode(), file_key_hex=request.file_key.hex(),
                delegations_hex=tuple(bytes(b).hex() for b in request.delegations)))
        return pb.JobRef(job_id=job.job_id)

    def SubmitUpload(self, request: pb.UploadJob, context: grpc.ServicerContext) -> pb.JobRef:
        return self._call(context,  # type: ignore[return-value]
                          lambda: self._submit_upload(request))

    def _submit_upload(self, request: pb.UploadJob) -> pb.JobRef:
        from mydrive.node.jobs_upload import SourceFingerprint, UploadSpec  # the service's

        if self.kind != "upload":
            raise BadRequest("this is the receiver's control socket: it takes download jobs")
        if len(request.file_key) != 32 or len(request.file_id) != 16 or \
                len(request.owner_public_key) != 32 or not 0 < len(request.wrapped_file_key) <= 256:
            raise BadRequest("a file key is 32 bytes, a file id 16, an owner key 32")
        if len(request.owner_id) > MAX_TAG_CHARS or len(request.group) > MAX_TAG_CHARS or \
                len(request.seal) > MAX_TAG_CHARS or len(request.label) > MAX_LABEL_CHARS:
            raise BadRequest("job owner, group, seal or label too long")
        if not os.path.isabs(request.source):
            raise BadRequest("the source must be an absolute path")
        source = Path(request.source)
        given = SourceFingerprint(size_bytes=request.size_bytes, mtime_ns=request.mtime_ns,
                                  inode=request.inode)
        try:
            seen = SourceFingerprint.of(source) if source.is_file() else None
        except OSError:
            seen = None
        if seen != given:  # e.g. a sender in a container, with a file system of its own
            raise UnknownFile(f"this peer's sender does not see the file {source} as it is "
                              f"here")
        spec = UploadSpec(file_id=request.file_id, wrapped_file_key=request.wrapped_file_key,
                          owner_public_key=request.owner_public_key, fingerprint=given,
                          seal=request.seal)
        job = self.store.submit(
            kind="upload", label=request.label, destination="", source=str(source),
            overwrite=False, bytes_total=given.size_bytes, owner_id=request.owner_id,
            group=request.group,
            secrets=JobSecrets(file_record="", file_key_hex=request.file_key.hex(),
                               delegations_hex=(), upload=spec.to_json()))
        return pb.JobRef(job_id=job.job_id)

    def _awaiting(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job.kind != "upload" or job.state != AWAITING_SIGNATURE:
            raise BadRequest(f"job {job_id} is not an upload awaiting its owner's signature "
                             f"(it is {job.kind}, {job.state})")
        return job

    def GetUploadResult(self, request: pb.JobRef,
                        context: grpc.ServicerContext) -> pb.UploadResult:
        return self._call(context, lambda: pb.UploadResult(  # type: ignore[return-value]
            result=self._awaiting(request.job_id).result.encode()))

    def FinishUpload(self, request: pb.JobRef, context: grpc.ServicerContext) -> pb.JobInfo:
        return self._call(context,  # type: ignore[return-value]
                          lambda: job_info(self._finish_upload(request.job_id)))

    def _finish_upload(self, job_id: str) -> Job:
        """Done only once the owner's signed document for this file is in the metadata."""
        job = self._awaiting(job_id)
        file_id = bytes.fromhex(json.loads(job.result)["file_id"])
        if self.verify_stored is not None:
            self.verify_stored(job.owner_id, file_id)
        return self.store.update(job_id, state="done")

    def ListJobs(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.JobList:
        return self._call(context, lambda: pb.JobList(  # type: ignore[return-value]
            jobs=[job_info(j) for j in self.store.list()]))

    def GetJob(self, request: pb.JobRef, context: grpc.ServicerContext) -> pb.JobInfo:
        wait_s = min(request.wait_ms, MAX_JOB_WAIT_MS) / 1000
        return self._call(context,  # type: ignore[return-value]
                          lambda: job_info(self.store.wait_settled(request.job_id, wait_s)))

    def CancelJob(self, request: pb.JobRef, context: grpc.ServicerContext) -> pb.JobInfo:
        return self._call(context,  # type: ignore[return-value]
                          lambda: job_info(self.runner.cancel(request.job_id)))


def signed_document_check(client: PeerClient) -> Callable[[str, bytes], None]:
    """How the sender knows an upload is done: the owner's signed ``file:`` document for it
    is in this peer's metadata and verifies (mydrive.metadata.signed)."""
    def check(owner_id: str, file_id: bytes) -> None:
        doc_id = file_doc_id(owner_id, file_id)
        doc = client.store.get(doc_id)
        if doc is None:
            raise BadRequest(f"no file document {doc_id} yet: the owner has not signed it")
        verify_file(doc_id, doc)
    return check


def start_control_server(peer_root: Path, servicer: ControlServicer,
                         name: str = SOCKET_NAME) -> grpc.Server:
    path = socket_path(peer_root, name)
    path.unlink(missing_ok=True)  # a crashed run's socket
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=CONTROL_THREADS,
                                                    thread_name_prefix="control"),
                         options=CONTROL_OPTIONS)
    pb_grpc.add_ControlServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    old_umask = os.umask(0o077)  # the socket itself is owner-only too
    try:
        server.add_insecure_port(f"unix:{path}")
        server.start()
    finally:
        os.umask(old_umask)
    return server


@dataclass(frozen=True)
class JobView:
    """A job as the CLI and UI show it (what ``mydrive jobs --json`` prints)."""

    job_id: str
    kind: str
    state: str
    label: str
    destination: str
    bytes_total: int
    bytes_done: int
    error: str
    created_ms: int
    updated_ms: int
    transfer: dict[str, Any] | None
    owner_id: str = ""
    group: str = ""
    source: str = ""

    @classmethod
    def from_pb(cls, m: pb.JobInfo) -> JobView:
        return cls(job_id=m.job_id, kind=m.kind, state=m.state, label=m.label,
                   destination=m.destination, bytes_total=m.bytes_total,
                   bytes_done=m.bytes_done, error=m.error, created_ms=m.created_ms,
                   updated_ms=m.updated_ms,
                   transfer=json.loads(m.transfer) if m.transfer else None,
                   owner_id=m.owner_id, group=m.group, source=m.source)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class ControlClient:
    """The CLI's and UI's handle on their own peer's Control endpoint."""

    def __init__(self, peer_root: Path, *, timeout_s: float = CONTROL_TIMEOUT_S,
                 socket_name: str = SOCKET_NAME) -> None:
        self.peer_root = peer_root
        self.service = "sender" if socket_name == UPLOAD_SOCKET_NAME else "receiver"
        token_path = peer_root / TOKEN_NAME
        if not token_path.exists():
            raise PermissionDenied(f"no control token: is this peer's {self.service} running?")
        self._metadata = ((TOKEN_KEY, token_path.read_bytes().strip().decode()),)
        self._channel = grpc.insecure_channel(f"unix:{socket_path(peer_root, socket_name)}",
                                              options=CONTROL_OPTIONS)
        self._stub = pb_grpc.ControlStub(self._channel)  # type: ignore[no-untyped-call]
        self.timeout_s = timeout_s
        self._identity: tuple[str, bytes] | None = None

    def close(self) -> None:
        self._channel.close()

    def _rpc(self, fn: Callable[..., object], request: object) -> object:
        try:
            return fn(request, metadata=self._metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, f"this peer's {self.service} (control socket)",
                                 trusted=True) from None  # its own service: any class

    def identity(self) -> tuple[str, bytes]:
        """The service's peer id and delegate key; asked once per client (``open_control``
        asks it to see the service answer, ``submit_get`` needs it again)."""
        if self._identity is None:
            reply = self._rpc(self._stub.Identity, pb.Empty())
            assert isinstance(reply, pb.PeerIdentity)
            self._identity = (reply.peer_id, bytes(reply.delegate_public_key))
        return self._identity

    def submit(self, job: pb.DownloadJob) -> str:
        reply = self._rpc(self._stub.SubmitDownload, job)
        assert isinstance(reply, pb.JobRef)
        return reply.job_id

    def submit_upload(self, job: pb.UploadJob) -> str:
        reply = self._rpc(self._stub.SubmitUpload, job)
        assert isinstance(reply, pb.JobRef)
        return reply.job_id

    def upload_result(self, job_id: str) -> bytes:
        reply = self._rpc(self._stub.GetUploadResult, pb.JobRef(job_id=job_id))
        assert isinstance(reply, pb.UploadResult)
        return bytes(reply.result)

    def finish_upload(self, job_id: str) -> JobView:
        reply = self._rpc(self._stub.FinishUpload, pb.JobRef(job_id=job_id))
        assert isinstance(reply, pb.JobInfo)
        return JobView.from_pb(reply)

    def jobs(self) -> list[JobView]:
        reply = self._rpc(self._stub.ListJobs, pb.Empty())
        assert isinstance(reply, pb.JobList)
        return [JobView.from_pb(j) for j in reply.jobs]

    def job(self, job_id: str, *, wait_ms: int = 0) -> JobView:
        """The job as it is; with ``wait_ms``, as soon as it ends (or awaits its signature)
        or after ``wait_ms`` (GetJob's long poll)."""
        reply = self._rpc(self._stub.GetJob, pb.JobRef(job_id=job_id, wait_ms=wait_ms))
        assert isinstance(reply, pb.JobInfo)
        return JobView.from_pb(reply)

    def cancel(self, job_id: str) -> JobView:
        reply = self._rpc(self._stub.CancelJob, pb.JobRef(job_id=job_id))
        assert isinstance(reply, pb.JobInfo)
        return JobView.from_pb(reply)

    def wait(self, job_id: str, *, on_progress: Callable[[JobView], None] | None = None,
             poll_s: float = 0.2) -> JobView:
        """Follow a job until it finishes, told of the end at once (GetJob waits for it up
        to ``poll_s``; the progress is reported every ``poll_s``)."""
        while True:
            asked = time.monotonic()
            view = self.job(job_id, wait_ms=int(poll_s * 1000))
            if on_progress is not None:
                on_progress(view)
            if view.finished:
                return view
            pause_while_running(asked, poll_s)


def pause_while_running(asked: float, poll_s: float) -> None:
    """Between two long polls of a job still running: nothing, unless the service answered
    before ``poll_s`` (a job awaiting its signature, or an older service that does not
    wait), which must not turn the follower into a busy loop."""
    time.sleep(max(0.0, asked + poll_s - time.monotonic()))


def open_control(peer_root: Path, socket_name: str = SOCKET_NAME, *,
                 probe_timeout_s: float = 2.0) -> ControlClient | None:
    """A client of this peer's receiver (``UPLOAD_SOCKET_NAME``: sender) that answered on its
    Control socket, to submit and follow a job with (close it); None when the service does
    not answer (run in-process)."""
    try:
        if not (peer_root / socket_name).exists():
            return None
        client = ControlClient(peer_root, timeout_s=probe_timeout_s, socket_name=socket_name)
    except MydriveError:
        return None
    try:
        client.identity()
    except MydriveError:
        client.close()
        return None
    client.timeout_s = CONTROL_TIMEOUT_S
    return client


def control_running(peer_root: Path, socket_name: str = SOCKET_NAME) -> bool:
    """Whether this peer's receiver (``UPLOAD_SOCKET_NAME``: sender) answers on its Control
    socket (else: run in-process)."""
    client = open_control(peer_root, socket_name)
    if client is None:
        return False
    client.close()
    return True


def submit_get(client: PeerClient, keys: UserKeys, remote_path: str, control: ControlClient,
               *, out_dir: Path | None = None, overwrite: bool = False,
               lifetime_ms: int = DEFAULT_DELEGATION_LIFETIME_MS,
               group: str = "", record: FileRecord | None = None) -> tuple[str, Path]:
    """Submit a download of ``remote_path`` to this peer's receiver; (job id, destination).

    The record is found and verified here, the file key unwrapped here, and the owner's
    delegation for exactly this file's chunks, this peer's delegate key and ``lifetime_ms``
    is signed here: the identity key never leaves this process. ``record``: the caller's
    ``client.find(keys, remote_path)`` (not read and verified again).
    """
    if record is None:
        record = client.find(keys, remote_path)
    base = (out_dir if out_dir is not None else client.download_dir_of(keys)).resolve()
    destination = local_destination(base, normalize_remote_path(remote_path))
    peer_id, delegate_public_key = control.identity()
    now = client.clock.now_ms()
    delegations = [sign_delegation(keys.identity, Delegation(
        owner_public_key=keys.identity.public_bytes(), delegate_public_key=delegate_public_key,
        delegate_peer_id=peer_id, chunk_ids=group, issued_ms=now,
        not_after_ms=now + lifetime_ms)).encode()
        for group in scope_chunks(ch.chunk_id for ch in record.chunks)]
    job_id = control.submit(pb.DownloadJob(
        file_record=json.dumps(record.to_doc(), sort_keys=True).encode(),
        file_key=unwrap_file_key(keys, record.file_id, record.wrapped_file_key),
        delegations=delegations, overwrite=overwrite,
        destination=receiver_destination(control.peer_root, destination),  # its view
        label=seal_label(keys, remote_path), owner_id=keys.user_id, group=group))
    return job_id, destination


def recorded_error(text: str) -> MydriveError:
    """A job's recorded error ("ClassName: message") as its mydrive class again, so that the
    CLI's exit code and the UI's advice are what the in-process path gives."""
    from mydrive import errors

    name, _, message = text.partition(": ")
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, MydriveError)):
        return MydriveError(text)
    exc = cls.__new__(cls)  # not cls(message): some take other arguments (TooFewPeers)
    MydriveError.__init__(exc, message)
    return exc


def seal_label(keys: UserKeys, remote_path: str) -> str:
    """A job's label as the peer keeps it: the remote path sealed with the name key, hex."""
    return encrypt_name(keys.name_key, normalize_remote_path(remote_path)).hex()


def open_label(keys: UserKeys, view: JobView) -> str | None:
    """The remote path of one of this user's jobs; None for anyone else's (or a damaged one)."""
    if view.owner_id != keys.user_id:
        return None
    try:
        return decrypt_name(keys.name_key, bytes.fromhex(view.label))
    except (ValueError, MydriveError):
        return None
