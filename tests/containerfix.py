"""The Docker engine the container tests run on (tests/integration/test_compose_cluster.py,
tests/chaos/test_compose_backend.py): one fixture body, used by both as

    engine = pytest.fixture(scope="module")(docker_engine)

scripts/containers.sh installs and starts an engine when none answers, builds Compose v2 and
the images; the fixture stops the dockerd it started (by its PID file) and nothing else. The
tests skip only when no engine can be made to run, with the set-up's reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chaos.compose import ComposeUnavailable, prepare_engine, prepare_images, stop_engine


def docker_engine() -> Iterator[None]:
    try:
        started = prepare_engine()
    except ComposeUnavailable as exc:
        pytest.skip(f"no Docker engine can be made to run here: {exc}")
    try:
        prepare_images()
        yield
    finally:
        if started:
            stop_engine()
