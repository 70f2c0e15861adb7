"""Where a download job may write when the peer's receiver runs in a container
(mydrive.node.container): the host's CLI and the pod see one peer directory at two paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mydrive.errors import BadRequest
from mydrive.node.container import (
    RECEIVER_ROOT_NAME,
    nginx_resolver,
    receiver_destination,
    record_receiver_root,
    system_resolver,
)


def in_a_pod(peer_dir: Path, root: str = "/peer") -> None:
    """What `serve receiver` records when it sees ``peer_dir`` at ``root``."""
    (peer_dir / RECEIVER_ROOT_NAME).write_text(json.dumps({"root": root, "windows": False}))


def test_destination_under_the_peer_directory_is_rebased(tmp_path: Path) -> None:
    peer = tmp_path / "peers" / "peer-0"
    peer.mkdir(parents=True)
    in_a_pod(peer)
    assert receiver_destination(peer, peer / "downloads" / "work" / "a.bin") == \
        "/peer/downloads/work/a.bin"


def test_destination_the_pod_cannot_see_is_refused_naming_local(tmp_path: Path) -> None:
    peer = tmp_path / "peer"
    peer.mkdir()
    in_a_pod(peer)
    for outside in (tmp_path / "elsewhere" / "a.bin", peer / ".." / "x" / "a.bin"):
        with pytest.raises(BadRequest, match="--local") as err:
            receiver_destination(peer, outside)
        assert "container" in str(err.value) and str(peer.resolve()) in str(err.value)


def test_same_view_or_no_record_leaves_paths_alone(tmp_path: Path) -> None:
    """A receiver on this machine (it recorded the same path) writes anywhere it may; a
    receiver that recorded nothing (older) gets the path as before."""
    peer = tmp_path / "peer"
    peer.mkdir()
    elsewhere = tmp_path / "out" / "a.bin"
    assert receiver_destination(peer, elsewhere) == str(elsewhere)
    record_receiver_root(peer)
    assert receiver_destination(peer, elsewhere) == str(elsewhere)
    (peer / RECEIVER_ROOT_NAME).write_text("{not json")
    assert receiver_destination(peer, elsewhere) == str(elsewhere)


def test_resolvers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# kubelet\nsearch a.svc.cluster.local svc.cluster.local\n"
                    "nameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n")
    assert system_resolver(conf) == "10.96.0.10"
    assert nginx_resolver("fd00::a") == "[fd00::a]"
    conf.write_text("search x\n")
    with pytest.raises(BadRequest, match="no nameserver"):
        system_resolver(conf)
    with pytest.raises(BadRequest, match="not an IP address"):
        nginx_resolver("kube-dns; evil")
