"""Issue 17 end to end: downloads run as jobs on the owner's peer, on real local peers.

A 256 MiB download submitted from the CLI outlives the CLI being SIGKILLed; the receiver
SIGKILLed and restarted mid-job resumes it; delegations presented through real gRPC by
another key, for other chunks or after expiry are refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from mydrive.crypto.keys import unwrap_file_key
from mydrive.crypto.primitives import IdentityKey
from mydrive.errors import PermissionDenied
from mydrive.formats.delegation import Delegation
from mydrive.node import cluster
from mydrive.node.jobs_control import ControlClient, JobView, submit_get
from mydrive.node.local_client import open_client
from mydrive.transport.signed_fetch import DelegateSigner, SignedFetch, sign_delegation, sign_fetch
from tests.integration.conftest import PASSPHRASE, LocalNetwork

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
BIG_BYTES = 256 * MiB
WAIT_S = 600.0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def _job(net: LocalNetwork, job_id: str) -> dict:
    """The job as `mydrive jobs --json` shows it (the CLI, as a user would ask)."""
    jobs = net.json("jobs", user=None)["jobs"]
    return next(j for j in jobs if j["job_id"] == job_id)


def _running(view: JobView) -> bool:
    return view.finished or (view.state == "running" and view.bytes_done > 0)


def _finished(view: JobView) -> bool:
    return view.finished


def _job_ids(net: LocalNetwork) -> set[str]:
    control = ControlClient(net.peer_dir(0))
    try:
        return {j.job_id for j in control.jobs()}
    finally:
        control.close()


@pytest.fixture
def big_net(network_factory, tmp_path: Path):
    net = network_factory(4)
    net.mydrive("user", "create")
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(BIG_BYTES // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
    net.mydrive("put", str(src), "/big.bin")
    return net, src


def test_jobs_download_survives_cli_sigkill_and_receiver_restart(big_net, tmp_path: Path) -> None:
    """CLI SIGKILLed mid-get: the job completes; receiver SIGKILLed: it resumes; both exact."""
    net, src = big_net
    want = _sha256(src)
    job_id, out = _cli_killed_mid_get(net, tmp_path / "out")
    net.poll_job(job_id, _finished)
    done = _job(net, job_id)
    assert (done["state"], done["error"]) == ("done", ""), done
    assert done["bytes_done"] == BIG_BYTES
    assert _sha256(out / "big.bin") == want

    # The receiver itself SIGKILLed mid-job and restarted: the job is queued again and runs.
    job_id = _receiver_killed_mid_job(net, out)
    assert (out / "big.bin").exists()  # the first download's file, until the rename
    cluster.start(net.home, only=["peer-0"])
    net.poll_job(job_id, _finished)
    done = _job(net, job_id)
    assert (done["state"], done["error"]) == ("done", ""), done
    assert _sha256(out / "big.bin") == want
    _assert_file_key_nowhere(net)


def _cli_killed_mid_get(net: LocalNetwork, out: Path, attempts: int = 4) -> tuple[str, Path]:
    """Run `mydrive get` as a user would and SIGKILL the CLI once its job is running; the
    job id and its download directory once the kill caught the job mid-transfer. A get that
    finished first (a fast peer, or slow polls on a loaded machine) proved nothing about a
    CLI dying mid-job: it is tried again into a fresh directory."""
    for attempt in range(attempts):
        out_dir = out / f"try-{attempt}"
        job_id, seen = net.kill_cli_mid_job("get", "/big.bin", "--out", str(out_dir),
                                            job_ids=lambda: _job_ids(net), running=_running)
        if seen.state == "running" and seen.bytes_done < seen.bytes_total:
            return job_id, out_dir
    raise AssertionError(f"every download finished before its CLI was killed ({attempts} tries)")


def _receiver_killed_mid_job(net: LocalNetwork, out: Path, attempts: int = 5) -> str:
    """Submit a download of /big.bin (in this process: a CLI's start takes longer than the
    whole download on a fast peer) and SIGKILL peer 0's receiver as soon as the job runs;
    its id once the job file says the kill caught it running. Otherwise (it finished in
    between) the receiver is started again and another job tried."""
    client = open_client(net.peer_dir(0))
    try:
        keys = client.login("alice", PASSPHRASE)
        for _ in range(attempts):
            control = ControlClient(net.peer_dir(0))
            try:
                job_id, _ = submit_get(client, keys, "/big.bin", control, out_dir=out,
                                       overwrite=True)
                while control.job(job_id).state == "queued":
                    time.sleep(0.002)
            finally:
                control.close()
            cluster.stop(net.home, only=["peer-0"], kinds=("receiver",), hard=True)
            saved = json.loads((net.peer_dir(0) / "jobs" / f"{job_id}.json").read_text())
            if saved["state"] == "running":
                return job_id
            cluster.start(net.home, only=["peer-0"])
    finally:
        client.close()
    raise AssertionError(f"every download finished before its receiver was killed "
                         f"({attempts} tries)")


def _assert_file_key_nowhere(net: LocalNetwork) -> None:
    """The file key crossed the control socket only: no log or finished job file holds it."""
    client = open_client(net.peer_dir(0))
    try:
        keys = client.login("alice", PASSPHRASE)
        record = client.find(keys, "/big.bin")
        file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    finally:
        client.close()
    needles = (file_key, file_key.hex().encode(), base64.b64encode(file_key))
    for path in [*net.home.rglob("*.log"), *(net.peer_dir(0) / "jobs").glob("*.json")]:
        data = path.read_bytes()
        assert not any(n in data for n in needles), f"the file key is in {path}"


def test_jobs_delegation_refused_over_grpc(network_factory) -> None:
    """Through real gRPC: another key, other chunks, an expired delegation: all refused."""
    net = network_factory(4)
    net.mydrive("user", "create")
    src = net.home / "small.bin"
    src.write_bytes(os.urandom(300_000))
    net.mydrive("put", str(src), "/a.bin")
    net.mydrive("put", str(src), "/b.bin")
    client = open_client(net.peer_dir(0))
    try:
        keys = client.login("alice", PASSPHRASE)
        a, b = client.find(keys, "/a.bin"), client.find(keys, "/b.bin")
        peers = {p.peer_id: p.address for p in client.known_peers()}
        delegate, thief = IdentityKey.from_seed(os.urandom(32)), IdentityKey.from_seed(
            os.urandom(32))
        now = client.clock.now_ms()

        def delegation(record, issued_ms: int, not_after_ms: int):
            return sign_delegation(keys.identity, Delegation(
                owner_public_key=keys.identity.public_bytes(),
                delegate_public_key=delegate.public_bytes(), delegate_peer_id="peer-0",
                chunk_ids=tuple(sorted(c.chunk_id for c in record.chunks)),
                issued_ms=issued_ms, not_after_ms=not_after_ms))

        chunk = a.chunks[0]
        peer = peers[chunk.replicas[0]]

        def fetch(signer, chunk_id: bytes = chunk.chunk_id) -> list:
            signed = sign_fetch(signer, chunk_id=chunk_id, target_peer_id=peer.peer_id,
                                segment_indices=[], clock=client.clock)
            return list(client.transport.fetch(peer, signed))

        good = delegation(a, now, now + 600_000)
        assert fetch(DelegateSigner(delegate, [good]))  # the honest use is served
        stolen = DelegateSigner(thief, [good])
        with pytest.raises(PermissionDenied, match="not signed by the delegate"):
            fetch(stolen)
        other = DelegateSigner(delegate, [delegation(b, now, now + 600_000)])
        raw = sign_fetch(DelegateSigner(delegate, [good]), chunk_id=chunk.chunk_id,
                         target_peer_id=peer.peer_id, segment_indices=[], clock=client.clock)
        widened = SignedFetch(request=raw.request, signature=raw.signature,
                              delegation=other.delegation_for(b.chunks[0].chunk_id))
        with pytest.raises(PermissionDenied, match="does not cover"):
            list(client.transport.fetch(peer, widened))
        expired = DelegateSigner(delegate, [delegation(a, now - 7_200_000, now - 3_600_000)])
        with pytest.raises(PermissionDenied, match="expired"):
            fetch(expired)
    finally:
        client.close()
