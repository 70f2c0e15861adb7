"""A basket download on the peer's receiver, followed in a real browser across a UI restart.

The UI process is stopped and started again while the receiver downloads the basket; after
logging in again the browser finds the same transfer and sees it finish, bit-identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from mydrive.node import cluster
from mydrive.node.jobs_control import ControlClient
from mydrive.node.local_client import open_client
from tests.browser.conftest import UiNetwork, shot
from tests.browser.test_ui_browser import expect, login

pytestmark = pytest.mark.browser

USER = "carol"
PASSPHRASE = "amber kettle violet prism 58"
BIG_BYTES = 96 * 1024 * 1024


def test_ui_restart_while_basket_downloads_still_shows_it_finishing(
        ui_network: UiNetwork, new_browser: Any, tmp_path: Path) -> None:
    """UI restarted mid-download: after login the job page shows the same job reach done."""
    src = tmp_path / "movie.bin"
    with open(src, "wb") as f:
        for _ in range(BIG_BYTES // (8 * 1024 * 1024)):
            f.write(os.urandom(8 * 1024 * 1024))
    client = open_client(ui_network.peer_dir(0))
    try:
        client.create_user(USER, PASSPHRASE)
        client.put(client.login(USER, PASSPHRASE), src, "/big/movie.bin")
    finally:
        client.close()

    page = new_browser().new_page()
    login(page, ui_network, USER, PASSPHRASE)
    page.wait_for_url("**/files", timeout=120_000)  # Argon2id on a loaded machine
    page.locator("li.file[data-path='/big/movie.bin'] button").click()
    expect(page.locator("#basket-count")).to_have_text("1")
    page.click("a:has-text('Basket')")
    page.wait_for_url("**/basket")
    page.click("#download-basket")
    page.wait_for_url("**/jobs/*")
    job_url = page.url
    shot(page, "20-job-before-ui-restart")

    control = ControlClient(ui_network.peer_dir(0))
    try:
        (job,) = [j for j in control.jobs() if j.group]  # this module's network: one job
    finally:
        control.close()
    cluster.stop(ui_network.home, only=["peer-0"], kinds=("ui",))
    assert not job.finished, "the download ended before the UI stopped: make it larger"
    cluster.start(ui_network.home, only=["peer-0"])

    login(page, ui_network, USER, PASSPHRASE)  # sessions live in the UI process only
    page.wait_for_url("**/files", timeout=120_000)  # Argon2id on a loaded machine
    expect(page.locator(f"a[href='/jobs/{job.group}']")).to_be_visible()
    page.goto(job_url)
    expect(page.locator("#job-state")).to_have_text("done", timeout=300_000)
    landed = ui_network.peer(0).download_dir / "big" / "movie.bin"
    expect(page.locator(".job-file[data-path='/big/movie.bin'] .job-detail")).to_contain_text(
        str(landed))
    shot(page, "21-job-done-after-ui-restart")
    assert hashlib.sha256(landed.read_bytes()).digest() == \
        hashlib.sha256(src.read_bytes()).digest()
