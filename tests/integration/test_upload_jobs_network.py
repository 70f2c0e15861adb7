"""Issue 17, uploads: `mydrive put` runs as a job on the owner's peer's sender, real peers.

A 128 MiB put whose CLI is SIGKILLed mid-upload is stored by the sender and waits for its
owner's signature; the next `mydrive jobs --user` signs it and shows it done; `get` returns
it bit-identical. The sender SIGKILLed and restarted mid-job resumes it without sending the
chunks its receivers already committed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from mydrive.node import cluster
from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient, JobView
from tests.integration.conftest import LocalNetwork

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
BIG_BYTES = 128 * MiB
WAIT_S = 600.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def _sender(net: LocalNetwork) -> ControlClient:
    return ControlClient(net.peer_dir(0), socket_name=UPLOAD_SOCKET_NAME)


def _upload_ids(net: LocalNetwork) -> set[str]:
    control = _sender(net)
    try:
        return {j.job_id for j in control.jobs()}
    finally:
        control.close()


def _poll(net: LocalNetwork, job_id: str, until) -> JobView:
    """Poll the sender's Control socket until ``until(view)``; a restart is ridden out."""
    return net.poll_job(job_id, until, socket_name=UPLOAD_SOCKET_NAME)


def _running(view: JobView) -> bool:
    return view.state != "queued" and (view.state != "running" or view.bytes_done > 0)


def _stored(view: JobView) -> bool:
    return view.state != "queued" and view.state != "running"


def _jobs_as_user(net: LocalNetwork) -> dict[str, dict]:
    """`mydrive jobs --json --user alice`: signs alice's stored uploads, then lists."""
    return {j["job_id"]: j for j in net.json("jobs")["jobs"]}


@pytest.fixture
def upload_net(network_factory, tmp_path: Path):
    net = network_factory(4)
    net.mydrive("user", "create")
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(BIG_BYTES // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
    return net, src


def _cli_killed_mid_put(net: LocalNetwork, src: Path, attempts: int = 4) -> tuple[str, str]:
    """Run `mydrive put` as a user would and SIGKILL the CLI once its job is running; the
    job id and remote name once the kill caught the job mid-upload. A put that was already
    past its upload (a fast peer, or slow polls on a loaded machine) is tried again under
    another name: it proved nothing about a CLI dying mid-job."""
    for attempt in range(attempts):
        name = f"/big-{attempt}.bin"
        job_id, seen = net.kill_cli_mid_job("put", str(src), name,
                                            job_ids=lambda: _upload_ids(net), running=_running,
                                            socket_name=UPLOAD_SOCKET_NAME)
        if seen.state == "running" and seen.bytes_done < seen.bytes_total:
            return job_id, name
    raise AssertionError(f"every upload was done before its CLI was killed ({attempts} tries)")


def _sender_killed_mid_job(net: LocalNetwork, src: Path, attempts: int = 4) -> tuple[str, int]:
    """Submit a put with --detach and SIGKILL peer 0's sender once a quarter is uploaded;
    the job id and the bytes seen done, once the job file says the kill caught it running.
    Otherwise (it finished in between) the sender is started again and another put tried.
    The sender is left stopped."""
    for attempt in range(attempts):
        job_id = net.json("put", str(src), f"/again-{attempt}.bin", "--detach")["job_id"]
        seen = _poll(net, job_id, lambda v: _stored(v) or v.bytes_done >= BIG_BYTES // 4)
        cluster.stop(net.home, only=["peer-0"], kinds=("sender",), hard=True)
        saved = json.loads((net.peer_dir(0) / "upload-jobs" / f"{job_id}.json").read_text())
        if seen.state == "running" and saved["state"] == "running":
            return job_id, seen.bytes_done
        cluster.start(net.home, only=["peer-0"])
    raise AssertionError(f"every upload finished before its sender was killed ({attempts} tries)")


def test_upload_job_survives_cli_sigkill_and_sender_restart(upload_net, tmp_path: Path) -> None:
    net, src = upload_net
    want = _sha256(src)
    job_id, name = _cli_killed_mid_put(net, src)
    stored = _poll(net, job_id, _stored)
    assert (stored.state, stored.error) == ("awaiting_signature", ""), stored
    assert name not in net.mydrive("ls").stdout  # not acknowledged before it is signed
    done = _jobs_as_user(net)[job_id]
    assert (done["kind"], done["state"], done["error"]) == ("upload", "done", ""), done
    assert done["label"] == name and done["bytes_done"] == BIG_BYTES
    net.mydrive("get", name, "--out", str(tmp_path / "out"))
    assert _sha256(tmp_path / "out" / name.lstrip("/")) == want
    first_sent = json.loads(net.mydrive("inspect", name, "--json").stdout)[
        "transfer"]["upload"]["totals"]["segments_sent"]

    # The sender SIGKILLed mid-job and restarted: queued again, the same chunks, and only
    # what its receivers had not committed is sent again.
    job_id, bytes_seen = _sender_killed_mid_job(net, src)
    cluster.start(net.home, only=["peer-0"])
    stored = _poll(net, job_id, _stored)
    assert (stored.state, stored.error) == ("awaiting_signature", ""), stored
    resumed = stored.transfer or {}
    print(f"segments sent: whole upload {first_sent}, resumed after the sender's SIGKILL at "
          f"{bytes_seen // MiB} MiB: {resumed['totals']['segments_sent']}")
    assert 0 < resumed["totals"]["segments_sent"] < first_sent * 0.9, (resumed, first_sent)
    done = _jobs_as_user(net)[job_id]
    assert (done["state"], done["error"]) == ("done", ""), done
    again = done["label"]
    net.mydrive("get", again, "--out", str(tmp_path / "out"))
    assert _sha256(tmp_path / "out" / again.lstrip("/")) == want
    for job_file in (net.peer_dir(0) / "upload-jobs").glob("*.json"):
        saved = json.loads(job_file.read_text())
        assert saved["secrets"] is None and saved["source"] == "", job_file
