"""Options shared by the whole suite (pytest reads pytest_addoption only from the root
conftest.py; the chaos suite's fixtures live in tests/chaos/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-seeds", type=int, default=0, metavar="K",
                     help="soak: run every chaos scenario with seeds 1..K instead of the "
                          "fixed CI seeds (docs/chaos.md)")
