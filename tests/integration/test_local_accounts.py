"""Another account on a TLS peer's machine can't reach its receiver or sender around nginx.

Attack (docs/security.md, "Other accounts on a peer's machine"): a local process of another
user connects to the peer's services directly, without a certificate, where it could put any
member's certificate in the header the services believe from nginx. Before, the services
listened on loopback TCP (open to every local account) and, under a root-started nginx, on
0666 unix sockets (so that nginx's "nobody" workers could open them): both connects
succeeded. Now a TLS peer's services listen on their sockets only, which only nginx's
workers may open, while the owner's put and get through nginx still work. These peers are
root's (the tests run as root), so their workers run as an account of their own, never root
(mydrive/node/nginx_workers.py), and their sockets are in a runtime directory only root and
that account's group may pass.

The attacker is a forked child that drops to uid/gid 65534 (no supplementary groups), as
``os.setuid`` would for any other local account. The network's home is searchable by every
account (0755), so only the sockets' own modes stand between it and the services.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest

from mydrive.node import cluster
from mydrive.node.nginx_workers import runtime_dir, worker_account
from mydrive.node.peerdir import PeerDir
from mydrive.node.service_socket import service_socket
from tests.integration.conftest import LocalNetwork, start_network

# "nobody": what root's nginx ran its workers as before 2c6653a, shared by other daemons
ATTACKER_UID = ATTACKER_GID = 65534

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                       reason="needs root to act as another local account (os.setuid)"),
]


def _connect(target: str) -> str:
    """Try one connect: 'connected' or the errno's name."""
    try:
        if target.startswith("unix:"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(target.removeprefix("unix:"))
        else:
            host, port = target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5):
                pass
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, repr(exc))
    return "connected"


def connect_as_another_account(targets: list[str], uid: int = ATTACKER_UID,
                               gid: int = ATTACKER_GID) -> dict[str, str]:
    """Each target's outcome for a forked child running as ``uid``/``gid``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the other account, try, report, never return
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os.write(write, json.dumps({t: _connect(t) for t in targets}).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the attacker's child failed to run"
    result: dict[str, str] = json.loads(out)
    return result


def nginx_worker_uids(peer_root: Path) -> list[tuple[int, ...]]:
    """The (real, effective, saved, file-system) uids of every child of the peer's nginx
    master (its workers), read from /proc."""
    master = int((peer_root / "nginx" / "nginx.pid").read_text())
    uids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except OSError:  # the process ended while we looked
            continue
        if int(fields["PPid"]) == master:
            uids.append(tuple(int(u) for u in fields["Uid"].split()))
    return uids


def test_root_peers_nginx_workers_run_as_neither_root_nor_nobody(network_factory,
                                                                 tmp_path: Path) -> None:
    """Peers run by root (their peer.json is root's, as with `sudo mydrive` or in CI), in
    pytest's 0700 home: their nginx's workers, which parse every TLS connection from the
    network, run as an account of their own, neither root nor the "nobody" other daemons
    share, and still reach the services (the owner's put and get through nginx). Before,
    they ran as the peer's account: root."""
    net: LocalNetwork = network_factory(4, tls=True, replicas=2)
    for i in range(4):
        root = net.peer_dir(i).resolve()
        assert (root / "peer.json").stat().st_uid == 0
        workers = nginx_worker_uids(root)
        assert workers, f"peer-{i}'s nginx has no workers"
        wrong = [uids for uids in workers if {0, ATTACKER_UID} & set(uids)]
        assert not wrong, f"peer-{i}'s nginx workers run as root or nobody: {wrong}"
        assert set(workers) == {(worker_account().uid,) * 4}
    net.round_trip_through_nginx(tmp_path, "root-peer.bin", 2 * 1024 * 1024 + 3)
    # Once a peer's processes have stopped its runtime directory goes too: sockets and temp
    # files of no further use, and /run is not a tmpfs everywhere (it is not here).
    runtime = [runtime_dir(net.peer_dir(i).resolve()) for i in range(4)]
    assert all(d.is_dir() for d in runtime)
    cluster.stop(net.home, only=["peer-0"], kinds=("sender",))
    assert runtime[0].is_dir(), "removed while its receiver and nginx still run"
    cluster.stop(net.home, only=["peer-0"])
    assert [d.is_dir() for d in runtime] == [False, True, True, True]
    cluster.stop(net.home)
    assert not any(d.exists() for d in runtime)
    cluster.start(net.home, only=["peer-1"])  # and a restart makes it again
    assert runtime[1].is_dir()


def test_other_local_account_cannot_reach_tls_services(open_home: Path,
                                                       tmp_path: Path) -> None:
    net: LocalNetwork = start_network(open_home, 4, tls=True, replicas=2)
    workers = worker_account()
    for i in range(4):
        root = net.peer_dir(i).resolve()
        cfg = PeerDir(root).config
        sockets = [f"unix:{service_socket(root, kind)}" for kind in ("receiver", "sender")]
        targets = [*sockets, f"127.0.0.1:{cfg.receiver_port}", f"127.0.0.1:{cfg.sender_port}"]
        outcome = connect_as_another_account(targets)
        reached = {t: r for t, r in outcome.items() if r not in ("EACCES", "ECONNREFUSED")}
        assert not reached, f"peer-{i}'s services reached by uid {ATTACKER_UID}: {reached}"
        # The sockets exist and nginx's workers' account opens them (nginx is pointed there)
        assert connect_as_another_account(sockets, workers.uid, workers.gid) == {
            s: "connected" for s in sockets}
        conf = (root / "nginx" / "nginx.conf").read_text()
        assert all(f"grpc_pass grpc://{s};" in conf for s in sockets)

    # The owner, through nginx with mutual TLS, as before.
    net.round_trip_through_nginx(tmp_path, "local-accounts.bin", 2 * 1024 * 1024 + 5)
