"""The web UI in a real browser (Debian's Chromium via Playwright) against a real 5-peer network.

The tests run in file order and build on each other (alice's account and files), as a person
would use the UI: onboarding, upload, tree, basket download, rotation, a second user, forged
requests, peers going down. Every page visited is screenshotted into tests/artifacts/ui/.
"""

from __future__ import annotations

import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mydrive.errors import UnknownUser
from mydrive.node import cluster
from mydrive.node.local_client import open_client
from tests.browser.conftest import UiNetwork, shot

pytestmark = pytest.mark.browser

ALICE, BOB = "alice", "bob"
PASS1 = "orbit velvet canyon lantern 41"
PASS2 = "quiet harbor maple syntax 97"
BOB_PASS = "tidal spruce ember nickel 23"
memo: dict[str, Any] = {}


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def user_exists(net: UiNetwork, name: str) -> bool:
    client = open_client(net.peer_dir(0))
    try:
        client.user_record(name)
        return True
    except UnknownUser:
        return False
    finally:
        client.close()


def login(page: Any, net: UiNetwork, name: str, passphrase: str) -> None:
    page.goto(net.url() + "login")
    page.fill("#user_name", name)
    page.fill("#passphrase", passphrase)
    page.click("button:has-text('Log in')")


def csrf_of(page: Any) -> str:
    return str(page.locator("input[name=csrf_token]").first.get_attribute("value"))


def https(net: UiNetwork, path: str, *, data: dict[str, str] | None = None,
          cookies: dict[str, str] | None = None) -> tuple[int, str]:
    """A plain HTTP client (no browser, no JS): the status and body of one request."""
    context = ssl.create_default_context(cafile=str(net.home / "pki" / "ca.crt"))
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(net.url() + path.lstrip("/"), data=body)
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         NoRedirect())
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ui_onboarding_refuses_mismatched_passphrases_then_creates_the_account(
        ui_network: UiNetwork, new_browser: Any) -> None:
    """Mismatched passphrases are refused in the page and by the server; matching ones work."""
    context = new_browser()
    page = context.new_page()
    page.goto(ui_network.url())
    assert page.url.endswith("/login")
    page.click("text=Create an account")
    page.wait_for_url("**/welcome")
    expect(page.locator("img.logo-big")).to_be_visible()
    shot(page, "01-onboarding")

    page.fill("#user_name", ALICE)
    page.fill("#passphrase", "abc")
    expect(page.locator("#strength-passphrase-text")).to_contain_text("Weak")
    page.fill("#passphrase", PASS1)
    expect(page.locator("#strength-passphrase")).to_have_attribute("data-level", "4")
    page.fill("#confirm", PASS1 + "!")
    message = page.locator("#confirm-match")
    expect(message).to_have_text("The passphrases do not match.")
    assert message.get_attribute("aria-live") == "assertive"
    expect(page.locator("#confirm")).to_have_attribute("aria-invalid", "true")
    page.click("button:has-text('Create account')")
    expect(page.locator("#form-error")).to_contain_text("do not match")
    assert page.url.endswith("/welcome")
    assert not user_exists(ui_network, ALICE), "a mismatched form reached the server"
    shot(page, "02-onboarding-mismatch")

    # The server checks again: the same mismatch sent without the page's script.
    answer = page.request.post(ui_network.url() + "welcome", form={
        "csrf_token": csrf_of(page), "user_name": ALICE, "passphrase": PASS1,
        "confirm": PASS1 + "!"}, max_redirects=0)
    assert answer.status == 400 and "differ" in answer.text()
    assert not user_exists(ui_network, ALICE)

    page.fill("#confirm", PASS1)
    expect(message).to_have_text("The passphrases match.")
    page.click("button:has-text('Create account')")
    page.wait_for_url("**/files?notice=welcome")
    expect(page.locator(".notice")).to_contain_text("Your account is ready")
    assert user_exists(ui_network, ALICE)
    shot(page, "03-files-empty")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["__Host-mydrive-session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert cookies["__Host-mydrive-csrf"]["httpOnly"]


def _upload(page: Any, folder: str, files: list[Path], screenshot: str = "") -> None:
    page.fill("#folder", folder)
    page.set_input_files("#files", [str(f) for f in files])
    # When stored, the page reloads the tree by itself: wait for that too.
    with page.expect_navigation(url=re.compile(r"/files\?folder="), timeout=120_000):
        page.click("button:has-text('Upload')")
        expect(page.locator("#upload-text")).to_contain_text(
            f"Stored {len(files)} file(s).", timeout=120_000)
        if screenshot:
            shot(page, screenshot)


def test_ui_upload_tree_and_basket_download_are_bit_identical(
        ui_network: UiNetwork, new_browser: Any, tmp_path: Path) -> None:
    """Uploaded files show in the tree; a basket of a folder and a file comes back exactly."""
    originals = {"/docs/report.bin": os.urandom(1_536 * 1024 + 123),
                 "/docs/2024/notes.txt": b"meeting notes\n" * 300,
                 "/photos/cat.jpg": os.urandom(300_001)}
    local: dict[str, Path] = {}
    for remote, data in originals.items():
        path = tmp_path / remote.rsplit("/", 1)[1]
        path.write_bytes(data)
        local[remote] = path
    page = new_browser().new_page()
    login(page, ui_network, ALICE, PASS1)
    page.wait_for_url("**/files")

    _upload(page, "/docs", [local["/docs/report.bin"]], screenshot="04-upload-done")
    _upload(page, "/docs/2024", [local["/docs/2024/notes.txt"]])
    _upload(page, "/photos", [local["/photos/cat.jpg"]])

    # The tree: decrypted names, sizes, dates; folders expand and collapse.
    report = page.locator("li.file[data-path='/docs/report.bin']")
    expect(report).to_be_visible()
    expect(report.locator(".size")).to_have_text("1.5 MiB")
    expect(report.locator(".date")).to_contain_text("UTC")
    notes = page.locator("li.file[data-path='/docs/2024/notes.txt']")
    expect(notes).to_be_visible()
    page.locator("li.folder[data-path='/docs/2024'] > details > summary").click()
    expect(notes).to_be_hidden()
    page.locator("li.folder[data-path='/docs/2024'] > details > summary").click()
    expect(notes).to_be_visible()
    page.click("button[data-tree=collapse]")
    expect(report).to_be_hidden()
    page.click("button[data-tree=expand]")
    expect(report).to_be_visible()
    shot(page, "05-tree")

    # The basket: add a folder and a file, edit it (remove, add back), then submit.
    page.locator("li.folder[data-path='/docs'] > .folder-actions button").click()
    page.locator("li.file[data-path='/photos/cat.jpg'] button").click()
    expect(page.locator("#basket-count")).to_have_text("2")
    page.locator(".basket-list li[data-path='/photos/cat.jpg'] button").click()
    expect(page.locator("#basket-count")).to_have_text("1")
    page.locator("li.file[data-path='/photos/cat.jpg'] button").click()
    expect(page.locator(".basket-list li")).to_have_count(2)
    shot(page, "06-tree-with-basket")
    page.click("a:has-text('Basket')")
    page.wait_for_url("**/basket")
    expect(page.locator(".basket-list li")).to_have_count(2)
    shot(page, "07-basket")

    page.click("#download-basket")
    page.wait_for_url("**/jobs/*")
    memo["alice_job_url"] = page.url
    expect(page.locator("#job-state")).to_have_text("done", timeout=120_000)
    client = open_client(ui_network.peer(0).root)
    try:  # alice's own download directory, named by her user id
        download_dir = ui_network.peer(0).download_dir / client.user_record(ALICE).user_id
    finally:
        client.close()
    expect(page.locator("#download-dir")).to_have_text(str(download_dir))
    for remote in originals:
        row = page.locator(f".job-file[data-path='{remote}']")
        expect(row.locator(".job-detail")).to_contain_text(
            str(download_dir / remote.lstrip("/")))
    shot(page, "08-download-done")
    for remote, data in originals.items():
        landed = download_dir / remote.lstrip("/")
        assert landed.read_bytes() == data, f"{landed} differs from what was uploaded"


def test_ui_rotation_then_login_with_the_new_passphrase(
        ui_network: UiNetwork, new_browser: Any) -> None:
    """After rotation the old passphrase is refused and the new one opens the same files."""
    page = new_browser().new_page()
    login(page, ui_network, ALICE, PASS1)
    page.wait_for_url("**/files")
    page.click("nav a:has-text('Passphrase')")
    page.wait_for_url("**/passphrase")
    page.fill("#current", PASS1)
    page.fill("#new", PASS2)
    page.fill("#confirm", PASS2 + "?")
    page.click("button:has-text('Change passphrase')")
    expect(page.locator("#form-error")).to_contain_text("do not match")
    shot(page, "09-passphrase-mismatch")
    page.fill("#confirm", PASS2)
    page.click("button:has-text('Change passphrase')")
    page.wait_for_url("**/login?notice=rotated")
    expect(page.locator(".notice")).to_contain_text("Passphrase changed")
    shot(page, "10-login-after-rotation")

    login(page, ui_network, ALICE, PASS1)
    expect(page.locator("[data-problem=wrong-passphrase]")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Wrong passphrase")
    shot(page, "11-error-wrong-passphrase")

    login(page, ui_network, ALICE, PASS2)
    page.wait_for_url("**/files")
    expect(page.locator("li.file[data-path='/docs/report.bin']")).to_be_visible()


def test_ui_another_user_sees_none_of_the_first_users_files(
        ui_network: UiNetwork, new_browser: Any) -> None:
    """Bob, on the same peer, gets an empty tree and can't reach alice's files or transfers."""
    page = new_browser().new_page()
    login(page, ui_network, "carol", BOB_PASS)
    expect(page.locator("[data-problem=unknown-user]")).to_be_visible()
    shot(page, "12-error-unknown-user")

    page.goto(ui_network.url() + "welcome")
    page.fill("#user_name", BOB)
    page.fill("#passphrase", BOB_PASS)
    page.fill("#confirm", BOB_PASS)
    page.click("button:has-text('Create account')")
    page.wait_for_url("**/files?notice=welcome")
    expect(page.locator(".empty").first).to_contain_text("No files yet")
    content = page.content()
    for name in ("report.bin", "notes.txt", "cat.jpg", 'data-path="/docs',
                 'data-path="/photos'):
        assert name not in content, f"bob's page shows {name!r}"
    page.goto(memo["alice_job_url"])
    expect(page.locator("[data-problem=unknown-file]")).to_be_visible()
    answer = page.request.post(ui_network.url() + "basket/add", form={
        "csrf_token": csrf_of(page), "path": "/docs/report.bin", "kind": "file"},
        max_redirects=0)
    assert answer.status == 404
    memo["bob_cookies"] = {c["name"]: c["value"] for c in page.context.cookies()}
    memo["bob_token"] = csrf_of(page)


def test_ui_post_without_csrf_token_is_refused(ui_network: UiNetwork) -> None:
    """A logged-in browser's cookies without the page's token change nothing (403)."""
    cookies = memo["bob_cookies"]
    status, body = https(ui_network, "/basket/add", cookies=cookies,
                         data={"path": "/x", "kind": "file"})
    assert status == 403 and "This form has expired" in body
    status, _ = https(ui_network, "/basket/add", cookies=cookies,
                      data={"path": "/x", "kind": "file", "csrf_token": "A" * 43})
    assert status == 403
    status, _ = https(ui_network, "/welcome", cookies=cookies, data={
        "user_name": "mallory", "passphrase": "long enough 123", "confirm": "long enough 123"})
    assert status == 403
    assert not user_exists(ui_network, "mallory")
    status, _ = https(ui_network, "/logout", cookies=cookies, data={})
    assert status == 403
    # Positive control: the same client with the token is let through (so the refusals above
    # are the CSRF check, not something else) and the session is still alive.
    status, _ = https(ui_network, "/logout", cookies=cookies,
                      data={"csrf_token": memo["bob_token"]})
    assert status == 303


def test_ui_backend_listens_on_loopback_only(ui_network: UiNetwork) -> None:
    """The UI's own server and its nginx listener are bound to 127.0.0.1, nothing wider."""
    config = ui_network.peer(0).config
    listening = _listening_addresses()
    for port in (config.ui_backend_port, config.ui_port):
        bound = {addr for addr, p in listening if p == port}
        assert bound == {"127.0.0.1"}, f"port {port} bound to {bound}"


def _listening_addresses() -> set[tuple[str, int]]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            addr_hex, port_hex = fields[1].split(":")
            if len(addr_hex) == 8:
                addr = ".".join(str(int(addr_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                addr = "::" if set(addr_hex) == {"0"} else addr_hex
            found.add((addr, int(port_hex, 16)))
    return found


def test_ui_peers_down_gives_clear_errors_and_no_secret_reaches_a_log(
        ui_network: UiNetwork, new_browser: Any) -> None:
    """With the other peers' services down, downloads and uploads fail with a clear reason."""
    page = new_browser().new_page()
    login(page, ui_network, ALICE, PASS2)
    page.wait_for_url("**/files")
    others = [f"peer-{i}" for i in range(1, 5)]
    cluster.stop(ui_network.home, only=others, kinds=("sender",))
    page.locator("li.file[data-path='/photos/cat.jpg'] button").click()
    page.check("input[name=overwrite]")
    page.click("#download-basket")
    page.wait_for_url("**/jobs/*")
    expect(page.locator("#job-state")).to_have_text("failed", timeout=120_000)
    error = page.locator(".job-file[data-path='/photos/cat.jpg'] .job-error")
    expect(error).to_contain_text(re.compile("can't be fetched right now|Peers unavailable"))
    shot(page, "13-download-peers-down")

    cluster.stop(ui_network.home, only=others, kinds=("receiver",))
    page.goto(ui_network.url() + "files")
    page.fill("#folder", "/later")
    page.set_input_files("#files", files=[{"name": "late.txt", "mimeType": "text/plain",
                                           "buffer": b"written while peers are down"}])
    page.click("button:has-text('Upload')")
    expect(page.locator("#upload-text")).to_contain_text(
        re.compile("Not stored: /later/late.txt .*(Peers unavailable|Not enough peers)"),
        timeout=120_000)
    shot(page, "14-upload-peers-down")

    logs = list((ui_network.peer_dir(0) / "logs").glob("*.log")) + \
        list((ui_network.peer_dir(0) / "nginx" / "logs").glob("*.log"))
    assert any(p.name == "ui.log" for p in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in (PASS1, PASS2, BOB_PASS):
            assert secret not in text, f"a passphrase reached {path}"
