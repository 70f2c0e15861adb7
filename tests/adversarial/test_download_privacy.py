"""Downloads of one peer's users stay apart, and private on disk.

Several people use one peer (its UI, its receiver's download jobs). Each user's downloads
land in ``<download dir>/<user id>/``: a directory of their own, 0700, named by id so user
names don't show on disk; the plaintext files are created 0600, already while being written
(a ``.part`` file another OS account could open at 0644 would leak as much as the result).
Windows has no such modes: there only the separation is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mydrive.node.jobs_control import ControlClient, submit_get
from mydrive.node.jobs_service import start_job_service
from mydrive.runtime.private_files import create_private, user_download_dir
from tests.clientnet import client_net
from tests.strategies import random_file
from tests.unit.test_ui import make_app, signup, upload, wait_job

POSIX = os.name == "posix"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask():
    """The widest umask a user might have: whatever the code relies on must not be it."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_cli_downloads_of_two_users_land_apart_and_private(tmp_path: Path,
                                                            loose_umask: None) -> None:
    net = client_net(tmp_path / "net", 4)
    c = net.client()
    c.create_user("alice", "alice passphrase")
    c.create_user("bob", "bob passphrase")
    alice, bob = c.login("alice", "alice passphrase"), c.login("bob", "bob passphrase")
    src = random_file(tmp_path / "same.bin", 150_000)
    c.put(alice, src, "/same.bin")
    c.put(bob, random_file(tmp_path / "other.bin", 150_000), "/same.bin")
    modes_while_writing: list[int] = []

    def watch(_: int) -> None:
        partial = [p for p in (net.dirs[0].download_dir).rglob("*.part")]
        modes_while_writing.extend(_mode(p) for p in partial)

    got_a, _ = c.get(alice, "/same.bin", progress=watch)
    got_b, _ = c.get(bob, "/same.bin")  # same name, no clash, no overwrite needed
    base = net.dirs[0].download_dir
    assert got_a == base / alice.user_id / "same.bin"
    assert got_b == base / bob.user_id / "same.bin"
    assert got_a.read_bytes() == src.read_bytes() != got_b.read_bytes()
    assert not any(n in str(p) for p in base.rglob("*") for n in ("alice", "bob"))
    if POSIX:
        assert modes_while_writing and set(modes_while_writing) == {0o600}
        for user in (alice, bob):
            assert _mode(base / user.user_id) == 0o700
        assert _mode(got_a) == _mode(got_b) == 0o600
    c.close()


def test_ui_basket_downloads_land_in_each_users_own_directory(tmp_path: Path,
                                                              loose_umask: None) -> None:
    """Both ways a basket runs: in the UI process, and as a job on the peer's receiver."""
    net = client_net(tmp_path / "net", 4)
    app = make_app(net)
    alice_ui, bob_ui = app.test_client(), app.test_client()
    tok_a, tok_b = signup(alice_ui, "alice"), signup(bob_ui, "bob")
    upload(alice_ui, tok_a, "/", "f.bin", b"a" * 70_000)
    upload(bob_ui, tok_b, "/", "f.bin", b"b" * 70_000)
    ids = {name: net.client().user_record(name).user_id for name in ("alice", "bob")}
    base = net.dirs[0].download_dir

    def basket(client, tok: str) -> Path:
        client.post("/basket/add", data={"csrf_token": tok, "path": "/f.bin", "kind": "file"})
        r = client.post("/basket/download", data={"csrf_token": tok, "overwrite": "on"})
        job = wait_job(client, r.headers["Location"].rsplit("/", 1)[1])
        assert job["state"] == "done", job
        return Path(job["files"][0]["local_path"])

    for run_on in ("ui", "receiver"):
        service = start_job_service(net.dirs[0].root, net.client()) \
            if run_on == "receiver" else None
        try:
            landed_a, landed_b = basket(alice_ui, tok_a), basket(bob_ui, tok_b)
        finally:
            if service is not None:
                service.stop()
        assert landed_a == base / ids["alice"] / "f.bin", run_on
        assert landed_b == base / ids["bob"] / "f.bin", run_on
        assert landed_a.read_bytes() == b"a" * 70_000 and landed_b.read_bytes() == b"b" * 70_000
        if POSIX:
            assert _mode(landed_a) == _mode(landed_b) == 0o600, run_on
            assert _mode(base / ids["alice"]) == _mode(base / ids["bob"]) == 0o700
        page = alice_ui.get("/files").get_data(as_text=True)
        assert str(base / ids["alice"]) in page and ids["bob"] not in page


def test_receiver_job_destination_defaults_to_the_users_directory(tmp_path: Path,
                                                                   loose_umask: None) -> None:
    net = client_net(tmp_path / "net", 4)
    c = net.client()
    c.create_user("carol", "carol passphrase")
    carol = c.login("carol", "carol passphrase")
    c.put(carol, random_file(tmp_path / "c.bin", 90_000), "/c.bin")
    service = start_job_service(net.dirs[0].root, net.client())
    control = ControlClient(net.dirs[0].root)
    try:
        _, destination = submit_get(c, carol, "/c.bin", control)
    finally:
        control.close()
        service.stop()
    assert destination == (net.dirs[0].download_dir / carol.user_id / "c.bin").resolve()
    if POSIX:
        assert _mode(destination.parent) == 0o700


@pytest.mark.skipif(not POSIX, reason="file modes are POSIX")
def test_private_helpers_never_loosen(tmp_path: Path, loose_umask: None) -> None:
    loose = tmp_path / "downloads" / ("0" * 32)
    loose.mkdir(parents=True, mode=0o755)
    assert _mode(user_download_dir(tmp_path / "downloads", "0" * 32)) == 0o700
    target = tmp_path / "x.part"
    target.write_bytes(b"old")
    target.chmod(0o644)
    with create_private(target) as out:
        assert _mode(target) == 0o600  # from the first moment, before a byte is written
        out.write(b"new")
    assert target.read_bytes() == b"new"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    link = tmp_path / "link.part"
    link.symlink_to(elsewhere)
    with create_private(link) as out:  # the link is replaced, never followed
        out.write(b"x")
    assert elsewhere.read_bytes() == b"keep"
    for bad in ("alice", "../" + "0" * 29, "A" * 32):
        with pytest.raises(Exception, match="user id"):
            user_download_dir(tmp_path / "downloads", bad)
