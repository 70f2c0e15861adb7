"""Creating peers with handed-in ports and peer ids: the same sources make the same peers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mydrive.node import cluster
from mydrive.node.peerdir import PeerIdSource, PortAllocator, init_peer

SEED = 20261129
# peer.json fields that must stay random whatever sources are handed in (docs/peer-directory.md)
SECRET_FIELDS = {"couchdb_password", "couchdb_member_password"}


def sources(seed: int) -> tuple[PortAllocator, PeerIdSource]:
    """A seeded port allocator and peer-id source, as the test-bed or a simulator hands in."""
    rng = random.Random(seed)
    return (lambda host: rng.randint(20000, 32000)), (lambda: rng.randbytes(8).hex())


def peer_json(root: Path) -> dict[str, object]:
    return dict(json.loads((root / "peer.json").read_text()))


def assert_same_but_secrets(a: dict[str, object], b: dict[str, object],
                            also_random: set[str] = set()) -> None:  # noqa: B006 - read only
    """Equal in every field but the secrets (and ``also_random``); set secrets differ."""
    chosen = set(a) - SECRET_FIELDS - also_random
    assert {k: a[k] for k in chosen} == {k: b[k] for k in chosen}, f"seed {SEED}"
    for key in SECRET_FIELDS & set(a):
        assert not a[key] or a[key] != b[key], f"{key} repeated across creations"


@pytest.mark.parametrize("metadata", ["sqlite", "couchdb"])
def test_init_peer_same_sources_same_peer_json(tmp_path: Path, metadata: str) -> None:
    """Two peers made from the same seeded sources have identical peer.json files."""
    made = []
    for run in ("a", "b"):
        ports, new_peer_id = sources(SEED)
        made.append(peer_json(init_peer(tmp_path / run / "peer", metadata=metadata,
                                        ports=ports, new_peer_id=new_peer_id).root))
    assert_same_but_secrets(made[0], made[1])
    ports, new_peer_id = sources(SEED + 1)
    other = peer_json(init_peer(tmp_path / "c" / "peer", metadata=metadata, ports=ports,
                                new_peer_id=new_peer_id).root)
    assert other["peer_id"] != made[0]["peer_id"]
    assert other["receiver_port"] != made[0]["receiver_port"]


def test_init_peer_default_sources_are_random(tmp_path: Path) -> None:
    """Without sources handed in, two peers get different ids."""
    a, b = (init_peer(tmp_path / n).config for n in ("a", "b"))
    assert a.peer_id != b.peer_id


def test_init_peer_rejects_a_malformed_peer_id_source(tmp_path: Path) -> None:
    """An id source that gives anything but 16 hex digits is our bug: assert, no peer dir."""
    with pytest.raises(AssertionError, match="peer id source"):
        init_peer(tmp_path / "p", new_peer_id=lambda: "not-an-id")
    assert not (tmp_path / "p" / "peer.json").exists()


def test_cluster_create_same_sources_same_peers_secrets_stay_random(tmp_path: Path) -> None:
    """A TLS network made twice from the same sources: every peer.json field that the sources
    decide is the same; the network CA and each peer's private key are new each time."""
    made = []
    for run in ("a", "b"):
        ports, new_peer_id = sources(SEED)
        dirs = cluster.create(tmp_path / run, 3, tls=True, ports=ports, new_peer_id=new_peer_id)
        made.append(dirs)
    for a, b in zip(*made, strict=True):
        # With TLS the peer id may be bound to the certificate key (random): not compared.
        assert_same_but_secrets(peer_json(a.root), peer_json(b.root), {"peer_id"})
        assert (a.tls_dir / "peer.key").read_bytes() != (b.tls_dir / "peer.key").read_bytes()
    ca = [(d[0].root.parent / "pki" / "ca.key").read_bytes() for d in made]
    assert ca[0] != ca[1]
