"""Options shared by the whole suite (pytest reads pytest_addoption only from the root
conftest.py; the chaos suite's fixtures live in tests/chaos/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.couchfix import PouchServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-seeds", type=int, default=0, metavar="K",
                     help="soak: run every chaos scenario with seeds 1..K instead of the "
                          "fixed CI seeds (docs/chaos.md)")


@pytest.fixture(scope="module")
def pouch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PouchServer]:
    """A real pouchdb-server for the tests of one module, stopped by its PID afterwards."""
    server = PouchServer(tmp_path_factory.mktemp("pouch")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def root_peers_runtime_dirs_removed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Peers of root's keep their sockets in /run/mydrive/<hash>/ (mydrive/node/
    nginx_workers.py); once the session's peers have stopped, those of peer directories
    under this session's temporary base, or already deleted, are removed: /run is on disk
    on some machines, and a test run must leave nothing behind."""
    yield
    if os.name == "posix" and os.geteuid() == 0:
        from mydrive.node.nginx_workers import prune_stale_runtime_dirs

        prune_stale_runtime_dirs(under=tmp_path_factory.getbasetemp())
