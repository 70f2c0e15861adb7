"""The web UI through Flask's test client, on peers wired by the in-memory transport."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import pytest

from mydrive.client import FileEntry
from mydrive.errors import TooLarge, UnknownFile
from mydrive.testing.clock import ManualClock
from mydrive.ui import csrf
from mydrive.ui.app import create_app
from mydrive.ui.basket import BasketItem, Baskets
from mydrive.ui.jobs import JobBoard, JobFile
from mydrive.ui.serve import pick_server
from mydrive.ui.settings import UiSettings
from mydrive.ui.tree import build_tree, human_size
from tests.clientnet import ClientNet, client_net

PASS = "correct horse battery staple"


@pytest.fixture
def net(tmp_path: Path) -> ClientNet:
    return client_net(tmp_path, 5)


def make_app(net: ClientNet, **settings: Any) -> Any:
    app = create_app(net.dirs[0].root, client=net.client(0), clock=net.clock,
                     settings=UiSettings(**settings))
    app.testing = True
    return app


def token(client: Any, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def signup(client: Any, name: str = "alice", passphrase: str = PASS) -> str:
    tok = token(client, "/welcome")
    r = client.post("/welcome", data={"csrf_token": tok, "user_name": name,
                                      "passphrase": passphrase, "confirm": passphrase})
    assert r.status_code == 303 and r.headers["Location"] == "/files?notice=welcome", r.text
    return tok


def wait_job(client: Any, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").get_json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def upload(client: Any, tok: str, folder: str, name: str, data: bytes) -> dict[str, Any]:
    r = client.post("/upload", data={"csrf_token": tok, "folder": folder,
                                     "files": (io.BytesIO(data), name)},
                    headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    return wait_job(client, r.get_json()["job"])


# ---- pieces ------------------------------------------------------------------------------
def test_csrf_token_matches_only_its_own_cookie() -> None:
    """A token checks against the cookie it was made for; others, junk and none are refused."""
    secret = b"s" * 32
    cookie, other = csrf.new_cookie_value(), csrf.new_cookie_value()
    good = csrf.token_for(secret, cookie)
    assert csrf.token_ok(secret, cookie, good)
    assert not csrf.token_ok(secret, other, good)
    assert not csrf.token_ok(b"t" * 32, cookie, good)
    assert not csrf.token_ok(secret, cookie, good[:-1] + ("A" if good[-1] != "A" else "B"))
    assert not csrf.token_ok(secret, cookie, None)
    assert not csrf.token_ok(secret, None, good)
    assert not csrf.token_ok(secret, cookie, "x" * 10_000)


def test_ui_tree_nests_folders_with_sizes() -> None:
    """Flat paths become nested folders; a folder's size and count cover everything below."""
    tree = build_tree([FileEntry("/a/b/c.txt", 10, 1, 1, "1"), FileEntry("/a/d.txt", 5, 1, 1, "2"),
                       FileEntry("/top.txt", 1, 1, 1, "3")])
    assert [f.name for f in tree.sorted_files()] == ["top.txt"]
    a = tree.folders["a"]
    assert (a.path, a.size_bytes, a.file_count) == ("/a", 15, 2)
    assert a.folders["b"].path == "/a/b" and a.folders["b"].files[0].path == "/a/b/c.txt"
    assert tree.folder_paths() == ["/", "/a", "/a/b"]
    assert human_size(1536) == "1.5 KiB" and human_size(7) == "7 bytes"


def test_ui_basket_is_bounded_and_per_user() -> None:
    """Adding is idempotent, per user, and refused past the limit."""
    baskets = Baskets(max_items=2)
    assert baskets.add("u1", BasketItem("/a", False))
    assert not baskets.add("u1", BasketItem("/a", False))
    baskets.add("u1", BasketItem("/b", True))
    with pytest.raises(TooLarge):
        baskets.add("u1", BasketItem("/c", False))
    assert baskets.items("u2") == []
    assert baskets.remove("u1", "/a") and [i.path for i in baskets.items("u1")] == ["/b"]


def test_ui_jobs_are_owner_only_and_bounded() -> None:
    """Another user's job id is unknown; finished jobs past the per-user limit are dropped."""
    board = JobBoard(clock=ManualClock(), workers=1, max_queued=10, max_per_user=2)
    ids = []
    for _ in range(3):
        job = board.submit("u1", "download", [JobFile("/f", 3)], lambda f, p: p(3) or "/x")
        deadline = time.monotonic() + 5
        while not job.finished and time.monotonic() < deadline:
            time.sleep(0.01)
        ids.append(job.job_id)
    assert len(board.of_user("u1")) == 2
    with pytest.raises(UnknownFile):
        board.get("u2", ids[-1])
    assert board.get("u1", ids[-1]).to_json()["done_bytes"] == 3
    board.shutdown()


def test_ui_pick_server() -> None:
    """auto picks gunicorn on POSIX (where it is installed); names are honoured as given."""
    assert pick_server("waitress") == "waitress"
    assert pick_server("auto") in ("gunicorn", "waitress")


# ---- the app -----------------------------------------------------------------------------
def test_ui_round_trip_upload_tree_basket_download(net: ClientNet) -> None:
    """Upload into a folder, see it in the tree, fetch the folder through the basket."""
    app = make_app(net)
    c = app.test_client()
    tok = signup(c)
    data = bytes(range(256)) * 1000
    job = upload(c, tok, "/docs/x", "a.bin", data)
    assert job["state"] == "done" and job["files"][0]["path"] == "/docs/x/a.bin"
    page = c.get("/files").get_data(as_text=True)
    assert 'data-path="/docs/x/a.bin"' in page and "250.0 KiB" in page
    assert c.post("/basket/add", data={"csrf_token": tok, "path": "/docs",
                                       "kind": "folder"}).status_code == 303
    r = c.post("/basket/download", data={"csrf_token": tok})
    job = wait_job(c, r.headers["Location"].rsplit("/", 1)[1])
    own = net.client(0).user_record("alice").user_id  # each user's own directory
    landed = net.dirs[0].download_dir / own / "docs" / "x" / "a.bin"
    assert job["state"] == "done" and job["files"][0]["local_path"] == str(landed)
    assert landed.read_bytes() == data
    assert list((net.dirs[0].root / "tmp" / "ui-uploads").iterdir()) == []


def test_ui_post_without_csrf_token_changes_nothing(net: ClientNet) -> None:
    """Every state-changing form is refused (403) without the page's token."""
    c = make_app(net).test_client()
    tok = signup(c)
    for path, data in [("/basket/add", {"path": "/a", "kind": "file"}), ("/logout", {}),
                       ("/welcome", {"user_name": "bob", "passphrase": PASS, "confirm": PASS}),
                       ("/passphrase", {"current": PASS, "new": PASS + "2",
                                        "confirm": PASS + "2"})]:
        r = c.post(path, data=data)
        assert r.status_code == 403, path
        r = c.post(path, data={**data, "csrf_token": tok[:-2] + "xx"})
        assert r.status_code == 403, path
    assert c.get("/files").status_code == 200  # still logged in: logout was refused
    with pytest.raises(Exception, match="no user"):
        net.client(0).user_record("bob")


def test_ui_pages_need_a_login_and_uploads_are_refused_before_reading(net: ClientNet) -> None:
    """Without a session, pages redirect to login and POSTs are 401 before any body is read."""
    app = make_app(net)
    c = app.test_client()
    r = c.get("/files")
    assert r.status_code == 303 and r.headers["Location"].startswith("/login?next=/files")
    tok = token(c)
    r = c.post("/upload", data={"csrf_token": tok, "folder": "/",
                                "files": (io.BytesIO(b"x" * 100_000), "a.bin")})
    assert r.status_code == 401
    assert list((net.dirs[0].root / "tmp" / "ui-uploads").iterdir()) == []


def test_ui_error_pages_name_the_problem(net: ClientNet) -> None:
    """Wrong passphrase, unknown user and mismatched confirmation each get a precise answer."""
    c = make_app(net).test_client()
    signup(c)
    c2 = make_app(net).test_client()
    tok = token(c2)
    r = c2.post("/login", data={"csrf_token": tok, "user_name": "alice", "passphrase": "nope"})
    assert r.status_code == 401 and "Wrong passphrase" in r.text
    r = c2.post("/login", data={"csrf_token": tok, "user_name": "zed", "passphrase": "nope"})
    assert r.status_code == 404 and "Unknown user" in r.text
    r = c2.post("/welcome", data={"csrf_token": tok, "user_name": "bob", "passphrase": PASS,
                                  "confirm": PASS + "x"})
    assert r.status_code == 400 and "differ" in r.text
    r = c2.post("/welcome", data={"csrf_token": tok, "user_name": "bob", "passphrase": "short",
                                  "confirm": "short"})
    assert r.status_code == 400 and "at least 8" in r.text


def test_ui_session_expires_when_idle(net: ClientNet) -> None:
    """After the idle timeout the session is gone and the user is sent to log in again."""
    c = make_app(net, idle_timeout_s=60.0, max_age_s=3600.0).test_client()
    signup(c)
    assert c.get("/files").status_code == 200
    net.clock.advance_ms(61_000)
    r = c.get("/files")
    assert r.status_code == 303 and "notice=expired" in r.headers["Location"]


def test_ui_rotation_logs_out_and_new_passphrase_works(net: ClientNet) -> None:
    """After rotation every session ends; the old passphrase fails and the new one works."""
    app = make_app(net)
    c = app.test_client()
    tok = signup(c)
    new = "another fine passphrase"
    r = c.post("/passphrase", data={"csrf_token": tok, "current": PASS, "new": new,
                                    "confirm": new})
    assert r.status_code == 303 and r.headers["Location"] == "/login?notice=rotated"
    assert c.get("/files").status_code == 303
    r = c.post("/login", data={"csrf_token": tok, "user_name": "alice", "passphrase": PASS})
    assert r.status_code == 401
    r = c.post("/login", data={"csrf_token": tok, "user_name": "alice", "passphrase": new})
    assert r.status_code == 303


def test_ui_other_user_sees_nothing_of_alice(net: ClientNet) -> None:
    """Bob's tree is empty, alice's jobs are unknown to him and he can't basket her paths."""
    app = make_app(net)
    alice, bob = app.test_client(), app.test_client()
    tok_a = signup(alice, "alice")
    job = upload(alice, tok_a, "/secret", "plan.txt", b"plan")
    tok_b = signup(bob, "bob", "bob's own passphrase")
    assert "plan.txt" not in bob.get("/files").get_data(as_text=True)
    assert bob.get(f"/api/jobs/{job['id']}").status_code == 404
    r = bob.post("/basket/add", data={"csrf_token": tok_b, "path": "/secret/plan.txt",
                                      "kind": "file"})
    assert r.status_code == 404


def test_ui_upload_limits(net: ClientNet) -> None:
    """Over the size limit is 413; a name with a path separator is refused; no temp is left."""
    c = make_app(net, max_upload_bytes=10_000).test_client()
    tok = signup(c)
    r = c.post("/upload", data={"csrf_token": tok, "folder": "/",
                                "files": (io.BytesIO(b"x" * 2_000_000), "big.bin")},
               headers={"Accept": "application/json"})
    assert r.status_code == 413
    r = c.post("/upload", data={"csrf_token": tok, "folder": "/",
                                "files": (io.BytesIO(b"x"), "../evil.txt")},
               headers={"Accept": "application/json"})
    assert r.status_code == 400
    r = c.post("/upload", data={"csrf_token": tok, "folder": "/../etc",
                                "files": (io.BytesIO(b"x"), "ok.txt")},
               headers={"Accept": "application/json"})
    assert r.status_code == 400
    assert list((net.dirs[0].root / "tmp" / "ui-uploads").iterdir()) == []


def test_ui_refuses_foreign_host_and_sets_safe_headers(net: ClientNet) -> None:
    """A non-loopback Host (DNS rebinding) is refused; pages carry CSP and no-store."""
    c = make_app(net).test_client()
    assert c.get("/login", headers={"Host": "evil.example"}).status_code == 400
    r = c.get("/login")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Frame-Options"] == "DENY"


def test_ui_cookies_are_secure_behind_tls(net: ClientNet) -> None:
    """With secure_cookies, both cookies are __Host- prefixed, Secure, HttpOnly, Strict."""
    c = make_app(net, secure_cookies=True).test_client()
    r = c.get("/welcome", base_url="https://127.0.0.1")
    header = r.headers.getlist("Set-Cookie")[0]
    assert header.startswith("__Host-mydrive-csrf=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in header
    plain = make_app(net).test_client().get("/welcome").headers.getlist("Set-Cookie")[0]
    assert plain.startswith("mydrive-csrf=") and "Secure" not in plain


def test_problem_table_names_every_error_class() -> None:
    """Every MydriveError class the product raises has its own UI problem, not the 500."""
    import mydrive.errors as errors_module
    from mydrive.ui.problems import INTERNAL, problem_for

    classes = [c for c in vars(errors_module).values()
               if isinstance(c, type) and issubclass(c, errors_module.MydriveError)
               and c is not errors_module.MydriveError]
    unmapped = [c.__name__ for c in classes if problem_for(c.__new__(c)) is INTERNAL]
    assert unmapped == []
    assert problem_for(errors_module.MisbehavingPeer("x")).kind == "peers-misbehaving"
