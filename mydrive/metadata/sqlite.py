"""Embedded metadata store: one SQLite file per peer (the default backend).

WAL mode lets the CLI, the UI and the services of one peer share the file from separate
processes; every write is one transaction, so a crash leaves the old or the new document.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from mydrive.errors import Conflict
from mydrive.metadata.base import Document, check_doc_id, encode_document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id   TEXT PRIMARY KEY,
    rev  INTEGER NOT NULL,
    body TEXT NOT NULL
)
"""
_LOCAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_docs (
    id   TEXT PRIMARY KEY,
    body TEXT NOT NULL
)
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        self._db.execute(_LOCAL_SCHEMA)

    def get(self, doc_id: str) -> Document | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        doc: Document = json.loads(row[0])
        return doc

    def put(self, doc_id: str, doc: Document, *, create_only: bool = False) -> None:
        body = encode_document(doc_id, doc)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT rev FROM docs WHERE id = ?", (doc_id,)).fetchone()
                if row is not None and create_only:
                    raise Conflict(f"document {doc_id!r} already exists")
                rev = 1 if row is None else int(row[0]) + 1
                self._db.execute(
                    "INSERT INTO docs(id, rev, body) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET rev = excluded.rev, body = excluded.body",
                    (doc_id, rev, body),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, doc_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
            return cur.rowcount > 0

    def list_prefix(self, prefix: str) -> list[tuple[str, Document]]:
        # Range scan instead of LIKE so '%' and '_' in ids need no escaping.
        upper = prefix + "\U0010ffff"
        with self._lock:
            rows = self._db.execute(
                "SELECT id, body FROM docs WHERE id >= ? AND id < ? ORDER BY id", (prefix, upper)
            ).fetchall()
        return [(str(r[0]), json.loads(r[1])) for r in rows]

    def get_local(self, key: str) -> Document | None:
        check_doc_id(key)
        with self._lock:
            row = self._db.execute("SELECT body FROM local_docs WHERE id = ?",
                                   (key,)).fetchone()
        if row is None:
            return None
        doc: Document = json.loads(row[0])
        return doc

    def put_local(self, key: str, doc: Document) -> None:
        body = encode_document(key, doc)
        with self._lock:
            self._db.execute("INSERT INTO local_docs(id, body) VALUES (?, ?) "
                             "ON CONFLICT(id) DO UPDATE SET body = excluded.body", (key, body))

    def delete_local(self, key: str) -> bool:
        check_doc_id(key)
        with self._lock:
            return self._db.execute("DELETE FROM local_docs WHERE id = ?", (key,)).rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()

