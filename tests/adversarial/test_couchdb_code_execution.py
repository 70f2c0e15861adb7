"""A dishonest member tries to run code on other peers through CouchDB (issue 11).

Real network: three peers with TLS and CouchDB metadata (pouchdb-server, whose design
functions run in Node with the server's rights). Peer 2 is the attacker and uses only what
is on its own disk (its peer.json with its own server's admin password, its certificate) and
the network protocols. Its payload writes a marker file named after the server that ran it;
each test first shows the payload does run where nothing stops it (on the attacker's own
server, as its admin), then that it never runs on the victims.
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.node.pki import tls_files
from tests.integration.conftest import LocalNetwork, start_network

pytestmark = pytest.mark.integration
ATTACKER = 2
VICTIMS = (0, 1)


def payload(marker_dir: Path) -> str:
    """JavaScript that, run by a pouchdb-server, writes marker_dir/ran-on-<its port>."""
    # Node's vm is no sandbox: the global object's constructor leads back to the host.
    return ("var p = globalThis.constructor.constructor('return process')(); "
            "var fs = p.getBuiltinModule ? p.getBuiltinModule('fs') : "
            "p.mainModule.require('fs'); "
            "var port = p.argv.join(' ').match(/-p (\\d+)/)[1]; "
            f"fs.writeFileSync({json.dumps(str(marker_dir))} + '/ran-on-' + port, 'pwned');")


def ran_on(marker_dir: Path) -> set[int]:
    return {int(p.name.removeprefix("ran-on-")) for p in marker_dir.glob("ran-on-*")}


def wait_for(what: str, check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    home = tmp_path_factory.mktemp("couch-attack") / "net"
    network = start_network(home, 3, tls=True, metadata="couchdb", replicas=1)
    try:
        yield network
    finally:
        cluster.stop(home, hard=True)


def peer(net: LocalNetwork, i: int) -> PeerDir:
    return PeerDir(net.peer_dir(i))


def own_server(net: LocalNetwork) -> httpx.Client:
    """The attacker's own CouchDB, as its admin (the password is in its own peer.json)."""
    c = peer(net, ATTACKER).config
    return httpx.Client(base_url=c.couchdb_url, auth=(c.couchdb_user, c.couchdb_password),
                        headers={"Accept": "application/json"}, timeout=10)


def through_nginx(net: LocalNetwork, victim: int) -> httpx.Client:
    """The victim's nginx, presenting the attacker's own (valid) network certificate."""
    files = tls_files(peer(net, ATTACKER).tls_dir)
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    context.load_cert_chain(str(files.cert), str(files.key))
    c = peer(net, victim).config
    return httpx.Client(base_url=f"https://{c.host}:{c.nginx_port}", verify=context,
                        timeout=10)


def test_design_document_payload_never_runs_on_victims(net: LocalNetwork,
                                                        tmp_path: Path) -> None:
    """A validate_doc_update the attacker writes into its own database runs there on the
    next write, but never reaches a victim's database nor runs on a victim's server."""
    markers = tmp_path / "markers"
    markers.mkdir()
    evil = {"validate_doc_update": f"function (newDoc, oldDoc, userCtx) {{ {payload(markers)} }}"}
    attacker_port = peer(net, ATTACKER).config.couchdb_port
    with own_server(net) as own:
        assert own.put("/mydrive/_design/evil", json=evil).status_code == 201
        # The attacker's next write (any) runs it: the payload works.
        assert own.put("/mydrive/file:after-evil", json={"type": "file"}).status_code in (
            201, 202)
    assert ran_on(markers) == {attacker_port}, "the payload does not work: test proves nothing"

    for i in VICTIMS:  # the document written after the design document reached the victims
        store = peer(net, i).open_metadata()
        try:
            wait_for(f"peer {i} pulls from the attacker",
                     lambda s=store: s.request("GET", "/mydrive/file:after-evil",
                                               ok=(200, 404)).status_code == 200)
        finally:
            store.close()
    net.mydrive("user", "create", peer=0)  # victims write: a present VDU would run now
    time.sleep(2.0)
    for i in VICTIMS:
        store = peer(net, i).open_metadata()
        try:
            ddoc = store.request("GET", "/mydrive/_design/evil", ok=(200, 404))
            assert ddoc.status_code == 404, f"the design document reached peer {i}"
        finally:
            store.close()
    assert ran_on(markers) == {attacker_port}, "the payload ran on a victim's server"


def test_temp_view_and_admin_endpoints_refused_at_victim_nginx(net: LocalNetwork,
                                                               tmp_path: Path) -> None:
    """_temp_view with a payload runs on the attacker's own server, but through a victim's
    nginx it and every other code-running, admin or write endpoint is refused."""
    markers = tmp_path / "markers"
    markers.mkdir()
    view = {"map": f"function (doc) {{ {payload(markers)} emit(1, 1); }}"}
    attacker_port = peer(net, ATTACKER).config.couchdb_port
    with own_server(net) as own:
        own.put("/mydrive/file:some-doc", json={"type": "file"})
        own.post("/mydrive/_temp_view", json=view)
    assert ran_on(markers) == {attacker_port}, "the payload does not work: test proves nothing"

    guessed = ("Authorization", "Basic bXlkcml2ZS1hZG1pbjpndWVzcw==")  # any admin guess
    attempts = [
        ("POST", "/couchdb/mydrive/_temp_view", view),
        ("PUT", "/couchdb/mydrive/_design/evil", {"validate_doc_update": "function(){}"}),
        ("GET", "/couchdb/mydrive/_design/evil/_view/v", None),
        ("GET", "/couchdb/mydrive/_design%2Fevil", None),
        ("GET", "/couchdb/mydrive/_design/evil/_show/s/file:x", None),
        ("POST", "/couchdb/mydrive/_design/evil/_update/u", {}),
        ("GET", "/couchdb/mydrive/_changes?filter=_view&view=evil/v", None),
        ("GET", "/couchdb/mydrive/_changes?filter=evil/f", None),
        ("GET", "/couchdb/mydrive/_changes?fil%74er=evil/f", None),
        ("POST", "/couchdb/mydrive/_changes?filter=_selector",
         {"selector": {"_id": {"$regex": "(a+)+$"}}}),
        ("POST", "/couchdb/mydrive/_find", {"selector": {}}),
        ("PUT", "/couchdb/mydrive/file:planted", {"type": "file"}),
        ("DELETE", "/couchdb/mydrive/user:alice", None),
        ("POST", "/couchdb/mydrive/_bulk_docs", {"docs": [{"_id": "file:planted"}]}),
        ("PUT", "/couchdb/mydrive/_local/x", {"a": 1}),
        ("PUT", "/couchdb/mydrive/_security", {}),
        ("GET", "/couchdb/_config", None),
        ("PUT", "/couchdb/_config/admins/evil", "pw"),
        ("GET", "/couchdb/_all_dbs", None),
        ("GET", "/couchdb/_users/_all_docs", None),
        ("PUT", "/couchdb/_replicator/evil", {"source": "x", "target": "y"}),
        ("GET", "/couchdb/mydrive/../_config", None),
        ("PUT", "/couchdb/evil", None),
        ("DELETE", "/couchdb/mydrive", None),
    ]
    for victim in VICTIMS:
        with through_nginx(net, victim) as http:
            assert http.get("/couchdb/mydrive/").status_code == 200  # the pull reads work
            for method, path, body in attempts:
                for headers in ({}, dict([guessed])):
                    r = http.request(method, path, headers=headers,
                                     content=None if body is None else json.dumps(body))
                    assert r.status_code in (400, 403, 404, 405), (victim, method, path,
                                                                  r.status_code, r.text[:200])
        store = peer(net, victim).open_metadata()
        try:
            assert store.request("GET", "/mydrive/file:planted", ok=(200, 404)).status_code \
                == 404
        finally:
            store.close()
    assert ran_on(markers) == {attacker_port}, "the payload ran on a victim's server"


def test_design_and_foreign_documents_deleted_on_arrival(net: LocalNetwork) -> None:
    """A design document that exists on a victim anyway (an admin's hand) is deleted by the
    replication supervisor, and documents of kinds mydrive never writes that a dishonest
    source sends are deleted as they arrive."""
    with own_server(net) as own:
        assert own.put("/mydrive/junk", json={"x": 1}).status_code == 201
        assert own.put("/mydrive/evil:1", json={"x": 1}).status_code == 201
    victim = peer(net, 0).open_metadata()
    try:
        victim.request("PUT", "/mydrive/_design/leftover",
                       body={"validate_doc_update": "function () {}"}, ok=(201, 202))

        def clean() -> bool:
            ids = [r["id"] for r in victim.request(
                "GET", "/mydrive/_all_docs").json()["rows"]]
            return not any(i.startswith("_design/") or i in ("junk", "evil:1") for i in ids)

        wait_for("foreign documents deleted on the victim", clean)
        log = (net.peer_dir(0) / "logs" / "receiver.log").read_text()
        assert "deleted '_design/leftover'" in log
    finally:
        victim.close()


def test_secrets_are_per_peer_and_private(net: LocalNetwork) -> None:
    """No two peers share a CouchDB password; peer.json, keys and nginx.conf are 0600; the
    attacker's own secrets don't open a victim's server."""
    configs = [peer(net, i).config for i in range(3)]
    secrets = [c.couchdb_password for c in configs] + [c.couchdb_member_password
                                                       for c in configs]
    assert all(secrets) and len(set(secrets)) == len(secrets)
    if os.name == "posix":
        for i in range(3):
            for rel in ("peer.json", "tls/peer.key", "nginx/nginx.conf"):
                mode = (net.peer_dir(i) / rel).stat().st_mode & 0o777
                assert mode == 0o600, (i, rel, oct(mode))
    attacker = configs[ATTACKER]
    for i in VICTIMS:
        for user, password in ((attacker.couchdb_user, attacker.couchdb_password),
                               (attacker.couchdb_member_user,
                                attacker.couchdb_member_password)):
            r = httpx.get(f"{configs[i].couchdb_url}/mydrive", auth=(user, password),
                          timeout=10)
            assert r.status_code == 401, (i, user, r.status_code)
