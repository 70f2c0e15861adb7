"""The UI's basket downloads on the peer's receiver: they outlive the UI process."""

from __future__ import annotations

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

