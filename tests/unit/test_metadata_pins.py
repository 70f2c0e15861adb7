"""This peer's pins (mydrive.metadata.pins): the one reading the guard, gc and the CouchDB
store's conflict resolution share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mydrive.engine.gc import bury
from mydrive.metadata.signed import verified_key
from tests.clientnet import client_net
from tests.strategies import random_file


def _buried(tmp_path: Path):
    """alice's /dead.bin buried (tombstone and its pin written, file document gone) but not
    collected yet; /live.bin stays."""
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    a = c.login("alice", "alice passphrase")
    dead = c.put(a, random_file(tmp_path / "dead.bin", 60_000), "/dead.bin")
    live = c.put(a, random_file(tmp_path / "live.bin", 60_000), "/live.bin")
    tomb = bury(c.store, a, dead, net.clock.now_ms())
    return net, c, a, dead, live, tomb


def test_gc_acts_on_the_pinned_tombstone_when_a_replica_tampered_with_it(
        tmp_path: Path) -> None:
    """A replica rewrote the pending list of alice's tombstone without her signature: the
    pass uses this peer's pin (the guard's reading) and removes exactly the dead file's
    chunks."""
    net, c, a, dead, live, tomb = _buried(tmp_path)
    doc = c.store.get(tomb.doc_id)
    doc["pending"] = {p: [ch.chunk_id.hex() for ch in live.chunks] for p in tomb.pending}
    c.store.put(tomb.doc_id, doc)
    report = c.collect_garbage(a)
    assert report.errors == [] and report.tombstones_done == 1
    assert all(net.holders(ch.chunk_id) == set() for ch in dead.chunks)
    assert all(net.holders(ch.chunk_id) for ch in live.chunks)


def test_gc_drops_a_pin_that_no_longer_verifies_as_the_guard_does(tmp_path: Path) -> None:
    """Both the stored tombstone and the pin damaged: nothing is deleted, the error is
    reported, and the broken pin is dropped (the guard pins the next valid revision)."""
    net, c, a, dead, live, tomb = _buried(tmp_path)
    for write, read in ((c.store.put, c.store.get),
                        (lambda k, d: c.store.put_local(verified_key(k), d),
                         lambda k: c.store.get_local(verified_key(k)))):
        doc = read(tomb.doc_id)
        doc["created_ms"] += 1
        write(tomb.doc_id, doc)
    report = c.collect_garbage(a)
    assert len(report.errors) == 1 and "ignored" in report.errors[0]
    assert all(net.holders(ch.chunk_id) for ch in dead.chunks)
    assert c.store.get_local(verified_key(tomb.doc_id)) is None


def test_the_couchdb_store_does_not_depend_on_the_guard() -> None:
    """The store moves a pin forward before deleting a conflict's losers (pins.py); the
    guard's policy, which uses the store, is not imported by it."""
    code = ("import sys, mydrive.metadata.couchdb; "
            "sys.exit('mydrive.metadata.guard' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
