"""Another account on a TLS peer's machine can't reach its receiver or sender around nginx.

Attack (docs/security.md, "Other accounts on a peer's machine"): a local process of another
user connects to the peer's services directly, without a certificate, where it could put any
member's certificate in the header the services believe from nginx. Before, the services
listened on loopback TCP (open to every local account) and, under a root-started nginx, on
0666 unix sockets (so that nginx's "nobody" workers could open them): both connects
succeeded. Now a TLS peer's services listen on their 0600 sockets only and nginx's workers
run as the peer's account, while the owner's put and get through nginx still work.

The attacker is a forked child that drops to uid/gid 65534 (no supplementary groups), as
``os.setuid`` would for any other local account. The network's home is searchable by every
account (0755), so only the sockets' own mode stands between it and the services.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pytest

from mydrive.node.peerdir import PeerDir
from tests.integration.conftest import LocalNetwork, start_network

ATTACKER_UID = ATTACKER_GID = 65534  # "nobody": also what root's nginx ran its workers as

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


def connect_as_another_account(targets: list[str]) -> dict[str, str]:
    """Each target's outcome for a forked child running as ATTACKER_UID."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the other account, try, report, never return
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(ATTACKER_GID)
            os.setuid(ATTACKER_UID)
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


def test_other_local_account_cannot_reach_tls_services(open_home: Path,
                                                       tmp_path: Path) -> None:
    net: LocalNetwork = start_network(open_home, 4, tls=True, replicas=2)
    for i in range(4):
        root = net.peer_dir(i).resolve()
        cfg = PeerDir(root).config
        targets = [f"unix:{root}/receiver.sock", f"unix:{root}/sender.sock",
                   f"127.0.0.1:{cfg.receiver_port}", f"127.0.0.1:{cfg.sender_port}"]
        outcome = connect_as_another_account(targets)
        reached = {t: r for t, r in outcome.items() if r not in ("EACCES", "ECONNREFUSED")}
        assert not reached, f"peer-{i}'s services reached by uid {ATTACKER_UID}: {reached}"
        # nginx itself reaches them (the owner's traffic below), over the sockets
        conf = (root / "nginx" / "nginx.conf").read_text()
        assert f"grpc_pass grpc://unix:{root}/receiver.sock;" in conf
        assert f"grpc_pass grpc://unix:{root}/sender.sock;" in conf

    # The owner, through nginx with mutual TLS, as before.
    net.round_trip_through_nginx(tmp_path, "local-accounts.bin", 2 * 1024 * 1024 + 5)
