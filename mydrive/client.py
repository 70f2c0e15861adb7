"""What a user does with their own peer: users, put, ls, get, inspect, rm, gc, rotation.

The CLI (and later the UI) call these; the transfer engine runs in this process, so the
user's unwrapped keys never cross a socket (docs/architecture.md explains the choice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import (
    LEGACY_USER_DOC_VERSION,
    UserKeys,
    UserRecord,
    create_user,
    migrate_legacy_user,
    rewrap_master_key,
    unlock,
    validate_username,
)
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    BadRequest,
    Conflict,
    DecryptionFailed,
    FileExists,
    UnknownFile,
    UntrustedMetadata,
    UserExists,
)
from mydrive.formats.chunkplan import ChunkPlan
from mydrive.formats.digest import DERIVED_ID_ALG, WHOLE_CHUNK_ALG
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.formats.paths import local_destination, normalize_remote_path
from mydrive.formats.peerdoc import PeerTrust, accept_peer_documents
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.signed import verified_key
from mydrive.metadata.trusted import (
    next_updated_ms,
    read_files,
    read_user,
    user_doc_id,
    write_signed,
    write_user,
)
from mydrive.runtime.clock import Clock, SystemClock
from mydrive.runtime.events import NO_EVENTS, EventRecorder
from mydrive.runtime.executor import ExecutorFactory, thread_pool
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.private_files import user_download_dir
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS, Randomness
from mydrive.transport.base import PeerAddress, Transport

# The transfer engine (upload, download, gc, check, repair) is imported by the methods that
# run it: `mydrive ls`, `user create` or a job's submission must not pay for importing it.
if TYPE_CHECKING:
    from mydrive.engine.accounting import TransferLedger
    from mydrive.engine.durability import CheckReport, DurabilitySettings
    from mydrive.engine.gc import GcReport
    from mydrive.engine.repair import RepairHooks
    from mydrive.engine.repair_policy import RepairBudget
    from mydrive.engine.upload import PeerInfo, Progress
    from mydrive.runtime.metrics import Metrics


@dataclass(frozen=True)
class FileEntry:
    path: str
    size_bytes: int
    created_ms: int
    chunk_count: int
    file_id: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size_bytes": self.size_bytes, "created_ms": self.created_ms,
                "chunk_count": self.chunk_count, "file_id": self.file_id}


@dataclass(frozen=True)
class RemoveResult:
    """What ``rm`` did: the files whose documents are gone, and the deletion pass after it."""

    paths: tuple[str, ...]
    gc: GcReport

    def to_json(self) -> dict[str, Any]:
        return {"removed": list(self.paths), "gc": self.gc.to_json()}


def chunk_id_scheme(chunks: tuple[ChunkRecord, ...]) -> str:
    """The chunk id scheme an upload used, read from its chunk records, so a file record's
    ``digest_alg`` can't disagree with its chunks (the uploading engine, here or on an
    upload job's sender, picked it). A derived id is the one its size and digests give; a
    "blake3" id (a digest of the whole ciphertext) never is. BadRequest for a mix."""
    derived = [c.id_consistent(DERIVED_ID_ALG) for c in chunks]
    if all(derived):  # also a file with no chunks: any scheme verifies it
        return DERIVED_ID_ALG
    if not any(derived):
        return WHOLE_CHUNK_ALG
    odd = next(c for c, d in zip(chunks, derived, strict=True) if d != derived[0])
    raise BadRequest(f"chunk {odd.index} and chunk {chunks[0].index} follow different chunk "
                     f"id schemes (only one's id is the {DERIVED_ID_ALG} id of its digests)")


class PeerClient:
    """A user's view of the network through one peer, built from the collaborators it is
    handed: that peer's metadata store, a transport to the other peers, a clock, a source of
    randomness, the executor factory transfers run on, an event recorder and the fault hooks
    (the last two do nothing outside the test-bed).

    ``mydrive.node.local_client.open_client(PEER_DIR)`` builds one for a peer directory.
    """

    def __init__(self, *, peer_id: str, settings: TransferSettings, download_dir: Path,
                 store: MetadataStore, transport: Transport, clock: Clock | None = None,
                 faults: FaultHooks = NO_FAULTS,
                 randomness: Randomness = SYSTEM_RANDOMNESS,
                 executor: ExecutorFactory = thread_pool, events: EventRecorder = NO_EVENTS,
                 kdf_costs: Mapping[str, int] | None = None,
                 peer_trust: PeerTrust | None = None) -> None:
        self.peer_id = peer_id
        self.settings = settings
        self.download_dir = download_dir
        self.store = store
        self.transport = transport
        self.clock = clock or SystemClock()
        self.faults = faults
        self.randomness = randomness
        self.random_bytes = randomness.random_bytes
        self.executor = executor
        self.events = events
        # Argon2id costs for new users and rotations (None: the documented defaults).
        self.kdf_costs = dict(kdf_costs or {})
        # Whose peer documents count: on a TLS network those its CA's certificates sign;
        # None (no TLS) takes them as written (mydrive.formats.peerdoc, docs/security.md).
        self.peer_trust = peer_trust

    def close(self) -> None:
        self.store.close()
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    # ---- users -------------------------------------------------------------------------
    def create_user(self, name: str, passphrase: str) -> UserRecord:
        name = validate_username(name)
        doc_id = user_doc_id(name)
        # A name this peer has verified stays taken even if a replica deleted its document.
        if (self.store.get(doc_id) is not None
                or self.store.get_local(verified_key(doc_id)) is not None):
            raise UserExists(f"user {name!r} already exists")
        record, keys = create_user(name, passphrase, random_bytes=self.random_bytes,
                                   kdf_params=crypto.new_kdf_params(self.random_bytes,
                                                                    **self.kdf_costs))
        record = next_updated_ms(record, self.clock.now_ms())
        try:
            write_user(self.store, record, keys, create_only=True)
        except Conflict:
            raise UserExists(f"user {name!r} already exists") from None
        return record

    def user_record(self, name: str) -> UserRecord:
        """The user's record as this peer trusts it: signed by the identity key this peer
        knew first for the name, and not older than what it saw (mydrive.metadata.trusted)."""
        return read_user(self.store, name)

    def login(self, name: str, passphrase: str) -> UserKeys:
        """Unlock the user's keys; a version 1 (unsigned) user document is migrated."""
        record = self.user_record(name)
        if record.version != LEGACY_USER_DOC_VERSION:
            return unlock(record, passphrase)
        migrated, keys = migrate_legacy_user(record, passphrase, random_bytes=self.random_bytes)
        write_user(self.store, next_updated_ms(migrated, self.clock.now_ms()), keys)
        logging.getLogger("mydrive.client").warning(
            "user %r: version 1 user document migrated to a signed one (user id %s is now "
            "%s); files stored before, in unsigned version 1 documents, are not used: upload "
            "them again (docs/metadata.md, 'Signed documents')", record.name, record.user_id,
            keys.user_id)
        return keys

    def rotate_passphrase(self, name: str, current: str, new: str) -> UserRecord:
        """Re-wrap the user's master key under ``new`` (fresh salt); no file data changes.

        Atomic: the whole change is one write of the ``user:<name>`` document (one SQLite
        transaction), and old and new documents wrap the same master key, so a crash leaves
        either the old passphrase working or the new one (docs/security.md). The document is
        signed by the same identity key, with a later ``updated_ms``.
        """
        if new == current:
            raise BadRequest("the new passphrase is the same as the current one")
        keys = self.login(name, current)
        record = self.user_record(name)
        rotated = rewrap_master_key(record, keys, new, random_bytes=self.random_bytes,
                                    kdf_params=crypto.new_kdf_params(self.random_bytes,
                                                                     **self.kdf_costs))
        # updated_ms decides between rotations made on two partitioned peers (docs/metadata.md)
        rotated = next_updated_ms(rotated, self.clock.now_ms())
        write_user(self.store, rotated, keys)
        return rotated

    # ---- peers -------------------------------------------------------------------------
    def known_peers(self) -> list[PeerInfo]:
        """The peers whose documents verify (``peer_trust``), one per id (on a TLS network:
        per certificate key); the others are logged and skipped, never fatal."""
        from mydrive.engine.upload import PeerInfo

        return [PeerInfo(address=PeerAddress(peer_id=p.peer_id,
                                             receiver_address=p.receiver_address,
                                             sender_address=p.sender_address),
                         capacity_bytes=p.capacity_bytes)
                for p in accept_peer_documents(self.store.list_prefix("peer:"),
                                               self.peer_trust)]

    # ---- files -------------------------------------------------------------------------
    def _records(self, keys: UserKeys) -> list[FileRecord]:
        """This user's file records that verify (untrusted ones are skipped and logged)."""
        return read_files(self.store, keys).records

    def _decrypted_path(self, keys: UserKeys, record: FileRecord) -> str:
        try:
            path = crypto.decrypt_name(keys.name_key, record.encrypted_path,
                                       file_id=record.file_id)
        except DecryptionFailed as exc:
            raise DecryptionFailed(f"file {record.file_id.hex()}: its name does not decrypt "
                                   f"(metadata tampered with?)") from exc
        tag = crypto.name_tag(keys.name_mac_key, path)
        if not crypto.constant_time_equal(record.path_tag.encode(), tag.encode()):
            raise DecryptionFailed(f"file {record.file_id.hex()}: its lookup tag does not "
                                   f"match its name (metadata tampered with?)")
        return path

    def find(self, keys: UserKeys, remote_path: str) -> FileRecord:
        """The verified record at ``remote_path``; UntrustedMetadata if the only document
        claiming that path fails verification, UnknownFile if none claims it."""
        canonical = normalize_remote_path(remote_path)
        tag = crypto.name_tag(keys.name_mac_key, canonical)
        files = read_files(self.store, keys)
        for record in files.records:
            if crypto.constant_time_equal(record.path_tag.encode(), tag.encode()):
                return record
        for doc_id, claimed, reason in files.refused:
            if crypto.constant_time_equal(claimed.encode(), tag.encode()):
                raise UntrustedMetadata(f"{canonical!r}: its file document {doc_id} is not "
                                        f"used: {reason}")
        raise UnknownFile(f"no file {canonical!r} for this user")

    def list_files(self, keys: UserKeys) -> list[FileEntry]:
        entries = [FileEntry(path=self._decrypted_path(keys, r), size_bytes=r.size_bytes,
                             created_ms=r.created_ms, chunk_count=r.plan.chunk_count,
                             file_id=r.file_id.hex())
                   for r in self._records(keys)]
        return sorted(entries, key=lambda e: e.path)

    def put(self, keys: UserKeys, local: Path, remote_path: str | None = None, *,
            progress: Progress | None = None) -> FileRecord:
        from mydrive.engine.upload import upload_file

        canonical = self.put_target(keys, local, remote_path)
        result = upload_file(local, keys=keys, owner_peer_id=self.peer_id,
                             peers=self.known_peers(),
                             settings=self.settings,
                             transport=self.transport, clock=self.clock, faults=self.faults,
                             randomness=self.randomness, executor=self.executor,
                             events=self.events, progress=progress)
        return self.record_upload(keys, canonical, file_id=result.file_id, plan=result.plan,
                                  wrapped_file_key=result.wrapped_file_key,
                                  chunks=result.chunks,
                                  transfer={"upload": result.ledger.to_json()})

    def put_target(self, keys: UserKeys, local: Path, remote_path: str | None) -> str:
        """The remote path ``put`` stores ``local`` as; FileExists if it is taken."""
        if not local.is_file():
            raise BadRequest(f"{local} is not a readable file")
        raw = remote_path or "/"
        if raw.endswith("/"):  # a folder: keep the local file's name
            raw += local.name
        canonical = normalize_remote_path(raw)
        self.check_name_free(keys, canonical)
        return canonical

    def check_name_free(self, keys: UserKeys, canonical: str) -> None:
        """FileExists if this user already has a file at ``canonical``."""
        try:
            self.find(keys, canonical)
            raise FileExists(f"{canonical!r} already exists; remove it first or pick "
                             f"another name")
        except UnknownFile:
            pass

    def record_upload(self, keys: UserKeys, canonical: str, *, file_id: bytes,
                      plan: ChunkPlan, wrapped_file_key: bytes,
                      chunks: tuple[ChunkRecord, ...], transfer: dict[str, Any]) -> FileRecord:
        """Write the signed ``file:`` document of a stored upload (in this process, or an
        upload job's once its owner checked it: mydrive.node.jobs_signing)."""
        now_ms = self.clock.now_ms()
        record = FileRecord(file_id=file_id, owner_id=keys.user_id,
                            path_tag=crypto.name_tag(keys.name_mac_key, canonical),
                            encrypted_path=crypto.encrypt_name(keys.name_key, canonical,
                                                               self.random_bytes,
                                                               file_id=file_id),
                            plan=plan, wrapped_file_key=wrapped_file_key,
                            digest_alg=chunk_id_scheme(chunks), created_ms=now_ms,
                            chunks=chunks, transfer=transfer, updated_ms=now_ms)
        # The file exists for its owner only once this document is written: acknowledged.
        # Signed over every field; every reader verifies it (mydrive.metadata.signed).
        write_signed(self.store, record.doc_id, record.to_doc(), keys.identity,
                     create_only=True)
        return record

    def get(self, keys: UserKeys, remote_path: str, *, out_dir: Path | None = None,
            overwrite: bool = False,
            progress: Progress | None = None) -> tuple[Path, TransferLedger]:
        from mydrive.engine.download import download_file

        record = self.find(keys, remote_path)
        base = out_dir if out_dir is not None else self.download_dir_of(keys)
        base.mkdir(parents=True, exist_ok=True)
        stored_path = self._decrypted_path(keys, record)
        destination = local_destination(base, stored_path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        peers = {p.peer_id: p.address for p in self.known_peers()}
        ledger = download_file(record, destination, keys=keys, peers=peers,
                               settings=self.settings,
                               transport=self.transport, clock=self.clock, overwrite=overwrite,
                               randomness=self.randomness, executor=self.executor,
                               events=self.events, progress=progress)
        self.note_bad_segments(keys.user_id, record, ledger)
        return destination, ledger

    def download_dir_of(self, keys: UserKeys) -> Path:
        """This user's own download directory (by user id, private; not shared with the
        peer's other users)."""
        return user_download_dir(self.download_dir, keys.user_id)

    def select(self, keys: UserKeys, remote_path: str, *,
               recursive: bool = False) -> list[tuple[str, FileRecord]]:
        """The file at ``remote_path``, or with ``recursive`` every file under that folder."""
        canonical = normalize_remote_path(remote_path)
        named = [(self._decrypted_path(keys, r), r) for r in self._records(keys)]
        exact = [(p, r) for p, r in named if p == canonical]
        if exact:
            return exact
        inside = sorted(((p, r) for p, r in named if p.startswith(canonical + "/")),
                        key=lambda pr: pr[0])
        if not inside:
            raise UnknownFile(f"no file or folder {canonical!r} for this user")
        if not recursive:
            raise BadRequest(f"{canonical!r} is a folder with {len(inside)} file(s); "
                             f"use --recursive to remove them all")
        return inside

    def remove(self, keys: UserKeys, remote_path: str, *,
               recursive: bool = False) -> RemoveResult:
        """Delete a file (or a folder's files) from the metadata and from every replica.

        Each file's tombstone is written before its document is deleted; then one collection
        pass sends owner-signed deletes. Peers that are down stay pending in the tombstones
        and a later ``rm`` or ``collect_garbage`` retries them (docs/deletion.md).
        """
        from mydrive.engine.gc import bury

        selected = self.select(keys, remote_path, recursive=recursive)
        for _, record in selected:
            bury(self.store, keys, record, self.clock.now_ms())
        return RemoveResult(paths=tuple(p for p, _ in selected),
                            gc=self.collect_garbage(keys))

    def collect_garbage(self, keys: UserKeys) -> GcReport:
        """Retry the pending deletes of this user's removed files (``mydrive gc``)."""
        from mydrive.engine.gc import collect

        peers = {p.peer_id: p.address for p in self.known_peers()}
        return collect(self.store, keys, peers=peers, transport=self.transport,
                       clock=self.clock, random_bytes=self.random_bytes)

    def inspect(self, keys: UserKeys, remote_path: str) -> dict[str, Any]:
        return self.describe(keys, self.find(keys, remote_path))

    def describe(self, keys: UserKeys, record: FileRecord) -> dict[str, Any]:
        """The ``inspect --json`` view of one of this user's file records."""
        per_peer: dict[str, int] = {}
        for chunk in record.chunks:
            for peer_id in chunk.replicas:
                per_peer[peer_id] = per_peer.get(peer_id, 0) + 1
        return {
            "path": self._decrypted_path(keys, record),
            "file_id": record.file_id.hex(),
            "size_bytes": record.size_bytes,
            "created_ms": record.created_ms,
            "chunk_count": record.plan.chunk_count,
            "chunk_size_bytes": record.plan.chunk_size_bytes,
            "segment_size_bytes": record.plan.segment_size_bytes,
            "digest_alg": record.digest_alg,
            "chunks": [{"index": c.index, "chunk_id": c.chunk_id.hex(),
                        "size_bytes": c.size_bytes, "segments": len(c.segment_digests),
                        "replicas": list(c.replicas)} for c in record.chunks],
            "chunks_per_peer": dict(sorted(per_peer.items())),
            "transfer": record.transfer,
        }

    # ---- durability: check, repair, the background pass (docs/durability.md) ------------
    def check(self, keys: UserKeys, remote_path: str | None = None, *,
              verify_all: bool = False, repair: bool = False, rebalance: bool = False,
              settings: DurabilitySettings | None = None,
              budget: RepairBudget | None = None, max_bytes_per_s: float | None = None,
              hooks: RepairHooks | None = None) -> CheckReport:
        """Audit every replica of the file at ``remote_path`` (a folder: every file under
        it; None: all of this user's files) with fresh owner-signed fetches of random
        segments (``verify_all``: every segment); with ``repair`` restore every chunk to R
        and update the signed records (``mydrive check``); ``hooks``: the test-bed's
        (None: NO_REPAIR_HOOKS)."""
        from mydrive.engine.durability import DurabilitySettings, run_check
        from mydrive.engine.repair import NO_REPAIR_HOOKS

        if remote_path is None:
            files = sorted(((self._decrypted_path(keys, r), r) for r in self._records(keys)),
                           key=lambda pr: pr[0])
        else:
            files = self.select(keys, remote_path, recursive=True)
        return run_check(files, keys=keys, store=self.store, peers=self.known_peers(),
                         owner_peer_id=self.peer_id, transport=self.transport,
                         clock=self.clock, randomness=self.randomness,
                         transfer=self.settings, settings=settings or DurabilitySettings(),
                         verify_all=verify_all, repair=repair, rebalance=rebalance,
                         budget=budget, max_bytes_per_s=max_bytes_per_s,
                         executor=self.executor, events=self.events,
                         hooks=NO_REPAIR_HOOKS if hooks is None else hooks)

    def durability_pass(self, keys: UserKeys, *, settings: DurabilitySettings | None = None,
                        metrics: Metrics | None = None,
                        hooks: RepairHooks | None = None) -> CheckReport:
        """One tick of the background loop (``mydrive durability run``): the next audits,
        dead-peer detection, repairs and rebalancing within the per-pass budget."""
        from mydrive.engine.durability import DurabilitySettings, run_pass
        from mydrive.engine.repair import NO_REPAIR_HOOKS

        return run_pass(self._records(keys), keys=keys, store=self.store,
                        peers=self.known_peers(), owner_peer_id=self.peer_id,
                        transport=self.transport, clock=self.clock,
                        randomness=self.randomness, transfer=self.settings,
                        settings=settings or DurabilitySettings(), executor=self.executor,
                        events=self.events, hooks=NO_REPAIR_HOOKS if hooks is None else hooks,
                        metrics=metrics)

    def note_bad_segments(self, user_id: str, record: FileRecord,
                          ledger: TransferLedger) -> None:
        """Replicas that served bad segments to a download: the next check or pass audits
        them whole (bit rot found by a download gets repaired from a good replica). A
        download job calls this too: the notes are a local document, no key needed."""
        bad = sorted({(record.file_id.hex(), chunk, peer)
                      for chunk, _, peer in ledger.bad_fetched})
        if bad:
            from mydrive.engine.durability import DurabilityState

            state = DurabilityState.load(self.store, user_id)
            state.add_suspects(bad)
            state.save(self.store, user_id)
