"""Issue 16 end to end: a real local cluster (``cluster up`` starts every peer's SFTP server)
driven by the real OpenSSH ``sftp`` (batch mode) and ``scp``, logging in with registered SSH
keys; passphrase login through SSH_ASKPASS; the peer's host key pinned in known_hosts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.node.sftp_address import sftp_healthy, sftp_port
from tests.integration.conftest import PASSPHRASE

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("sftp") is None or shutil.which("scp") is None,
                                 reason="needs OpenSSH sftp and scp: scripts/setup.sh")]

MiB = 1024 * 1024


class Ssh:
    """OpenSSH options for one peer: its pinned host key, no user config, no agent."""

    def __init__(self, tmp: Path, peer_dir: Path) -> None:
        self.tmp = tmp
        self.port = sftp_port(PeerDir(peer_dir).config)
        host_pub = subprocess.run(["ssh-keygen", "-y", "-f", str(peer_dir / "sftp" / "host_key")],
                                  check=True, capture_output=True, text=True).stdout.strip()
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")

    def options(self, *extra: str) -> list[str]:
        opts = ["-F", "/dev/null", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentityAgent=none",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20"]
        for option in extra:
            opts += ["-o", option]
        return opts

    def key(self, name: str) -> Path:
        path = self.tmp / f"id_{name}"
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                            "-f", str(path)], check=True)
        return path

    def key_options(self, key: Path, secret: str) -> list[str]:
        return ["-i", str(key), *self.options("IdentitiesOnly=yes",
                                              "PasswordAuthentication=no",
                                              "KbdInteractiveAuthentication=no",
                                              f"SetEnv=MYDRIVE_UNLOCK={secret}")]

    def sftp_batch(self, user: str, key: Path, secret: str, commands: str, *,
                   cwd: Path) -> subprocess.CompletedProcess[str]:
        batch = self.tmp / "batch"
        batch.write_text(commands)
        return subprocess.run(["sftp", "-b", str(batch), "-P", str(self.port),
                               *self.key_options(key, secret), f"{user}@127.0.0.1"],
                              cwd=cwd, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)

    def scp(self, key: Path, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["scp", "-P", str(self.port), *self.key_options(key, secret),
                               *args], capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)


BOB_PASSPHRASE = "bob passphrase 2"


def _register_key(net, ssh: Ssh, user: str) -> tuple[Path, str]:
    key = ssh.key(user)
    out = net.json("user", "add-ssh-key", str(key) + ".pub", user=user,
                   passphrase=BOB_PASSPHRASE if user == "bob" else PASSPHRASE)
    assert out["fingerprint"].startswith("SHA256:") and out["unlock_env"] == "MYDRIVE_UNLOCK"
    return key, out["unlock_secret"]


@pytest.fixture
def sftp_net(network_factory, tmp_path: Path):
    net = network_factory(4)
    status = json.loads(net.mydrive("cluster", "status", "--home", str(net.home), "--json",
                                    user=None).stdout)
    for peer in status["peers"]:
        service = peer["services"]["sftp"]
        assert service["healthy"] and service["address"].startswith("sftp://127.0.0.1:")
    net.mydrive("user", "create")
    net.mydrive("user", "create", user="bob", passphrase=BOB_PASSPHRASE)
    return net, Ssh(tmp_path, net.peer_dir(0))


def test_sftp_openssh_put_ls_get_rename_rm_and_scp(sftp_net, tmp_path: Path) -> None:
    """OpenSSH sftp -b and scp by SSH key: put, ls, get bit-identical, rename, rm."""
    net, ssh = sftp_net
    key, secret = _register_key(net, ssh, "alice")
    work = tmp_path / "work"
    work.mkdir()
    (work / "five.bin").write_bytes(os.urandom(5 * MiB + 17))
    (work / "small.txt").write_bytes(b"hello over sftp\n")
    result = ssh.sftp_batch("alice", key, secret, "\n".join([
        "mkdir /docs",
        "put five.bin /docs/five.bin",
        "put small.txt /docs/small.txt",
        "ls -l /docs",
        "rename /docs/small.txt /docs/renamed.txt",
        "get /docs/five.bin five.back",
        "get /docs/renamed.txt small.back",
        "rm /docs/renamed.txt",
        "ls -l /docs",
        "",
    ]), cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "five.back").read_bytes() == (work / "five.bin").read_bytes()
    assert (work / "small.back").read_bytes() == b"hello over sftp\n"
    listing = result.stdout.split("ls -l /docs")
    assert "small.txt" in listing[1] and "five.bin" in listing[1]
    assert str(5 * MiB + 17) in listing[1]
    assert "renamed.txt" not in listing[2] and "small.txt" not in listing[2]
    assert [f["path"] for f in net.json("ls")["files"]] == ["/docs/five.bin"]

    up = ssh.scp(key, secret, str(work / "small.txt"), "alice@127.0.0.1:/scp/copy.txt")
    assert up.returncode == 0, up.stderr
    down = ssh.scp(key, secret, "alice@127.0.0.1:/docs/five.bin", str(work / "scp.back"))
    assert down.returncode == 0, down.stderr
    assert (work / "scp.back").read_bytes() == (work / "five.bin").read_bytes()
    assert sorted(f["path"] for f in net.json("ls")["files"]) == ["/docs/five.bin",
                                                                  "/scp/copy.txt"]


def test_sftp_openssh_second_user_sees_nothing_of_the_first(sftp_net, tmp_path: Path) -> None:
    """bob sees, fetches, removes nothing of alice's; alice's key does not open bob."""
    net, ssh = sftp_net
    alice_key, alice_secret = _register_key(net, ssh, "alice")
    bob_key, bob_secret = _register_key(net, ssh, "bob")
    (tmp_path / "plan.txt").write_bytes(b"alice only")
    assert ssh.sftp_batch("alice", alice_key, alice_secret, "put plan.txt /plan.txt\n",
                          cwd=tmp_path).returncode == 0
    seen = ssh.sftp_batch("bob", bob_key, bob_secret, "ls -la /\n", cwd=tmp_path)
    assert seen.returncode == 0 and "plan.txt" not in seen.stdout
    for command in ("get /plan.txt stolen.txt", "rm /plan.txt", "rename /plan.txt /x"):
        refused = ssh.sftp_batch("bob", bob_key, bob_secret, command + "\n", cwd=tmp_path)
        assert refused.returncode != 0, command
    assert not (tmp_path / "stolen.txt").exists()
    crossed = ssh.sftp_batch("bob", alice_key, alice_secret, "ls /\n", cwd=tmp_path)
    assert crossed.returncode != 0 and "Permission denied" in crossed.stderr
    assert [f["path"] for f in net.json("ls")["files"]] == ["/plan.txt"]


def test_sftp_openssh_key_without_secret_stays_locked(sftp_net, tmp_path: Path) -> None:
    """A key without (or with a wrong) unlock secret stays locked; nothing is stored."""
    net, ssh = sftp_net
    key, secret = _register_key(net, ssh, "alice")
    (tmp_path / "f.txt").write_bytes(b"x")
    for wrong in ("", "mdk1_" + "A" * 43):
        result = ssh.sftp_batch("alice", key, wrong, "put f.txt /f.txt\n", cwd=tmp_path)
        assert result.returncode != 0
        assert "MYDRIVE_UNLOCK" in result.stderr or "unlock secret" in result.stderr
    assert net.json("ls")["files"] == []


def _askpass(tmp_path: Path) -> Path:
    script = tmp_path / "askpass.sh"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$TEST_SFTP_PASSPHRASE"\n')
    script.chmod(0o700)
    return script


def test_sftp_openssh_passphrase_login_via_askpass(sftp_net, tmp_path: Path) -> None:
    """OpenSSH sftp logs in with the passphrase via SSH_ASKPASS; a wrong one is refused."""
    net, ssh = sftp_net
    (tmp_path / "p.txt").write_bytes(b"by passphrase")

    def sftp(passphrase: str, commands: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SSH_ASKPASS": str(_askpass(tmp_path)),
               "SSH_ASKPASS_REQUIRE": "force", "TEST_SFTP_PASSPHRASE": passphrase}
        env.pop("DISPLAY", None)
        # Batch mode (-b) turns password prompts off: commands come on stdin instead.
        return subprocess.run(["sftp", "-P", str(ssh.port),
                               *ssh.options("PubkeyAuthentication=no",
                                            "NumberOfPasswordPrompts=1"),
                               "alice@127.0.0.1"], input=commands, cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300,
                              start_new_session=True)

    ok = sftp(PASSPHRASE, "put p.txt /p.txt\nls /\n")
    assert ok.returncode == 0 and "/p.txt" in ok.stdout, ok.stdout + ok.stderr
    wrong = sftp("not the passphrase", "rm /p.txt\n")
    assert wrong.returncode != 0 and "Permission denied" in wrong.stderr
    assert [f["path"] for f in net.json("ls")["files"]] == ["/p.txt"]


def test_sftp_cluster_status_reports_sftp_and_down_stops_it(network_factory) -> None:
    """`cluster status --json` names each peer's SFTP address; `cluster down` stops it."""
    net = network_factory(3)
    peers = cluster.status(net.home)
    for p in peers:
        sftp = next(s for s in p["services"] if s.kind == "sftp")
        assert sftp.healthy and sftp.address.startswith("sftp://127.0.0.1:")
    cluster.stop(net.home)
    assert not any(sftp_healthy(PeerDir(net.peer_dir(i)).config) for i in range(3))


def test_sftp_openssh_killed_upload_leaves_nothing(sftp_net, tmp_path: Path) -> None:
    """sftp SIGKILLed mid-put stores no file, spool or chunk; the server keeps serving."""
    net, ssh = sftp_net
    key, secret = _register_key(net, ssh, "alice")
    (tmp_path / "big.bin").write_bytes(os.urandom(16 * MiB))
    batch = tmp_path / "batch"
    batch.write_text("put big.bin /big.bin\n")
    proc = subprocess.Popen(["sftp", "-l", "8000", "-b", str(batch), "-P", str(ssh.port),
                             *ssh.key_options(key, secret), "alice@127.0.0.1"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(3.0)
        assert proc.poll() is None, "the upload finished before it could be interrupted"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(1.0)
    assert net.json("ls")["files"] == []
    spool = net.peer_dir(0) / "sftp" / "spool"
    assert list(spool.iterdir()) == []
    assert [c for i in range(4) for c in (net.peer_dir(i) / "store").rglob("*.chunk")] == []
    after = ssh.sftp_batch("alice", key, secret, "ls /\n", cwd=tmp_path)
    assert after.returncode == 0 and "big.bin" not in after.stdout
