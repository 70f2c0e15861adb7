"""One contract for every metadata backend: SQLite and a real CouchDB-protocol server.

The CouchDB side runs pouchdb-server (installed by scripts/install-pouchdb.sh) on a free
loopback port; each test gets a fresh database on it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mydrive.errors import BadRequest, Conflict, TooLarge
from mydrive.metadata.base import MAX_DOCUMENT_BYTES, Document, MetadataStore
from mydrive.metadata.sqlite import SqliteStore
from tests.couchfix import PouchServer

Opener = Callable[[], MetadataStore]


@pytest.fixture(params=["sqlite", "couchdb"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new handle on one backend's storage (the same storage on every call)."""
    opened: list[MetadataStore] = []
    if request.param == "sqlite":
        def make() -> MetadataStore:
            opened.append(SqliteStore(tmp_path / "metadata.sqlite3"))
            return opened[-1]
    else:
        server: PouchServer = request.getfixturevalue("pouch")
        db = "contract-" + uuid.uuid4().hex[:12]

        def make() -> MetadataStore:
            # A small page so listing crosses page boundaries in these tests.
            opened.append(server.store(db, list_page_docs=7))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> MetadataStore:
    return opener()


DOC: Document = {"type": "file", "version": 1, "nested": {"list": [1, 2.5, None, True]},
                 "text": "naïve ☃ \u00e9", "big": 2**53 - 1}


def test_store_get_missing_is_none(store: MetadataStore) -> None:
    """A document never written reads as None."""
    assert store.get("user:nobody") is None


def test_store_put_then_get_round_trips(store: MetadataStore) -> None:
    """What was put comes back equal, with no store-specific keys added."""
    store.put("file:abc", DOC)
    assert store.get("file:abc") == DOC


def test_store_put_overwrites_whole_document(store: MetadataStore) -> None:
    """A second put replaces the document; no keys of the first survive."""
    store.put("user:a", {"x": 1, "y": 2})
    store.put("user:a", {"x": 3})
    assert store.get("user:a") == {"x": 3}


def test_store_create_only_refuses_existing(store: MetadataStore) -> None:
    """create_only on an existing document raises Conflict and changes nothing."""
    store.put("user:a", {"v": 1}, create_only=True)
    with pytest.raises(Conflict):
        store.put("user:a", {"v": 2}, create_only=True)
    assert store.get("user:a") == {"v": 1}


def test_store_create_only_after_delete_succeeds(store: MetadataStore) -> None:
    """A deleted document can be created again."""
    store.put("user:a", {"v": 1})
    assert store.delete("user:a") is True
    store.put("user:a", {"v": 2}, create_only=True)
    assert store.get("user:a") == {"v": 2}


def test_store_delete_reports_existence(store: MetadataStore) -> None:
    """delete is True once for an existing document, then False; the document is gone."""
    store.put("peer:p1", {"v": 1})
    assert store.delete("peer:p1") is True
    assert store.delete("peer:p1") is False
    assert store.get("peer:p1") is None
    assert store.delete("peer:never") is False


def test_store_list_prefix_exact_and_ordered(store: MetadataStore) -> None:
    """list_prefix returns exactly the ids starting with the prefix, ordered by id."""
    ids = [f"file:{i:03d}" for i in range(20)] + ["filex:1", "fil:2", "user:file:3", "peer:z"]
    for n, doc_id in enumerate(reversed(ids)):
        store.put(doc_id, {"n": n})
    store.delete("file:007")
    listed = store.list_prefix("file:")
    assert [i for i, _ in listed] == [f"file:{i:03d}" for i in range(20) if i != 7]
    assert all(doc == {"n": len(ids) - 1 - ids.index(i)} for i, doc in listed)
    assert store.list_prefix("nothing:") == []
    assert [i for i, _ in store.list_prefix("peer:")] == ["peer:z"]


@pytest.mark.parametrize("bad_id", ["", "nocolon", "_design:x", "x" * 600 + ":y"])
def test_store_rejects_bad_ids(store: MetadataStore, bad_id: str) -> None:
    """A malformed document id is BadRequest on put, before anything is written."""
    with pytest.raises(BadRequest):
        store.put(bad_id, {"v": 1})


def test_store_rejects_reserved_keys(store: MetadataStore) -> None:
    """Top-level keys starting with '_' are CouchDB's: refused on every backend."""
    with pytest.raises(BadRequest):
        store.put("user:a", {"_rev": "1-x", "v": 1})
    assert store.get("user:a") is None


def test_store_rejects_oversize_document(store: MetadataStore) -> None:
    """A document over MAX_DOCUMENT_BYTES is TooLarge and not written."""
    with pytest.raises(TooLarge):
        store.put("file:big", {"blob": "x" * (MAX_DOCUMENT_BYTES + 1)})
    assert store.get("file:big") is None


def test_store_survives_reopen(opener: Opener) -> None:
    """A document written through one handle is read through a new one."""
    first = opener()
    first.put("user:a", DOC)
    first.close()
    assert opener().get("user:a") == DOC


def test_store_concurrent_create_only_has_one_winner(opener: Opener) -> None:
    """Of 6 concurrent create_only writers of one id, exactly one succeeds."""
    stores = [opener() for _ in range(6)]
    results: list[str] = []
    barrier = threading.Barrier(len(stores))

    def create(i: int) -> None:
        barrier.wait()
        try:
            stores[i].put("user:race", {"writer": i}, create_only=True)
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 5 + ["ok"]
    doc = stores[0].get("user:race")
    assert doc is not None and doc["writer"] in range(6)


def test_store_concurrent_overwrites_all_succeed(opener: Opener) -> None:
    """Concurrent whole-document puts never fail; the result is one writer's document."""
    stores = [opener() for _ in range(4)]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for n in range(5):
                stores[i].put("peer:hot", {"writer": i, "n": n})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    doc = stores[0].get("peer:hot")
    assert doc is not None and doc["n"] == 4


def test_store_local_documents_round_trip_apart_from_documents(opener: Opener) -> None:
    """Local documents (a peer's verified copies) read back as written, replace whole,
    survive reopening, and never show in get or list_prefix of the replicated ones."""
    store = opener()
    assert store.get_local("verified:user:a") is None
    store.put_local("verified:user:a", DOC)
    store.put_local("verified:user:a", {"v": 2})
    assert opener().get_local("verified:user:a") == {"v": 2}
    assert store.get("verified:user:a") is None and store.list_prefix("verified:") == []
    store.put("user:a", DOC)
    assert store.get_local("user:a") is None
    assert store.delete_local("verified:user:a") is True
    assert store.delete_local("verified:user:a") is False
    assert store.get_local("verified:user:a") is None and store.get("user:a") == DOC


def test_store_local_documents_checked_like_documents(store: MetadataStore) -> None:
    """A bad key or a reserved field is BadRequest, as for documents; nothing is written."""
    with pytest.raises(BadRequest):
        store.put_local("_design/x", {"v": 1})
    with pytest.raises(BadRequest):
        store.put_local("verified:x", {"_rev": "1-x"})
    assert store.get_local("verified:x") is None
