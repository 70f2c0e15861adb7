"""The process supervisor (mydrive.node.supervisor): it signals only processes that still run
our command, stops gracefully or hard, ends the whole group, and reaps what it started."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mydrive.node import supervisor
from mydrive.node.supervisor import Service

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc (Linux)")

# A stand-in service: says when it is ready, writes a file when SIGTERM lets it clean up,
# optionally ignores SIGTERM or starts a grandchild that sleeps.
SCRIPT = """
import os, signal, subprocess, sys, time
out = sys.argv[1]
mode = sys.argv[3]
def on_term(signum, frame):
    open(os.path.join(out, "graceful"), "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else on_term)
if mode == "parent":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open(os.path.join(out, "child"), "w").write(str(child.pid))
open(os.path.join(out, "ready"), "w").close()
while True:
    time.sleep(0.05)
"""


def _start(tmp_path: Path, word: str, mode: str = "plain") -> Service:
    service = supervisor.spawn([sys.executable, "-c", SCRIPT, str(tmp_path), word, mode],
                               log_path=tmp_path / "logs" / "svc.log", expect=(word, mode))
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists():
        assert time.monotonic() < deadline, (tmp_path / "logs" / "svc.log").read_text()
        time.sleep(0.02)
    return service


def _gone(pid: int) -> bool:
    """No process with that PID (not even a zombie: it was reaped)."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def started() -> Iterator[list[Service]]:
    services: list[Service] = []
    yield services
    for s in services:  # whatever a failed test left running
        if supervisor.is_ours(s):
            os.killpg(s.pid, signal.SIGKILL)
        supervisor.wait_ended([s], timeout_s=5)


def test_supervisor_refuses_to_signal_a_pid_not_running_our_command(
        tmp_path: Path, started: list[Service]) -> None:
    """A recorded PID whose command line lacks our words (a reused PID) is never signalled:
    neither a process we started for something else nor this test process itself."""
    service = _start(tmp_path, "svc-a")
    started.append(service)
    other = Service(pid=service.pid, expect=("svc-b", "plain"))
    assert not supervisor.send_signal(other, hard=True)
    assert supervisor.stop([other], hard=True) == []
    assert supervisor.is_ours(service)  # still running: it was not touched
    me = Service(pid=os.getpid(), expect=("mydrive", "serve", "receiver", str(tmp_path)))
    assert not supervisor.is_ours(me)
    assert not supervisor.send_signal(me, hard=True)


def test_supervisor_matches_whole_words(tmp_path: Path, started: list[Service]) -> None:
    """'peer-1' does not match a command line holding 'peer-10' (a peer dir that merely
    starts with ours); the exact word does."""
    service = _start(tmp_path, "/h/peer-10")
    started.append(service)
    assert not supervisor.is_ours(Service(service.pid, ("/h/peer-1",)))
    assert not supervisor.is_ours(Service(service.pid, ("peer-10",)))
    assert supervisor.is_ours(Service(service.pid, ("/h/peer-10", "plain")))


def test_supervisor_graceful_stop_lets_the_service_clean_up(
        tmp_path: Path, started: list[Service]) -> None:
    """stop() sends SIGTERM first: the service's handler runs; it is then gone and reaped."""
    service = _start(tmp_path, "svc")
    started.append(service)
    assert supervisor.stop([service]) == [service]
    assert (tmp_path / "graceful").exists()
    assert _gone(service.pid)


def test_supervisor_hard_stop_kills_without_clean_up(tmp_path: Path,
                                                      started: list[Service]) -> None:
    """stop(hard=True) is SIGKILL: no handler runs; the process is gone and reaped."""
    service = _start(tmp_path, "svc")
    started.append(service)
    assert supervisor.stop([service], hard=True) == [service]
    assert not (tmp_path / "graceful").exists()
    assert _gone(service.pid)


def test_supervisor_kills_a_service_that_ignores_sigterm(tmp_path: Path,
                                                         started: list[Service]) -> None:
    """A service still running when the graceful timeout ends is killed, then reaped."""
    service = _start(tmp_path, "svc", "stubborn")
    started.append(service)
    t0 = time.monotonic()
    supervisor.stop([service], timeout_s=0.5)
    assert 0.5 <= time.monotonic() - t0 < 5
    assert _gone(service.pid)


def test_supervisor_stop_ends_the_service_group(tmp_path: Path,
                                                started: list[Service]) -> None:
    """The service leads its own process group: stopping it also ends its children (nginx's
    workers), which would otherwise keep its ports."""
    service = _start(tmp_path, "svc", "parent")
    started.append(service)
    child = int((tmp_path / "child").read_text())
    assert os.getpgid(child) == service.pid and os.getpgid(service.pid) == service.pid
    assert os.getsid(service.pid) == service.pid  # a session of its own: no Ctrl-C from us
    supervisor.stop([service])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and b"Z" not in _state(child):
        assert time.monotonic() < deadline, "the service's child outlived it"
        time.sleep(0.02)


def test_supervisor_spawn_appends_to_the_log(tmp_path: Path, started: list[Service]) -> None:
    """stdout and stderr of a service go to its log file, appended across starts."""
    log = tmp_path / "logs" / "echo.log"
    for n in (1, 2):
        s = supervisor.spawn([sys.executable, "-c", f"import sys; print('out{n}'); "
                              f"print('err{n}', file=sys.stderr)"], log_path=log,
                             expect=("never-matches",))
        os.waitpid(s.pid, 0)
    assert log.read_text().split() == ["out1", "err1", "out2", "err2"]


def test_supervisor_wait_healthy_names_what_never_got_healthy() -> None:
    """wait_healthy returns once nothing is unhealthy, else raises naming what still is."""
    from mydrive.errors import PeerUnavailable

    answers = iter([["peer-0/sender"], []])
    supervisor.wait_healthy(lambda: next(answers), timeout_s=5)
    with pytest.raises(PeerUnavailable, match="peer-1/receiver"):
        supervisor.wait_healthy(lambda: ["peer-1/receiver"], timeout_s=0.2)


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return b"Z"
