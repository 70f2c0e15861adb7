"""The SFTP server's files in a peer directory, and its SSH host key.

  PEER_DIR/sftp/            0700
  PEER_DIR/sftp/host_key    this peer's Ed25519 SSH host key, OpenSSH format, 0600
  PEER_DIR/sftp/ssh_keys.json   registered client keys (mydrive.sftp.keyring)
  PEER_DIR/sftp/spool/      uploads in progress (mydrive.sftp.spool)

The host key is made on first start and kept, so clients can pin it (known_hosts). It is
written to a temporary 0600 file and renamed: a crash leaves no key or a whole one.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

from mydrive.errors import BadRequest
from mydrive.runtime.disk import fsync_dir

SFTP_DIR_NAME = "sftp"
HOST_KEY_NAME = "host_key"
HOST_KEY_ALGORITHM = "ssh-ed25519"


def sftp_dir(peer_root: Path) -> Path:
    path = peer_root / SFTP_DIR_NAME
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def load_or_create_host_key(peer_root: Path) -> asyncssh.SSHKey:
    """This peer's host key, generated (0600) the first time."""
    path = sftp_dir(peer_root) / HOST_KEY_NAME
    if path.exists():
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise BadRequest(f"{path} is readable by others (mode "
                             f"{path.stat().st_mode & 0o777:o}); run: chmod 600 {path}")
        try:
            return asyncssh.read_private_key(path)
        except (asyncssh.KeyImportError, OSError) as exc:
            raise BadRequest(f"{path} is not a usable SSH host key: {exc}") from None
    key = asyncssh.generate_private_key(HOST_KEY_ALGORITHM, comment="mydrive sftp host key")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return key


def host_public_key_line(peer_root: Path) -> str:
    """The public half as an OpenSSH line (for a client's known_hosts)."""
    key = load_or_create_host_key(peer_root)
    return bytes(key.export_public_key()).decode("ascii").strip()
