"""Upload jobs on the owner's peer's sender, over the real Control socket, in-memory peers.

The sender reads the file, stores the chunks and waits in ``awaiting_signature``; the
owner's client checks the result and signs the file document (docs/jobs.md).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from mydrive.errors import BadRequest, FileExists, UnknownFile
from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient, JobView
from mydrive.node.jobs_runner import delegate_key
from mydrive.node.jobs_service import start_job_service
from mydrive.node.jobs_signing import finish_pending_uploads, submit_put, upload_seal
from mydrive.node.jobs_store import (
    AWAITING_SIGNATURE,
    UPLOAD_JOBS_DIR_NAME,
    JobSecrets,
    JobStore,
)
from mydrive.node.jobs_upload import SourceFingerprint, UploadRunner, UploadSpec
from mydrive.node.local_client import open_client
from tests.clientnet import client_net
from tests.strategies import FAST_KDF, random_file


@pytest.fixture
def world(tmp_path: Path):
    net = client_net(tmp_path / "n")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    a = c.login("alice", "alice passphrase")
    src = random_file(tmp_path / "up.bin", 300_000)
    root = net.dirs[0].root
    yield net, c, a, src, root
    c.close()


@pytest.fixture
def uploads(world):
    """A Control client of peer 0's sender, whose upload jobs run meanwhile."""
    net, c, a, src, root = world
    service = start_job_service(root, net.client(), kind="upload")
    control = ControlClient(root, socket_name=UPLOAD_SOCKET_NAME)
    yield control
    control.close()
    service.stop()


def wait_state(control: ControlClient, job_id: str, *states: str) -> JobView:
    deadline = time.monotonic() + 30
    while True:
        view = control.job(job_id)
        if view.state in states:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.05)


def test_upload_job_runs_on_the_sender_and_the_owner_signs(world, uploads: ControlClient,
                                                           tmp_path: Path) -> None:
    """A submitted put is stored by the sender's job; the file exists only once its owner
    signed it; then `get` returns it bit-identical and the job file holds no secret."""
    net, c, a, src, root = world
    control = uploads
    job_id, path = submit_put(c, a, src, "/up/x.bin", control)
    assert path == "/up/x.bin"
    view = wait_state(control, job_id, AWAITING_SIGNATURE, "failed")
    assert (view.state, view.error) == (AWAITING_SIGNATURE, "")
    assert view.bytes_done == view.bytes_total == src.stat().st_size
    with pytest.raises(UnknownFile):  # not acknowledged before the owner signs
        c.find(a, "/up/x.bin")
    saved = (root / UPLOAD_JOBS_DIR_NAME / f"{job_id}.json").read_text()
    assert json.loads(saved)["secrets"] is None and str(src) not in saved
    assert stat.S_IMODE((root / UPLOAD_JOBS_DIR_NAME / f"{job_id}.json").stat().st_mode) \
        == 0o600
    assert finish_pending_uploads(c, a, control) == [(job_id, "signed")]
    assert control.job(job_id).state == "done"
    out, _ = c.get(a, "/up/x.bin", out_dir=tmp_path / "out")
    assert out.read_bytes() == src.read_bytes()
    assert json.loads((root / UPLOAD_JOBS_DIR_NAME / f"{job_id}.json").read_text())[
        "result"] == ""


def test_upload_job_not_done_before_the_document_is_signed(world, uploads: ControlClient) -> None:
    """FinishUpload without the owner's signed document in the metadata is refused: the
    sender can't mark an upload stored on its own say."""
    net, c, a, src, root = world
    control = uploads
    job_id, _ = submit_put(c, a, src, "/up/y.bin", control)
    wait_state(control, job_id, AWAITING_SIGNATURE)
    with pytest.raises(BadRequest, match="has not signed"):
        control.finish_upload(job_id)


def test_upload_job_name_taken_meanwhile_is_cancelled(world, uploads: ControlClient) -> None:
    """Two uploads to one name: the second to be signed finds it taken and is cancelled."""
    net, c, a, src, root = world
    control = uploads
    first, _ = submit_put(c, a, src, "/same.bin", control)
    second, _ = submit_put(c, a, src, "/same.bin", control)
    wait_state(control, first, AWAITING_SIGNATURE)
    wait_state(control, second, AWAITING_SIGNATURE)
    outcome = dict(finish_pending_uploads(c, a, control))
    signed = [j for j, what in outcome.items() if what == "signed"]
    taken = [j for j, what in outcome.items() if what.startswith("FileExists")]
    assert len(signed) == len(taken) == 1 and {*signed, *taken} == {first, second}
    assert control.job(taken[0]).state == "cancelled"
    with pytest.raises(FileExists):
        submit_put(c, a, src, "/same.bin", control)


def test_upload_job_refuses_a_file_the_sender_does_not_see(world, uploads: ControlClient,
                                                           tmp_path: Path) -> None:
    """A source the sender sees differently (a container's file system) is UnknownFile at
    submit, which makes the CLI upload in its own process."""
    net, c, a, src, root = world
    control = uploads
    seen = SourceFingerprint.of(src)
    from mydrive.transport.wire import mydrive_pb2 as pb

    with pytest.raises(UnknownFile, match="does not see"):
        control.submit_upload(pb.UploadJob(
            source=str(src), size_bytes=seen.size_bytes + 1, mtime_ns=seen.mtime_ns,
            inode=seen.inode, file_id=os.urandom(16), file_key=os.urandom(32),
            wrapped_file_key=os.urandom(60), owner_public_key=os.urandom(32)))


def _store_and_runner(net, root: Path, faults=None) -> tuple[JobStore, UploadRunner]:
    ids = iter(f"{i:016x}" for i in range(1, 100))
    store = JobStore(root, now_ms=lambda: 1, new_id=lambda: next(ids),
                     dir_name=UPLOAD_JOBS_DIR_NAME)
    client = open_client(root, transport=net.transport, clock=net.clock, kdf_costs=FAST_KDF,
                         **({"faults": faults} if faults is not None else {}))
    return store, UploadRunner(store, client, delegate_key(root))


def _submit(store: JobStore, c, a, src: Path):
    from mydrive.engine.upload import new_file_keys

    keys = new_file_keys(a, c.randomness)
    spec = UploadSpec(file_id=keys.file_id, wrapped_file_key=keys.wrapped_file_key,
                      owner_public_key=keys.owner_public_key,
                      fingerprint=SourceFingerprint.of(src),
                      seal=upload_seal(a, keys.file_id, src.stat().st_size, "/f.bin"))
    secrets = JobSecrets(file_record="", file_key_hex=keys.file_key.hex(), delegations_hex=(),
                         upload=spec.to_json())
    return store.submit(kind="upload", label="", destination="", source=str(src),
                        overwrite=False, bytes_total=src.stat().st_size, secrets=secrets)


def test_upload_job_run_again_sends_nothing_already_committed(world) -> None:
    """The same job run a second time (as after a crash: same file keys) finds every chunk
    committed on its replicas and sends no segment again."""
    net, c, a, src, root = world
    store, runner = _store_and_runner(net, root)
    job = _submit(store, c, a, src)
    saved = (root / UPLOAD_JOBS_DIR_NAME / f"{job.job_id}.json").read_bytes()
    first = runner.run_one(job)
    assert first.state == AWAITING_SIGNATURE
    sent_first = json.loads(first.transfer)["totals"]["segments_sent"]
    assert sent_first > 0
    # The crash: the job file as it was while running (secrets still in it), loaded again.
    (root / UPLOAD_JOBS_DIR_NAME / f"{job.job_id}.json").write_bytes(saved)
    store2, runner2 = _store_and_runner(net, root)
    again = runner2.run_one(store2.get(job.job_id))
    assert again.state == AWAITING_SIGNATURE
    assert json.loads(again.transfer)["totals"]["segments_sent"] == 0
    assert json.loads(again.result)["chunks"] == json.loads(first.result)["chunks"]


def test_upload_job_fails_when_the_file_changed_since_submission(world) -> None:
    """A file modified after the job was submitted fails the job, saying so; nothing is
    awaiting a signature."""
    net, c, a, src, root = world
    store, runner = _store_and_runner(net, root)
    job = _submit(store, c, a, src)
    with open(src, "r+b") as f:
        f.write(b"changed")
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    done = runner.run_one(job)
    assert done.state == "failed"
    assert "changed since the upload was submitted" in done.error
    assert str(src) not in done.error and src.name not in done.error


class ChangeTheFile:
    """Fault hooks that append to the source while its first segment is on its way: the file
    changes mid-upload, as a user editing it would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = False

    def upload_segment(self, data: bytes, **_: object) -> bytes:
        if not self.done:
            self.done = True
            with open(self.path, "ab") as f:
                f.write(b"more")
        return data

    def serve_segment(self, data: bytes, **_: object) -> bytes:
        return data


def test_upload_job_fails_when_the_file_changes_while_uploading(world) -> None:
    """A file that changes while the sender reads it fails the job, saying so."""
    net, c, a, src, root = world
    store, runner = _store_and_runner(net, root, faults=ChangeTheFile(src))
    done = runner.run_one(_submit(store, c, a, src))
    assert done.state == "failed"
    assert "changed while it was being uploaded" in done.error or \
        "changed size" in done.error


def test_upload_job_error_keeps_its_class_and_blanks_only_the_name(tmp_path: Path) -> None:
    """A recorded error comes back as its class (TooFewPeers: exit code 5, as in-process);
    the file's name is blanked where it stands as a word, not inside other words."""
    from mydrive.errors import TooFewPeers
    from mydrive.node.jobs_control import recorded_error
    from mydrive.node.jobs_runner import _without_names

    exc = recorded_error("TooFewPeers: too few peers: 2 eligible peer(s)")
    assert isinstance(exc, TooFewPeers) and exc.exit_code == 5
    assert str(exc) == "too few peers: 2 eligible peer(s)"
    store = JobStore(tmp_path, now_ms=lambda: 1, new_id=lambda: "00000000000000c1",
                     dir_name=UPLOAD_JOBS_DIR_NAME)
    job = store.submit(kind="upload", label="", destination="", source="/home/u/f",
                       overwrite=False, bytes_total=1,
                       secrets=JobSecrets(file_record="", file_key_hex="", delegations_hex=()))
    assert _without_names("no number of chunks can satisfy it: /home/u/f; f. f.txt", job) == \
        "no number of chunks can satisfy it: <source>; <file>. f.txt"


def test_jobs_listing_without_a_user_says_how_a_stored_upload_gets_signed(
        world, uploads: ControlClient) -> None:
    """`mydrive jobs` without --user can't sign anything: a stored upload would show
    `awaiting_signature` forever with nothing saying why. The listing (text and --json) says
    what to run: the owner's `mydrive jobs --user`, or `mydrive jobs cancel ID`; once
    signed, nothing is asked."""
    from click.testing import CliRunner

    from mydrive.cli.main import cli

    net, c, a, src, root = world
    control = uploads
    job_id, _ = submit_put(c, a, src, "/up/n.bin", control)
    wait_state(control, job_id, AWAITING_SIGNATURE)
    runner = CliRunner()
    text = runner.invoke(cli, ["jobs", "--peer", str(root)])
    assert text.exit_code == 0, text.output
    assert "mydrive jobs --user" in text.output
    assert f"mydrive jobs cancel {job_id}" in text.output
    listed = runner.invoke(cli, ["jobs", "--peer", str(root), "--json"])
    [job] = [j for j in json.loads(listed.output)["jobs"] if j["job_id"] == job_id]
    assert job["state"] == AWAITING_SIGNATURE
    assert "mydrive jobs --user" in job["next_step"] and a.user_id[:16] in job["next_step"]
    assert finish_pending_uploads(c, a, control) == [(job_id, "signed")]
    listed = runner.invoke(cli, ["jobs", "--peer", str(root), "--json"])
    [job] = [j for j in json.loads(listed.output)["jobs"] if j["job_id"] == job_id]
    assert (job["state"], job["next_step"]) == ("done", None)
