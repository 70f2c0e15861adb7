"""The UI's basket downloads on the peer's receiver: they outlive the UI process."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from mydrive.node.jobs_service import start_job_service
from tests.clientnet import ClientNet, client_net
from tests.unit.test_ui import make_app, signup, token, upload, wait_job


@pytest.fixture
def net(tmp_path: Path) -> ClientNet:
    return client_net(tmp_path, 5)


def test_ui_basket_runs_on_receiver_and_survives_ui_restart(net: ClientNet) -> None:
    """With a receiver running jobs, a basket download is its job; a new UI shows it done."""
    service = start_job_service(net.dirs[0].root, net.client(0))
    try:
        app = make_app(net)
        c = app.test_client()
        tok = signup(c)
        data = bytes(range(256)) * 900
        assert upload(c, tok, "/docs", "a.bin", data)["state"] == "done"
        assert c.post("/basket/add", data={"csrf_token": tok, "path": "/docs/a.bin",
                                           "kind": "file"}).status_code == 303
        r = c.post("/basket/download", data={"csrf_token": tok})
        group = r.headers["Location"].rsplit("/", 1)[1]
        assert [j.group for j in service.store.list()] == [group]
        job = wait_job(c, group)
        own = net.client(0).user_record("alice").user_id  # each user's own directory
        landed = net.dirs[0].download_dir / own / "docs" / "a.bin"
        assert job["state"] == "done" and job["files"][0]["local_path"] == str(landed)
        assert landed.read_bytes() == data

        # A new UI process (its JobBoard empty) still shows the basket's job, to its user only.
        c2 = make_app(net).test_client()
        c2.post("/login", data={"csrf_token": token(c2), "user_name": "alice",
                                "passphrase": "correct horse battery staple"})
        again = c2.get(f"/api/jobs/{group}").get_json()
        assert again["state"] == "done" and again["files"][0]["path"] == "/docs/a.bin"
        assert f'href="/jobs/{group}"' in c2.get("/files").get_data(as_text=True)
        c3 = make_app(net).test_client()
        signup(c3, name="bob")
        assert c3.get(f"/api/jobs/{group}").status_code == 404
    finally:
        service.stop()



def test_ui_upload_runs_on_sender_signed_by_the_ui_and_shown_after_restart(
        net: ClientNet) -> None:
    """With a sender running jobs, an upload form is its job: the UI signs the file
    document with the session's keys when the job page looks; a new UI process shows the
    same job; the handed-over temporary file is gone once stored."""
    from mydrive.node.jobs_store import AWAITING_SIGNATURE

    root = net.dirs[0].root
    sender = start_job_service(root, net.client(0), kind="upload")
    try:
        app = make_app(net)
        c = app.test_client()
        tok = signup(c)
        data = bytes(range(256)) * 1200
        r = c.post("/upload", data={"csrf_token": tok, "folder": "/docs",
                                    "files": (io.BytesIO(data), "u.bin")},
                   headers={"Accept": "application/json"})
        group = r.get_json()["job"]
        (job,) = sender.store.list()
        assert (job.kind, job.group) == ("upload", group)
        deadline = time.monotonic() + 30
        while sender.store.get(job.job_id).state not in (AWAITING_SIGNATURE, "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sender.store.get(job.job_id).state == AWAITING_SIGNATURE
        assert not list((root / "tmp" / "ui-uploads").glob("job-*")), "source not removed"

        # A new UI process: after login, the job page signs the document and shows it done.
        c2 = make_app(net).test_client()
        c2.post("/login", data={"csrf_token": token(c2), "user_name": "alice",
                                "passphrase": "correct horse battery staple"})
        done = wait_job(c2, group)
        assert done["state"] == "done" and done["kind"] == "upload", done
        assert done["files"][0]["path"] == "/docs/u.bin"
        client = net.client(0)
        keys = client.login("alice", "correct horse battery staple")
        out, _ = client.get(keys, "/docs/u.bin", out_dir=root / "check")
        assert out.read_bytes() == data
    finally:
        sender.stop()
