"""A peer's nginx as ``cluster`` starts it: through ``env`` with glibc's malloc thresholds
(mydrive/node/nginx.py), yet the process the cluster recorded is nginx itself, which it
recognises and stops. (nginx writes its process title over its environment, so
/proc/PID/environ can't show the thresholds: tests/unit/test_nginx_command.py checks what
``env`` hands on, benchmarks/nginx_ab.py the page faults they save.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mydrive.node import cluster, supervisor
from mydrive.node.nginx import command, malloc_environment

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, glibc")]


def test_cluster_nginx_started_through_env_is_nginx_and_stays_supervised(
        tmp_path: Path) -> None:
    home = tmp_path / "net"
    (peer,) = cluster.create(home, 1, tls=True)
    argv = command(peer)
    assert malloc_environment() and os.path.basename(argv[0]) == "env"
    cluster.start(home, kinds=("nginx",))  # waits until its /healthz answers over mTLS
    try:
        (entry,) = cluster._read_state(home.resolve())["peers"]
        service = cluster._service(entry, peer, "nginx")
        assert service is not None and supervisor.is_ours(service)
        nginx = argv[1 + len(malloc_environment())]
        assert os.readlink(f"/proc/{service.pid}/exe") == os.path.realpath(nginx)
    finally:
        cluster.stop(home)
    assert not supervisor.is_ours(service)
