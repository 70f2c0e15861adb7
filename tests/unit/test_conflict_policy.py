"""The conflict policy picks the same winner from the same leaves, in any order, and a leaf
that its owner did not sign never wins over one that it did."""

from __future__ import annotations

import functools
import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from mydrive.crypto import keys
from mydrive.crypto.primitives import KdfParams
from mydrive.metadata.conflicts import Leaf, pick_winner, rev_key
from mydrive.metadata.signed import sign_document

FAST = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1, salt=bytes(16))


@functools.cache
def _user(seed: int) -> tuple[keys.UserRecord, keys.UserKeys]:
    return keys.create_user("alice", "pass", kdf_params=FAST,
                            random_bytes=lambda n: bytes([seed]) * n)


def signed_user(updated_ms: int, *, seed: int = 1) -> dict[str, object]:
    """alice's user document at ``updated_ms``, signed by the key of ``seed``."""
    record, user = _user(seed)
    return sign_document("user:alice", replace(record, updated_ms=updated_ms).to_doc(),
                         user.identity)


def test_conflicts_latest_update_wins() -> None:
    """Among validly signed leaves, the highest updated_ms wins whatever its revision."""
    old = Leaf("9-ffff", signed_user(100))
    new = Leaf("2-0000", signed_user(200))
    assert pick_winner("user:alice", [old, new]) is new


def test_conflicts_tie_broken_by_revision() -> None:
    """Equal updated_ms: the higher generation, then the higher hash wins."""
    doc = signed_user(5)
    a, b, c = Leaf("3-aa", doc), Leaf("3-bb", doc), Leaf("2-ff", doc)
    assert pick_winner("user:alice", [a, b, c]) is b
    assert pick_winner("peer:a", [Leaf("2-ff", {}), Leaf("10-00", {})]).rev == "10-00"


def test_conflicts_malformed_updated_ms_counts_as_zero() -> None:
    """A replica's garbage updated_ms never beats a real one and never raises (peer docs)."""
    good = Leaf("1-00", {"updated_ms": 1})
    for junk in ("9999999999999", True, -5, None, 1.5e30, [1]):
        assert pick_winner("peer:a", [Leaf("9-ff", {"updated_ms": junk}), good]) is good


def test_conflicts_unsigned_or_tampered_leaf_never_wins() -> None:
    """An unsigned leaf, a tampered one and one whose signature is by another key all lose to
    the owner's signed leaf, though their updated_ms and revision are far higher. (Before
    signing, the forged document with a huge updated_ms won on every peer.)"""
    genuine = Leaf("1-00", signed_user(1))
    unsigned = {k: v for k, v in signed_user(10**15).items() if k != "signature"}
    tampered = {**signed_user(1), "updated_ms": 10**15}
    resigned = {**signed_user(10**15), "signature": signed_user(10**15, seed=2)["signature"]}
    for bad in (unsigned, tampered, resigned):
        assert pick_winner("user:alice", [Leaf("99-ff", bad), genuine]) is genuine


def test_conflicts_signed_elsewhere_does_not_count() -> None:
    """A signed document moved under another document id is not valid there."""
    moved = {**signed_user(10**15)}
    genuine = _user(1)[0]
    other = sign_document("user:bob", {**replace(genuine, name="bob").to_doc()},
                          _user(1)[1].identity)
    assert pick_winner("user:bob", [Leaf("9-ff", moved), Leaf("1-00", other)]).body == other


revs = st.builds(lambda g, h: f"{g}-{h}", st.integers(1, 50),
                 st.text("0123456789abcdef", min_size=1, max_size=32))
bodies = st.one_of(st.builds(signed_user, st.integers(0, 10**13)),
                   st.fixed_dictionaries({"updated_ms": st.integers(0, 10**15)}),
                   st.just({}))
leaf_lists = st.lists(st.builds(Leaf, rev=revs, body=bodies), min_size=1, max_size=8,
                      unique_by=lambda leaf: leaf.rev)


@given(leaf_lists, st.randoms(use_true_random=False))
def test_conflicts_winner_independent_of_order(leaves: list[Leaf], rnd: random.Random) -> None:
    """Every replica, seeing the leaves in any order, picks the same one; it is a signed one
    whenever any leaf is signed."""
    shuffled = list(leaves)
    rnd.shuffle(shuffled)
    winner = pick_winner("user:alice", leaves)
    assert winner.rev == pick_winner("user:alice", shuffled).rev
    if any("signature" in leaf.body for leaf in leaves):
        assert "signature" in winner.body


def test_conflicts_rev_key_parses_generation() -> None:
    """Revision '12-abc' sorts after '9-fff' (numeric generation, not text)."""
    assert rev_key("12-abc") > rev_key("9-fff")
    assert rev_key("junk") < rev_key("1-0")
