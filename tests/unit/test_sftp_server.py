"""The SFTP server in-process over a 5-peer in-memory network, driven by asyncssh's client:
round trips, isolation between users, refusals with SFTP status codes, partial uploads,
SSH-key logins with their unlock secret, rate limiting, and no secrets in logs."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from mydrive.client import PeerClient
from mydrive.sftp.accounts import add_ssh_key, keyring_of
from mydrive.sftp.files import SessionLimits
from mydrive.sftp.hostkey import load_or_create_host_key, sftp_dir
from mydrive.sftp.keyring import UNLOCK_ENV
from mydrive.sftp.ratelimit import LoginLimiter
from mydrive.sftp.spool import spool_dir
from mydrive.sftp.ssh import SftpService, start_server
from mydrive.sftp.tree import STAGING_DIR
from tests.clientnet import ClientNet, client_net

ALICE, BOB = ("alice", "alice passphrase 1"), ("bob", "bob passphrase 2")
FX_NO_SUCH_FILE, FX_PERMISSION_DENIED, FX_FAILURE, FX_OP_UNSUPPORTED = 2, 3, 4, 8


@dataclass
class Served:
    net: ClientNet
    client: PeerClient
    port: int
    service: SftpService

    def connect(self, user: str, password: str | None = None, **kwargs: Any) -> Any:
        return asyncssh.connect("127.0.0.1", self.port, username=user, password=password,
                                known_hosts=None, agent_path=None,
                                client_keys=kwargs.pop("client_keys", None), **kwargs)

    @asynccontextmanager
    async def sftp(self, user: str, password: str) -> AsyncIterator[asyncssh.SFTPClient]:
        async with self.connect(user, password) as conn, conn.start_sftp_client() as sftp:
            yield sftp


@asynccontextmanager
async def served(root: Path, *, peers: int = 5,
                 limiter: LoginLimiter | None = None) -> AsyncIterator[Served]:
    net = client_net(root, n=peers)
    client = net.client(0)
    for name, passphrase in (ALICE, BOB):
        client.create_user(name, passphrase)
    folder = sftp_dir(net.dirs[0].root)
    service = SftpService(client=client, keyring=keyring_of(net.dirs[0].root),
                          limiter=limiter or LoginLimiter(net.clock),
                          spool_dir=spool_dir(folder))
    server = await start_server(service, host="127.0.0.1", port=0,
                                host_key=load_or_create_host_key(net.dirs[0].root),
                                peer_id=net.dirs[0].config.peer_id)
    try:
        yield Served(net=net, client=client, port=server.sockets[0].getsockname()[1],
                     service=service)
    finally:
        server.close()
        await server.wait_closed()
        service.close()
        client.close()


def run(root: Path, body: Callable[[Served], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with served(root, **kwargs) as s:
            await body(s)

    asyncio.run(asyncio.wait_for(main(), timeout=120))


async def _put(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as f:
        await f.write(data)


async def _get(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    async with sftp.open(path, "rb") as f:
        return bytes(await f.read())


async def _code(awaitable: Awaitable[Any]) -> int:
    try:
        await awaitable
    except asyncssh.SFTPError as exc:
        return int(exc.code)
    raise AssertionError("the request was not refused")


def test_sftp_server_put_ls_get_rename_rm_round_trip(tmp_path: Path) -> None:
    """put, ls, stat, get (bit-identical, several chunks), rename and rm through SFTP."""
    data = os.urandom(700_000)  # 64 KiB chunks in this network: 11 chunks

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/docs/big.bin", data)
            assert await sftp.listdir("/") == [".", "..", "docs"]
            assert (await sftp.stat("/docs/big.bin")).size == len(data)
            assert (await sftp.stat("/docs")).type == asyncssh.FILEXFER_TYPE_DIRECTORY
            assert await _get(sftp, "/docs/big.bin") == data
            await sftp.rename("/docs/big.bin", "/moved.bin")
            assert await sftp.listdir("/") == [".", "..", "moved.bin"]
            assert await _get(sftp, "/moved.bin") == data
            await sftp.remove("/moved.bin")
            assert await sftp.listdir("/") == [".", ".."]
        keys = s.client.login(*ALICE)
        assert s.client.list_files(keys) == []

    run(tmp_path, body)


def test_sftp_server_second_user_sees_nothing_of_the_first(tmp_path: Path) -> None:
    """bob's session lists nothing of alice's, and cannot stat, read, rename or remove it."""

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/secret/plan.txt", b"alice only")
        async with s.sftp(*BOB) as sftp:
            assert await sftp.listdir("/") == [".", ".."]
            for attempt in (sftp.stat("/secret/plan.txt"), sftp.stat("/secret"),
                            sftp.open("/secret/plan.txt", "rb"),
                            sftp.remove("/secret/plan.txt"),
                            sftp.rename("/secret/plan.txt", "/mine.txt")):
                assert await _code(attempt) == FX_NO_SUCH_FILE
        async with s.sftp(*ALICE) as sftp:
            assert await _get(sftp, "/secret/plan.txt") == b"alice only"

    run(tmp_path, body)


def test_sftp_server_wrong_passphrase_and_unknown_user_refused(tmp_path: Path) -> None:
    """A wrong passphrase, an unknown user and an empty passphrase fail SSH authentication."""

    async def body(s: Served) -> None:
        for user, password in (("alice", "wrong"), ("mallory", "whatever"), ("alice", "")):
            with pytest.raises(asyncssh.PermissionDenied):
                async with s.connect(user, password):
                    pass

    run(tmp_path, body)


def test_sftp_server_refuses_traversal_and_changes_nothing(tmp_path: Path) -> None:
    """Paths above the root are PERMISSION_DENIED; links, statvfs unsupported; nothing changes."""
    outside = tmp_path / "outside.txt"
    outside.write_text("peer file")

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/keep.txt", b"keep")
            escape = f"/../../../../{outside}"
            for attempt in (sftp.stat(escape), sftp.open(escape, "rb"), sftp.open(escape, "wb"),
                            sftp.remove(escape), sftp.mkdir("/../x"), sftp.rmdir("/.."),
                            sftp.rename("/keep.txt", "/../keep.txt"), sftp.listdir("/.."),
                            sftp.realpath("/a/../../b")):
                assert await _code(attempt) == FX_PERMISSION_DENIED
            for attempt in (sftp.symlink("/keep.txt", "/link"), sftp.readlink("/keep.txt"),
                            sftp.link("/keep.txt", "/hard"), sftp.statvfs("/")):
                assert await _code(attempt) == FX_OP_UNSUPPORTED
            for attempt in (sftp.stat(f"{STAGING_DIR}/x"), sftp.open(f"{STAGING_DIR}/x", "wb")):
                assert await _code(attempt) == FX_PERMISSION_DENIED
            assert await sftp.listdir("/") == [".", "..", "keep.txt"]
        assert outside.read_text() == "peer file"

    run(tmp_path, body)


def test_sftp_server_interrupted_upload_leaves_nothing(tmp_path: Path) -> None:
    """A connection lost mid-upload leaves no file, staging record, spool file or chunk."""

    async def body(s: Served) -> None:
        conn = await s.connect(*ALICE)
        sftp = await conn.start_sftp_client()
        f = await sftp.open("/half.bin", "wb")
        await f.write(os.urandom(300_000))
        conn.abort()
        await asyncio.sleep(0.5)
        async with s.sftp(*ALICE) as sftp2:
            assert await sftp2.listdir("/") == [".", ".."]
        assert [d for d, _ in s.client.store.list_prefix("file:")] == []
        assert list(s.service.spool_dir.iterdir()) == []
        assert all(not any(s.net.chunk_store(p).root.rglob("*.chunk"))
                   for p in s.net.peer_ids)

    run(tmp_path, body)


def test_sftp_server_failed_store_reports_on_close_and_leaves_nothing(tmp_path: Path) -> None:
    """When the peers cannot take the file, CLOSE fails (FAILURE) and nothing is visible."""

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            s.net.transport.down.update(s.net.peer_ids[1:])
            f = await sftp.open("/nope.bin", "wb")
            await f.write(b"x" * 1000)
            assert await _code(f.close()) == FX_FAILURE
            s.net.transport.down.clear()
            assert await sftp.listdir("/") == [".", ".."]
        assert list(s.service.spool_dir.iterdir()) == []

    run(tmp_path, body)


def test_sftp_server_overwrite_replaces_append_and_truncate_refused(tmp_path: Path) -> None:
    """An upload over a file replaces it whole; append and truncate are refused, file intact."""

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/f.txt", b"version 1")
            await _put(sftp, "/f.txt", b"version 2, longer")
            assert await _get(sftp, "/f.txt") == b"version 2, longer"
            assert await _code(sftp.open("/f.txt", "ab")) == FX_OP_UNSUPPORTED
            assert await _code(sftp.open("/f.txt", "r+b")) == FX_OP_UNSUPPORTED
            assert await _code(sftp.truncate("/f.txt", 3)) == FX_OP_UNSUPPORTED
            assert await _get(sftp, "/f.txt") == b"version 2, longer"
        keys = s.client.login(*ALICE)
        assert [e.path for e in s.client.list_files(keys)] == ["/f.txt"]

    run(tmp_path, body)


def test_sftp_server_rewrite_without_truncate_must_be_whole(tmp_path: Path) -> None:
    """A file opened without truncation is replaced only by whole new content; touch keeps it."""

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/f.txt", b"0123456789")
            f = await sftp.open("/f.txt", asyncssh.FXF_WRITE, encoding=None)
            await f.write(b"XY", 4)
            assert await _code(f.close()) == FX_OP_UNSUPPORTED
            assert await _get(sftp, "/f.txt") == b"0123456789"
            f = await sftp.open("/f.txt", asyncssh.FXF_WRITE | asyncssh.FXF_CREAT, encoding=None)
            await f.close()
            assert await _get(sftp, "/f.txt") == b"0123456789"
            f = await sftp.open("/f.txt", asyncssh.FXF_WRITE | asyncssh.FXF_CREAT, encoding=None)
            await f.write(b"new")
            await f.truncate(3)
            await f.close()
            assert await _get(sftp, "/f.txt") == b"new"

    run(tmp_path, body)


def test_sftp_server_mkdir_rmdir_and_directory_rename(tmp_path: Path) -> None:
    """mkdir makes a session directory, rmdir refuses a non-empty one, a directory renames."""

    async def body(s: Served) -> None:
        async with s.sftp(*ALICE) as sftp:
            await sftp.mkdir("/new")
            assert await sftp.listdir("/") == [".", "..", "new"]
            await _put(sftp, "/new/a.txt", b"a")
            await _put(sftp, "/new/sub/b.txt", b"b")
            assert await _code(sftp.rmdir("/new")) == FX_FAILURE
            assert await _code(sftp.mkdir("/new")) == FX_FAILURE
            await sftp.rename("/new", "/old")
            assert sorted(await sftp.listdir("/old")) == [".", "..", "a.txt", "sub"]
            assert await _get(sftp, "/old/sub/b.txt") == b"b"
            await sftp.mkdir("/empty")
            await sftp.rmdir("/empty")
            assert await sftp.listdir("/") == [".", "..", "old"]

    run(tmp_path, body)


def test_sftp_server_offers_no_shell_exec_or_forwarding(tmp_path: Path) -> None:
    """Only the SFTP subsystem is served: exec, shell and port forwarding are refused."""

    async def body(s: Served) -> None:
        async with s.connect(*ALICE) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.run("id", check=True)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", s.port)

    run(tmp_path, body)


def _ssh_key(tmp_path: Path, name: str) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / f"{name}.pub").write_bytes(key.export_public_key())
    return key


def test_sftp_server_ssh_key_login_unlocks_only_with_the_secret(tmp_path: Path) -> None:
    """A registered key reaches the drive only with its unlock secret; other keys can't log in."""
    key, stranger = _ssh_key(tmp_path, "alice"), _ssh_key(tmp_path, "stranger")

    async def body(s: Served) -> None:
        entry, secret = add_ssh_key(s.client, s.net.dirs[0].root, "alice", ALICE[1],
                                    key.export_public_key().decode())
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/k.txt", b"by key")
        async with s.connect("alice", client_keys=[key], env={UNLOCK_ENV: secret}) as conn, \
                conn.start_sftp_client() as sftp:
            assert await _get(sftp, "/k.txt") == b"by key"
        for env in ({}, {UNLOCK_ENV: secret[:-2] + "AA"}, {UNLOCK_ENV: "nonsense"}):
            async with s.connect("alice", client_keys=[key], env=env) as conn, \
                    conn.start_sftp_client() as sftp:
                assert await _code(sftp.listdir("/")) == FX_PERMISSION_DENIED
                assert await _code(sftp.open("/k.txt", "rb")) == FX_PERMISSION_DENIED
        with pytest.raises(asyncssh.PermissionDenied):
            async with s.connect("alice", client_keys=[stranger], env={UNLOCK_ENV: secret}):
                pass
        with pytest.raises(asyncssh.PermissionDenied):  # alice's key is not bob's
            async with s.connect("bob", client_keys=[key], env={UNLOCK_ENV: secret}):
                pass
        assert entry.fingerprint == key.get_fingerprint("sha256")

    run(tmp_path, body)


def test_sftp_server_login_attempts_rate_limited(tmp_path: Path) -> None:
    """After 3 wrong passphrases alice (not bob) is refused even the right one for a minute."""
    limiter_box: list[LoginLimiter] = []

    async def body(s: Served) -> None:
        for _ in range(3):
            with pytest.raises(asyncssh.PermissionDenied):
                async with s.connect("alice", "wrong"):
                    pass
        with pytest.raises(asyncssh.PermissionDenied):
            async with s.connect(*ALICE):
                pass
        async with s.connect(*BOB):
            pass
        s.net.clock.advance_ms(61_000)
        async with s.connect(*ALICE):
            pass

    async def main() -> None:
        net_root = tmp_path
        async with served(net_root, limiter=None) as s:
            limiter = LoginLimiter(s.net.clock, max_failures_per_user=3)
            s.service.limiter = limiter
            limiter_box.append(limiter)
            await body(s)

    asyncio.run(asyncio.wait_for(main(), timeout=120))
    assert limiter_box


def test_sftp_server_logs_no_passphrase_or_unlock_secret(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """With every logger at DEBUG, neither a passphrase nor an unlock secret reaches a log."""
    caplog.set_level(logging.DEBUG)
    key = _ssh_key(tmp_path, "alice")
    secrets_seen: list[str] = []

    async def body(s: Served) -> None:
        _, secret = add_ssh_key(s.client, s.net.dirs[0].root, "alice", ALICE[1],
                                key.export_public_key().decode())
        secrets_seen.append(secret)
        async with s.sftp(*ALICE) as sftp:
            await _put(sftp, "/x", b"x")
        with pytest.raises(asyncssh.PermissionDenied):
            async with s.connect("alice", "a wrong passphrase 9"):
                pass
        async with s.connect("alice", client_keys=[key], env={UNLOCK_ENV: secret}) as conn, \
                conn.start_sftp_client() as sftp:
            await sftp.listdir("/")

    run(tmp_path, body)
    text = caplog.text
    assert "logged in" in text  # the log was captured at all
    for secret in (ALICE[1], "a wrong passphrase 9", *secrets_seen):
        assert secret not in text


def test_sftp_server_limiter_memory_bounded_for_junk_names(tmp_path: Path) -> None:
    """Huge invalid user names are refused and counted as one name: the limiter stays small."""

    async def body(s: Served) -> None:
        for i in range(3):
            with pytest.raises(asyncssh.PermissionDenied):
                async with s.connect(f"{i}" + "x" * 1000, "whatever"):
                    pass
        assert s.service.limiter.tracked() <= 2  # one source, one "(invalid name)"

    run(tmp_path, body)


def test_sftp_server_wrong_unlock_secrets_are_rate_limited(tmp_path: Path) -> None:
    """Wrong unlock secrets count as failures: past the limit even the right one stays locked."""
    key = _ssh_key(tmp_path, "alice")

    async def main() -> None:
        async with served(tmp_path) as s:
            s.service.limiter = LoginLimiter(s.net.clock, max_failures_per_user=2)
            _, secret = add_ssh_key(s.client, s.net.dirs[0].root, "alice", ALICE[1],
                                    key.export_public_key().decode())
            wrong = secret[:-3] + ("AAA" if not secret.endswith("AAA") else "BBB")

            async def listing(env: dict[str, str]) -> int:
                async with s.connect("alice", client_keys=[key], env=env) as conn, \
                        conn.start_sftp_client() as sftp:
                    try:
                        await sftp.listdir("/")
                    except asyncssh.SFTPError as exc:
                        return int(exc.code)
                    return 0

            assert await listing({UNLOCK_ENV: wrong}) == FX_PERMISSION_DENIED
            assert await listing({UNLOCK_ENV: wrong}) == FX_PERMISSION_DENIED
            assert await listing({UNLOCK_ENV: secret}) == FX_PERMISSION_DENIED
            s.net.clock.advance_ms(61_000)
            assert await listing({UNLOCK_ENV: secret}) == 0

    asyncio.run(asyncio.wait_for(main(), timeout=120))


def test_sftp_server_limits_upload_size_open_files_and_connections(tmp_path: Path) -> None:
    """Upload size, open files and connections are bounded; an oversize put stores nothing."""

    async def main() -> None:
        async with served(tmp_path) as s:
            s.service.limits = SessionLimits(max_open_files=2, max_upload_bytes=1000)
            s.service.max_connections = 1
            async with s.sftp(*ALICE) as sftp:
                f = await sftp.open("/big", "wb")
                assert await _code(f.write(b"x" * 1001)) == FX_FAILURE
                assert await _code(f.close()) == FX_FAILURE  # a failed write poisons it
                assert await sftp.listdir("/") == [".", ".."]
                a, b = await sftp.open("/a", "wb"), await sftp.open("/b", "wb")
                assert await _code(sftp.open("/c", "wb")) == FX_FAILURE
                await a.close()
                await b.close()
                with pytest.raises((asyncssh.Error, OSError)):
                    async with s.connect(*BOB) as second, second.start_sftp_client():
                        pass

    asyncio.run(asyncio.wait_for(main(), timeout=120))
