"""The scp/sftp side: an OpenSSH server of our own on a loopback port.

``sshd -D -e -f CONFIG`` with a host key, an authorized_keys file and a config that all live
in a temporary directory, so no system file is read or changed (the one exception: sshd as
root insists on its compiled-in privilege-separation directory /run/sshd, which is created
empty when missing). OpenSSH's defaults are kept (cipher, compression off): the figures are
what a user gets from ``scp``. Since OpenSSH 9.0 ``scp`` speaks the SFTP protocol too.
"""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from benchmarks.procs import (
    Measured,
    cpu_by_kind,
    free_port,
    run_measured,
    stop_process,
    wait_port,
)

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")


class SshServer:
    """One sshd on 127.0.0.1 that accepts only our own client key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.user = getpass.getuser()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not SSHD.exists():
            raise RuntimeError(f"{SSHD} missing: run benchmarks/setup.sh (openssh-server)")
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "client_key"):
            if not (self.root / name).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench",
                                "-f", str(self.root / name)], check=True)
        (self.root / "authorized_keys").write_bytes((self.root / "client_key.pub").read_bytes())
        (self.root / "authorized_keys").chmod(0o600)
        self.port = free_port()
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.root / 'host_key'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            f"PidFile {self.root / 'sshd.pid'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        if not PRIVSEP_DIR.exists():
            PRIVSEP_DIR.mkdir(mode=0o755)
        log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        wait_port(self.port, what="sshd")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds of sshd and its per-connection children so far (and the kernel part)."""
        assert self.proc is not None
        return cpu_by_kind({"sshd": [self.proc.pid]})

    def _options(self) -> list[str]:
        return ["-i", str(self.root / "client_key"), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={self.root / 'known_hosts'}",
                "-o", "LogLevel=ERROR"]

    def scp_put(self, local: Path, remote: Path) -> Measured:
        return run_measured(["scp", "-q", "-P", str(self.port), *self._options(), str(local),
                             f"{self.user}@127.0.0.1:{remote}"])

    def scp_get(self, remote: Path, local: Path) -> Measured:
        return run_measured(["scp", "-q", "-P", str(self.port), *self._options(),
                             f"{self.user}@127.0.0.1:{remote}", str(local)])

    def sftp_put(self, local: Path, remote: Path) -> Measured:
        return run_measured(["sftp", "-q", "-b", "-", "-P", str(self.port), *self._options(),
                             f"{self.user}@127.0.0.1"], stdin_text=f'put "{local}" "{remote}"\n')

    def sftp_get(self, remote: Path, local: Path) -> Measured:
        return run_measured(["sftp", "-q", "-b", "-", "-P", str(self.port), *self._options(),
                             f"{self.user}@127.0.0.1"], stdin_text=f'get "{remote}" "{local}"\n')
