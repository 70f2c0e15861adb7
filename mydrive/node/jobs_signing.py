"""The owner's side of an upload job: submit it, and sign its file document once stored.

The identity key never leaves the owner's process (CLI, UI), so the sender that runs the
upload can't write the ``file:`` document; it stores the chunks and waits in
``awaiting_signature``. The owner's client then checks what the sender hands back and signs
the document itself: the ``mydrive put`` that follows the job at once, or, when that process
is gone, the next ``mydrive put``, ``mydrive jobs --user`` or UI page of that user.

What the client checks before signing (a compromised own peer must not get it to sign a
document it did not mean):

* the job is this user's, its label (the remote path sealed with the user's name key, as a
  download job's) opens, and its **seal** matches: an HMAC of the file id, the file's size
  and that path under a key derived from the user's master key, never published. So this
  user submitted an upload of that file id, that many bytes, under that name: a file id
  known from public metadata does not pass, the name of one upload can't be put on another
  upload's chunks, and the plan must cut exactly the size that was handed over;
* the **wrapped file key** unwraps under the user's key for that file id;
* the **chunk records** fit the plan (``check_chunks``): one per chunk in order, each the
  size the plan gives that chunk's ciphertext, cut into the plan's segments, every chunk id
  and segment digest a well-formed digest and no chunk id listed twice; every chunk has at
  least one replica, none twice, and each replica is a member this peer knows; the ids
  follow one scheme (``chunk_id_scheme``, which names the document's ``digest_alg``): under
  "blake3-derived", each id is the one its size and segment digests give (cheap: no chunk
  bytes), so a chunk id or digest edited after the upload is refused here;
* no document and no tombstone of that file id exist yet (a finished or deleted upload is not
  signed again), and the name is still free.

What it can't check without reading and encrypting the whole file again: that the digests
(and "blake3" ids) are the real ones, and that the replicas hold them. A sender that lies there only
makes that one file unreadable (``DataLoss`` on ``get``, the AEAD of every chunk binds file
id, index and count) — which a compromised sender could do anyway by not storing it
(docs/security.md). Naming another file's chunk ids gains it nothing either: ``gc`` never
deletes a chunk that any live file document lists, and a peer deletes a chunk only for the
owner key in its header.
"""

from __future__ import annotations

import json
import logging
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from mydrive.client import PeerClient, chunk_id_scheme
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine.upload import GCM_TAG_BYTES, new_file_keys
from mydrive.errors import (
    BadRequest,
    Conflict,
    DecryptionFailed,
    FileExists,
    MydriveError,
    UntrustedMetadata,
)
from mydrive.formats.chunkplan import ChunkPlan, segment_ranges
from mydrive.formats.digest import DIGEST_BYTES
from mydrive.formats.filerecord import ChunkRecord, FileRecord, file_doc_id
from mydrive.formats.tombstone import tomb_doc_id
from mydrive.metadata.signed import verify_file
from mydrive.node.jobs_control import ControlClient, JobView, open_label, seal_label
from mydrive.node.jobs_store import AWAITING_SIGNATURE
from mydrive.node.jobs_upload import SourceFingerprint
from mydrive.transport.wire import mydrive_pb2 as pb

# v2 binds the size as well (v1: file id and path only); a v1 job awaiting its signature
# fails the seal check and is cancelled: put the file again.
SEAL_PURPOSE = "mydrive-upload-job-seal-v2"
# Failed checks (UntrustedMetadata is a DecryptionFailed) and a name taken meanwhile: these
# never pass later, unlike an unreachable metadata store.
FINAL_ERRORS = (DecryptionFailed, FileExists)
log = logging.getLogger("mydrive.jobs")


def upload_seal(keys: UserKeys, file_id: bytes, size_bytes: int, path: str) -> str:
    """The owner's proof that it submitted an upload of ``size_bytes`` bytes as ``file_id``
    and ``path`` (hex HMAC-SHA256; the file id is fixed-length hex and the size digits ended
    by ``:``, so the fields can't be split differently)."""
    return crypto.name_tag(crypto.hkdf_subkey(keys.master_key, SEAL_PURPOSE),
                           f"upload-job:{file_id.hex()}:{int(size_bytes)}:{path}")


def submit_put(client: PeerClient, keys: UserKeys, local: Path, remote_path: str | None,
               control: ControlClient, *, group: str = "") -> tuple[str, str]:
    """Hand an upload of ``local`` to this peer's sender; (job id, remote path).

    The file id and key are drawn and the key wrapped here; the file key crosses only the
    local socket. UnknownFile when the sender does not see the file as this process does
    (a sender in a container): upload in this process instead.
    """
    canonical = client.put_target(keys, local, remote_path)
    source = local.resolve()
    seen = SourceFingerprint.of(source)
    file_keys = new_file_keys(keys, client.randomness)
    job_id = control.submit_upload(pb.UploadJob(
        source=str(source), size_bytes=seen.size_bytes, mtime_ns=seen.mtime_ns,
        inode=seen.inode, file_id=file_keys.file_id, file_key=file_keys.file_key,
        wrapped_file_key=file_keys.wrapped_file_key,
        owner_public_key=file_keys.owner_public_key,
        label=seal_label(keys, canonical), owner_id=keys.user_id, group=group,
        seal=upload_seal(keys, file_keys.file_id, seen.size_bytes, canonical)))
    return job_id, canonical


@dataclass(frozen=True)
class CheckedUpload:
    """An awaiting upload after the owner's checks: what the document will say."""

    path: str
    file_id: bytes
    plan: ChunkPlan
    wrapped_file_key: bytes
    chunks: tuple[ChunkRecord, ...]
    transfer: dict[str, object]


def check_chunks(plan: ChunkPlan, chunks: tuple[ChunkRecord, ...],
                 members: frozenset[str]) -> str | None:
    """What is wrong with ``chunks`` as the records of a file cut by ``plan`` and stored on
    ``members``; None when nothing is (only the shape: the bytes are not read again)."""
    if len(chunks) != plan.chunk_count or any(c.index != i for i, c in enumerate(chunks)):
        return "its chunks do not match its plan"
    seen: set[bytes] = set()
    for c in chunks:
        where = f"chunk {c.index}"
        if len(c.chunk_id) != DIGEST_BYTES or c.chunk_id in seen:
            return f"{where}: its id is malformed or listed twice"
        seen.add(c.chunk_id)
        if c.size_bytes != plan.plaintext_length(c.index) + GCM_TAG_BYTES or \
                c.segment_size_bytes != plan.segment_size_bytes:
            return f"{where}: its size or segment size is not the plan's"
        segments = len(segment_ranges(c.size_bytes, c.segment_size_bytes))
        if len(c.segment_digests) != segments or \
                any(len(d) != DIGEST_BYTES for d in c.segment_digests):
            return f"{where}: its segment digests do not fit its size"
        if not c.replicas or len(set(c.replicas)) != len(c.replicas):
            return f"{where}: no replica, or one listed twice"
        strangers = sorted(set(c.replicas) - members)
        if strangers:
            return f"{where}: replica {strangers[0]!r:.80} is not a known member"
    try:
        chunk_id_scheme(chunks)  # derived ids checked against their digests
    except BadRequest as exc:
        return str(exc)
    return None


def check_upload(keys: UserKeys, view: JobView, result: bytes,
                 members: frozenset[str]) -> CheckedUpload:
    """The checks of the module docstring that need no metadata but the peer ids of the
    network's ``members``; UntrustedMetadata (or DecryptionFailed) naming the one that
    failed."""
    if view.owner_id != keys.user_id:
        raise UntrustedMetadata(f"upload job {view.job_id} is not this user's")
    try:
        d = json.loads(result)
        file_id = bytes.fromhex(d["file_id"])
        seal = str(d["seal"])
        wrapped = bytes.fromhex(d["wrapped_file_key"])
        plan = ChunkPlan.from_json(d["plan"])
        chunks = tuple(ChunkRecord.from_json(c) for c in d["chunks"])
        transfer = dict(d.get("transfer", {}))
    except (KeyError, TypeError, ValueError, BadRequest) as exc:
        raise UntrustedMetadata(f"upload job {view.job_id}: malformed result: {exc}") from None
    path = open_label(keys, view)
    if path is None or not crypto.constant_time_equal(
            seal.encode(), upload_seal(keys, file_id, plan.size_bytes, path).encode()):
        raise UntrustedMetadata(f"upload job {view.job_id} was not submitted by this user "
                                f"for this file, size and name (its seal does not match)")
    unwrap_file_key(keys, file_id, wrapped)
    wrong = check_chunks(plan, chunks, members)
    if wrong is not None:
        raise UntrustedMetadata(f"upload job {view.job_id}: {wrong}")
    return CheckedUpload(path=path, file_id=file_id, plan=plan, wrapped_file_key=wrapped,
                         chunks=chunks, transfer=transfer)


def finish_upload(client: PeerClient, keys: UserKeys, control: ControlClient,
                  view: JobView) -> FileRecord | None:
    """Check and sign an awaiting upload's file document, then tell the sender it is done.
    None when the document was already written (an earlier finish stopped before telling)."""
    members = frozenset(p.address.peer_id for p in client.known_peers())
    checked = check_upload(keys, view, control.upload_result(view.job_id), members)
    doc_id = file_doc_id(keys.user_id, checked.file_id)
    record: FileRecord | None = None
    if client.store.get(doc_id) is None:
        if client.store.get(tomb_doc_id(keys.user_id, checked.file_id)) is not None:
            raise UntrustedMetadata(f"upload job {view.job_id}: that file was stored and "
                                    f"deleted already; not signed again")
        client.check_name_free(keys, checked.path)
        with suppress(Conflict):  # another process of this user signed it just now
            record = client.record_upload(
                keys, checked.path, file_id=checked.file_id, plan=checked.plan,
                wrapped_file_key=checked.wrapped_file_key, chunks=checked.chunks,
                transfer=dict(checked.transfer))
    if record is None:  # signed before: by an earlier visit that stopped before telling
        existing = client.store.get(doc_id)
        assert existing is not None, "a conflict means the document is there"
        verify_file(doc_id, existing, keys.identity.public_bytes())
    try:
        control.finish_upload(view.job_id)
    except MydriveError as exc:  # the file is stored and signed; the next visit tells it
        log.warning("upload job %s signed but not marked done yet: %s", view.job_id, exc)
    return record


def finish_pending_uploads(client: PeerClient, keys: UserKeys,
                           control: ControlClient) -> list[tuple[str, str]]:
    """Sign every upload of this user that waits for it; (job id, path or error) each.
    An upload that fails the checks, or whose name was taken meanwhile, is cancelled (its
    chunks become orphans, like a crashed upload's): it would never pass later either."""
    outcome: list[tuple[str, str]] = []
    for view in control.jobs():
        if view.kind != "upload" or view.state != AWAITING_SIGNATURE or \
                view.owner_id != keys.user_id:
            continue
        try:
            record = finish_upload(client, keys, control, view)
            outcome.append((view.job_id, "stored" if record is None else "signed"))
        except MydriveError as exc:
            log.warning("upload job %s not signed: %s", view.job_id, exc)
            outcome.append((view.job_id, f"{type(exc).__name__}: {exc}"))
            if isinstance(exc, FINAL_ERRORS):
                control.cancel(view.job_id)
    return outcome
