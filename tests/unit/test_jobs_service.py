"""Download jobs on the owner's peer, over the real Control socket, on an in-memory network.

The submitting side holds the user's keys; the job service gets the file key and a
delegation only. Jobs persist in PEER_DIR/jobs/ and a restart re-queues a running one.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mydrive.errors import BadRequest, PermissionDenied
from mydrive.node.jobs_control import (
    TOKEN_NAME,
    ControlClient,
    control_running,
    open_label,
    submit_get,
)
from mydrive.node.jobs_service import start_job_service
from mydrive.node.jobs_store import JobSecrets, JobStore
from mydrive.transport.wire import mydrive_pb2 as pb
from tests.clientnet import client_net
from tests.strategies import random_file


@pytest.fixture
def world(tmp_path: Path):
    net = client_net(tmp_path / "n")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    a = c.login("alice", "alice passphrase")
    src = random_file(tmp_path / "big.bin", 300_000)
    c.put(a, src, "/dir/big.bin")
    root = net.dirs[0].root
    yield net, c, a, src, root
    c.close()


def test_jobs_download_runs_on_the_service_bit_identical(world, tmp_path: Path) -> None:
    """A submitted get completes on the service; the file is bit-identical; keys stay out."""
    net, c, a, src, root = world
    service = start_job_service(root, net.client())
    try:
        control = ControlClient(root)
        assert control_running(root)
        job_id, dest = submit_get(c, a, "/dir/big.bin", control, out_dir=tmp_path / "out")
        view = control.wait(job_id, poll_s=0.05)
        assert (view.state, view.error) == ("done", "")
        assert view.bytes_done == view.bytes_total == src.stat().st_size
        assert dest == (tmp_path / "out" / "dir" / "big.bin").resolve()
        assert dest.read_bytes() == src.read_bytes()
        saved_text = (root / "jobs" / f"{job_id}.json").read_text()
        saved = json.loads(saved_text)
        assert saved["secrets"] is None and saved["state"] == "done"
        assert "big.bin" not in saved_text and saved["destination"] == ""
        assert open_label(a, view) == "/dir/big.bin"
        assert stat.S_IMODE((root / "jobs" / f"{job_id}.json").stat().st_mode) == 0o600
        control.close()
    finally:
        service.stop()


def test_jobs_control_refuses_wrong_token(world) -> None:
    """A caller without the peer's token (0600 file) gets PermissionDenied on every call."""
    net, c, a, src, root = world
    service = start_job_service(root, net.client())
    try:
        assert stat.S_IMODE((root / TOKEN_NAME).stat().st_mode) == 0o600
        (root / TOKEN_NAME).write_text("0" * 64)
        control = ControlClient(root)
        with pytest.raises(PermissionDenied, match="control token"):
            control.jobs()
        control.close()
    finally:
        service.stop()


def test_jobs_control_refuses_delegation_for_another_peer(world, tmp_path: Path) -> None:
    """A job whose delegations name another delegate key, or miss chunks, is refused."""
    net, c, a, src, root = world
    service = start_job_service(root, net.client())
    try:
        control = ControlClient(root)
        record = c.find(a, "/dir/big.bin")
        job = pb.DownloadJob(file_record=json.dumps(record.to_doc()).encode(),
                             file_key=os.urandom(32), destination=str(tmp_path / "x"))
        with pytest.raises(BadRequest, match="do not cover"):
            control.submit(job)
        control.close()
    finally:
        service.stop()


def test_jobs_store_requeues_running_job_after_restart(tmp_path: Path) -> None:
    """A job left 'running' by a crash is 'queued' again when the store is loaded."""
    ids = iter(["00000000000000a1", "00000000000000a2"])
    store = JobStore(tmp_path, now_ms=lambda: 5, new_id=lambda: next(ids))
    secrets = JobSecrets(file_record="{}", file_key_hex="00" * 32, delegations_hex=())
    job = store.submit(label="/f", destination="/tmp/f", overwrite=False, bytes_total=10,
                       secrets=secrets)
    store.update(job.job_id, state="running", bytes_done=4)
    again = JobStore(tmp_path, now_ms=lambda: 6, new_id=lambda: next(ids))
    assert again.get(job.job_id).state == "queued"
    assert again.get(job.job_id).secrets == secrets


def test_jobs_label_opens_only_for_its_user(world) -> None:
    """A job's sealed label opens with its user's keys; another user's keys get None."""
    net, c, a, src, root = world
    from mydrive.node.jobs_control import JobView, seal_label

    c.create_user("bob", "bob passphrase")
    b = c.login("bob", "bob passphrase")
    view = JobView(job_id="0" * 16, kind="download", state="done",
                   label=seal_label(a, "/dir/big.bin"), destination="", bytes_total=1,
                   bytes_done=1, error="", created_ms=0, updated_ms=0, transfer=None,
                   owner_id=a.user_id)
    assert open_label(a, view) == "/dir/big.bin"
    assert open_label(b, view) is None
    assert open_label(b, JobView(**{**view.__dict__, "owner_id": b.user_id})) is None


def test_jobs_store_bounds_active_jobs(tmp_path: Path) -> None:
    """Past max_active_jobs a submit is refused; finished jobs lose their secrets and only
    max_finished_jobs of them are kept."""
    n = iter(range(10_000))
    store = JobStore(tmp_path, now_ms=lambda: 1, new_id=lambda: f"{next(n):016x}",
                     max_active_jobs=8, max_finished_jobs=3)
    secrets = JobSecrets(file_record="{}", file_key_hex="00" * 32, delegations_hex=())
    jobs = [store.submit(label="/f", destination="/d", overwrite=False, bytes_total=1,
                         secrets=secrets) for _ in range(8)]
    with pytest.raises(Exception, match="limit"):
        store.submit(label="/f", destination="/d", overwrite=False, bytes_total=1,
                     secrets=secrets)
    done = store.update(jobs[0].job_id, state="done")
    assert done.secrets is None
    assert json.loads((tmp_path / "jobs" / f"{done.job_id}.json").read_text())["secrets"] is None
    for job in jobs[1:]:
        store.update(job.job_id, state="failed", error="x")
    assert len([j for j in store.list() if j.state in ("done", "failed")]) == 3
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 3


def test_jobs_cancel_queued_and_running(world, tmp_path: Path) -> None:
    """Cancel of a queued job is immediate; of a running one, at its next progress report."""
    net, c, a, src, root = world
    store = JobStore(root, now_ms=net.clock.now_ms, new_id=lambda: os.urandom(8).hex())
    from mydrive.node.jobs_runner import JobRunner, delegate_key

    runner = JobRunner(store, net.client(), delegate_key(root))
    secrets = JobSecrets(file_record="{}", file_key_hex="00" * 32, delegations_hex=())
    queued = store.submit(label="/q", destination=str(tmp_path / "q"), overwrite=False,
                          bytes_total=1, secrets=secrets)
    assert runner.cancel(queued.job_id).state == "cancelled"
    assert store.next_queued() is None

    service = start_job_service(root, net.client())
    try:
        control = ControlClient(root)
        job_id, dest = submit_get(c, a, "/dir/big.bin", control, out_dir=tmp_path / "o")
        control.cancel(job_id)  # queued, or already started (the worker is woken by the submission)
        view = control.wait(job_id, poll_s=0.05)
        assert (view.state, view.error) == ("cancelled", "cancelled")
        assert not dest.exists()
        control.close()
    finally:
        service.stop()


def test_jobs_download_notes_the_replica_that_served_bad_segments(world, tmp_path: Path) -> None:
    """A job's download that met bit rot on a replica flags it for the next audit, as an
    in-process `get` does (the job's transfer accounting names it too)."""
    from mydrive.engine.durability import DurabilityState

    net, c, a, src, root = world
    record = c.find(a, "/dir/big.bin")
    chunk = record.chunks[0]
    rotten = chunk.replicas[0]  # asked first by the download
    store = net.chunk_store(rotten)
    store.rot_ciphertext(chunk.chunk_id, store.ciphertext_extent(chunk.chunk_id)[1] - 1, 0x01)
    service = start_job_service(root, net.client())
    try:
        control = ControlClient(root)
        job_id, dest = submit_get(c, a, "/dir/big.bin", control, out_dir=tmp_path / "out")
        view = control.wait(job_id, poll_s=0.05)
        control.close()
    finally:
        service.stop()
    assert (view.state, view.error) == ("done", "")
    assert dest.read_bytes() == src.read_bytes()
    assert [tuple(x)[0::2] for x in view.transfer["bad_fetched"]] == [(0, rotten)]
    state = DurabilityState.load(c.store, a.user_id)
    assert state.suspects == [(record.file_id.hex(), 0, rotten)]


def test_jobs_partial_file_of_a_failed_or_cancelled_job_is_removed(tmp_path: Path) -> None:
    """The `.part` a crash left for a job is removed when the job is cancelled while queued
    again, or fails when it runs again (and the empty partial folder with it)."""
    from mydrive.node.jobs_runner import JobRunner, delegate_key, partial_file

    net = client_net(tmp_path / "n")
    root = net.dirs[0].root
    ids = iter(["00000000000000b1", "00000000000000b2"])
    store = JobStore(root, now_ms=lambda: 5, new_id=lambda: next(ids))
    runner = JobRunner(store, net.client(), delegate_key(root))
    broken = JobSecrets(file_record="{}", file_key_hex="00" * 32, delegations_hex=())
    jobs = [store.submit(label="", destination=str(tmp_path / "dl" / name), overwrite=False,
                         bytes_total=10, secrets=broken) for name in ("a.bin", "b.bin")]
    parts = [partial_file(job) for job in jobs]
    for part in parts:  # what a receiver killed mid-job leaves
        assert part is not None
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"half a file")
    assert runner.cancel(jobs[0].job_id).state == "cancelled"
    assert not parts[0].exists() and parts[1].exists()
    assert runner.run_one(jobs[1]).state == "failed"
    assert not parts[1].exists() and not parts[1].parent.exists()


def test_jobs_submitted_job_starts_and_its_end_is_told_at_once(
        world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker is woken by a submission and a follower's GetJob by the job's end; neither
    waits for a poll. With both polls made 60 s long, a download of a few chunks that used to
    wait a poll at each end is done and reported well inside them."""
    import time

    from mydrive.node import jobs_runner

    net, c, a, src, root = world
    monkeypatch.setattr(jobs_runner, "STOP_CHECK_S", 60.0)
    service = start_job_service(root, net.client())
    try:
        time.sleep(0.2)  # the worker is idle, inside its (now long) wait for a job
        control = ControlClient(root, timeout_s=90.0)
        started = time.monotonic()
        job_id, dest = submit_get(c, a, "/dir/big.bin", control, out_dir=tmp_path / "out")
        view = control.job(job_id, wait_ms=60_000)  # capped by the service at 1 s
        while not view.finished:
            view = control.job(job_id, wait_ms=60_000)
        assert (view.state, view.error) == ("done", "")
        assert time.monotonic() - started < 30.0
        assert dest.read_bytes() == src.read_bytes()
        control.close()
    finally:
        service.stop()


def test_jobs_store_wait_settled_returns_at_the_end_or_after_the_wait(tmp_path: Path) -> None:
    import threading
    import time

    store = JobStore(tmp_path, now_ms=lambda: 1, new_id=lambda: os.urandom(8).hex())
    secrets = JobSecrets(file_record="{}", file_key_hex="00" * 32, delegations_hex=())
    job = store.submit(label="/x", destination=str(tmp_path / "x"), overwrite=False,
                       bytes_total=1, secrets=secrets)
    started = time.monotonic()
    assert store.wait_settled(job.job_id, 0.1).state == "queued"  # the wait ran out
    assert time.monotonic() - started >= 0.1
    threading.Timer(0.2, lambda: store.update(job.job_id, state="done")).start()
    started = time.monotonic()
    assert store.wait_settled(job.job_id, 60.0).state == "done"
    assert time.monotonic() - started < 30.0
    with pytest.raises(BadRequest):
        store.wait_settled("../x", 1.0)
