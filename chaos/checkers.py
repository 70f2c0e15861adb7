"""One checker per guarantee (docs/chaos.md), run after every scenario.

Each takes plain inputs (peer directories, the owner's file records, the fault log, a
reachability function) so it can be pointed at a real cluster or at a state broken on
purpose in a test, and returns a Verdict: ``pass``, ``fail`` (with what broke) or ``skip``
(with why it could not judge — never silently).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mydrive.crypto.keys import UserKeys
from mydrive.engine.download import PARTIAL_DIR_NAME
from mydrive.errors import MydriveError, PermissionDenied
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.runtime.clock import Clock, SystemClock
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_fetch import sign_fetch

PASS, FAIL, SKIP = "pass", "fail", "skip"
MAX_PROBLEMS_LISTED = 20


@dataclass
class Verdict:
    checker: str
    verdict: str
    detail: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "verdict": self.verdict, "detail": self.detail,
                "problems": self.problems[:MAX_PROBLEMS_LISTED]}


def _verdict(name: str, problems: list[str], detail: str) -> Verdict:
    return Verdict(name, FAIL if problems else PASS, detail, problems)


@dataclass(frozen=True)
class PeerView:
    """What the checkers need of one peer: its name, id and chunk store directory."""

    name: str
    peer_id: str
    store_dir: Path


def committed_chunks(peer: PeerView) -> set[bytes]:
    return set(open_store(peer.store_dir).chunk_ids())


def open_store(store_dir: Path) -> ChunkStore:
    """A peer's chunk store, opened to be read (the checkers read no chunk file directly):
    opening it changes nothing on disk, so a checker sees what the peer left."""
    return ChunkStore(store_dir, capacity_bytes=2**62, inspect_only=True)


# ---- 1. no full file on any peer -----------------------------------------------------------
def check_no_full_file(records: Iterable[FileRecord], peers: Iterable[PeerView],
                       owner_peer_id: str) -> Verdict:
    """No peer other than the owner's holds every chunk of a file (read from disk)."""
    records = list(records)
    held = {p.peer_id: committed_chunks(p) for p in peers if p.peer_id != owner_peer_id}
    problems = []
    for record in records:
        ids = {c.chunk_id for c in record.chunks}
        for peer_id, chunks in held.items():
            if ids <= chunks:
                problems.append(f"peer {peer_id} holds all {len(ids)} chunks of file "
                                f"{record.file_id.hex()[:12]}")
    return _verdict("no-full-file", problems,
                    f"{len(records)} file(s) against {len(held)} peer store(s)")


# ---- 2. only corrupt segments are resent ---------------------------------------------------
def check_resent_equals_corrupted(records: Iterable[FileRecord],
                                  fault_log: Iterable[Mapping[str, Any]]) -> Verdict:
    """Per file: resent == corrupted-in-flight on every replica that committed the chunk;
    and nothing was resent that was not corrupted (on any peer, failed ones included)."""
    upload_faults = [e for e in fault_log if e.get("point") == "upload"]
    problems = []
    total_resent = total_corrupted = 0
    for record in records:
        index_of = {c.chunk_id.hex(): c.index for c in record.chunks}
        corrupted = {(index_of[str(e["chunk_id"])], int(e["segment"]), str(e["peer"]))
                     for e in upload_faults if str(e["chunk_id"]) in index_of}
        upload = record.transfer.get("upload", {})
        resent = {(int(i), int(s), str(p)) for i, s, p in upload.get("resent", [])}
        committed = {(c.index, p) for c in record.chunks for p in c.replicas}
        corrupted_committed = {t for t in corrupted if (t[0], t[2]) in committed}
        resent_committed = {t for t in resent if (t[0], t[2]) in committed}
        name = record.file_id.hex()[:12]
        extra = sorted(resent - corrupted)
        missing = sorted(corrupted_committed - resent_committed)
        if extra:
            problems.append(f"file {name}: {len(extra)} segment(s) resent that were never "
                            f"corrupted, e.g. {extra[:3]}")
        if missing:
            problems.append(f"file {name}: {len(missing)} corrupted segment(s) committed "
                            f"without a resend, e.g. {missing[:3]}")
        if len(upload.get("resent", [])) != len(resent):
            problems.append(f"file {name}: a segment was resent more than once")
        total_resent += len(resent)
        total_corrupted += len(corrupted)
    return _verdict("resent-equals-corrupted", problems,
                    f"{total_corrupted} segment(s) corrupted in flight, {total_resent} resent")


# ---- 3. nothing lost -------------------------------------------------------------------------
def check_downloads(records: Iterable[FileRecord], expected: Mapping[str, bytes],
                    path_of: Callable[[FileRecord], str],
                    download: Callable[[str, Path], Path],
                    reachable: Callable[[str], bool]) -> Verdict:
    """Every acknowledged file downloads bit-identical while each chunk has a reachable
    replica; a file whose chunk has none is reported as skipped, not passed."""
    problems, skipped, checked = [], [], 0
    records = list(records)
    work = Path(tempfile.mkdtemp(prefix="mydrive-check-"))
    try:
        for record in records:
            path = path_of(record)
            if path not in expected:
                problems.append(f"{path}: stored but the harness never acknowledged it")
                continue
            lost = [c.index for c in record.chunks
                    if not any(reachable(p) for p in c.replicas)]
            if lost:
                skipped.append(f"{path}: chunks {lost[:5]} have no reachable replica")
                continue
            checked += 1
            try:
                got = download(path, work / f"f{checked}")
            except MydriveError as exc:
                problems.append(f"{path}: download failed: {exc}")
                continue
            if got.read_bytes() != expected[path]:
                problems.append(f"{path}: downloaded bytes differ from what was stored")
        acknowledged = {path_of(r) for r in records}
        for path in sorted(set(expected) - acknowledged):
            problems.append(f"{path}: acknowledged by put but no file record exists")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    verdict = _verdict("downloads-bit-identical", problems,
                       f"{checked} file(s) downloaded and compared"
                       + (f"; {len(skipped)} skipped" if skipped else ""))
    if verdict.verdict == PASS and checked == 0 and skipped:
        verdict.verdict = SKIP
    verdict.problems.extend(f"skipped: {s}" for s in skipped)
    return verdict


# ---- 4. owner only ---------------------------------------------------------------------------
def check_owner_only(records: Iterable[FileRecord], peers: Iterable[PeerView], *,
                     owner: UserKeys, intruder: UserKeys, transport: Transport,
                     address_of: Callable[[str], PeerAddress | None],
                     clock: Clock | None = None) -> Verdict:
    """A fetch signed by another identity is refused with PERMISSION_DENIED by every peer
    holding a chunk, while the owner's own signed fetch of that chunk is served."""
    clock = clock or SystemClock()
    problems, skipped, tested = [], [], 0
    wanted = {c.chunk_id for r in records for c in r.chunks}
    for peer in peers:
        held = sorted(committed_chunks(peer) & wanted)
        address = address_of(peer.peer_id)
        if not held or address is None:
            continue
        chunk_id = held[0]
        owner_fetch = sign_fetch(owner.identity, chunk_id=chunk_id, target_peer_id=peer.peer_id,
                                 segment_indices=[0], clock=clock)
        try:
            served = list(transport.fetch(address, owner_fetch))
        except MydriveError as exc:
            skipped.append(f"{peer.name}: owner's own fetch failed ({exc})")
            continue
        if not served:
            problems.append(f"{peer.name}: served nothing to the owner")
            continue
        intruder_fetch = sign_fetch(intruder.identity, chunk_id=chunk_id,
                                    target_peer_id=peer.peer_id, segment_indices=[],
                                    clock=clock)
        tested += 1
        try:
            leaked = list(transport.fetch(address, intruder_fetch))
        except PermissionDenied:
            continue
        except MydriveError as exc:
            problems.append(f"{peer.name}: intruder's fetch failed with {type(exc).__name__} "
                            f"({exc}), not PERMISSION_DENIED")
            continue
        problems.append(f"{peer.name}: served {len(leaked)} segment(s) of chunk "
                        f"{chunk_id.hex()[:12]} to another identity")
    verdict = _verdict("owner-only", problems, f"{tested} peer(s) probed with a foreign "
                                               f"signature")
    if verdict.verdict == PASS and tested == 0:
        verdict.verdict = SKIP
        verdict.detail = "no peer holding a chunk could be probed"
    verdict.problems.extend(f"skipped: {s}" for s in skipped)
    return verdict


# ---- 5. no partial state visible ---------------------------------------------------------------
def _committed_chunk_problem(store: ChunkStore, chunk_id: bytes) -> str | None:
    """What is wrong with a chunk the store shows as committed: no readable header, or bytes
    that are not the chunk its header names (under "blake3" the id is the bytes' digest;
    under "blake3-derived" each segment matches its digest and the id is theirs)."""
    try:
        header = store.header(chunk_id)
    except MydriveError as exc:
        return f"has no readable header ({exc})"
    try:
        data = store.ciphertext(chunk_id)
    except MydriveError as exc:
        return f"has no readable bytes ({exc})"
    as_record = ChunkRecord(index=0, chunk_id=chunk_id, size_bytes=header.chunk_size_bytes,
                            segment_size_bytes=header.segment_size_bytes,
                            segment_digests=header.segment_digests, replicas=())
    if not as_record.matches_ciphertext(data, header.digest_alg):
        return f"is visible but not whole ({len(data)} bytes)"
    return None


def check_no_partial(peers: Iterable[PeerView], download_dirs: Iterable[Path],
                     expected: Mapping[str, bytes], *,
                     rotted: Iterable[tuple[str, bytes]] = ()) -> Verdict:
    """Every committed chunk file is whole (its header present and its bytes the chunk the
    header names, by the header's id scheme), except those the harness rotted on purpose;
    every visible file in a download directory is complete."""
    rotted_set = set(rotted)
    problems = []
    chunks_checked = 0
    for peer in peers:
        store = open_store(peer.store_dir)
        for chunk_id in store.chunk_ids():
            if (peer.peer_id, chunk_id) in rotted_set:
                continue
            chunks_checked += 1
            problem = _committed_chunk_problem(store, chunk_id)
            if problem:
                problems.append(f"{peer.name}: chunk {chunk_id.hex()[:12]} {problem}")
    files_checked = 0
    for base in download_dirs:
        if not base.exists():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if not path.is_file() or PARTIAL_DIR_NAME in rel.parts:
                continue
            files_checked += 1
            remote = "/" + "/".join(rel.parts)
            want = expected.get(remote)
            if want is None:
                problems.append(f"{path}: a visible download the harness never stored")
            elif path.read_bytes() != want:
                problems.append(f"{path}: a visible download that is partial or wrong "
                                f"({path.stat().st_size} of {len(want)} bytes)")
    return _verdict("no-partial-state", problems,
                    f"{chunks_checked} committed chunk(s) and {files_checked} downloaded "
                    f"file(s) checked")
