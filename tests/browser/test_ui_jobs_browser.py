"""Transfers on the peer's services, followed in a real browser across a UI restart.

The UI process is stopped and started again while the receiver downloads the basket, or the
sender stores an upload; after logging in again the browser finds the same transfer and sees
it finish, bit-identical.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from mydrive.node import cluster
from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient
from mydrive.node.local_client import open_client
from tests.browser.conftest import UiNetwork, shot
from tests.browser.test_ui_browser import expect, login

pytestmark = pytest.mark.browser

USER = "carol"
PASSPHRASE = "amber kettle violet prism 58"
BIG_BYTES = 96 * 1024 * 1024
UPLOAD_BYTES = 64 * 1024 * 1024


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
        keys = client.login(USER, PASSPHRASE)
        client.put(keys, src, "/big/movie.bin")
        downloads = client.download_dir_of(keys)  # each user's own directory
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
    landed = downloads / "big" / "movie.bin"
    expect(page.locator(".job-file[data-path='/big/movie.bin'] .job-detail")).to_contain_text(
        str(landed))
    shot(page, "21-job-done-after-ui-restart")
    assert hashlib.sha256(landed.read_bytes()).digest() == \
        hashlib.sha256(src.read_bytes()).digest()


def test_ui_upload_is_a_sender_job_that_finishes_across_a_ui_restart(
        ui_network: UiNetwork, new_browser: Any, tmp_path: Path) -> None:
    """An upload from the browser is a job of the peer's sender; the UI is stopped while it
    runs; after logging in again the job page shows it done (the UI signs the document with
    the session's keys) and the file comes back bit-identical."""
    user, passphrase = "dora", "quiet lantern orbit 73"
    src = tmp_path / "upload.bin"
    with open(src, "wb") as f:
        for _ in range(UPLOAD_BYTES // (8 * 1024 * 1024)):
            f.write(os.urandom(8 * 1024 * 1024))
    client = open_client(ui_network.peer_dir(0))
    try:
        client.create_user(user, passphrase)
    finally:
        client.close()
    sender = ControlClient(ui_network.peer_dir(0), socket_name=UPLOAD_SOCKET_NAME)
    try:
        before = {j.job_id for j in sender.jobs()}
        page = new_browser().new_page()
        login(page, ui_network, user, passphrase)
        page.wait_for_url("**/files", timeout=120_000)  # Argon2id on a loaded machine
        page.fill("#folder", "/up")
        page.set_input_files("#files", [str(src)])
        page.click("button:has-text('Upload')")
        expect(page.locator("#upload-text")).to_contain_text("Encrypting and storing",
                                                             timeout=120_000)
        (job,) = [j for j in sender.jobs() if j.job_id not in before]
        assert job.kind == "upload" and job.group
        shot(page, "22-upload-job-before-ui-restart")
        cluster.stop(ui_network.home, only=["peer-0"], kinds=("ui",))
        job = sender.job(job.job_id)
        assert job.state != "done", "only the owner's UI or CLI can make an upload done"
        cluster.start(ui_network.home, only=["peer-0"])
    finally:
        sender.close()

    login(page, ui_network, user, passphrase)  # sessions live in the UI process only
    page.wait_for_url("**/files", timeout=120_000)
    page.goto(f"{ui_network.url(0)}/jobs/{job.group}")
    expect(page.locator("#job-state")).to_have_text("done", timeout=300_000)
    expect(page.locator(".job-file[data-path='/up/upload.bin']")).to_be_visible()
    shot(page, "23-upload-job-done-after-ui-restart")
    client = open_client(ui_network.peer_dir(0))
    try:
        keys = client.login(user, passphrase)
        out, _ = client.get(keys, "/up/upload.bin", out_dir=tmp_path / "back")
    finally:
        client.close()
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    assert not list((ui_network.peer_dir(0) / "tmp" / "ui-uploads").glob("job-*"))
