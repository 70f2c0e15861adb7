"""SFTP put and get of one file through mydrive's SFTP face, against plain OpenSSH sftp to a
local sshd, in the same run; ratios as JSON (docs/sftp.md has the figures).

    .venv/bin/python -m benchmarks.sftp_vs_openssh [--size-mib 512] [--peers 5] [--no-tls]
                                                   [--out FILE]

Both sides are driven by the same OpenSSH ``sftp -b`` client on loopback. The baseline is
``sshd -D -e -f CONFIG`` on its own port with its own host key (benchmarks.ssh_side), writing
to a local directory. The mydrive side is a local network started as ``mydrive cluster up``
starts it (TLS between peers unless --no-tls); the client logs in to peer-0's SFTP server
with a registered SSH key and its unlock secret. A put through mydrive is whole when CLOSE
returns: spooled, encrypted, chunked and stored on R peers. A get streams chunks fetched,
verified and decrypted. Both gets read their stored bytes from disk (synced, pages dropped).
Both copies are checked bit-identical (SHA-256). The SFTP server's peak RSS (VmHWM) is read
for each transfer to show its memory stays flat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import cache_state
from benchmarks.common import MiB, commit, machine, mbps, now_utc, random_file
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import (
    Measured,
    reset_peak_rss,
    run_measured,
    session_cpu_s,
    session_peak_rss_bytes,
)
from benchmarks.ssh_side import SshServer
from mydrive.node.peerdir import PeerDir
from mydrive.node.sftp_address import sftp_port

USER = "bench"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def _figures(m: Measured, size_bytes: int) -> dict[str, float]:
    return {"wall_s": round(m.wall_s, 3), "mb_per_s": round(mbps(size_bytes, m.wall_s), 1),
            "client_cpu_s": round(m.cpu_s, 3)}


def openssh_side(work: Path, src: Path, digest: str) -> dict[str, Any]:
    sshd = SshServer(work / "sshd")
    sshd.start()
    try:
        remote, back = work / "sshd-remote.bin", work / "sshd-back.bin"
        assert sshd.proc is not None
        sid = sshd.proc.pid  # sshd leads its own session: its per-connection children too
        cpu0 = session_cpu_s(sid)
        put = sshd.sftp_put(src, remote)
        cpu1 = session_cpu_s(sid)
        cache_state.settle([remote])  # read from disk, as mydrive's get is
        get = sshd.sftp_get(remote, back)
        cpu2 = session_cpu_s(sid)
        assert sha256(back) == digest, "OpenSSH round trip is not bit-identical"
    finally:
        sshd.stop()
    size = src.stat().st_size
    return {"put": {**_figures(put, size), "server_cpu_s": round(cpu1 - cpu0, 3)},
            "get": {**_figures(get, size), "server_cpu_s": round(cpu2 - cpu1, 3)}}


def _sftp_pid(net: MydriveNetwork) -> int:
    for service in net.services():
        if service["peer"] == "peer-0" and service["kind"] == "sftp":
            return int(service["pid"])
    raise RuntimeError("peer-0 runs no sftp service: is it wired into `cluster up`?")


def mydrive_side(work: Path, src: Path, digest: str, *, peers: int,
                 tls: bool) -> dict[str, Any]:
    net = MydriveNetwork(work / "net", tls=tls, peers=peers)
    try:
        net.up()
        key = work / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        added = json.loads(net._cli("user", "add-ssh-key", "--json", f"{key}.pub"))
        port = sftp_port(PeerDir(work / "net" / "peer-0").config)
        options = ["-P", str(port), "-i", str(key), "-o", "IdentitiesOnly=yes",
                   "-o", "IdentityAgent=none", "-o", "StrictHostKeyChecking=no",
                   "-o", f"UserKnownHostsFile={work / 'known_hosts'}", "-o", "LogLevel=ERROR",
                   "-o", f"SetEnv={added['unlock_env']}={added['unlock_secret']}"]
        pid = _sftp_pid(net)
        back = work / "mydrive-back.bin"

        def sftp(command: str) -> tuple[Measured, float, int]:
            reset_peak_rss(pid)
            cpu0 = session_cpu_s(pid)
            m = run_measured(["sftp", "-q", "-b", "-", *options, f"{USER}@127.0.0.1"],
                             stdin_text=command)
            return m, session_cpu_s(pid) - cpu0, session_peak_rss_bytes(pid)

        cpu_before = net.cpu_s_by_kind()
        put, put_cpu, put_rss = sftp(f'put "{src}" /bench.bin\n')
        cpu_mid = net.cpu_s_by_kind()
        cache_state.settle(cache_state.files_under(net.home, "*.chunk", what="mydrive"))
        get, get_cpu, get_rss = sftp(f'get /bench.bin "{back}"\n')
        cpu_after = net.cpu_s_by_kind()
        assert sha256(back) == digest, "mydrive SFTP round trip is not bit-identical"
    finally:
        net.down()
    size = src.stat().st_size
    return {
        "put": {**_figures(put, size), "sftp_server_cpu_s": round(put_cpu, 3),
                "sftp_server_peak_rss_bytes": put_rss,
                "peer_services_cpu_s": {k: round(cpu_mid[k] - cpu_before[k], 3)
                                        for k in cpu_mid}},
        "get": {**_figures(get, size), "sftp_server_cpu_s": round(get_cpu, 3),
                "sftp_server_peak_rss_bytes": get_rss,
                "peer_services_cpu_s": {k: round(cpu_after[k] - cpu_mid[k], 3)
                                        for k in cpu_after}},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--no-tls", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch directory (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    if shutil.which("sftp") is None:
        print("needs OpenSSH sftp and sshd: scripts/setup.sh", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="mydrive-sftp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        size = args.size_mib * MiB
        src = random_file(work / "src.bin", size)
        digest = sha256(src)
        openssh = openssh_side(work, src, digest)
        (work / "sshd-remote.bin").unlink(missing_ok=True)
        (work / "sshd-back.bin").unlink(missing_ok=True)
        mydrive = mydrive_side(work, src, digest, peers=args.peers, tls=not args.no_tls)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "sftp_vs_openssh", "date": now_utc(), "machine": machine(),
        "commit": commit(), "size_bytes": size, "peers": args.peers,
        "replicas": 2, "tls": not args.no_tls, "client": "OpenSSH sftp -b",
        "openssh": openssh, "mydrive": mydrive,
        "ratios": {
            "put_time_mydrive_over_openssh": round(
                mydrive["put"]["wall_s"] / openssh["put"]["wall_s"], 2),
            "get_time_mydrive_over_openssh": round(
                mydrive["get"]["wall_s"] / openssh["get"]["wall_s"], 2),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
