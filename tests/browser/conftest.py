"""Browser fixtures: a real local network (mydrive.node.cluster, 5 peers behind nginx with TLS)
and Debian's Chromium driven by Playwright (executable_path; never `playwright install`).

Screenshots go to tests/artifacts/ui/ (not committed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.node.ui_address import ui_url

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "ui"
# This machine's network is closed: keep Chromium from calling home.
CHROMIUM_ARGS = ["--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 860}


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class UiNetwork:
    home: Path

    def peer_dir(self, i: int = 0) -> Path:
        return self.home / f"peer-{i}"

    def peer(self, i: int = 0) -> PeerDir:
        return PeerDir(self.peer_dir(i))

    def url(self, i: int = 0) -> str:
        return ui_url(self.peer(i).config)


@pytest.fixture(scope="module")
def ui_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiNetwork]:
    tls = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()
    if not tls:
        pytest.skip("nginx is not installed: run scripts/setup.sh")
    home = tmp_path_factory.mktemp("ui-net")
    cluster.create(home, 5, tls=True, chunk_size_bytes=256 * 1024,
                   segment_size_bytes=32 * 1024)
    try:
        cluster.start(home)
        yield UiNetwork(home=home)
    finally:
        cluster.stop(home, hard=True)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Any]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("Debian's chromium is not installed: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def new_browser(playwright_driver: Any) -> Iterator[Any]:
    """Open a fresh browser (own profile, so own cookies); closes them all after the test."""
    opened: list[tuple[Any, str]] = []

    def open_one() -> Any:
        profile = tempfile.mkdtemp(prefix="mydrive-chromium-")
        args = list(CHROMIUM_ARGS)
        if os.name == "posix" and os.geteuid() == 0:
            args.insert(0, "--no-sandbox")
        # Playwright passes the profile as --user-data-dir (a fresh one each time).
        context = playwright_driver.chromium.launch_persistent_context(
            profile, executable_path=chromium_binary(), headless=True, args=args,
            ignore_https_errors=True,  # the peer's certificate is from the network's own CA
            viewport=VIEWPORT)
        context.set_default_timeout(30_000)
        opened.append((context, profile))
        return context

    yield open_one
    for context, profile in opened:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
