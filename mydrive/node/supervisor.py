"""Start, recognise, signal, wait for and reap the processes that run a peer's services.

One supervisor for the local network (``mydrive cluster``, mydrive.node.cluster) and the
chaos test-bed's network-namespace backend. Every process it starts leads its own process
group (a new session on POSIX, CREATE_NEW_PROCESS_GROUP on Windows): a Ctrl-C in the shell
that started it does not reach it, and signalling the group also ends its children (nginx's
and gunicorn's workers), which would otherwise keep the ports.

A PID is acted on only while the process still runs our command: each word of
``Service.expect`` must stand as a whole word in its command line (Linux ``/proc``). A PID
kept in a state file may since have been reused by another program, which is then never
signalled. On Windows the command line of another process is not read, so only that the PID
is alive is checked there.

A crash of the caller leaves the processes running, each in its own group; whoever recorded
their PIDs (``cluster.json``, ``netns.json``) stops them later through this module.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.errors import PeerUnavailable

STOP_TIMEOUT_S = 10.0    # a graceful stop waits this long before it kills
KILL_TIMEOUT_S = 5.0     # after a kill, how long until a process that is still there is an error
POLL_S = 0.05
MAX_COMMAND_LINE_BYTES = 64 * 1024  # what is read of /proc/PID/cmdline


@dataclass(frozen=True)
class Service:
    """A process we started: its PID, and words its command line holds while it is ours."""

    pid: int
    expect: tuple[str, ...]


def spawn(argv: Sequence[str], *, log_path: Path, expect: Sequence[str],
          env: Mapping[str, str] | None = None) -> Service:
    """Start ``argv`` in a process group of its own, stdout and stderr appended to
    ``log_path``, with ``env`` over this process's environment."""
    assert expect, "a service needs words to be recognised by later"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    group: dict[str, Any] = {}
    if sys.platform == "win32":
        group["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        group["start_new_session"] = True
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env={**os.environ, **(env or {})}, **group)
    return Service(pid=proc.pid, expect=tuple(expect))


def is_ours(service: Service) -> bool:
    """True if the PID is alive (a zombie is not) and still runs the command we started."""
    return _runs(service.pid, service.expect)


def send_signal(service: Service, *, hard: bool) -> bool:
    """Ask the service's group to stop (SIGTERM), or kill it (SIGKILL) with ``hard``.

    Refuses, returning False, when the PID is not running our command."""
    if not is_ours(service):
        return False
    _signal_group(service.pid, hard)
    return True


def wait_ended(services: Sequence[Service], *, timeout_s: float) -> list[Service]:
    """Wait up to ``timeout_s`` for the services to end, reaping them; those still running."""
    deadline = time.monotonic() + timeout_s
    while True:
        # A process that no longer runs our command may still be exiting (its command line
        # reads empty before it turns zombie): a child of ours counts as ended only once
        # it has been reaped, so none is left behind in the process table.
        left = [s for s in services if is_ours(s) or not reap(s.pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_S)


def stop(services: Iterable[Service], *, hard: bool = False,
         timeout_s: float = STOP_TIMEOUT_S) -> list[Service]:
    """Stop the services that are still ours and wait until they are gone.

    Graceful first unless ``hard``; a service still running after ``timeout_s`` is killed.
    Returns the services it signalled. PeerUnavailable if one outlives the kill too.
    """
    signalled = [s for s in services if send_signal(s, hard=hard)]
    survivors = wait_ended(signalled, timeout_s=timeout_s)
    for service in survivors:
        send_signal(service, hard=True)
    stuck = wait_ended(survivors, timeout_s=KILL_TIMEOUT_S)
    if stuck:
        raise PeerUnavailable("processes still running after SIGKILL: "
                              + ", ".join(str(s.pid) for s in stuck))
    return signalled


def reap(pid: int) -> bool:
    """Collect the exit status of a child of this process that ended (else it is a zombie).

    False only for a child of ours that has not exited yet; True once it is collected, and
    for a PID that is not our child (someone else reaps it)."""
    if sys.platform == "win32":
        return True
    try:
        collected, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return collected == pid


def wait_healthy(unhealthy: Callable[[], list[str]], *, timeout_s: float) -> None:
    """Poll until ``unhealthy()`` names nothing; PeerUnavailable naming what still is."""
    deadline = time.monotonic() + timeout_s
    while True:
        bad = unhealthy()
        if not bad:
            return
        if time.monotonic() > deadline:
            raise PeerUnavailable(f"services not healthy after {timeout_s:.0f} s: "
                                  f"{', '.join(bad)} (see their logs/ directories)")
        time.sleep(0.1)


if sys.platform == "win32":
    _PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    _STILL_ACTIVE = 259

    def _runs(pid: int, expect: tuple[str, ...]) -> bool:
        # Not os.kill(pid, 0): on Windows that terminates the process.
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            return (bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code)))
                    and code.value == _STILL_ACTIVE)
        finally:
            kernel32.CloseHandle(handle)

    def _signal_group(pid: int, hard: bool) -> None:
        if hard:  # the whole tree, as the POSIX group kill does
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True,
                           timeout=KILL_TIMEOUT_S, check=False)
            return
        with suppress(OSError):
            os.kill(pid, signal.CTRL_BREAK_EVENT)  # to its group; serve handles SIGBREAK

else:
    def _runs(pid: int, expect: tuple[str, ...]) -> bool:
        proc = Path(f"/proc/{pid}")
        try:
            with open(proc / "cmdline", "rb") as f:
                raw = f.read(MAX_COMMAND_LINE_BYTES)
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state in ("Z", "X"):
            return False  # a zombie is dead for our purposes
        # Arguments are NUL-separated, but a program may rewrite its title into one
        # space-separated string (nginx: "nginx: master process /usr/sbin/nginx -p …").
        line = raw.decode(errors="replace")
        return all(re.search(rf"(?:^|[\0 ]){re.escape(word)}(?:$|[\0 ])", line)
                   for word in expect)

    def _signal_group(pid: int, hard: bool) -> None:
        sig = signal.SIGKILL if hard else signal.SIGTERM
        with suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:  # not a group leader (started by someone else): only the process
                os.kill(pid, sig)
