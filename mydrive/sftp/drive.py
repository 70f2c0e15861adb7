"""One logged-in user's drive as the SFTP face sees it: a tree, uploads, removes, renames.

Blocking calls (metadata, Argon2id-free, network for puts and removes): the server runs them
in worker threads. What each does to the metadata, and what a crash in the middle leaves:
  - upload commit: ``PeerClient.put`` stores the spooled file under a staging name (the file
    is acknowledged but hidden), then one document write renames it into place, then any
    file it replaces is removed (tombstone, then deletes). A crash before the rename leaves a
    hidden staging file, removed on a later login after ``STAGING_MAX_AGE_S``; a crash after
    it leaves the old and new file under one name, and the newest is shown.
  - rename of a file: one document write (new encrypted name and lookup tag; no data moves).
    A directory is renamed file by file, each atomic, the whole not.
  - remove: ``PeerClient.remove`` (tombstone, document deleted, owner-signed chunk deletes).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys
from mydrive.engine.gc import bury
from mydrive.errors import BadRequest, DecryptionFailed, FileExists, TooLarge, UnknownFile
from mydrive.formats.filerecord import FileRecord
from mydrive.sftp.tree import (
    MAX_SESSION_DIRS,
    ROOT,
    STAGING_DIR,
    DriveTree,
    Node,
    is_staging,
    parent_of,
    session_dirs_after_rename,
)

TREE_CACHE_S = 1.0  # changes made by other processes (CLI, UI) show up within this
STAGING_MAX_AGE_S = 3600.0
log = logging.getLogger("mydrive.sftp")


class NotADirectory(BadRequest):
    """A directory operation named a file."""


class IsADirectory(BadRequest):
    """A file operation named a directory."""


class DirectoryNotEmpty(BadRequest):
    """rmdir of a directory that holds files."""


class Drive:
    def __init__(self, client: PeerClient, keys: UserKeys, *,
                 monotonic_s: Callable[[], float]) -> None:
        self.client = client
        self.keys = keys
        self.monotonic_s = monotonic_s
        self.session_dirs: set[str] = set()
        self._tree: DriveTree | None = None
        self._tree_at_s = 0.0
        self._lock = threading.Lock()

    # ---- reading the tree ------------------------------------------------------------
    def _named_records(self) -> list[tuple[str, FileRecord]]:
        out = []
        for doc_id, doc in self.client.store.list_prefix("file:"):
            if doc.get("owner_id") != self.keys.user_id:
                continue
            try:
                record = FileRecord.from_doc(doc)
                path = crypto.decrypt_name(self.keys.name_key, record.encrypted_path)
            except (BadRequest, DecryptionFailed) as exc:
                log.warning("skipping file document %s: %s", doc_id, exc)
                continue
            tag = crypto.name_tag(self.keys.name_mac_key, path)
            if not crypto.constant_time_equal(record.path_tag.encode(), tag.encode()):
                log.warning("skipping file document %s: its lookup tag does not match its "
                            "name", doc_id)
                continue
            out.append((path, record))
        return out

    def tree(self) -> DriveTree:
        with self._lock:
            now = self.monotonic_s()
            if self._tree is None or now - self._tree_at_s > TREE_CACHE_S:
                self._tree = DriveTree(self._named_records(), self.session_dirs)
                self._tree_at_s = now
            return self._tree

    def changed(self) -> None:
        with self._lock:
            self._tree = None

    def stat(self, path: str) -> Node:
        node = self.tree().lookup(path)
        if node is None:
            raise UnknownFile(f"no file or directory {path!r}")
        return node

    def listdir(self, path: str) -> list[Node]:
        node = self.stat(path)
        if not node.is_dir:
            raise NotADirectory(f"{path!r} is a file")
        return self.tree().children(path)

    def file(self, path: str) -> FileRecord:
        node = self.stat(path)
        if node.is_dir or node.record is None:
            raise IsADirectory(f"{path!r} is a directory")
        return node.record

    def check_can_hold(self, path: str) -> None:
        """A file may be stored at ``path``: no directory there and no file above it."""
        tree = self.tree()
        node = tree.lookup(path)
        if node is not None and node.is_dir:
            raise IsADirectory(f"{path!r} is a directory")
        parent = parent_of(path)
        while parent != ROOT:
            above = tree.lookup(parent)
            if above is not None and not above.is_dir:
                raise NotADirectory(f"{parent!r} is a file")
            parent = parent_of(parent)

    # ---- directories (session-only until a file is stored under them) -----------------
    def mkdir(self, path: str) -> None:
        if path == ROOT or self.tree().lookup(path) is not None:
            raise FileExists(f"{path!r} already exists")
        parent = self.tree().lookup(parent_of(path))
        if parent is None:
            raise UnknownFile(f"no directory {parent_of(path)!r}")
        if not parent.is_dir:
            raise NotADirectory(f"{parent_of(path)!r} is a file")
        if len(self.session_dirs) >= MAX_SESSION_DIRS:
            raise TooLarge(f"at most {MAX_SESSION_DIRS} empty directories per session")
        self.session_dirs.add(path)
        self.changed()

    def rmdir(self, path: str) -> None:
        node = self.stat(path)
        if not node.is_dir:
            raise NotADirectory(f"{path!r} is a file")
        if path == ROOT:
            raise BadRequest("the root of your drive cannot be removed")
        tree = self.tree()
        if tree.children(path):
            raise DirectoryNotEmpty(f"{path!r} is not empty")
        self.session_dirs.discard(path)
        self.changed()

    # ---- files --------------------------------------------------------------------------
    def remove(self, path: str) -> None:
        self.file(path)  # a directory is refused here
        self.client.remove(self.keys, path)
        self.changed()

    def rename(self, old: str, new: str, *, replace: bool) -> None:
        if old == ROOT or new == ROOT:
            raise BadRequest("the root of your drive cannot be renamed")
        if new == old:
            return
        if new.startswith(old + "/"):
            raise BadRequest(f"cannot move {old!r} into itself")
        tree = self.tree()
        source = self.stat(old)
        target_parent = tree.lookup(parent_of(new))
        if target_parent is None or not target_parent.is_dir:
            raise UnknownFile(f"no directory {parent_of(new)!r}")
        target = tree.lookup(new)
        if source.is_dir:
            if target is not None:
                raise FileExists(f"{new!r} already exists")
            for path in tree.files_under(old):
                for record in tree.records_at(path):
                    self._rename_record(record, new + path[len(old):])
            self.session_dirs = session_dirs_after_rename(self.session_dirs, old, new)
            self.changed()
            return
        if target is not None and (target.is_dir or not replace):
            raise FileExists(f"{new!r} already exists")
        replaced = tree.records_at(new)
        assert source.record is not None
        self._rename_record(source.record, new)
        self._bury(replaced)
        self.changed()

    def _rename_record(self, record: FileRecord, new: str) -> None:
        renamed = dataclasses.replace(
            record, path_tag=crypto.name_tag(self.keys.name_mac_key, new),
            encrypted_path=crypto.encrypt_name(self.keys.name_key, new,
                                               self.client.random_bytes))
        self.client.store.put(renamed.doc_id, renamed.to_doc())

    def _bury(self, records: list[FileRecord]) -> None:
        if not records:
            return
        for record in records:
            bury(self.client.store, self.keys, record, self.client.clock.now_ms())
        self.client.collect_garbage(self.keys)

    def commit_upload(self, local: Path, target: str) -> FileRecord:
        """Store ``local`` (a whole spooled upload) at ``target``, replacing what is there."""
        self.check_can_hold(target)
        staging = f"{STAGING_DIR}/{self.client.random_bytes(16).hex()}"
        record = self.client.put(self.keys, local, staging)
        self.changed()
        replaced = self.tree().records_at(target)  # read again: the upload took a while
        self._rename_record(record, target)
        self._bury(replaced)
        self.session_dirs = {d for d in self.session_dirs if not target.startswith(d + "/")}
        self.changed()
        return dataclasses.replace(
            record, path_tag=crypto.name_tag(self.keys.name_mac_key, target))

    def sweep_staging(self) -> int:
        """Remove this user's staging files older than STAGING_MAX_AGE_S (crash leftovers)."""
        now_ms = self.client.clock.now_ms()
        stale = [r for p, r in self._named_records()
                 if is_staging(p) and now_ms - r.created_ms > STAGING_MAX_AGE_S * 1000]
        self._bury(stale)
        return len(stale)
