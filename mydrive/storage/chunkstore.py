"""A peer's store of other users' encrypted chunks.

Layout under the store root (see docs/chunk-store.md):
  chunks/<ab>/<chunk id hex>.chunk   a committed chunk, one file: the ciphertext (visible only
                                     once whole and verified), then its ChunkHeader (owner
                                     key, segment digests) in a checksummed trailer
  chunks/<ab>/<chunk id hex>.meta    only in stores written before the trailer: the header of
                                     a ``.chunk`` that is the ciphertext alone (read, served
                                     and deleted, never written)
  incoming/<chunk id hex>.part       an upload in progress, segments written at their offsets,
                                     its header after them (a trailer, to resume after a
                                     restart; the committed trailer replaces it at the commit)
  incoming/<chunk id hex>.hdr        that header in a file of its own (stores written before
                                     the trailer; read to resume, never written)
The ``.chunk`` rename is the commit point: the ``.part`` holds the ciphertext and the committed
trailer and is synced before it, so a crash at any moment leaves either no visible chunk or a
complete, verified one with its header. A trailer that does not parse or check out is a
corrupt chunk (DataLoss), never a header served; a ``.chunk`` with neither a trailer nor a
``.meta`` is an old-layout commit a crash cut short, never acknowledged, and is removed when
the store opens. A committed chunk stays bound to the header (owner key,
segments) it was committed with: storing it again under any other header is refused.

Capacity counts committed chunks and every ``.part`` (its declared size, reserved by
``begin``) until it is committed or removed. A partial untouched for ``partial_ttl_s`` is
stale: ``clean_stale_partials`` removes it (at the receiver's start and, at most once a
minute, on ``begin``), so an uploader that never finishes can't keep the space forever.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mydrive.errors import (
    BadRequest,
    ChunkNotFound,
    DataLoss,
    PermissionDenied,
    TooLarge,
)
from mydrive.formats.chunkheader import MAX_CHUNK_SIZE_BYTES, ChunkHeader
from mydrive.formats.digest import WHOLE_CHUNK_ALG, Hasher, digest, digests_equal
from mydrive.runtime.clock import Clock, SystemClock
from mydrive.runtime.disk import drop_cached, fsync_dir, sync_file

DEFAULT_PARTIAL_TTL_S = 3600.0
STALE_SWEEP_INTERVAL_S = 60.0


class ChunkStore:
    def __init__(self, root: Path, *, capacity_bytes: int,
                 max_chunk_size_bytes: int = MAX_CHUNK_SIZE_BYTES,
                 partial_ttl_s: float = DEFAULT_PARTIAL_TTL_S,
                 clock: Clock | None = None, inspect_only: bool = False) -> None:
        """``inspect_only``: a store opened to be looked at (the test-bed's checkers) while
        its peer may be running: opening it changes nothing on disk (no directory made, no
        cut-short commit removed, so a checker sees what the peer left), and it takes no
        uploads and removes nothing."""
        self.root = root
        self.inspect_only = inspect_only
        self.capacity_bytes = capacity_bytes
        self.max_chunk_size_bytes = max_chunk_size_bytes
        self.partial_ttl_s = partial_ttl_s
        self.clock = clock or SystemClock()
        self._chunks = root / "chunks"
        self._incoming = root / "incoming"
        if not inspect_only:
            self._chunks.mkdir(parents=True, exist_ok=True)
            self._incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._busy: set[bytes] = set()
        self._used_bytes = _committed_bytes(self._chunks, drop_cut_short=not inspect_only)
        self._partials = _partials_on_disk(self._incoming)  # chunk id -> reserved bytes
        self._next_sweep_s: float | None = None  # the first begin sweeps

    # ---- paths -----------------------------------------------------------------------
    def _chunk_path(self, chunk_id: bytes) -> Path:
        h = chunk_id.hex()
        return self._chunks / h[:2] / f"{h}.chunk"

    def _meta_path(self, chunk_id: bytes) -> Path:
        return self._chunk_path(chunk_id).with_suffix(".meta")

    def _part_path(self, chunk_id: bytes) -> Path:
        return self._incoming / f"{chunk_id.hex()}.part"

    def _hdr_path(self, chunk_id: bytes) -> Path:
        return self._incoming / f"{chunk_id.hex()}.hdr"

    # ---- queries ---------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    @property
    def reserved_bytes(self) -> int:
        """Bytes held by partial uploads (their declared sizes), counted against capacity."""
        with self._lock:
            return sum(self._partials.values())

    def has(self, chunk_id: bytes) -> bool:
        return self._chunk_path(chunk_id).exists()

    def header(self, chunk_id: bytes) -> ChunkHeader:
        """The committed chunk's header; ChunkNotFound if this peer holds no such chunk,
        DataLoss if its header is unreadable (a trailer that does not check out)."""
        fd = _open_committed(self._chunk_path(chunk_id), chunk_id)
        try:
            return self._header_at(fd, chunk_id)[0]
        finally:
            os.close(fd)

    def _header_at(self, fd: int, chunk_id: bytes) -> tuple[ChunkHeader, int]:
        """The header of the committed chunk open at ``fd`` and its ciphertext's length:
        from its trailer, or (a chunk of the previous layout, with no trailer) its ``.meta``."""
        try:
            found = _read_trailer(fd, chunk_id)
            if found is not None:
                return found
            header = ChunkHeader.from_json(json.loads(self._meta_path(chunk_id).read_text()))
            return header, os.fstat(fd).st_size
        except (OSError, ValueError, BadRequest, TooLarge) as exc:
            if isinstance(exc, FileNotFoundError) and not self.has(chunk_id):
                # an old-layout chunk deleted by its owner since it was opened
                raise ChunkNotFound(f"no chunk {chunk_id.hex()[:16]}… on this peer") from None
            raise DataLoss(f"chunk {chunk_id.hex()[:16]}… has an unreadable header") from exc

    def read_segment(self, chunk_id: bytes, index: int) -> bytes:
        return next(self.read_segments(chunk_id, (index,)))[1]

    def read_segments(self, chunk_id: bytes,
                      indices: Sequence[int]) -> Iterator[tuple[int, bytes]]:
        """``(index, bytes)`` of a committed chunk's segments, in the order asked.

        The header is read once per call, not per segment, and on POSIX the file is opened
        once and each segment read with one ``pread`` at its offset. A delete meanwhile
        unlinks the name and this reader ends on the old file, as if the delete had come a
        moment later. Windows can't delete an open file: there each segment opens it anew.
        """
        path = self._chunk_path(chunk_id)
        fd = _open_committed(path, chunk_id)
        try:
            header = self._header_at(fd, chunk_id)[0]
            for index in indices:
                if not 0 <= index < header.segment_count:
                    raise BadRequest(f"segment {index} out of range "
                                     f"0..{header.segment_count - 1}")
            for index in indices:
                start, end = header.segment_range(index)
                if REOPEN_PER_SEGMENT:
                    os.close(fd)
                    fd = -1
                    fd = _open_committed(path, chunk_id)
                yield index, _read_at(fd, start, end - start)
        finally:
            if fd >= 0:
                os.close(fd)

    def chunk_ids(self) -> Iterator[bytes]:
        for path in sorted(self._chunks.glob("*/*.chunk")):
            yield bytes.fromhex(path.stem)

    def ciphertext(self, chunk_id: bytes) -> bytes:
        """A committed chunk's ciphertext: its bytes alone, whatever the file layout;
        ChunkNotFound if this peer holds no such chunk. For checks and audits that want the
        whole chunk: nothing outside the store reads its files."""
        fd = _open_committed(self._chunk_path(chunk_id), chunk_id)
        try:
            return _read_at(fd, 0, self._header_at(fd, chunk_id)[1])
        finally:
            os.close(fd)

    def ciphertext_extent(self, chunk_id: bytes) -> tuple[Path, int]:
        """The file holding a committed chunk and its ciphertext's length: the ciphertext is
        that file's first ``length`` bytes (the test-bed flips bytes in that range for
        bit-rot, and none outside it unless it means to hit what the store keeps there);
        ChunkNotFound if this peer holds no such chunk, DataLoss if its header is unreadable."""
        path = self._chunk_path(chunk_id)
        fd = _open_committed(path, chunk_id)
        try:
            return path, self._header_at(fd, chunk_id)[1]
        finally:
            os.close(fd)

    def rot_ciphertext(self, chunk_id: bytes, offset: int, mask: int = 0xFF) -> None:
        """Bit-rot for the test-bed: XOR the ciphertext byte at ``offset`` with ``mask``, in
        place, as a disk would (nothing else in the store changes)."""
        path, size = self.ciphertext_extent(chunk_id)
        if not 0 <= offset < size:
            raise BadRequest(f"offset {offset} outside the chunk's {size} bytes")
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0] ^ mask
            f.seek(offset)
            f.write(bytes([byte]))

    # ---- deletes (owner-signed, checked by mydrive.storage.deleter) --------------------------
    def remove(self, chunk_id: bytes) -> bool:
        """Remove a committed chunk and any half-received copy; True if it was committed here.

        Unlinking ``.chunk`` is the commit point of a delete: afterwards ``has`` is False and
        fetches get ChunkNotFound. A chunk of the previous layout has a ``.meta`` too,
        unlinked next: a crash before that leaves a stray header that nothing reads (a
        header is read only through an open ``.chunk``, and a ``.chunk`` with a trailer never
        reads a ``.meta``) and the next delete of that chunk removes.
        """
        assert not self.inspect_only, "a store opened to inspect removes nothing"
        path = self._chunk_path(chunk_id)
        with self._lock:
            try:
                size_bytes = _committed_size(path)
                path.unlink()
                removed = True
                self._used_bytes -= size_bytes
            except FileNotFoundError:
                removed = False
            busy = chunk_id in self._busy
        self._meta_path(chunk_id).unlink(missing_ok=True)
        if not busy:  # a running upload owns its .part; it is not committed, so not held
            self._forget_partial(chunk_id)
        if removed:
            fsync_dir(path.parent)
        return removed

    # ---- uploads ---------------------------------------------------------------------
    def begin(self, header: ChunkHeader) -> PendingChunk:
        """Start or resume receiving a chunk. Only one upload of a chunk runs at a time.

        A chunk already committed here is bound to the header it was committed with: the
        same header again is a no-op (the pending chunk is ``committed``), any other header
        (another owner key, other segments) is PermissionDenied. So a peer that copied a
        chunk it was given can't plant it elsewhere under its own key and have the owner's
        later store of that chunk count as a replica the owner could fetch.
        """
        assert not self.inspect_only, "a store opened to inspect takes no uploads"
        header.validate(max_chunk_size_bytes=self.max_chunk_size_bytes)
        self._sweep_if_due()
        cid = header.chunk_id
        with self._lock:
            if cid in self._busy:
                raise BadRequest("this chunk is already being uploaded by another stream")
            committed = self.has(cid)
            if not committed:
                # A resumed partial's own reservation is replaced, not added to.
                reserved = sum(self._partials.values()) - self._partials.get(cid, 0)
                if self._used_bytes + reserved + header.chunk_size_bytes > self.capacity_bytes:
                    raise TooLarge(f"peer is full: {self._used_bytes} of "
                                   f"{self.capacity_bytes} bytes used, {reserved} reserved "
                                   f"by partial uploads, chunk needs {header.chunk_size_bytes}")
                self._partials[cid] = max(self._partials.get(cid, 0), header.chunk_size_bytes)
            self._busy.add(cid)
        try:
            if committed:
                self._check_same_header(header)
            pending = PendingChunk(self, header)
            if not pending.committed:
                with self._lock:  # the file now holds exactly the declared size
                    self._partials[cid] = header.chunk_size_bytes
                if pending.resumed:  # fresh again for the stale sweep (a new one was written)
                    os.utime(self._part_path(cid))
            return pending
        except BaseException:
            self._release(cid)
            if not self._part_path(cid).exists():
                with self._lock:
                    self._partials.pop(cid, None)
            raise

    def _check_same_header(self, header: ChunkHeader) -> None:
        """PermissionDenied unless the committed chunk was stored with exactly ``header``."""
        try:
            stored = self.header(header.chunk_id)
        except ChunkNotFound:
            return  # removed meanwhile by its owner: this upload starts afresh
        if stored.owner_public_key != header.owner_public_key:  # both public
            raise PermissionDenied(f"chunk {header.chunk_id.hex()[:16]}… is held on this peer "
                                   f"for another owner key; it can't be stored again under "
                                   f"yours")
        if stored != header:
            raise PermissionDenied(f"chunk {header.chunk_id.hex()[:16]}… is held on this peer "
                                   f"with other segments; it can't be stored again with yours")

    def _release(self, chunk_id: bytes) -> None:
        with self._lock:
            self._busy.discard(chunk_id)

    def _committed(self, size_bytes: int, chunk_id: bytes) -> None:
        with self._lock:
            self._used_bytes += size_bytes
            self._partials.pop(chunk_id, None)  # its reservation became used bytes

    # ---- partial uploads -------------------------------------------------------------
    def clean_stale_partials(self) -> list[bytes]:
        """Remove every partial upload untouched for ``partial_ttl_s`` (and stray files in
        incoming/ as old) unless a stream is receiving it now; the chunk ids removed."""
        self._next_sweep_s = self.clock.monotonic_s() + STALE_SWEEP_INTERVAL_S
        cutoff_s = self.clock.now_ms() / 1000 - self.partial_ttl_s
        removed: list[bytes] = []
        for path in self._incoming.iterdir():
            cid = _chunk_id_of(path)
            try:
                if path.stat().st_mtime > cutoff_s:
                    continue
                with self._lock:
                    if cid is not None and cid in self._busy:
                        continue
                    path.unlink()
                    if path.suffix == ".part" and cid is not None:
                        self._partials.pop(cid, None)
                        removed.append(cid)
            except OSError:
                continue  # gone meanwhile, or open elsewhere (Windows): the next sweep
        return removed

    def _sweep_if_due(self) -> None:
        if self._next_sweep_s is None or self.clock.monotonic_s() >= self._next_sweep_s:
            self.clean_stale_partials()

    def _forget_partial(self, chunk_id: bytes) -> None:
        self._part_path(chunk_id).unlink(missing_ok=True)
        self._hdr_path(chunk_id).unlink(missing_ok=True)
        with self._lock:
            self._partials.pop(chunk_id, None)


class PendingChunk:
    """One chunk being received: verify segments as they arrive, commit when whole."""

    def __init__(self, store: ChunkStore, header: ChunkHeader) -> None:
        self.store = store
        self.header = header
        self.committed = store.has(header.chunk_id)
        self.resumed = False
        self.held: set[int] = set()
        self._file: BinaryIO | None = None
        # The whole chunk's hash, fed with each good segment while they arrive in order from
        # the first, so the commit needs no re-read; None once that order breaks (a resume,
        # a gap): the commit then hashes the synced file. Only under "blake3": a derived id
        # needs no whole-chunk hash.
        self._hasher: Hasher | None = None
        self._hashed_bytes = 0
        if self.committed:
            self.held = set(range(header.segment_count))
            return
        self._file = _open_part(store._part_path(header.chunk_id))  # closed in close()
        try:
            self.resumed = self._resume_or_start()
        except BaseException:
            self._file.close()
            raise
        if self.resumed:
            self.held = self._verify_existing()
        if not self.held and header.whole_chunk_hash_needed:
            self._hasher = Hasher(header.digest_alg)

    def _resume_or_start(self) -> bool:
        """Whether the ``.part`` is this chunk's upload to resume; if not, start it afresh:
        no bytes, and the resume trailer after the chunk's place.

        The trailer is not synced: it only lets a later stream resume, and a torn or lost
        one makes that stream start afresh (held segments are re-verified against the
        header anyway)."""
        f, size = self._file, self.header.chunk_size_bytes
        assert f is not None
        trailer = _part_trailer(self.header)
        on_disk = os.fstat(f.fileno()).st_size
        if on_disk == size + len(trailer):
            f.seek(size)
            if f.read(len(trailer)) == trailer:
                return True
        legacy_hdr = self.store._hdr_path(self.header.chunk_id)
        resumed = on_disk == size and _same_header(legacy_hdr, self.header)
        if on_disk and not resumed:
            f.truncate(0)  # another upload's bytes, or a torn trailer: start from nothing
        f.seek(size)
        f.write(trailer)
        f.flush()
        if on_disk:  # the previous layout's header, now in the trailer (or stale)
            legacy_hdr.unlink(missing_ok=True)
        return resumed

    def _verify_existing(self) -> set[int]:
        f = self._file
        assert f is not None
        held: set[int] = set()
        for i, expected in enumerate(self.header.segment_digests):
            start, end = self.header.segment_range(i)
            f.seek(start)
            if digests_equal(digest(f.read(end - start), self.header.digest_alg), expected):
                held.add(i)
        return held

    def write_segment(self, index: int, data: bytes) -> bool:
        """Verify one segment against its announced digest; keep it only if good."""
        if self.committed:
            return True
        if not 0 <= index < self.header.segment_count:
            raise BadRequest(f"segment index {index} out of range "
                             f"0..{self.header.segment_count - 1}")
        start, end = self.header.segment_range(index)
        if len(data) != end - start or not digests_equal(
            digest(data, self.header.digest_alg), self.header.segment_digests[index]
        ):
            self.held.discard(index)
            return False
        assert self._file is not None
        self._file.seek(start)
        self._file.write(data)
        self.held.add(index)
        self._hash_in_order(start, data)
        return True

    def _hash_in_order(self, start: int, data: bytes) -> None:
        if self._hasher is None or start < self._hashed_bytes:
            return  # a good segment sent again is the bytes already hashed (same digest)
        if start > self._hashed_bytes:
            self._hasher = None  # a gap: the commit re-reads the file instead
            return
        self._hasher.update(data)
        self._hashed_bytes += len(data)

    def missing(self) -> list[int]:
        return sorted(set(range(self.header.segment_count)) - self.held)

    def commit(self) -> None:
        """Verify the whole chunk, make it durable and rename it into place (the commit point).

        One file, two syncs per chunk: the committed trailer (the header, checksummed)
        replaces the resume trailer after the chunk's bytes, one data sync makes the bytes
        and the trailer durable together, the rename makes them the ``.chunk``, and one sync
        of the directory makes that name durable. Only then does the caller acknowledge the
        chunk. A crash before the rename leaves a ``.part`` (taken afresh by the next upload:
        its trailer is no resume trailer any more); after it, the ``.chunk`` is whole with its
        header, whether or not the rename survives a power loss.
        """
        if self.committed:
            return
        assert not self.missing()
        store, cid = self.store, self.header.chunk_id
        part = self._file
        assert part is not None
        _write_trailer(part, self.header.chunk_size_bytes, _chunk_trailer(self.header))
        sync_file(part)
        # A derived id ("blake3-derived") was checked against the header's sizes and segment
        # digests by ChunkHeader.validate() in begin, before any byte arrived, and every
        # segment matched its digest: the whole chunk needs no second hash.
        if self.header.whole_chunk_hash_needed:
            if self._hasher is not None and self._hashed_bytes == self.header.chunk_size_bytes:
                whole = self._hasher.digest()  # every byte written, hashed as it arrived
            else:
                whole = _file_digest(part, self.header.digest_alg,
                                     self.header.chunk_size_bytes)
            if not self.header.chunk_id_matches_whole(whole):
                raise DataLoss("segments verified but the whole chunk does not match its id")
        drop_cached(part)  # synced above: its clean pages go back for the next chunk
        part.close()
        final = store._chunk_path(cid)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(final.parent.parent)  # the new directory's own name
        os.replace(store._part_path(cid), final)
        fsync_dir(final.parent)
        store._committed(self.header.chunk_size_bytes, cid)
        self.committed = True

    def close(self) -> None:
        """End this stream; an uncommitted part stays in incoming/ so a later upload resumes."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        self.store._release(self.header.chunk_id)


# A partial's resume trailer: the header's JSON, its length (8 bytes, little-endian), this tag.
PART_TRAILER_TAG = b"\nmydrive-part-1\n"


def _part_trailer(header: ChunkHeader) -> bytes:
    doc = json.dumps(header.to_json()).encode()
    return doc + len(doc).to_bytes(8, "little") + PART_TRAILER_TAG


def _open_part(path: Path) -> BinaryIO:
    """``path`` opened for reading and writing, created empty if missing (one open)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "rb+")


# A committed chunk's trailer, after its ciphertext: the header's JSON, its length (8 bytes,
# little-endian), the BLAKE3 digest of those two (32 bytes), then this tag.
CHUNK_TRAILER_TAG = b"\nmydrive-chunk1\n"
_CHECKSUM_BYTES = 32
_FOOTER_BYTES = 8 + _CHECKSUM_BYTES + len(CHUNK_TRAILER_TAG)
_TAIL_READ_BYTES = 8 * 1024  # one read gets the whole trailer of a chunk of up to ~100 segments
# A valid header (at most MAX_SEGMENTS = 4096 segment digests) is under 300 KiB.
_MAX_TRAILER_DOC_BYTES = 1024 * 1024


def _chunk_trailer(header: ChunkHeader) -> bytes:
    doc = json.dumps(header.to_json()).encode()
    signed = doc + len(doc).to_bytes(8, "little")
    return signed + digest(signed, WHOLE_CHUNK_ALG) + CHUNK_TRAILER_TAG


def _write_trailer(f: BinaryIO, offset: int, trailer: bytes) -> None:
    """``trailer`` at ``offset`` (the chunk's end), and nothing after it."""
    f.seek(offset)
    f.write(trailer)
    f.flush()
    if os.fstat(f.fileno()).st_size > offset + len(trailer):
        f.truncate(offset + len(trailer))


def _read_trailer(fd: int, chunk_id: bytes) -> tuple[ChunkHeader, int] | None:
    """The header in the trailer of the committed chunk open at ``fd`` and the length of
    the ciphertext before it; None if the file ends without the trailer's tag (a chunk of
    the previous layout). A trailer that does not check out (checksum, length, header, the
    chunk's size) is ValueError: the chunk is corrupt."""
    size = os.fstat(fd).st_size
    if size < _FOOTER_BYTES:
        return None
    tail_start = max(0, size - _TAIL_READ_BYTES)
    tail = _read_at(fd, tail_start, size - tail_start)
    if not tail.endswith(CHUNK_TRAILER_TAG):
        return None
    footer = tail[-_FOOTER_BYTES:]
    doc_len = int.from_bytes(footer[:8], "little")
    if doc_len > min(size - _FOOTER_BYTES, _MAX_TRAILER_DOC_BYTES):
        raise ValueError(f"the trailer claims {doc_len} header bytes in a file of {size}")
    doc_start = size - _FOOTER_BYTES - doc_len
    if doc_start >= tail_start:
        doc = tail[doc_start - tail_start:len(tail) - _FOOTER_BYTES]
    else:
        doc = _read_at(fd, doc_start, doc_len)
    if len(doc) != doc_len or not digests_equal(
            digest(doc + footer[:8], WHOLE_CHUNK_ALG), footer[8:8 + _CHECKSUM_BYTES]):
        raise ValueError("the trailer's checksum does not match")
    header = ChunkHeader.from_json(json.loads(doc))
    if header.chunk_id != chunk_id or header.chunk_size_bytes != doc_start:
        raise ValueError("the trailer's header is not this chunk's")
    return header, doc_start


def _committed_size(path: Path) -> int:
    """The ciphertext bytes of the committed chunk file at ``path`` (its length without a
    trailer; without checking the trailer, so that a count stays the same from the store's
    opening to the chunk's removal); FileNotFoundError if there is none."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        return _ciphertext_size(fd)[0]
    finally:
        os.close(fd)


def _ciphertext_size(fd: int) -> tuple[int, bool]:
    """(ciphertext bytes, whether the file ends with a trailer's tag) of an open chunk file."""
    size = os.fstat(fd).st_size
    if size < _FOOTER_BYTES:
        return size, False
    footer = _read_at(fd, size - _FOOTER_BYTES, _FOOTER_BYTES)
    if not footer.endswith(CHUNK_TRAILER_TAG):
        return size, False
    doc_len = int.from_bytes(footer[:8], "little")
    if doc_len > size - _FOOTER_BYTES:
        return size, True  # corrupt: counted whole
    return size - _FOOTER_BYTES - doc_len, True


def _file_digest(f: BinaryIO, alg: str, size: int) -> bytes:
    """The digest of ``f``'s first ``size`` bytes."""
    f.seek(0)
    hasher = Hasher(alg)
    left = size
    while left > 0:
        block = f.read(min(left, 1024 * 1024))
        if not block:
            break
        hasher.update(block)
        left -= len(block)
    return hasher.digest()


# Windows can't delete an open file, so a reader there holds it only for one segment.
REOPEN_PER_SEGMENT = os.name != "posix"


def _open_committed(path: Path, chunk_id: bytes) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:  # deleted by its owner since the header was read
        raise ChunkNotFound(f"no chunk {chunk_id.hex()[:16]}… on this peer") from None


def _read_at(fd: int, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows
    return os.read(fd, size)


def _committed_bytes(chunks: Path, *, drop_cut_short: bool) -> int:
    """Ciphertext bytes of the committed chunks under ``chunks``; drops each ``.chunk`` with
    neither a trailer nor a ``.meta``: a commit of the previous layout cut short by a crash
    (its ``.meta``'s name lost), never acknowledged. A chunk of this layout is never in that
    state unless its end was cut off or its tag rotted: it could not be served either."""
    total = 0
    for path in chunks.glob("*/*.chunk"):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except FileNotFoundError:
            continue  # deleted meanwhile
        try:
            size, has_trailer = _ciphertext_size(fd)
        finally:
            os.close(fd)
        if has_trailer or path.with_suffix(".meta").exists():
            total += size
        elif drop_cut_short:
            path.unlink(missing_ok=True)
    return total


def _same_header(path: Path, header: ChunkHeader) -> bool:
    try:
        return ChunkHeader.from_json(json.loads(path.read_text())) == header
    except (OSError, ValueError, BadRequest):
        return False


def _chunk_id_of(path: Path) -> bytes | None:
    """The chunk id an incoming/ file (``<id hex>.part`` or ``.hdr``) belongs to, if any."""
    if path.suffix not in (".part", ".hdr"):
        return None
    try:
        return bytes.fromhex(path.stem)
    except ValueError:
        return None


def _partials_on_disk(incoming: Path) -> dict[bytes, int]:
    """Reservations of the partial uploads a previous run left: each .part's size (with its
    resume trailer: a few KiB more than the declared size, until it is resumed; its tail
    comes from the uploader, so it is not trusted to say by how much)."""
    out: dict[bytes, int] = {}
    for path in incoming.glob("*.part"):
        cid = _chunk_id_of(path)
        try:
            if cid is not None:
                out[cid] = path.stat().st_size
        except OSError:
            continue
    return out
