"""Each chaos checker passes on a healthy state and FAILS when its guarantee is broken on
purpose (a checker that cannot fail is no checker). In-memory peers: quick, no processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chaos import checkers
from chaos.checkers import FAIL, PASS, SKIP, PeerView
from mydrive.crypto.keys import UserKeys
from mydrive.engine import upload as upload_engine
from mydrive.engine.download import PARTIAL_DIR_NAME, download_file
from mydrive.engine.upload import upload_file
from mydrive.testing.faults import FaultPlan, SeededFaults, read_fault_log
from tests.strategies import SMALL_SETTINGS, MemNetwork, fast_user, mem_network, record_of

SIZE_BYTES = 300_001


class World:
    """Five in-memory peers, an owner on p0, and one stored file."""

    def __init__(self, tmp: Path, *, corrupt_rate: float = 0.0) -> None:
        self.tmp = tmp
        self.net: MemNetwork = mem_network(tmp / "peers", 5)
        self.keys: UserKeys = fast_user()
        self.log = tmp / "faults.jsonl"
        self.data = bytes(range(256)) * (SIZE_BYTES // 256) + b"x" * (SIZE_BYTES % 256)
        src = tmp / "src.bin"
        src.write_bytes(self.data)
        faults = SeededFaults(FaultPlan(seed=3, corrupt_upload_rate=corrupt_rate, log=self.log))
        result = upload_file(src, keys=self.keys, owner_peer_id="p0", peers=self.net.peers,
                             settings=SMALL_SETTINGS, transport=self.net.transport,
                             clock=self.net.clock, faults=faults)
        self.record = record_of(result, self.keys)

    def peers(self) -> list[PeerView]:
        return [PeerView(p.peer_id, p.peer_id, self.tmp / "peers" / p.peer_id)
                for p in self.net.peers]

    def store(self, peer_id: str):  # type: ignore[no-untyped-def]
        return self.net.transport.peers[peer_id].store

    def download(self, path: str, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        dest = out / "f.bin"
        download_file(self.record, dest, keys=self.keys, peers=self.net.addresses,
                      settings=SMALL_SETTINGS, transport=self.net.transport,
                      clock=self.net.clock, overwrite=True)
        return dest

    def check_downloads(self) -> checkers.Verdict:
        return checkers.check_downloads([self.record], {"/f.bin": self.data},
                                        lambda r: "/f.bin", self.download, lambda p: True)

    def check_owner_only(self) -> checkers.Verdict:
        return checkers.check_owner_only([self.record], self.peers(), owner=self.keys,
                                         intruder=fast_user("mallory", "x"),
                                         transport=self.net.transport,
                                         address_of=self.net.addresses.get,
                                         clock=self.net.clock)


def test_checker_no_full_file_fails_when_one_peer_gets_every_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A placement putting every chunk on one peer is caught; the real placement passes."""
    good = World(tmp_path / "good")
    assert checkers.check_no_full_file([good.record], good.peers(), "p0").verdict == PASS

    def all_on_p1(file_id, sizes, slots, *, replicas, owner_peer_id):  # type: ignore[no-untyped-def]
        return [["p1", "p2"] for _ in sizes]

    monkeypatch.setattr(upload_engine, "place_chunks", all_on_p1)
    bad = World(tmp_path / "bad")
    verdict = checkers.check_no_full_file([bad.record], bad.peers(), "p0")
    assert verdict.verdict == FAIL, verdict
    assert any("p1" in p for p in verdict.problems)


def test_checker_resent_fails_when_whole_chunks_are_resent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A receiver/sender pair that resends whole chunks on one bad segment is caught."""
    good = World(tmp_path / "good", corrupt_rate=0.2)
    log = read_fault_log(good.log)
    assert log, "the fault plan should have corrupted some segments"
    verdict = checkers.check_resent_equals_corrupted([good.record], log)
    assert verdict.verdict == PASS, verdict

    from mydrive.storage.receiver import ReceiverSession

    original = ReceiverSession.end_round

    def whole_chunk(self: ReceiverSession) -> list[int]:
        missing = original(self)
        if missing:  # ask for every segment again, not only the bad ones
            assert self._pending is not None
            self._pending.held.clear()
            return list(range(self._pending.header.segment_count))
        return missing

    monkeypatch.setattr(ReceiverSession, "end_round", whole_chunk)
    bad = World(tmp_path / "bad", corrupt_rate=0.2)
    verdict = checkers.check_resent_equals_corrupted([bad.record], read_fault_log(bad.log))
    assert verdict.verdict == FAIL, verdict


def test_checker_resent_fails_when_a_corrupt_segment_is_not_resent(tmp_path: Path) -> None:
    """A corruption in the fault log with no matching resend is caught (exact equality)."""
    world = World(tmp_path)
    chunk = world.record.chunks[0]
    forged = [{"point": "upload", "chunk_id": chunk.chunk_id.hex(), "segment": 0,
               "peer": chunk.replicas[0]}]
    verdict = checkers.check_resent_equals_corrupted([world.record], forged)
    assert verdict.verdict == FAIL, verdict


def test_checker_downloads_fails_when_every_replica_of_a_chunk_rots(tmp_path: Path) -> None:
    """A chunk whose every replica is bad makes the download checker fail, not skip."""
    world = World(tmp_path)
    assert world.check_downloads().verdict == PASS
    chunk = world.record.chunks[1]
    for peer_id in chunk.replicas:
        world.store(peer_id).rot_ciphertext(chunk.chunk_id, 0)
    verdict = world.check_downloads()
    assert verdict.verdict == FAIL, verdict


def test_checker_downloads_skips_when_no_replica_is_reachable(tmp_path: Path) -> None:
    """Unreachable replicas give 'skip' with a reason, never a silent pass."""
    world = World(tmp_path)
    verdict = checkers.check_downloads([world.record], {"/f.bin": world.data},
                                       lambda r: "/f.bin", world.download, lambda p: False)
    assert verdict.verdict == SKIP and verdict.problems


def test_checker_owner_only_fails_when_a_peer_serves_anyone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender that skips the owner-signature check is caught serving another identity."""
    world = World(tmp_path)
    assert world.check_owner_only().verdict == PASS
    import mydrive.storage.sender

    monkeypatch.setattr(mydrive.storage.sender, "authorize", lambda *a, **k: None)
    verdict = world.check_owner_only()
    assert verdict.verdict == FAIL, verdict
    assert any("another identity" in p for p in verdict.problems)


def test_checker_no_partial_fails_on_a_visible_half_chunk(tmp_path: Path) -> None:
    """A committed-looking chunk file that is not whole is caught (unless rotted on purpose)."""
    world = World(tmp_path)
    downloads = tmp_path / "downloads"
    expected = {"/f.bin": world.data}
    assert checkers.check_no_partial(world.peers(), [downloads], expected).verdict == PASS
    chunk = world.record.chunks[0]
    path, size = world.store(chunk.replicas[0]).ciphertext_extent(chunk.chunk_id)
    os.truncate(path, size // 2)  # half the chunk's bytes, and nothing the store kept after
    verdict = checkers.check_no_partial(world.peers(), [downloads], expected)
    assert verdict.verdict == FAIL, verdict
    rotted = [(chunk.replicas[0], chunk.chunk_id)]
    assert checkers.check_no_partial(world.peers(), [downloads], expected,
                                     rotted=rotted).verdict == PASS


def test_checker_no_partial_fails_on_a_visible_partial_download(tmp_path: Path) -> None:
    """A truncated file in a download directory is caught; the hidden partial dir is not."""
    world = World(tmp_path)
    downloads = tmp_path / "downloads"
    (downloads / PARTIAL_DIR_NAME).mkdir(parents=True)
    (downloads / PARTIAL_DIR_NAME / "x.part").write_bytes(b"half")
    expected = {"/f.bin": world.data}
    assert checkers.check_no_partial(world.peers(), [downloads], expected).verdict == PASS
    (downloads / "f.bin").write_bytes(world.data[:1000])
    verdict = checkers.check_no_partial(world.peers(), [downloads], expected)
    assert verdict.verdict == FAIL, verdict
    assert json.dumps(verdict.to_json())
