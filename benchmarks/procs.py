"""Measure processes as the kernel sees them: wall time, CPU seconds and peak RSS.

A child we run (``mydrive put``, ``scp``, ``tahoe get``) is measured by ``wait4``: its rusage
covers the child and every descendant it waited for (``scp`` forks ``ssh``). A long-running
service (a peer's receiver, nginx and its workers, sshd and its per-connection children) is
measured through ``/proc``: every process of its session (each service we start leads its own
session), CPU = utime + stime + cutime + cstime, read before and after a transfer. Peak RSS of
a service is ``VmHWM``, reset before a transfer by writing 5 to ``/proc/PID/clear_refs``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Measured:
    """One finished child: wall seconds, CPU seconds (user + system), peak RSS, stdout."""

    wall_s: float
    cpu_s: float
    sys_s: float  # the part of cpu_s spent in the kernel
    peak_rss_bytes: int
    stdout: str


class ChildFailed(RuntimeError):
    """A measured command exited non-zero; the message carries its stderr."""


def run_measured(args: list[str], *, env: dict[str, str] | None = None,
                 stdin_text: str | None = None, timeout_s: float = 3600.0) -> Measured:
    """Run ``args`` to completion and measure it with wait4 (raises ChildFailed)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin_text is not None
                                else subprocess.DEVNULL)
        if stdin_text is not None and proc.stdin is not None:
            proc.stdin.write(stdin_text.encode())
            proc.stdin.close()
        deadline = start + timeout_s
        while True:  # wait4, not Popen.wait: it alone returns the child's rusage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise ChildFailed(f"{' '.join(args)} timed out after {timeout_s:.0f} s")
            time.sleep(0.005)
        wall_s = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise ChildFailed(f"{' '.join(args)} exited {proc.returncode}: "
                          f"{stderr.decode(errors='replace')[-2000:]}")
    return Measured(wall_s=wall_s, cpu_s=usage.ru_utime + usage.ru_stime, sys_s=usage.ru_stime,
                    peak_rss_bytes=int(usage.ru_maxrss) * 1024,
                    stdout=stdout.decode(errors="replace"))


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 is field 3, the state)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def session_pids(session_id: int) -> list[int]:
    """Every live process whose session id is ``session_id`` (a service and its children)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[3]) == session_id:
            found.append(int(entry.name))
    return found


def session_cpu_split_s(session_id: int) -> tuple[float, float]:
    """(user, system) CPU seconds so far of a session: its live processes and the children
    they reaped."""
    user = system = 0
    for pid in session_pids(session_id):
        fields = _stat_fields(pid)
        if fields is not None:  # utime stime cutime cstime
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return user / CLOCK_TICKS_PER_S, system / CLOCK_TICKS_PER_S


def session_cpu_s(session_id: int) -> float:
    """CPU seconds so far of a session (user + system)."""
    return sum(session_cpu_split_s(session_id))


def cpu_by_kind(sessions: dict[str, list[int]]) -> dict[str, float]:
    """{kind: CPU s, kind/sys: its system part} summed over each kind's sessions."""
    out: dict[str, float] = {}
    for kind, sids in sessions.items():
        split = [session_cpu_split_s(sid) for sid in sids]
        out[kind] = sum(u + s for u, s in split)
        out[f"{kind}/sys"] = sum(s for _, s in split)
    return out


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of one process (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def session_peak_rss_bytes(session_id: int) -> int:
    """The largest VmHWM among a session's processes (nginx: master or one worker)."""
    return max((peak_rss_bytes(p) for p in session_pids(session_id)), default=0)


def reset_peak_rss(session_id: int) -> bool:
    """Reset VmHWM of a session's processes to their current RSS; False if not allowed."""
    ok = True
    for pid in session_pids(session_id):
        try:
            (PROC / str(pid) / "clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def free_port() -> int:
    """A loopback TCP port free right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, *, timeout_s: float = 30.0, what: str = "service") -> None:
    """Block until something accepts on 127.0.0.1:port, or raise naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> None:
    """SIGTERM a process we started (its whole session), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
