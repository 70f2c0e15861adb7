"""Who a root-run peer's nginx workers are, and where they meet its services.

A peer whose account is root (its ``peer.json`` is root's: ``sudo mydrive ...``, CI) must not
have root nginx workers: they parse every TLS connection from the network before any
certificate check. Nor may they be "nobody" or "www-data", accounts other daemons share,
since the workers alone (with root) may open the services' sockets. So they run as an
account of their own, ``mydrive-nginx`` (``MYDRIVE_NGINX_USER`` names another; set it alike
for every mydrive process), which a root-run peer creates when it is missing
(``useradd --system``, logged; docs/security.md says why).

Where they meet: root's ``PEER_DIR`` often sits in a directory that account can't search
(``/root``, pytest's 0700 temporary directories), so a root-run peer's sockets and nginx's
temporary files live in a runtime directory of their own instead, ``/run/mydrive/<hash of
PEER_DIR>/``: root's, group the workers' account, 0750, in a root-owned 0711 base. The
sockets in it are root's, group the workers', 0660 (``service_socket.bind_private_socket``):
a worker that went wrong can use them but can't hand them to anyone else (no chmod on a file
it does not own). POSIX only (imported where a peer is root's).
"""

from __future__ import annotations

import fcntl
import grp
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mydrive.errors import BadRequest
from mydrive.runtime.disk import atomic_write_bytes

log = logging.getLogger("mydrive.node.nginx_workers")

ACCOUNT_ENV = "MYDRIVE_NGINX_USER"
DEFAULT_ACCOUNT = "mydrive-nginx"
RUNTIME_BASE = Path("/run/mydrive")
RUNTIME_BASE_MODE = 0o711  # others may pass through to a directory they are given, not list
RUNTIME_DIR_MODE = 0o750   # root's, group the workers': nobody else passes
TEMP_DIR_MODE = 0o700      # the workers' own (nginx's client body and proxy temp files)
PEER_RECORD = "peer"       # in each runtime directory: the path of the peer directory it serves
NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
# Accounts other daemons run as (nginx's own default among them): never the workers'.
SHARED_ACCOUNTS = frozenset({"nobody", "nogroup", "www-data", "nginx", "http", "daemon"})
OVERFLOW_ID = 65534  # nobody/nogroup, whatever their names


@dataclass(frozen=True)
class WorkerAccount:
    name: str
    group: str
    uid: int
    gid: int

    @property
    def user_directive(self) -> str:
        return f"user {self.name} {self.group};"


def account_name() -> str:
    return os.environ.get(ACCOUNT_ENV, "").strip() or DEFAULT_ACCOUNT


def worker_account() -> WorkerAccount:
    """The account a root-run peer's nginx workers run as, created if missing (root only:
    no one else runs a root-owned peer), and checked to be theirs alone."""
    name = account_name()
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create(name)
        entry = pwd.getpwnam(name)
    account = WorkerAccount(name=name, group=grp.getgrgid(entry.pw_gid).gr_name,
                            uid=entry.pw_uid, gid=entry.pw_gid)
    _check_dedicated(account)
    return account


def _create(name: str) -> None:
    """``useradd --system`` under a lock (a network's peers start at once, and useradd
    fails rather than waits on a locked /etc/passwd)."""
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    shell = next((s for s in NOLOGIN_SHELLS if Path(s).exists()), "/bin/false")
    if not Path(useradd).exists():
        raise BadRequest(f"a peer run by root runs its nginx's workers as the account "
                         f"{name!r}, which does not exist, and there is no useradd to create "
                         f"it: create a system account and group of that name (no login, no "
                         f"home), or run the peer under an unprivileged account")
    _runtime_base()
    with open(os.open(RUNTIME_BASE / ".account.lock", os.O_WRONLY | os.O_CREAT, 0o600),
              "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(name)
            return  # another peer made it while we waited
        except KeyError:
            pass
        result = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", shell,
             "--comment", "mydrive nginx workers of peers run by root", name],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            check=False)
    if result.returncode != 0:
        raise BadRequest(f"could not create the account {name!r} for nginx's workers "
                         f"(useradd: {result.stderr.strip()[-300:]}): create it yourself, "
                         f"or run the peer under an unprivileged account")
    log.warning("created the system account %r (useradd --system, no login, no home): nginx's "
                "workers of peers run by root run as it, not as root (docs/security.md)", name)


def _check_dedicated(account: WorkerAccount) -> None:
    """Root, a well-known daemons' account, or an account whose group others are in (as
    members or as their own group) would let those others open the sockets too. What the
    account is used for beyond that, mydrive can't tell: it must be for nothing else."""
    shared = [e.pw_name for e in pwd.getpwall()
              if e.pw_name != account.name and account.gid == e.pw_gid]
    shared += [m for m in grp.getgrgid(account.gid).gr_mem if m != account.name]
    if ({account.uid, account.gid} & {0, OVERFLOW_ID}
            or {account.name, account.group} & SHARED_ACCOUNTS or shared):
        raise BadRequest(f"nginx's workers of a peer run by root need an account and group "
                         f"of their own; {account.name!r} (uid {account.uid}, group "
                         f"{account.group!r}) is root's, other daemons' or shared"
                         f"{' with ' + ', '.join(sorted(set(shared))) if shared else ''}: "
                         f"set {ACCOUNT_ENV} to an account used for nothing else")


def runtime_dir(peer_root: Path) -> Path:
    """Where a root-run peer's sockets and nginx temporary files are (not created here)."""
    digest = hashlib.sha256(os.fsencode(peer_root.resolve())).hexdigest()[:16]
    return RUNTIME_BASE / digest


def _runtime_base() -> None:
    RUNTIME_BASE.mkdir(mode=RUNTIME_BASE_MODE, parents=True, exist_ok=True)
    _own(RUNTIME_BASE, 0, 0, RUNTIME_BASE_MODE)


def prepare_runtime_dir(peer_root: Path, account: WorkerAccount) -> Path:
    """Create (or put right) the peer's runtime directory and nginx's temp directory in it,
    record whose it is, and remove those of peer directories that no longer exist."""
    _runtime_base()
    prune_stale_runtime_dirs()
    path = runtime_dir(peer_root)
    path.mkdir(mode=RUNTIME_DIR_MODE, exist_ok=True)
    _own(path, 0, account.gid, RUNTIME_DIR_MODE)
    record = path / PEER_RECORD
    wanted = os.fsencode(peer_root.resolve())
    if not record.is_file() or record.read_bytes() != wanted:
        atomic_write_bytes(record, wanted)
    temp = temp_dir(peer_root)
    temp.mkdir(mode=TEMP_DIR_MODE, exist_ok=True)
    _own(temp, account.uid, account.gid, TEMP_DIR_MODE)
    return path


def recorded_peer(path: Path) -> Path | None:
    """The peer directory a runtime directory was made for (its ``peer`` record), if any."""
    try:
        return Path(os.fsdecode((path / PEER_RECORD).read_bytes()))
    except OSError:
        return None


def prune_stale_runtime_dirs(*, under: Path | None = None) -> list[Path]:
    """Remove the runtime directories whose peer directory is gone (a peer deleted, or
    killed and never started again); with ``under``, those of every peer directory under it
    (a test session's, once its peers have stopped). Directories without a record are left
    alone: nothing says whose they are. The removed ones."""
    removed: list[Path] = []
    if not RUNTIME_BASE.is_dir():
        return removed
    for path in RUNTIME_BASE.iterdir():
        if not path.is_dir() or path.is_symlink():
            continue
        peer = recorded_peer(path)
        if peer is None:
            continue
        gone = not (peer / "peer.json").is_file()
        if gone or (under is not None and peer.is_relative_to(under.resolve())):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def release_runtime_dir(peer_root: Path) -> bool:
    """Remove the peer's runtime directory once none of its services or nginx runs (its
    sockets and nginx's temp files are of no use then; ``/run`` is not a tmpfs everywhere).
    ``shutil.rmtree`` works by file descriptor on Linux, so a symlink a worker planted in
    ``tmp/`` is removed, never followed. True if there was one."""
    path = runtime_dir(peer_root)
    if not path.is_dir() or path.is_symlink():
        return False
    shutil.rmtree(path)
    return True


def temp_dir(peer_root: Path) -> Path:
    return runtime_dir(peer_root) / "tmp"


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    """``path`` a real directory (no symlink) with exactly that owner and mode."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise BadRequest(f"{path} is not a directory: remove it (a peer run by root keeps "
                         f"its sockets there)")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
