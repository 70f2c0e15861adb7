"""Catalog scenarios on the compose backend (chaos/compose.py): a generated 5-peer project
brought up through testcontainers, faults from docker and the project's Toxiproxy, the same
checkers as every other backend.

CI runs the corruption and peer-loss scenarios (the rest of the catalog runs the same way:
`python -m chaos run NAME --backend compose`; docs/chaos.md has the last full pass). Skips
only when no Docker engine can be made to run, with the set-up's reason.
"""

from __future__ import annotations

import pytest

from chaos.runner import format_report, run_scenario
from chaos.scenario import find
from tests.chaos.conftest import CI_PEERS
from tests.containerfix import docker_engine

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]
CI_SCENARIOS = ("corruption", "peer-loss-during-upload")
CI_SEED = 7


engine = pytest.fixture(scope="module")(docker_engine)


@pytest.mark.parametrize("name", CI_SCENARIOS)
def test_compose_backend_scenario_guarantees_hold(name: str, engine: None) -> None:
    """The scenario runs on compose pods and every checker passes (none skipped)."""
    report = run_scenario(find(name), peers=CI_PEERS, seed=CI_SEED, backend="compose")
    text = format_report(report)
    print(text)
    assert report.ok, f"failed; replay: {report.replay}\n{text}"
    assert report.replay.endswith("--backend compose")
    assert {v.checker for v in report.verdicts} >= {
        "no-full-file", "resent-equals-corrupted", "downloads-bit-identical", "owner-only",
        "no-partial-state"}
    assert all(v.verdict == "pass" for v in report.verdicts), text


def test_compose_backend_faults_and_heal(engine: None, tmp_path_factory: pytest.TempPathFactory,
                                         ) -> None:
    """kill, pause and isolate take a pod's services off (running/reachable say so), and
    resume and heal bring it back at the same address, its metadata reachable again."""
    from contextlib import closing

    from chaos.compose import ComposeCluster

    cluster = ComposeCluster(tmp_path_factory.mktemp("faults") / "cluster", 4, seed=3)
    cluster.start()
    try:
        victim, other = "peer-1", "peer-2"
        assert all(cluster.running(p.name) for p in cluster.peers())
        cluster.kill(victim, "sender")
        assert not cluster.running(victim) and not cluster.running_services()[victim]
        cluster.resume(victim)
        assert cluster.running(victim)
        cluster.pause(victim)
        assert not cluster.running(victim) and not cluster.reachable(other, victim)
        cluster.isolate(other)
        assert not cluster.reachable("peer-0", other) and not cluster.reachable(other, "peer-0")
        cluster.cut("peer-0", "peer-3")
        assert not cluster.reachable("peer-0", "peer-3")
        cluster.heal()
        assert all(cluster.reachable("peer-0", p.name) for p in cluster.peers()[1:])
        with closing(cluster.peer_config(other).open_metadata()) as store:
            assert store.list_prefix("peer:"), "the isolated pod's CouchDB is back"
        assert cluster.toxiproxy is not None
        assert all(p.enabled for p in cluster.toxiproxy.proxies().values())
    finally:
        cluster.stop()
