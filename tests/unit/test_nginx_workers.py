"""The account a root-run peer's nginx workers run as (mydrive/node/nginx_workers.py): never
root, never an account other daemons share, created when missing (docs/security.md,
"Local accounts and the services")."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mydrive.errors import BadRequest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="nginx's user directive: POSIX")


@pytest.mark.parametrize("name", ["root", "nobody", "www-data"])
def test_shared_or_root_accounts_are_refused(name: str, monkeypatch) -> None:
    """Root would give the network's TLS parser root; "nobody" and "www-data" are other
    daemons' too, which could then open the peer's sockets."""
    import pwd

    from mydrive.node.nginx_workers import ACCOUNT_ENV, worker_account

    try:
        pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no {name} account here")
    monkeypatch.setenv(ACCOUNT_ENV, name)
    with pytest.raises(BadRequest, match="of their own"):
        worker_account()


def test_an_account_whose_group_others_share_is_refused(monkeypatch) -> None:
    """An account whose group is another account's group too (one found on this machine):
    that other account could open the sockets."""
    import pwd

    from mydrive.node.nginx_workers import ACCOUNT_ENV, worker_account

    by_gid: dict[int, list[str]] = {}
    for entry in pwd.getpwall():
        by_gid.setdefault(entry.pw_gid, []).append(entry.pw_name)
    sharing = [names[0] for gid, names in by_gid.items() if len(names) > 1 and gid != 0]
    if not sharing:
        pytest.skip("no two accounts share a group here")
    monkeypatch.setenv(ACCOUNT_ENV, sharing[0])
    with pytest.raises(BadRequest, match="of their own"):
        worker_account()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                    reason="only root creates accounts")
def test_a_missing_account_is_created_once_as_a_system_account(monkeypatch, caplog) -> None:
    """Four peers starting at once each find the account missing: one useradd makes it (a
    system account and group of its own, no login, no home), the others wait and use it,
    and the creation is logged."""
    import grp
    import pwd

    from mydrive.node.nginx_workers import ACCOUNT_ENV, worker_account

    name = f"mdtest-{secrets.token_hex(4)}"
    monkeypatch.setenv(ACCOUNT_ENV, name)
    try:
        with (caplog.at_level(logging.WARNING, logger="mydrive.node.nginx_workers"),
              ThreadPoolExecutor(4) as pool):
            accounts = list(pool.map(lambda _: worker_account(), range(4)))
        entry = pwd.getpwnam(name)
        assert {a.uid for a in accounts} == {entry.pw_uid} and entry.pw_uid != 0
        assert {a.user_directive for a in accounts} == {f"user {name} {name};"}
        assert grp.getgrgid(entry.pw_gid).gr_name == name
        assert entry.pw_shell.endswith(("nologin", "false"))
        assert not Path(entry.pw_dir).exists()
        created = [r for r in caplog.records if "created the system account" in r.message]
        assert len(created) == 1
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="runtime directories under /run/mydrive: root only")
def test_runtime_dirs_of_deleted_peers_are_removed(tmp_path: Path) -> None:
    """Each runtime directory records its peer directory; a root-run peer's start removes
    those whose peer directory is gone (deleted, or its peer killed and never started again),
    and a test session removes those of its own peers. One without a record is nobody's to
    judge and stays."""
    from mydrive.node.nginx_workers import (
        RUNTIME_BASE,
        prepare_runtime_dir,
        prune_stale_runtime_dirs,
        recorded_peer,
        runtime_dir,
        worker_account,
    )

    account = worker_account()
    peers = []
    for name in ("kept", "deleted"):
        root = tmp_path / name
        root.mkdir()
        (root / "peer.json").write_text("{}")
        peers.append(root)
    kept, deleted = peers
    for root in peers:
        prepare_runtime_dir(root, account)
        assert recorded_peer(runtime_dir(root)) == root.resolve()
    unrecorded = RUNTIME_BASE / secrets.token_hex(8)
    unrecorded.mkdir()
    try:
        (deleted / "peer.json").unlink()
        prepare_runtime_dir(kept, account)  # a start of another root-run peer
        assert not runtime_dir(deleted).exists()
        assert runtime_dir(kept).is_dir() and unrecorded.is_dir()
        assert prune_stale_runtime_dirs(under=tmp_path) == [runtime_dir(kept)]
        assert not runtime_dir(kept).exists() and unrecorded.is_dir()
    finally:
        unrecorded.rmdir()
