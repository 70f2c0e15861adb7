"""The network-namespace backend (chaos/netns.py): real namespaces, a bridge, nft cuts.

Root on Linux only; skipped with the reason elsewhere. Needs `nft` (scripts/setup.d/
40-nftables.sh) and the Toxiproxy server, which fail the tests when missing, as in the rest
of the chaos suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.netns import NetnsCluster, unavailable_reason
from chaos.runner import CHAOS_OVERRIDES, format_report, run_scenario
from chaos.scenario import find
from mydrive.node import supervisor

REASON = unavailable_reason()
# Skipped only where the backend can't exist; a missing tool on a root Linux box fails.
needs_netns = pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                                 reason="the netns backend needs root on Linux")


def connects(cluster: NetnsCluster, source: str, address: str) -> bool:
    """True if a TCP connection from ``source``'s namespace to ``address`` is accepted."""
    host, port = address.rsplit(":", 1)
    proc = subprocess.run(["ip", "netns", "exec", cluster.namespace(source), "timeout", "3",
                           "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"],
                          capture_output=True, timeout=10, check=False)
    return proc.returncode == 0


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def cluster(tmp_path: Path, toxiproxy_binary: str) -> Iterator[NetnsCluster]:
    if REASON is not None:
        pytest.fail(REASON, pytrace=False)  # only `nft` missing gets here: set-up problem
    c = NetnsCluster(tmp_path / "cluster", 3, seed=11, **CHAOS_OVERRIDES)
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.chaos
@needs_netns
def test_netns_cut_blocks_only_that_link(cluster: NetnsCluster) -> None:
    """A cut S→T refuses S's connections to T (proxy and service) but not another peer's;
    isolate cuts both ways; heal restores every link."""
    a, b, c = (p.name for p in cluster.peers())
    to_b = cluster.dialed_address(a, b, "receiver")
    c_to_b = cluster.dialed_address(c, b, "receiver")
    b_direct = next(p.receiver_address for p in cluster.peers() if p.name == b)
    assert connects(cluster, a, to_b) and connects(cluster, a, b_direct)
    cluster.cut(a, b)
    assert not connects(cluster, a, to_b)
    assert not connects(cluster, a, b_direct)  # the namespace address itself is cut
    assert connects(cluster, c, c_to_b)
    assert connects(cluster, b, cluster.dialed_address(b, a, "sender"))  # other direction
    assert cluster.running(b) and not cluster.reachable(a, b) and cluster.reachable(c, b)
    cluster.isolate(c)
    assert not connects(cluster, c, cluster.dialed_address(c, a, "sender"))
    assert not connects(cluster, a, cluster.dialed_address(a, c, "sender"))
    cluster.heal()
    assert connects(cluster, a, to_b) and connects(cluster, c, cluster.dialed_address(c, a,
                                                                                      "sender"))


@pytest.mark.chaos
@needs_netns
def test_netns_kill_and_restart_peer(cluster: NetnsCluster) -> None:
    """kill stops a peer's services inside its namespace; restart brings them back healthy."""
    a, b, _ = (p.name for p in cluster.peers())
    cluster.kill(b)
    assert not cluster.running(b)
    assert not connects(cluster, a, next(p.receiver_address for p in cluster.peers()
                                         if p.name == b))
    cluster.restart(b, graceful=False)
    assert cluster.running(b) and connects(cluster, a, cluster.dialed_address(a, b, "sender"))


@pytest.mark.chaos
@needs_netns
def test_netns_stop_removes_what_it_made(tmp_path: Path, toxiproxy_binary: str) -> None:
    """After stop no namespace, bridge or process of the cluster is left."""
    c = NetnsCluster(tmp_path / "cluster", 3, seed=3, **CHAOS_OVERRIDES)
    c.start()
    made = {c.namespace(p.name) for p in c.peers()}
    services = [s for kinds in c._services.values() for s in kinds.values()]
    assert len(services) == 3 * 2 and all(supervisor.is_ours(s) for s in services)
    assert made <= namespaces()
    c.stop()
    assert not made & namespaces()
    assert subprocess.run(["ip", "link", "show", c.bridge], capture_output=True,
                          check=False).returncode != 0
    assert _forward_rules(c.bridge) == 0
    assert not any(Path(f"/proc/{s.pid}").exists() for s in services)  # ended and reaped


@pytest.mark.chaos
@needs_netns
@pytest.mark.parametrize("name", ["partition-and-heal", "peer-loss-during-download"])
def test_netns_scenario_guarantees_hold(name: str, toxiproxy_binary: str) -> None:
    """The scenario on 5 peers in network namespaces: every checker passes."""
    if REASON is not None:
        pytest.fail(REASON, pytrace=False)
    report = run_scenario(find(name), peers=5, seed=7, backend="netns")
    text = format_report(report)
    print(text)
    assert report.ok, f"seed 7 failed; replay: {report.replay}\n{text}"
    assert all(v.verdict != "skip" for v in report.verdicts), text


@pytest.mark.chaos
@needs_netns
def test_netns_cleanup_after_harness_killed(tmp_path: Path, toxiproxy_binary: str) -> None:
    """A harness SIGKILLed mid-run leaks its namespaces and processes; `cleanup` removes them."""
    import json
    import time

    from chaos.netns import STATE_NAME, cleanup

    home = tmp_path / "cluster"
    code = ("import sys, time; from pathlib import Path; from chaos.netns import NetnsCluster; "
            "from chaos.runner import CHAOS_OVERRIDES; "
            f"c = NetnsCluster(Path({str(home)!r}), 3, seed=2, **CHAOS_OVERRIDES); c.start(); "
            "print('up', flush=True); time.sleep(300)")
    harness = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert harness.stdout is not None and harness.stdout.readline().strip() == b"up"
    finally:
        harness.kill()
        harness.wait()
    state = json.loads((home / STATE_NAME).read_text())
    pids = [int(p["pid"]) for p in state["processes"]]
    assert set(state["namespaces"]) <= namespaces() and len(pids) == 3 * 2 + 3
    removed = cleanup(home)
    kinds = [item.split()[0] for item in removed]
    assert kinds.count("process") == len(pids) and kinds.count("namespace") == 3, removed
    assert kinds.count("bridge") == 1, removed
    assert _forward_rules(state["bridge"]) == 0, "the FORWARD rule for the bridge is left"
    assert not set(state["namespaces"]) & namespaces()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() and b"Z" not in _state(p) for p in pids):
        assert time.monotonic() < deadline, "processes left running"
        time.sleep(0.1)


def _forward_rules(bridge: str) -> int:
    """How many FORWARD rules name ``bridge`` (the netns backend adds one while it runs)."""
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True,
                         check=False).stdout
    return sum(f"-i {bridge} " in line for line in out.splitlines())


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b"Z"
