"""Listing a user's files verifies only the tombstones that still hide a document: one per
deletion ever made (until its replicas are all gone) made every ``ls`` check them all."""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.formats.tombstone import Tombstone
from mydrive.metadata import trusted
from mydrive.metadata.signed import sign_document
from tests.clientnet import client_net
from tests.strategies import random_file


def _alice(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = client_net(tmp_path / "net").client()
    c.create_user("alice", "pw")
    return c, c.login("alice", "pw")


def _count_tomb_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    real = trusted.verify_tomb

    def counting(doc_id, doc, **kw):  # type: ignore[no-untyped-def]
        checked.append(doc_id)
        return real(doc_id, doc, **kw)

    monkeypatch.setattr(trusted, "verify_tomb", counting)
    return checked


def test_ls_checks_no_tombstone_of_a_document_already_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c, a = _alice(tmp_path)
    c.put(a, random_file(tmp_path / "keep.bin", 3_000), "/keep.bin")
    for i in range(5):
        c.put(a, random_file(tmp_path / f"{i}.bin", 3_000), f"/{i}.bin")
        c.remove(a, f"/{i}.bin")
    checked = _count_tomb_checks(monkeypatch)
    assert [e.path for e in c.list_files(a)] == ["/keep.bin"]
    assert checked == []


def test_ls_still_honours_a_tombstone_whose_document_came_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica that puts a removed file's document back (as replication of an old revision
    would): its owner's tombstone is checked and keeps it gone; one signed by another key is
    checked and does not hide a live file."""
    c, a = _alice(tmp_path)
    gone = c.put(a, random_file(tmp_path / "gone.bin", 3_000), "/gone.bin")
    live = c.put(a, random_file(tmp_path / "live.bin", 3_000), "/live.bin")
    old_doc = c.store.get(gone.doc_id)
    c.remove(a, "/gone.bin")
    c.store.put(gone.doc_id, old_doc)
    c.create_user("mallory", "evil")
    m = c.login("mallory", "evil")
    forged = Tombstone.for_record(live, 0)
    c.store.put(forged.doc_id, sign_document(forged.doc_id, forged.to_doc(), m.identity))
    checked = _count_tomb_checks(monkeypatch)
    assert [e.path for e in c.list_files(a)] == ["/live.bin"]
    assert sorted(checked) == sorted([Tombstone.for_record(gone, 0).doc_id, forged.doc_id])
