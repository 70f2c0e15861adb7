"""The SSH side of the SFTP face: who may log in, how their keys are unlocked, what is offered.

Two ways in, both ending with the user's keys in this process's memory for that connection
only (never on disk, never in a log):
  - passphrase: SSH "password" authentication with the mydrive user name and passphrase;
    Argon2id unwraps the master key exactly as ``mydrive`` CLI and UI logins do.
  - SSH key: public-key authentication with a key registered to the account on this peer
    (mydrive.sftp.keyring), then the key's unlock secret, sent by the client as the
    environment variable MYDRIVE_UNLOCK, unwraps the copy of the master key stored for that
    key. Without the secret the session opens locked: every request is refused.
Every check of a passphrase or secret goes through the login limiter (per user, per source)
and at most ``max_concurrent_kdf`` Argon2id runs go at once. Only SFTP is offered: no shell,
exec, legacy scp, port or agent forwarding, X11 or pty.

A connection keeps nothing when it ends; a crash loses only the sessions in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from mydrive.client import PeerClient
from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, validate_username
from mydrive.errors import BadRequest, MydriveError, UnknownUser, WrongPassphrase
from mydrive.node.sftp_address import software_version
from mydrive.sftp.drive import Drive
from mydrive.sftp.files import DriveSftp, LockedSftp, SessionLimits
from mydrive.sftp.keyring import UNLOCK_ENV, KeyRing, SshKeyEntry, unlock_with_secret
from mydrive.sftp.ratelimit import LoginLimiter

log = logging.getLogger("mydrive.sftp")

DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_LOGIN_TIMEOUT_S = 30.0
DEFAULT_MAX_CONCURRENT_KDF = 2
MAX_PASSWORD_CHARS = 1024


@dataclass
class SftpService:
    """What every connection of one server shares."""

    client: PeerClient
    keyring: KeyRing
    limiter: LoginLimiter
    spool_dir: Path
    limits: SessionLimits = field(default_factory=SessionLimits)
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_concurrent_kdf: int = DEFAULT_MAX_CONCURRENT_KDF
    connections: int = 0

    def __post_init__(self) -> None:
        self.blocking = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sftp")
        self.fetch_pool = ThreadPoolExecutor(
            max_workers=max(2, self.client.settings.max_inflight_chunks * 2),
            thread_name_prefix="sftp-fetch")
        self._kdf_slots: asyncio.Semaphore | None = None
        # Costs of the Argon2id run made for unknown users, so they take as long as known ones.
        self._decoy_kdf = crypto.new_kdf_params(os.urandom, **self.client.kdf_costs)

    async def kdf(self, fn: Callable[[], UserKeys]) -> UserKeys:
        """Run a passphrase or secret check in a thread, a bounded number at once."""
        if self._kdf_slots is None:
            self._kdf_slots = asyncio.Semaphore(self.max_concurrent_kdf)
        async with self._kdf_slots:
            return await asyncio.get_running_loop().run_in_executor(self.blocking, fn)

    def login(self, user: str, passphrase: str) -> UserKeys:
        try:
            return self.client.login(user, passphrase)
        except UnknownUser:
            crypto.derive_passphrase_key(passphrase or "-", self._decoy_kdf)
            raise

    def close(self) -> None:
        self.blocking.shutdown(wait=False, cancel_futures=True)
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)


def _limited_name(username: str) -> str:
    """The name as the limiter counts it: an invalid name (any length an SSH packet allows)
    is counted as one, so the limiter's memory stays bounded."""
    try:
        return validate_username(username)
    except BadRequest:
        return "(invalid name)"


class _Login(asyncssh.SSHServer):
    """One connection's authentication; holds the user's keys once unlocked."""

    def __init__(self, service: SftpService) -> None:
        self.service = service
        self.source = "?"
        self.user = ""
        self.keys: UserKeys | None = None
        self.offered: dict[str, SshKeyEntry] = {}  # fingerprint -> entry, for SSH-key logins
        self.counted = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self.source = str(peer[0]) if peer else "?"
        self.service.connections += 1
        self.counted = True
        if self.service.connections > self.service.max_connections:
            log.warning("refusing a connection from %s: %d connections open", self.source,
                        self.service.max_connections)
            conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.service.connections -= 1
            self.counted = False
        self.keys = None
        self.offered.clear()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        username = _limited_name(username)
        if not self._may_try(username):
            return False
        try:
            if len(password) > MAX_PASSWORD_CHARS:
                raise BadRequest("passphrase too long")
            keys = await self.service.kdf(lambda: self.service.login(username, password))
        except (UnknownUser, WrongPassphrase, BadRequest) as exc:
            self.service.limiter.failed(username)
            log.info("login of %r from %s refused: %s", username[:64], self.source,
                     type(exc).__name__)
            return False
        except MydriveError as exc:
            log.warning("login of %r from %s failed: %s", username[:64], self.source, exc)
            return False
        self.user, self.keys = username, keys
        log.info("%s logged in from %s (passphrase)", username, self.source)
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        try:
            validate_username(username)
            entry = await asyncio.to_thread(self.service.keyring.find, username,
                                            bytes(key.public_data))
        except MydriveError as exc:
            log.warning("SSH key check for %r failed: %s", username[:64], exc)
            return False
        if entry is None:
            return False
        self.user = username
        self.offered[entry.fingerprint] = entry
        return True

    def _may_try(self, username: str) -> bool:
        if self.service.limiter.begin(username, self.source):
            return True
        log.warning("login of %r from %s refused: too many attempts", username[:64],
                    self.source)
        return False

    async def unlock_by_key(self, secret: str | None) -> tuple[UserKeys | None, str]:
        """After an SSH-key login: the keys, or None and why not (shown to the client)."""
        if not secret:
            return None, (f"SSH key accepted, but the drive stays locked: send the key's unlock "
                          f"secret as {UNLOCK_ENV} (OpenSSH: -o SetEnv={UNLOCK_ENV}=...; see "
                          f"`mydrive user add-ssh-key`)")
        if not self._may_try(self.user):
            return None, "too many login attempts; try again in a minute"
        service = self.service
        try:
            record = await asyncio.to_thread(service.client.user_record, self.user)
        except MydriveError:
            service.limiter.failed(self.user)
            return None, "no such user on this peer"
        problem = "wrong unlock secret"
        for entry in reversed(list(self.offered.values())):  # the last key offered first
            try:
                keys = await service.kdf(
                    lambda e=entry: unlock_with_secret(e, record, secret))  # type: ignore[misc]
            except MydriveError as exc:
                problem = str(exc)
                continue
            log.info("%s logged in from %s (SSH key %s)", self.user, self.source,
                     entry.fingerprint)
            return keys, ""
        service.limiter.failed(self.user)
        log.info("SSH key login of %s from %s stays locked: %s", self.user, self.source,
                 problem)
        return None, problem


def _sftp_factory(service: SftpService) -> Callable[
        [asyncssh.SSHServerChannel[bytes]], Awaitable[asyncssh.SFTPServer]]:
    async def make(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        login = chan.get_connection().get_owner()
        assert isinstance(login, _Login)
        keys = login.keys
        if keys is None:
            keys, reason = await login.unlock_by_key(chan.get_environment().get(UNLOCK_ENV))
            if keys is None:
                chan.write_stderr(f"mydrive: {reason}\r\n".encode())
                return LockedSftp(chan, reason)
            login.keys = keys
        drive = Drive(service.client, keys, monotonic_s=service.client.clock.monotonic_s)
        try:
            await asyncio.get_running_loop().run_in_executor(service.blocking,
                                                             drive.sweep_staging)
        except MydriveError as exc:
            log.warning("could not sweep old staging files of %s: %s", login.user, exc)
        return DriveSftp(chan, drive=drive, user=login.user, blocking=service.blocking,
                         fetch_pool=service.fetch_pool, spool_dir=service.spool_dir,
                         limits=service.limits)

    return make


async def start_server(service: SftpService, *, host: str, port: int,
                       host_key: asyncssh.SSHKey, peer_id: str,
                       login_timeout_s: float = DEFAULT_LOGIN_TIMEOUT_S) -> asyncssh.SSHAcceptor:
    """Listen on ``host:port`` (``port`` 0: any free port; see ``.sockets``)."""
    # asyncssh logs channel requests (the MYDRIVE_UNLOCK value among them) and request
    # paths at DEBUG: never let those through, whatever the root logger's level.
    logging.getLogger("asyncssh").setLevel(max(logging.INFO,
                                               logging.getLogger("asyncssh").level))
    options: dict[str, Any] = {
        "server_host_keys": [host_key],
        "server_version": software_version(peer_id),  # the health probe looks for it
        "sftp_factory": _sftp_factory(service),
        "allow_scp": False,
        "agent_forwarding": False,
        "x11_forwarding": False,
        "allow_pty": False,
        "gss_host": None,
        "x509_trusted_certs": None,
        "kbdint_auth": False,
        "login_timeout": login_timeout_s,
        "keepalive_interval": 30,
    }
    return await asyncssh.create_server(lambda: _Login(service), host, port, **options)
