"""One logged-in user's drive as the SFTP face sees it: a tree, uploads, removes, renames.

Blocking calls (metadata, and the network for puts and removes): the server runs them in
worker threads. Everything read goes through ``PeerClient`` (so only documents that verify
are used); what each change writes, and what a crash in the middle leaves:
  - upload commit: ``PeerClient.put`` stores the spooled file under a staging name (stored
    and acknowledged, but hidden), one signed document write renames it into place, then the
    file it replaces, if any, is removed (tombstone, then owner-signed chunk deletes). A crash
    before the rename leaves a hidden staging file, removed at a later login of that user
    once older than ``STAGING_MAX_AGE_S``; a crash after it leaves the old and the new file
    under one name, and the newest is the one shown and read.
  - rename of a file: one signed write of its document (new encrypted name and lookup tag;
    no chunk moves). A directory is renamed file by file, each atomic, the whole not.
  - remove: ``PeerClient.remove`` (tombstone, document deleted, chunk deletes).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from mydrive.client import FileEntry, PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys
from mydrive.engine.gc import bury
from mydrive.errors import BadRequest, FileExists, TooLarge, UnknownFile
from mydrive.formats.filerecord import FileRecord
from mydrive.metadata.trusted import write_signed
from mydrive.sftp.tree import (
    MAX_SESSION_DIRS,
    ROOT,
    STAGING_DIR,
    DriveTree,
    Node,
    is_staging,
    newest_key,
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
    def _entries(self) -> list[FileEntry]:
        return self.client.list_files(self.keys)

    def tree(self) -> DriveTree:
        with self._lock:
            now = self.monotonic_s()
            if self._tree is None or now - self._tree_at_s > TREE_CACHE_S:
                self._tree = DriveTree(self._entries(), self.session_dirs)
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

    def _records_at(self, path: str) -> list[FileRecord]:
        """Every verified record claiming ``path``, the newest first."""
        try:
            found = self.client.select(self.keys, path)
        except UnknownFile:
            return []
        records = [r for p, r in found if p == path]
        records.sort(key=lambda r: (r.created_ms, r.file_id.hex()), reverse=True)
        return records

    def file(self, path: str) -> FileRecord:
        """The record a read of ``path`` serves (the newest, as the tree shows)."""
        node = self.stat(path)
        if node.is_dir:
            raise IsADirectory(f"{path!r} is a directory")
        records = self._records_at(path)
        if not records:
            self.changed()
            raise UnknownFile(f"no file {path!r}")
        return records[0]

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
        if self.tree().children(path):
            raise DirectoryNotEmpty(f"{path!r} is not empty")
        self.session_dirs.discard(path)
        self.changed()

    # ---- files --------------------------------------------------------------------------
    def remove(self, path: str) -> None:
        node = self.stat(path)
        if node.is_dir:
            raise IsADirectory(f"{path!r} is a directory (rmdir, once it is empty)")
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
        self.check_can_hold(new)
        target = tree.lookup(new)
        if source.is_dir:
            if target is not None:
                raise FileExists(f"{new!r} already exists")
            for path in tree.files_under(old):
                for record in self._records_at(path):
                    self._rename_record(record, new + path[len(old):])
            self.session_dirs = session_dirs_after_rename(self.session_dirs, old, new)
            self.changed()
            return
        if target is not None and not replace:
            raise FileExists(f"{new!r} already exists")
        replaced = self._records_at(new)
        records = self._records_at(old)
        if not records:
            raise UnknownFile(f"no file {old!r}")
        for record in records:  # older copies under the old name move too: none stays behind
            self._rename_record(record, new)
        self._bury(replaced)
        self.changed()

    def _rename_record(self, record: FileRecord, new: str) -> None:
        renamed = dataclasses.replace(
            record, path_tag=crypto.name_tag(self.keys.name_mac_key, new),
            encrypted_path=crypto.encrypt_name(self.keys.name_key, new,
                                               self.client.random_bytes,
                                               file_id=record.file_id),
            updated_ms=max(self.client.clock.now_ms(), record.updated_ms + 1))  # no replay
        write_signed(self.client.store, renamed.doc_id, renamed.to_doc(), self.keys.identity)

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
        replaced = self._records_at(target)  # read now: the upload may have taken a while
        self._rename_record(record, target)
        self._bury(replaced)
        self.session_dirs = {d for d in self.session_dirs if not target.startswith(d + "/")}
        self.changed()
        return record

    def sweep_staging(self) -> int:
        """Remove this user's staging files older than STAGING_MAX_AGE_S (crash leftovers)."""
        now_ms = self.client.clock.now_ms()
        stale = [e for e in self._entries()
                 if is_staging(e.path) and now_ms - e.created_ms > STAGING_MAX_AGE_S * 1000]
        for entry in sorted(stale, key=newest_key):
            self.client.remove(self.keys, entry.path)
        return len(stale)
