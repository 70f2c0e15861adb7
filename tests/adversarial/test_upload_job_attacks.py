"""A compromised own peer against the owner's signature on upload jobs (docs/jobs.md).

The sender that runs an upload job never holds the identity key; the owner's client signs the
file document of what the sender reports stored. Here the attacker owns the sender: it edits
the job files in PEER_DIR/upload-jobs/ (what GetUploadResult and ListJobs answer) and restarts
the sender. Each test says what the attack would do without the check it meets.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from mydrive.errors import UnknownFile
from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient, seal_label
from mydrive.node.jobs_service import JobService, start_job_service
from mydrive.node.jobs_signing import finish_pending_uploads, submit_put
from mydrive.node.jobs_store import AWAITING_SIGNATURE, UPLOAD_JOBS_DIR_NAME
from tests.clientnet import client_net
from tests.strategies import random_file


@pytest.fixture
def world(tmp_path: Path):
    net = client_net(tmp_path / "n")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    a = c.login("alice", "alice passphrase")
    root = net.dirs[0].root
    yield net, c, a, tmp_path, root
    c.close()


def _sender(net, root: Path) -> tuple[JobService, ControlClient]:
    return (start_job_service(root, net.client(), kind="upload"),
            ControlClient(root, socket_name=UPLOAD_SOCKET_NAME))


def _stored_upload(net, c, a, root: Path, src: Path, remote: str) -> str:
    """A genuine upload job, stored and awaiting alice's signature; the sender stopped."""
    service, control = _sender(net, root)
    try:
        job_id, _ = submit_put(c, a, src, remote, control)
        deadline = time.monotonic() + 30
        while (view := control.job(job_id)).state != AWAITING_SIGNATURE:
            assert view.state in ("queued", "running") and time.monotonic() < deadline, view
            time.sleep(0.02)
        return job_id
    finally:
        control.close()
        service.stop()


def _job_file(root: Path, job_id: str) -> Path:
    return root / UPLOAD_JOBS_DIR_NAME / f"{job_id}.json"


def _edit(root: Path, job_id: str, **changes: object) -> None:
    path = _job_file(root, job_id)
    job = json.loads(path.read_text())
    job.update(changes)
    path.write_text(json.dumps(job))


def _sign_all(net, c, a, root: Path) -> dict[str, str]:
    service, control = _sender(net, root)
    try:
        return dict(finish_pending_uploads(c, a, control))
    finally:
        control.close()
        service.stop()


def test_a_file_id_from_public_metadata_is_not_signed_under_a_new_name(world) -> None:
    """The attacker remembers the file id and wrapped key of a file alice stored and removed
    long ago (they were in its public file document; its tombstone has expired since), and
    points a forged job's result at them, under a name of its choice. The wrapped key
    unwraps, no document or tombstone names the file id: without the seal (an HMAC only
    alice's keys make) alice's next session would sign the removed file back in as
    /evil.bin."""
    from mydrive.formats.tombstone import tomb_doc_id

    net, c, a, tmp_path, root = world
    src = random_file(tmp_path / "s.bin", 100_000)
    job_id = _stored_upload(net, c, a, root, src, "/decoy.bin")
    old = c.put(a, src, "/old.bin")
    c.remove(a, "/old.bin")
    c.store.delete(tomb_doc_id(a.user_id, old.file_id))  # expired, collected
    result = json.loads(json.loads(_job_file(root, job_id).read_text())["result"])
    result.update(file_id=old.file_id.hex(), wrapped_file_key=old.wrapped_file_key.hex(),
                  chunks=[ch.to_json() for ch in old.chunks], plan=old.plan.to_json(),
                  seal=os.urandom(32).hex())  # the attacker can't compute the real one
    _edit(root, job_id, result=json.dumps(result), label=seal_label(a, "/evil.bin"))
    outcome = _sign_all(net, c, a, root)
    assert outcome[job_id].startswith("UntrustedMetadata") and "seal" in outcome[job_id]
    with pytest.raises(UnknownFile):
        c.find(a, "/evil.bin")
    assert json.loads(_job_file(root, job_id).read_text())["state"] == "cancelled"


def test_names_swapped_between_two_uploads_are_refused(world) -> None:
    """Two genuine uploads, their labels swapped by the attacker: without the seal binding
    file id and name, /payroll.bin would name the other upload's bytes."""
    net, c, a, tmp_path, root = world
    one = _stored_upload(net, c, a, root, random_file(tmp_path / "1.bin", 90_000),
                         "/payroll.bin")
    two = _stored_upload(net, c, a, root, random_file(tmp_path / "2.bin", 90_000),
                         "/holiday.bin")
    label_one = json.loads(_job_file(root, one).read_text())["label"]
    label_two = json.loads(_job_file(root, two).read_text())["label"]
    _edit(root, one, label=label_two)
    _edit(root, two, label=label_one)
    outcome = _sign_all(net, c, a, root)
    assert all(o.startswith("UntrustedMetadata") for o in outcome.values()), outcome
    for name in ("/payroll.bin", "/holiday.bin"):
        with pytest.raises(UnknownFile):
            c.find(a, name)


def test_an_upload_replayed_after_its_file_was_removed_is_not_signed_again(world) -> None:
    """The attacker kept a copy of a genuine awaiting job; alice signs it, later removes the
    file; the attacker presents the old job again. Without the tombstone check alice's next
    session would bring the removed file back (its chunks are being deleted)."""
    net, c, a, tmp_path, root = world
    src = random_file(tmp_path / "r.bin", 90_000)
    job_id = _stored_upload(net, c, a, root, src, "/gone.bin")
    kept = tmp_path / "kept.json"
    shutil.copy(_job_file(root, job_id), kept)
    assert _sign_all(net, c, a, root) == {job_id: "signed"}
    # Replayed while the document exists: nothing new is written.
    shutil.copy(kept, _job_file(root, job_id))
    assert _sign_all(net, c, a, root) == {job_id: "stored"}
    c.remove(a, "/gone.bin")
    shutil.copy(kept, _job_file(root, job_id))
    outcome = _sign_all(net, c, a, root)
    assert outcome[job_id].startswith("UntrustedMetadata") and "deleted" in outcome[job_id]
    with pytest.raises(UnknownFile):
        c.find(a, "/gone.bin")


def test_another_users_upload_is_not_signed_by_this_user(world) -> None:
    """A job relabelled as bob's is skipped by alice's session, and bob's keys refuse it."""
    net, c, a, tmp_path, root = world
    c.create_user("bob", "bob passphrase")
    b = c.login("bob", "bob passphrase")
    job_id = _stored_upload(net, c, a, root, random_file(tmp_path / "b.bin", 90_000),
                            "/alice.bin")
    _edit(root, job_id, owner_id=b.user_id)
    assert _sign_all(net, c, a, root) == {}
    outcome = _sign_all(net, c, b, root)
    assert outcome[job_id].startswith(("UntrustedMetadata", "DecryptionFailed")), outcome
    for keys, name in ((a, "/alice.bin"), (b, "/alice.bin")):
        with pytest.raises(UnknownFile):
            c.find(keys, name)


def test_the_plan_and_chunks_of_an_upload_of_another_size_are_refused(world) -> None:
    """The attacker moves the plan and chunk records of one genuine upload onto another's
    result (file id, wrapped key, label and seal kept). Without the size in the seal alice
    would sign /big.bin as 40 000 bytes of chunks encrypted for another file: unreadable."""
    net, c, a, tmp_path, root = world
    big = _stored_upload(net, c, a, root, random_file(tmp_path / "b.bin", 120_000), "/big.bin")
    small = _stored_upload(net, c, a, root, random_file(tmp_path / "s.bin", 40_000),
                           "/small.bin")
    result = json.loads(json.loads(_job_file(root, big).read_text())["result"])
    other = json.loads(json.loads(_job_file(root, small).read_text())["result"])
    result.update(plan=other["plan"], chunks=other["chunks"])
    _edit(root, big, result=json.dumps(result))
    outcome = _sign_all(net, c, a, root)
    assert outcome[big].startswith("UntrustedMetadata") and "seal" in outcome[big], outcome
    assert outcome[small] == "signed"
    with pytest.raises(UnknownFile):
        c.find(a, "/big.bin")


def _twice(chunks: list[dict]) -> None:
    chunks[1]["chunk_id"] = chunks[0]["chunk_id"]


def _short_id(chunks: list[dict]) -> None:
    chunks[0]["chunk_id"] = chunks[0]["chunk_id"][:16]


def _bigger(chunks: list[dict]) -> None:
    chunks[0]["size_bytes"] += 4096


def _digest_dropped(chunks: list[dict]) -> None:
    chunks[0]["segment_digests"] = chunks[0]["segment_digests"][:-1] or ["00" * 32] * 2


def _digest_changed(chunks: list[dict]) -> None:
    # Well-formed, the right count: only the derived id (of the true digests) tells.
    chunks[0]["segment_digests"][0] = "ab" * 32


def _id_of_another_chunk(chunks: list[dict]) -> None:
    # An id its size and digests do not give (another file's chunk, say).
    chunks[0]["chunk_id"] = "cd" * 32


def _no_replica(chunks: list[dict]) -> None:
    chunks[0]["replicas"] = []


def _replica_twice(chunks: list[dict]) -> None:
    chunks[0]["replicas"] = [chunks[0]["replicas"][0]] * 2


def _stranger(chunks: list[dict]) -> None:
    chunks[0]["replicas"][-1] = "peer-the-attacker-made-up"


@pytest.mark.parametrize("forge", [_twice, _short_id, _bigger, _digest_dropped, _digest_changed,
                                   _id_of_another_chunk, _no_replica, _replica_twice,
                                   _stranger])
def test_chunk_records_that_do_not_fit_the_plan_or_the_members_are_not_signed(
        world, forge) -> None:
    """The attacker rewrites the chunk records of a genuine upload: a chunk id listed twice
    or malformed, a size or segment list the plan does not give, a segment digest or chunk
    id that the chunk's derived id ("blake3-derived") does not fit, no replica, one replica
    twice, a replica that is no member. Alice's client refuses each before signing (without
    the check she would sign a record whose replicas or sizes are made up) and cancels it."""
    net, c, a, tmp_path, root = world
    job_id = _stored_upload(net, c, a, root, random_file(tmp_path / "f.bin", 100_000),
                            "/f.bin")
    result = json.loads(json.loads(_job_file(root, job_id).read_text())["result"])
    assert len(result["chunks"]) >= 2 and len(result["chunks"][0]["replicas"]) >= 1
    forge(result["chunks"])
    _edit(root, job_id, result=json.dumps(result))
    outcome = _sign_all(net, c, a, root)
    assert outcome[job_id].startswith("UntrustedMetadata"), outcome
    assert "seal" not in outcome[job_id], outcome  # the chunk check refused it
    with pytest.raises(UnknownFile):
        c.find(a, "/f.bin")
    assert json.loads(_job_file(root, job_id).read_text())["state"] == "cancelled"
