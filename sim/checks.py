"""The guarantees, checked on the simulated world after every step.

The checkers are the chaos harness's own (``chaos.checkers``), pointed at the simulated
peers' directories, the owner's records, the in-memory fault log and the simulator's
transport, so a property means the same on a real cluster and here:

* ``no-full-file`` (guarantee 1), ``resent-equals-corrupted`` (2), ``owner-only`` (4) and
  ``no-partial-state`` (3: nothing half-written is visible) run after every step;
* ``downloads-bit-identical`` (3) downloads every acknowledged file through the product's
  engine; it runs at the scenario's ``check`` steps and at the end, after healing, as the
  harness does.

Three more are the simulator's, which can see what a cluster can't cheaply:

* ``recoverable-from-replicas`` (3, every step): every acknowledged file is rebuilt
  bit-identical from the chunk files of its recorded replicas, read straight from their
  disks; a replica that no simulated fault destroyed (bit-rot, disk loss) must hold its
  chunk intact, and a chunk all of whose replicas were destroyed is reported lost, not
  passed;
* ``deletes-as-pending`` (every step): a removed file's chunk is left only on a peer that
  its tombstone still lists as pending (docs/deletion.md);
* ``operations-as-expected``: every operation ended as the scenario expects, a download
  gave back exactly what was stored, and no peer or engine raised an error no code path
  should raise.

Checkers never change the run: the transport they use is quiet (no time, no trace, no
trigger), time is frozen while they run, and their randomness is a stream of its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chaos import checkers
from chaos.checkers import FAIL, PASS, SKIP, PeerView, Verdict
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import unwrap_file_key
from mydrive.engine.download import download_file
from mydrive.errors import ChunkNotFound, MydriveError
from mydrive.formats.filerecord import FileRecord
from mydrive.runtime.executor import inline_executor
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.base import PeerAddress
from sim.world import World

STEP_CHECKERS = ("no-full-file", "resent-equals-corrupted", "owner-only", "no-partial-state",
                 "recoverable-from-replicas", "deletes-as-pending", "operations-as-expected")


def peer_views(world: World) -> list[PeerView]:
    return [PeerView(n, n, world.peers[n].store_dir) for n in world.names]


def check_recoverable(world: World) -> Verdict:
    """Every acknowledged file rebuilds bit-identical from its replicas' disks."""
    problems: list[str] = []
    lost: list[str] = []
    rebuilt = 0
    stores: dict[Path, ChunkStore] = {}
    for path, record in sorted(world.records.items()):
        chunks: list[bytes] = []
        for chunk in record.chunks:
            good: bytes | None = None
            standing = 0
            for peer in chunk.replicas:
                if (peer, chunk.chunk_id) in world.destroyed:
                    continue  # destroyed by a simulated fault (bit-rot, disk loss)
                standing += 1
                try:
                    data = _read_chunk(stores, world.peers[peer].store_dir, chunk.chunk_id)
                except MydriveError as exc:
                    problems.append(f"{path}: chunk {chunk.index} is unreadable on replica "
                                    f"{peer} though no fault destroyed it ({exc})")
                    continue
                if data is None:
                    problems.append(f"{path}: chunk {chunk.index} is missing on replica {peer} "
                                    f"though no fault destroyed it")
                elif not chunk.matches_ciphertext(data, record.digest_alg):
                    problems.append(f"{path}: chunk {chunk.index} is corrupt on replica {peer} "
                                    f"though no fault destroyed it")
                elif good is None:
                    good = data
            if standing == 0:
                lost.append(f"{path}: chunk {chunk.index} lost every replica to faults")
                break
            if good is None:
                break
            chunks.append(good)
        if len(chunks) != len(record.chunks):
            continue
        file_key = unwrap_file_key(world.keys, record.file_id, record.wrapped_file_key)
        try:
            plain = b"".join(crypto.decrypt_chunk(file_key, record.file_id, c.index,
                                                  record.plan.chunk_count, data)
                             for c, data in zip(record.chunks, chunks, strict=True))
        except MydriveError as exc:
            problems.append(f"{path}: its replicas do not decrypt: {exc}")
            continue
        rebuilt += 1
        if plain != world.expected[path]:
            problems.append(f"{path}: rebuilt from its replicas, it differs from what was "
                            f"stored")
    verdict = Verdict("recoverable-from-replicas", FAIL if problems else PASS,
                      f"{rebuilt} of {len(world.records)} file(s) rebuilt from replica disks"
                      + (f"; {len(lost)} lost to faults" if lost else ""), problems)
    verdict.problems.extend(f"lost: {text}" for text in lost)
    if not problems and rebuilt == 0 and lost:
        verdict.verdict = SKIP
    return verdict


def _store(stores: dict[Path, ChunkStore], store_dir: Path) -> ChunkStore:
    """The peer's chunk store, opened once per directory for a check."""
    store = stores.get(store_dir)
    if store is None:
        store = stores[store_dir] = checkers.open_store(store_dir)
    return store


def _read_chunk(stores: dict[Path, ChunkStore], store_dir: Path,
                chunk_id: bytes) -> bytes | None:
    """The chunk's ciphertext as the peer's store holds it; None if it holds none.
    DataLoss if it holds one it can't read whole (a copy it could not serve)."""
    try:
        return _store(stores, store_dir).ciphertext(chunk_id)
    except ChunkNotFound:
        return None


def _holds(stores: dict[Path, ChunkStore], store_dir: Path, chunk_id: bytes) -> bool:
    return _store(stores, store_dir).has(chunk_id)


def check_deletes(world: World) -> Verdict:
    """A removed file's chunk is left only on a peer its tombstone still lists as pending
    (docs/deletion.md): a collection pass that crossed a peer off really removed it there."""
    problems: list[str] = []
    left = 0
    stores: dict[Path, ChunkStore] = {}
    for file_hex, (record, pending) in sorted(world.removed.items()):
        for chunk in record.chunks:
            for peer in chunk.replicas:
                if not _holds(stores, world.peers[peer].store_dir, chunk.chunk_id):
                    continue
                left += 1
                if peer not in pending:
                    problems.append(f"file {file_hex[:12]}: chunk {chunk.index} is still on "
                                    f"{peer}, which its tombstone no longer lists")
    return Verdict("deletes-as-pending", FAIL if problems else PASS,
                   f"{len(world.removed)} removed file(s), {left} chunk cop(ies) awaiting a "
                   f"pending delete", problems)


def check_operations(world: World) -> Verdict:
    problems = list(world.problems) + [f"internal error on peer {e}" for e in world.peer_errors]
    return Verdict("operations-as-expected", FAIL if problems else PASS,
                   f"{len(world.ops)} operation(s)", problems)


def step_verdicts(world: World) -> list[Verdict]:
    """The checkers that run after every step."""
    records = [world.records[p] for p in sorted(world.records)]
    views = peer_views(world)
    with _checking(world):
        owner_only = checkers.check_owner_only(
            records, views, owner=world.keys, intruder=world.intruder,
            transport=world.quiet_transport, address_of=lambda p: _address_of(world, p),
            clock=world.clock)
    return [
        checkers.check_no_full_file(records, views, world.owner),
        checkers.check_resent_equals_corrupted(records, world.fault_log.entries),
        owner_only,
        # A file downloaded, then removed, stays in the download directory: the user's copy.
        checkers.check_no_partial(views, [world.download_dir], world.stored_ever,
                                  rotted=world.rotted),
        check_recoverable(world),
        check_deletes(world),
        check_operations(world),
    ]


def downloads_verdict(world: World) -> Verdict:
    """Every acknowledged file downloads bit-identical through the engine (quietly), when
    each of its chunks has a replica that is reachable and that no fault destroyed (the
    harness's premise; it only asks after a heal, when toxics and cuts are gone)."""
    records: list[FileRecord] = []
    expected: dict[str, bytes] = {}
    skipped: list[str] = []
    for path in sorted(world.records):
        record = world.records[path]
        out_of_reach = [c.index for c in record.chunks
                        if not any(world.reachable(p) and (p, c.chunk_id) not in
                                   world.destroyed for p in c.replicas)]
        if out_of_reach:
            skipped.append(f"{path}: chunks {out_of_reach[:5]} have no reachable replica "
                           f"that a fault left intact")
            continue
        records.append(record)
        expected[path] = world.expected[path]

    def download(path: str, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        destination = out / "file"
        download_file(world.records[path], destination, keys=world.keys,
                      peers={n: world.address(n) for n in world.names},
                      settings=world.settings, transport=world.quiet_transport,
                      clock=world.clock, overwrite=True, randomness=world.check_randomness,
                      executor=inline_executor)
        return destination

    with _checking(world):
        verdict = checkers.check_downloads(records, expected, world.path_of, download,
                                           world.reachable)
    verdict.problems.extend(f"skipped: {text}" for text in skipped)
    if skipped:
        verdict.detail += f"; {len(skipped)} skipped"
    if verdict.verdict == PASS and not records and skipped:
        verdict.verdict = SKIP
    return verdict


def _address_of(world: World, peer_id: str) -> PeerAddress | None:
    if peer_id == world.owner or not world.reachable(peer_id):
        return None
    return world.address(peer_id)


class _checking:  # noqa: N801 - used as a context manager
    """Freeze time while a checker talks to peers, and undo nothing else (there is none)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __enter__(self) -> None:
        self.world.clock.frozen = True

    def __exit__(self, *exc: object) -> None:
        self.world.clock.frozen = False


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
