"""A generated 5-peer compose project, brought up through testcontainers' DockerCompose, used
from the host exactly as the README tour uses a local network (`--peer DIR`).

Needs a Docker engine (tests/containerfix.py: scripts/containers.sh installs and starts one
when none answers, the fixture stops what it started; Compose v2 and the images are built).
The tests skip only when the engine can't be made to run, with the set-up's reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mydrive.node.compose import ComposeProject, generate
from tests.containerfix import docker_engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
PASSPHRASE = "compose passphrase 1"
REPLICATION_TIMEOUT_S = 60.0
HEALTHY_TIMEOUT_S = 300.0


engine = pytest.fixture(scope="module")(docker_engine)


@pytest.fixture(scope="module")
def project(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    from testcontainers.compose import DockerCompose

    from chaos.compose import free_subnet

    out = tmp_path_factory.mktemp("compose") / "net"
    made = generate(out, peers=5, subnet=free_subnet(os.getpid()), health_interval_s=2)
    # `up --wait` gives up at the first failed health check; on a loaded machine a check can
    # time out once and pass the next time, so wait for every service to be healthy instead.
    compose = DockerCompose(context=str(out), compose_file_name="compose.yaml", wait=False)
    t0 = time.monotonic()
    try:
        compose.start()
        wait_healthy(made)
        print(f"compose up, every service healthy (5 pods, 36 containers): "
              f"{time.monotonic() - t0:.1f} s")
        yield made
    finally:
        t1 = time.monotonic()
        compose.stop(down=True)
        print(f"compose down -v: {time.monotonic() - t1:.1f} s")


def service_states(project: ComposeProject) -> dict[str, list[str]]:
    """Each service's [state, health, exit code] as `docker compose ps` reports them."""
    out = subprocess.run(["docker", "compose", "-f", str(project.compose_file), "ps", "-a",
                          "--format", "{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()}


def long_running(project: ComposeProject) -> list[str]:
    return [f"{p.name}{suffix}" for p in project.peers
            for suffix in ("", "-couchdb", "-receiver", "-sender", "-ui")]


def wait_healthy(project: ComposeProject) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        rows = service_states(project)
        waiting = [s for s in long_running(project) if rows.get(s, [])[:2] != ["running",
                                                                              "healthy"]]
        if not waiting:
            return
        assert time.monotonic() < deadline, f"not healthy after {HEALTHY_TIMEOUT_S:.0f} s: " \
            f"{ {s: rows.get(s) for s in waiting} }"
        time.sleep(2.0)


def mydrive(project: ComposeProject, peer: int, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """The host's `mydrive` against pod ``peer``'s directory, as a user runs it."""
    env = {**os.environ, "MYDRIVE_PASSPHRASE": PASSPHRASE,
           "MYDRIVE_PEER": str(project.peers[peer].directory)}
    result = subprocess.run([sys.executable, "-m", "mydrive", *args],
                            capture_output=True, text=True, timeout=300, env=env,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"mydrive {' '.join(args)} on peer-{peer} failed "
                             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def wait_listed(project: ComposeProject, peer: int, remote: str) -> None:
    """Until pod ``peer``'s metadata (CouchDB, replicated) lists ``remote`` for ann."""
    deadline = time.monotonic() + REPLICATION_TIMEOUT_S
    while True:
        listed = mydrive(project, peer, "ls", "--user", "ann", check=False)
        if listed.returncode == 0 and remote in listed.stdout:
            return
        assert time.monotonic() < deadline, f"{remote} never replicated to peer-{peer}: " \
                                            f"{listed.stdout}{listed.stderr}"
        time.sleep(1.0)


def test_compose_pods_run_the_generated_pod(project: ComposeProject) -> None:
    """Every pod's services run and answer (nginx, CouchDB, receiver, sender, ui healthy;
    render and register finished with 0), and Toxiproxy holds one proxy per peer."""
    from chaos.toxiproxy import ToxiproxyClient

    rows = service_states(project)
    for svc in long_running(project):
        assert rows[svc][:2] == ["running", "healthy"], (svc, rows[svc])
    for p in project.peers:
        for one_shot in (f"{p.name}-render", f"{p.name}-register"):
            assert rows[one_shot][0] == "exited" and rows[one_shot][-1] == "0", rows[one_shot]
    proxies = ToxiproxyClient(project.toxiproxy_api).proxies()
    assert sorted(proxies) == sorted(p.name for p in project.peers)
    for p in project.peers:
        assert proxies[p.name].upstream == f"{p.pod_address}:{p.peer_port}"
        assert p.advertised_address == f"{project.toxiproxy_address}:{p.peer_port}"


def test_compose_put_on_one_peer_get_from_another_bit_identical(
        project: ComposeProject, tmp_path: Path) -> None:
    """A file put through peer-0 comes back bit-identical through peer-1 (its metadata
    replicated between the pods' CouchDBs, its chunks fetched through Toxiproxy)."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    mydrive(project, 0, "user", "create", "--user", "ann")
    mydrive(project, 0, "put", "--user", "ann", str(src), "/work/report.bin")
    wait_listed(project, 1, "/work/report.bin")
    # In this process (--local), into peer-1's download directory on the host.
    done = mydrive(project, 1, "get", "--user", "ann", "/work/report.bin", "--local", "--json")
    got = Path(json.loads(done.stdout)["path"])  # downloads/<user id>/work/report.bin
    assert got.is_relative_to(project.peers[1].directory / "downloads"), got
    assert got.parts[-2:] == ("work", "report.bin") and got.read_bytes() == data
    info = json.loads(mydrive(project, 0, "inspect", "--user", "ann", "/work/report.bin",
                              "--json").stdout)
    held = {p.peer_id: {c.stem for c in (p.directory / "store" / "chunks").glob("*/*.chunk")}
            for p in project.peers}
    for chunk in info["chunks"]:
        assert len(chunk["replicas"]) == 2, chunk
        assert all(chunk["chunk_id"] in held[r] for r in chunk["replicas"]), chunk
    assert not held[project.peers[0].peer_id], "the owner's own peer holds none of its chunks"
    ids = {c["chunk_id"] for c in info["chunks"]}
    assert not any(ids <= chunks for chunks in held.values()), "no peer holds the whole file"


def test_compose_get_survives_a_killed_replica(project: ComposeProject, tmp_path: Path) -> None:
    """With one replica peer's receiver and sender killed (docker kill), the download (in
    the host's CLI) fails over to the other replicas and is still bit-identical."""
    data = os.urandom(2 * 1024 * 1024)
    src = tmp_path / "b.bin"
    src.write_bytes(data)
    if mydrive(project, 0, "ls", "--user", "ann", check=False).returncode != 0:
        mydrive(project, 0, "user", "create", "--user", "ann")
    mydrive(project, 0, "put", "--user", "ann", str(src), "/b.bin")
    holders = [p for p in project.peers[1:]
               if list((p.directory / "store" / "chunks").glob("*/*.chunk"))]
    victim = holders[0]
    names = [f"{project.name}-{victim.name}-{kind}-1" for kind in ("receiver", "sender")]
    subprocess.run(["docker", "kill", *names], check=True, capture_output=True, timeout=60)
    try:
        mydrive(project, 0, "get", "--user", "ann", "/b.bin", "--out", str(tmp_path / "o"),
                "--local")  # in this process, on the host
        assert (tmp_path / "o" / "b.bin").read_bytes() == data
    finally:
        subprocess.run(["docker", "start", *names], check=True, capture_output=True,
                       timeout=60)


def test_compose_get_as_a_job_of_the_pods_receiver_reaches_the_host(
        project: ComposeProject, tmp_path: Path) -> None:
    """`get` without --local (a job of the pod's receiver, through the control socket in the
    peer directory) puts the file in the peer's download directory as the host sees it (the
    receiver is handed its own path, /peer/downloads/…); a destination the pod can't see is
    refused before anything is submitted, naming --local."""
    data = os.urandom(300_000)
    src = tmp_path / "job.bin"
    src.write_bytes(data)
    if mydrive(project, 0, "ls", "--user", "ann", check=False).returncode != 0:
        mydrive(project, 0, "user", "create", "--user", "ann")
    mydrive(project, 0, "put", "--user", "ann", str(src), "/job.bin")
    got = json.loads(mydrive(project, 0, "get", "--user", "ann", "/job.bin", "--json").stdout)
    assert got["job_id"], got  # it was a job of the pod's receiver, not an in-process get
    host_path = Path(got["path"])  # the peer's download directory (per user) on the host
    assert host_path.is_relative_to(project.peers[0].directory / "downloads"), host_path
    assert host_path.read_bytes() == data
    outside = mydrive(project, 0, "get", "--user", "ann", "/job.bin", "--out",
                      str(tmp_path / "elsewhere"), check=False)
    assert outside.returncode == 2, outside.stderr
    assert "--local" in outside.stderr and "container" in outside.stderr, outside.stderr
    assert not (tmp_path / "elsewhere" / "job.bin").exists()
