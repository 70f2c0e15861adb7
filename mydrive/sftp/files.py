"""The SFTP requests of one session mapped onto the user's drive, and errors onto status codes.

asyncssh's base ``SFTPServer`` acts on the server's own file system; every method that would
is overridden here, so a request can only ever reach the user's mydrive tree (a test calls
each one). Requests of a session are handled one after another; blocking work (metadata,
uploads, removes) runs in worker threads so other sessions go on meanwhile.

A file opened for writing is spooled (mydrive.sftp.spool) and stored on CLOSE: the client's
CLOSE gets its answer only once the file is stored, so "closed without error" means stored.
A session that ends without CLOSE (connection lost, client killed) discards its spools:
nothing of a partial upload is ever visible. Nothing else is kept per session.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
from asyncssh import SFTPAttrs, SFTPName

from mydrive.errors import (
    BadRequest,
    FileExists,
    MydriveError,
    PathTraversal,
    PermissionDenied,
    TooLarge,
    UnknownFile,
    UnknownUser,
)
from mydrive.sftp.chunks import chunk_fetcher
from mydrive.sftp.drive import DirectoryNotEmpty, Drive, IsADirectory, NotADirectory
from mydrive.sftp.reader import ChunkWindow
from mydrive.sftp.spool import Spool
from mydrive.sftp.tree import Node, is_staging, name_of, resolve

T = TypeVar("T")
log = logging.getLogger("mydrive.sftp")

FILE_MODE = stat.S_IFREG | 0o600
DIR_MODE = stat.S_IFDIR | 0o700
DEFAULT_MAX_OPEN_FILES = 16
DEFAULT_MAX_UPLOAD_BYTES = 1024**4  # 1 TiB


def sftp_error(exc: Exception) -> asyncssh.SFTPError:
    """The SFTP status for an error; its text names what went wrong, never a secret."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, asyncssh.SFTPError):
        return exc
    if isinstance(exc, (UnknownFile, UnknownUser)):
        return asyncssh.SFTPNoSuchFile(text)
    if isinstance(exc, NotADirectory):
        return asyncssh.SFTPNotADirectory(text)
    if isinstance(exc, IsADirectory):
        return asyncssh.SFTPFileIsADirectory(text)
    if isinstance(exc, DirectoryNotEmpty):
        return asyncssh.SFTPDirNotEmpty(text)
    if isinstance(exc, FileExists):
        return asyncssh.SFTPFileAlreadyExists(text)
    if isinstance(exc, (PathTraversal, PermissionDenied)):
        return asyncssh.SFTPPermissionDenied(text)
    if isinstance(exc, TooLarge):
        return asyncssh.SFTPQuotaExceeded(text)
    if isinstance(exc, BadRequest):
        return asyncssh.SFTPInvalidParameter(text)
    if isinstance(exc, MydriveError):
        return asyncssh.SFTPFailure(text)
    log.exception("SFTP request failed unexpectedly")
    return asyncssh.SFTPFailure(f"internal error ({type(exc).__name__}); see the server log")


@dataclass(frozen=True)
class SessionLimits:
    max_open_files: int = DEFAULT_MAX_OPEN_FILES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    read_window_chunks: int = 4


class _ReadHandle:
    def __init__(self, path: str, node: Node, window: ChunkWindow) -> None:
        self.path = path
        self.node = node
        self.window = window


class _WriteHandle:
    def __init__(self, path: str, spool: Spool, *, replaces_whole: bool) -> None:
        self.path = path
        self.spool = spool
        # Opened over a stored file without truncating it (scp does, then sets the size):
        # stored only if the client wrote the whole new content.
        self.replaces_whole = replaces_whole
        self.failed = False  # a write failed: the content is not what the client sent


Handle = _ReadHandle | _WriteHandle


def _attrs(node: Node) -> SFTPAttrs:
    return SFTPAttrs(type=asyncssh.FILEXFER_TYPE_DIRECTORY if node.is_dir
                     else asyncssh.FILEXFER_TYPE_REGULAR,
                     size=node.size_bytes, uid=0, gid=0, nlink=1,
                     permissions=DIR_MODE if node.is_dir else FILE_MODE,
                     atime=node.mtime_s, mtime=node.mtime_s)


class DriveSftp(asyncssh.SFTPServer):
    """One SFTP session of one logged-in user."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], *, drive: Drive, user: str,
                 blocking: Executor, fetch_pool: Executor, spool_dir: Path,
                 limits: SessionLimits) -> None:
        super().__init__(chan)
        self.drive = drive
        self.user = user
        self.blocking = blocking
        self.fetch_pool = fetch_pool
        self.spool_dir = spool_dir
        self.limits = limits
        self._open: dict[int, Handle] = {}

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.blocking, fn, *args)
        except Exception as exc:
            raise sftp_error(exc) from None

    async def _guard(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except Exception as exc:
            raise sftp_error(exc) from None

    def _path(self, raw: bytes) -> str:
        try:
            path = resolve(raw)
        except Exception as exc:
            raise sftp_error(exc) from None
        if is_staging(path):
            raise asyncssh.SFTPPermissionDenied(f"{path} is reserved for uploads in progress")
        return path

    # ---- names and attributes ---------------------------------------------------------
    def format_user(self, uid: int | None) -> str:
        return self.user

    def format_group(self, gid: int | None) -> str:
        return self.user

    async def realpath(self, path: bytes) -> bytes:
        return self._path(path).encode("utf-8")

    async def stat(self, path: bytes) -> SFTPAttrs:
        return _attrs(await self._run(self.drive.stat, self._path(path)))

    async def lstat(self, path: bytes) -> SFTPAttrs:
        return await self.stat(path)

    async def fstat(self, file_obj: object) -> SFTPAttrs:
        handle = self._handle(file_obj)
        if isinstance(handle, _ReadHandle):
            return _attrs(handle.node)
        return _attrs(Node(path=handle.path, is_dir=False, size_bytes=handle.spool.size_bytes))

    async def scandir(self, path: bytes) -> AsyncIterator[SFTPName]:
        where = self._path(path)
        node = await self._run(self.drive.stat, where)
        children = await self._run(self.drive.listdir, where)
        yield SFTPName(b".", attrs=_attrs(node))
        yield SFTPName(b"..", attrs=_attrs(Node(path=where, is_dir=True)))
        for child in children:
            yield SFTPName(name_of(child.path).encode("utf-8"), attrs=_attrs(child))

    async def setstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        node = await self._run(self.drive.stat, self._path(path))
        self._check_size(attrs, node.size_bytes)

    async def lsetstat(self, path: bytes, attrs: SFTPAttrs) -> None:
        await self.setstat(path, attrs)

    async def fsetstat(self, file_obj: object, attrs: SFTPAttrs) -> None:
        handle = self._handle(file_obj)
        if isinstance(handle, _WriteHandle):
            if attrs.size is not None:  # scp truncates what it wrote to its final size
                try:
                    await self._run(handle.spool.truncate, attrs.size)
                except asyncssh.SFTPError:
                    handle.failed = True
                    raise
            return
        self._check_size(attrs, handle.node.size_bytes)

    @staticmethod
    def _check_size(attrs: SFTPAttrs, size_bytes: int) -> None:
        # Permissions, owners and times are not stored (a file's time is its upload time):
        # accepted and ignored, as `put -p` and `scp -p` send them. A size change would
        # rewrite a stored file, which mydrive never does.
        if attrs.size is not None and attrs.size != size_bytes:
            raise asyncssh.SFTPOpUnsupported("stored files cannot be truncated or extended")

    # ---- directories ------------------------------------------------------------------
    async def mkdir(self, path: bytes, attrs: SFTPAttrs) -> None:
        await self._run(self.drive.mkdir, self._path(path))

    async def rmdir(self, path: bytes) -> None:
        await self._run(self.drive.rmdir, self._path(path))

    async def remove(self, path: bytes) -> None:
        await self._run(self.drive.remove, self._path(path))

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._path(oldpath), self._path(newpath)
        await self._run(lambda: self.drive.rename(old, new, replace=False))

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        old, new = self._path(oldpath), self._path(newpath)
        await self._run(lambda: self.drive.rename(old, new, replace=True))

    # ---- files ------------------------------------------------------------------------
    def _handle(self, file_obj: object) -> Handle:
        if not isinstance(file_obj, (_ReadHandle, _WriteHandle)) \
                or id(file_obj) not in self._open:
            raise asyncssh.SFTPInvalidHandle("not an open file of this session")
        return file_obj

    async def open(self, path: bytes, pflags: int, attrs: SFTPAttrs) -> object:
        where = self._path(path)
        if len(self._open) >= self.limits.max_open_files:
            raise asyncssh.SFTPFailure(f"at most {self.limits.max_open_files} open files "
                                       f"per session")
        reading = bool(pflags & asyncssh.FXF_READ)
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        if reading and writing:
            raise asyncssh.SFTPOpUnsupported("stored files are read or written whole, "
                                             "not both")
        if writing:
            handle: Handle = await self._open_write(where, pflags)
        else:
            handle = await self._open_read(where)
        self._open[id(handle)] = handle
        return handle

    async def _open_read(self, where: str) -> _ReadHandle:
        record = await self._run(self.drive.file, where)
        node = Node(path=where, is_dir=False, size_bytes=record.size_bytes,
                    mtime_s=record.created_ms // 1000, file_id=record.file_id.hex())
        fetch = await self._run(chunk_fetcher, self.drive.client, self.drive.keys, record)
        window = ChunkWindow(record.plan, fetch, self.fetch_pool,
                             window=self.limits.read_window_chunks)
        return _ReadHandle(where, node, window)

    async def _open_write(self, where: str, pflags: int) -> _WriteHandle:
        try:
            node = await self._run(self.drive.stat, where)
        except asyncssh.SFTPNoSuchFile:
            node = None
        if node is not None:
            if node.is_dir:
                raise asyncssh.SFTPFileIsADirectory(f"{where} is a directory")
            if pflags & asyncssh.FXF_EXCL:
                raise asyncssh.SFTPFileAlreadyExists(f"{where} already exists")
            if pflags & asyncssh.FXF_APPEND:
                # Appending (a resumed put): mydrive stores files whole and never changes one
                # in place; the client can upload it whole again.
                raise asyncssh.SFTPOpUnsupported(f"{where} is stored whole and cannot be "
                                                 f"appended to; upload it again whole")
        else:
            if not pflags & asyncssh.FXF_CREAT:
                raise asyncssh.SFTPNoSuchFile(f"no file {where}")
            # Directories are implied by paths: a missing parent comes into being with the
            # file, but no part of the path may be a file.
            await self._run(self.drive.check_can_hold, where)
        spool = await self._guard(asyncio.to_thread(
            Spool, self.spool_dir, max_bytes=self.limits.max_upload_bytes))
        return _WriteHandle(where, spool, replaces_whole=node is not None
                            and not pflags & asyncssh.FXF_TRUNC)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        handle = self._handle(file_obj)
        if not isinstance(handle, _ReadHandle):
            raise asyncssh.SFTPPermissionDenied("this file was opened for writing")
        return await self._guard(handle.window.read(offset, size))

    async def write(self, file_obj: object, offset: int, data: bytes) -> int:
        handle = self._handle(file_obj)
        if not isinstance(handle, _WriteHandle):
            raise asyncssh.SFTPPermissionDenied("this file was opened for reading")
        try:
            await self._run(handle.spool.write, offset, data)
        except asyncssh.SFTPError:
            handle.failed = True
            raise
        return len(data)

    async def close(self, file_obj: object) -> None:
        handle = self._handle(file_obj)
        del self._open[id(handle)]
        if isinstance(handle, _ReadHandle):
            handle.window.close()
            return
        # A CLOSE from the client while its channel is open stores the file. asyncssh also
        # closes every open file when a session ends (EOF, connection lost): then the channel
        # is already closing and the upload is incomplete, so it is discarded.
        if self.channel.is_closing():
            log.info("session of %s ended with an upload open; discarded", self.user)
            await asyncio.to_thread(handle.spool.close)
            return
        try:
            if handle.failed:
                raise asyncssh.SFTPFailure(f"{handle.path}: a write to it failed, so nothing "
                                           f"was stored")
            if handle.replaces_whole:
                if not handle.spool.touched:
                    return  # opened and closed (a `touch`): the stored file stays as it was
                if not handle.spool.covers(handle.spool.size_bytes):
                    raise asyncssh.SFTPOpUnsupported(
                        f"{handle.path}: only part of a stored file was rewritten; mydrive "
                        f"stores files whole: nothing was changed, upload the whole file")
            await self._run(self.drive.commit_upload, handle.spool.path, handle.path)
        finally:
            await asyncio.to_thread(handle.spool.close)

    async def exit(self) -> None:
        for handle in list(self._open.values()):  # asyncssh closed them; belt and braces
            if isinstance(handle, _WriteHandle):
                await asyncio.to_thread(handle.spool.close)
            else:
                handle.window.close()
        self._open.clear()
        # scp reports the exit status of the session: say it ended well (asyncssh sends none).
        with suppress(OSError):
            self.channel.exit(0)

    # ---- what a drive does not have ----------------------------------------------------
    def _unsupported(self, what: str) -> asyncssh.SFTPOpUnsupported:
        return asyncssh.SFTPOpUnsupported(f"{what} is not supported by mydrive")

    async def open56(self, path: bytes, desired_access: int, flags: int,
                     attrs: SFTPAttrs) -> object:
        raise self._unsupported("SFTP version 5+ open")

    async def readlink(self, path: bytes) -> bytes:
        raise self._unsupported("readlink")

    async def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise self._unsupported("symlink")

    async def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise self._unsupported("hard link")

    async def statvfs(self, path: bytes) -> Any:
        raise self._unsupported("statvfs")

    async def fstatvfs(self, file_obj: object) -> Any:
        raise self._unsupported("fstatvfs")

    async def fsync(self, file_obj: object) -> None:
        # Nothing is durable before CLOSE stores the file; saying "synced" would be a lie.
        raise self._unsupported("fsync (a file is stored when it is closed)")

    async def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise self._unsupported("locking")

    async def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise self._unsupported("locking")


class LockedSftp(asyncssh.SFTPServer):
    """A session whose login could not unlock the user's keys: every request is refused."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], reason: str) -> None:
        super().__init__(chan)
        self.reason = reason

    def __getattribute__(self, name: str) -> Any:
        if name in _SFTP_METHODS:
            reason = object.__getattribute__(self, "reason")

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise asyncssh.SFTPPermissionDenied(reason)

            return refuse
        return object.__getattribute__(self, name)

    def exit(self) -> None:
        with suppress(OSError):
            self.channel.exit(1)


_SFTP_METHODS = frozenset({
    "realpath", "stat", "lstat", "fstat", "scandir", "setstat", "lsetstat", "fsetstat",
    "mkdir", "rmdir", "remove", "rename", "posix_rename", "open", "open56", "read", "write",
    "readlink", "symlink", "link", "statvfs", "fstatvfs", "fsync", "lock", "unlock"})
