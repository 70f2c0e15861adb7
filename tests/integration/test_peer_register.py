"""`mydrive peer doc` / `peer register` as the compose files use them (docs/deploy.md):
credentials from MYDRIVE_COUCHDB_USER/PASSWORD, waiting for the server, bad documents refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mydrive.node.peerdir import free_port
from tests.couchfix import PouchServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def mydrive(*args: str, cwd: Path, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mydrive", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120, input=stdin,
                          env={**os.environ, **(env or {})})


def make_peer(tmp: Path, name: str, host: str, couch_port: int) -> Path:
    r = mydrive("peer", "init", name, "--network", "pki", "--host", host, "--metadata",
                "couchdb", "--couchdb-port", str(couch_port), "--peer-port", "7443",
                "--ui-port", "7444", cwd=tmp)
    assert r.returncode == 0, r.stderr
    config = json.loads((tmp / name / "peer.json").read_text())
    # Its own secrets, never shared (containers replace the admin's from their env file).
    assert config["couchdb_password"] and config["couchdb_member_password"]
    if os.name == "posix":
        assert (tmp / name / "peer.json").stat().st_mode & 0o077 == 0
    return tmp / name


def test_peer_register_introduces_peers_with_env_credentials(tmp_path: Path) -> None:
    """register waits for the server, creates _replicator, records itself and the other
    peer's exported document, with credentials only from the environment."""
    assert mydrive("pki", "init", "pki", cwd=tmp_path).returncode == 0
    server = PouchServer(tmp_path / "couch", port=free_port())
    (tmp_path / "couch").mkdir()
    alpha = make_peer(tmp_path, "alpha", "alpha.example", server.port)
    beta = make_peer(tmp_path, "beta", "beta.example", free_port())
    beta_doc = tmp_path / "beta.peer.json"
    exported = mydrive("peer", "doc", str(beta), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    beta_doc.write_text(exported.stdout)
    env = {"MYDRIVE_COUCHDB_USER": server.user, "MYDRIVE_COUCHDB_PASSWORD": server.password}

    not_up = mydrive("peer", "register", str(alpha), cwd=tmp_path)  # server not up yet
    assert not_up.returncode != 0 and "unreachable" in not_up.stderr

    starter = threading.Timer(2.0, server.start)  # the server comes up while register waits
    starter.start()
    try:
        t0 = time.monotonic()
        r = mydrive("peer", "register", str(alpha), str(beta_doc), "--wait-s", "60",
                    cwd=tmp_path, env=env)
        starter.join()
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 >= 2.0
        store = server.store()
        try:
            ids = sorted(doc_id for doc_id, _ in store.list_prefix("peer:"))
            beta_id = json.loads(beta_doc.read_text())["peer_id"]
            assert f"peer:{beta_id}" in ids and len(ids) == 2
            assert store.get(f"peer:{beta_id}")["couchdb_url"] == "https://beta.example:7443/couchdb"
            replicator = store.request("GET", "/_replicator", ok=(200, 404))
            assert replicator.status_code == 200
        finally:
            store.close()
        wrong = mydrive("peer", "register", str(alpha), cwd=tmp_path,
                        env={**env, "MYDRIVE_COUCHDB_PASSWORD": "pw-Zq81x"})
        assert wrong.returncode != 0 and "refused the credentials" in wrong.stderr
        assert "pw-Zq81x" not in wrong.stderr + wrong.stdout  # never echoes the password
    finally:
        server.stop()


@pytest.mark.parametrize("doc,needle", [
    ({"type": "user"}, "not a peer document"),
    ({"type": "peer", "peer_id": "../x", "receiver_address": "a:1", "sender_address": "a:1"},
     "peer_id must be 16 hex digits"),
    ({"type": "peer", "peer_id": "0123456789abcdef", "receiver_address": "a b:1",
      "sender_address": "a:1"}, "receiver_address must be host:port"),
    ({"type": "peer", "peer_id": "0123456789abcdef", "receiver_address": "a:1",
      "sender_address": "a:1", "couchdb_url": "https://u:p@a:1/couchdb"},
     "without credentials"),
])
def test_peer_register_refuses_bad_documents(tmp_path: Path, doc: dict[str, object],
                                             needle: str) -> None:
    """A malformed peer document is refused with the field named; nothing is written."""
    assert mydrive("peer", "init", "p", cwd=tmp_path).returncode == 0  # SQLite metadata
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    before = (tmp_path / "p" / "metadata.sqlite3").read_bytes()
    r = mydrive("peer", "register", "p", str(path), cwd=tmp_path)
    assert r.returncode != 0 and needle in r.stderr, r.stderr
    assert (tmp_path / "p" / "metadata.sqlite3").read_bytes() == before


def test_peer_register_refuses_forged_documents_on_tls_peer(tmp_path: Path) -> None:
    """On a TLS peer, register accepts a document only if signed by its certificate key, the
    network CA issued that certificate and the id is that key's; nothing is written else."""
    assert mydrive("pki", "init", "pki", cwd=tmp_path).returncode == 0
    assert mydrive("pki", "init", "other-pki", cwd=tmp_path).returncode == 0
    for name, pki in (("alpha", "pki"), ("beta", "pki"), ("mallory", "other-pki")):
        r = mydrive("peer", "init", name, "--network", pki, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    beta = json.loads(mydrive("peer", "doc", "beta", cwd=tmp_path).stdout)
    mallory = json.loads(mydrive("peer", "doc", "mallory", cwd=tmp_path).stdout)
    unsigned = {k: v for k, v in beta.items() if k not in ("signature", "certificate")}
    forged = [
        ({**beta, "receiver_address": "evil.example:7443"}, "signature does not verify"),
        ({**beta, "peer_id": mallory["peer_id"]}, "not its certificate key"),
        (mallory, "not issued by the network CA"),
        (unsigned, "unsigned document"),
    ]
    before = (tmp_path / "alpha" / "metadata.sqlite3").read_bytes()
    for doc, needle in forged:
        path = tmp_path / "forged.json"
        path.write_text(json.dumps(doc))
        r = mydrive("peer", "register", "alpha", str(path), cwd=tmp_path)
        assert r.returncode == 6 and needle in r.stderr, (needle, r.stderr)
        assert (tmp_path / "alpha" / "metadata.sqlite3").read_bytes() == before
    good = tmp_path / "beta.json"
    good.write_text(json.dumps(beta))
    r = mydrive("peer", "register", "alpha", str(good), cwd=tmp_path)
    assert r.returncode == 0, r.stderr  # the control: the genuine document is accepted
