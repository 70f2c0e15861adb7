"""The chaos suite: every scenario on 5 peers with fixed seeds, or seeds 1..K with
``--chaos-seeds K`` (soak). Needs the Toxiproxy server: a missing binary fails the tests
with the set-up command to run, it does not skip them."""

from __future__ import annotations

import pytest

CI_SEEDS = (7, 1234)
CI_PEERS = 5


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        k = int(metafunc.config.getoption("--chaos-seeds", 0) or 0)
        seeds = list(range(1, k + 1)) if k > 0 else list(CI_SEEDS)
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed{s}" for s in seeds])


@pytest.fixture
def toxiproxy_binary() -> str:
    from chaos.toxiproxy import ToxiproxyError, find_server_binary

    try:
        return str(find_server_binary())
    except ToxiproxyError as exc:
        pytest.fail(str(exc), pytrace=False)
